"""alerting.consumer.smtp.classify: which SMTP failures are worth retrying and which go straight to the dead letters."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest

from alerting.consumer.smtp import classify
from alerting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError


def _cert_verify_error() -> ssl.SSLCertVerificationError:
    # As the ssl module raises it during a handshake: with the verify code and message filled in.
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_code = 18
    exc.verify_message = "self-signed certificate"
    return exc


TRANSIENT = TransientDeliveryError
PERMANENT = PermanentDeliveryError


@pytest.mark.parametrize(
    ("exc", "expected_type", "kind"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 try again later"), TRANSIENT, "smtp-451"),
        (smtplib.SMTPDataError(550, b"5.7.1 message rejected"), PERMANENT, "smtp-550"),
        (smtplib.SMTPDataError(552, b"5.3.4 message too big"), PERMANENT, "smtp-552"),
        (
            smtplib.SMTPRecipientsRefused({"a@x.example": (550, b"no such user"), "b@x.example": (553, b"bad")}),
            PERMANENT,
            "recipients",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@x.example": (550, b"no such user"), "b@x.example": (450, b"busy")}),
            TRANSIENT,
            "smtp-4xx",
        ),
        (smtplib.SMTPRecipientsRefused({"a@x.example": (421, b"closing")}), TRANSIENT, "smtp-4xx"),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), PERMANENT, "auth"),
        (smtplib.SMTPAuthenticationError(454, b"4.7.0 temporary auth failure"), TRANSIENT, "auth"),
        (smtplib.SMTPSenderRefused(553, b"5.1.8 sender rejected", "alerts@x.example"), PERMANENT, "smtp-553"),
        (smtplib.SMTPSenderRefused(451, b"4.1.8 try later", "alerts@x.example"), TRANSIENT, "smtp-451"),
        (smtplib.SMTPHeloError(421, b"service not available"), TRANSIENT, "smtp-421"),
        (smtplib.SMTPConnectError(554, b"no SMTP service here"), PERMANENT, "smtp-554"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), TRANSIENT, "disconnected"),
        (TimeoutError("timed out"), TRANSIENT, "timeout"),  # socket.timeout is this class since Python 3.10
        (ConnectionRefusedError(111, "Connection refused"), TRANSIENT, "connection"),
        (ConnectionResetError(104, "Connection reset by peer"), TRANSIENT, "connection"),
        (OSError(101, "Network is unreachable"), TRANSIENT, "connection"),
        (socket.gaierror(-2, "Name or service not known"), TRANSIENT, "dns"),
        (_cert_verify_error(), PERMANENT, "tls-verify"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), TRANSIENT, "tls"),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), PERMANENT, "unsupported"),
        (RuntimeError("something odd"), TRANSIENT, "unexpected"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else (v if isinstance(v, str) else type(v).__name__),
)
def test_classify_maps_each_failure_to_retry_or_dead_letter(
    exc: BaseException, expected_type: type[DeliveryError], kind: str
) -> None:
    result = classify(exc)
    assert type(result) is expected_type
    assert result.kind == kind
    assert str(result)  # the reason ends up in the logs and the dead letter


def test_classify_keeps_the_server_reply_in_the_reason() -> None:
    assert "451" in str(classify(smtplib.SMTPDataError(451, b"4.3.0 try again later")))
    assert "try again later" in str(classify(smtplib.SMTPDataError(451, b"4.3.0 try again later")))
    refused = classify(smtplib.SMTPRecipientsRefused({"nobody@x.example": (550, b"no such user")}))
    assert "nobody@x.example" in str(refused)
    assert "no such user" in str(refused)
    assert "self-signed certificate" in str(classify(_cert_verify_error()))


def test_classify_passes_our_own_errors_through() -> None:
    original = PermanentDeliveryError("already decided", kind="custom")
    assert classify(original) is original


def _read_reply_that_times_out() -> None:
    try:
        raise TimeoutError("timed out")
    except OSError as e:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed: " + str(e))  # noqa: B904


def test_a_read_timeout_that_smtplib_reports_as_a_disconnect_is_classified_as_a_timeout() -> None:
    # smtplib's getreply() turns a socket timeout into SMTPServerDisconnected, raised while handling it.
    with pytest.raises(smtplib.SMTPServerDisconnected) as info:
        _read_reply_that_times_out()
    result = classify(info.value)
    assert result.kind == "timeout"
    assert isinstance(result, TransientDeliveryError)


def test_a_server_that_never_answers_ends_the_send_as_a_timeout_naming_the_server() -> None:
    from alerting.consumer.mime import Email
    from alerting.consumer.settings import SMTPSettings
    from alerting.consumer.smtp import SMTPSender

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (backlog), never says a word
        port = silent.getsockname()[1]
        settings = SMTPSettings("127.0.0.1", port, "none", None, None, 0.3, None, True)
        sender = SMTPSender(settings, "a@example.com", ("b@example.com",))
        with pytest.raises(TransientDeliveryError) as info:
            sender.send(Email((("Subject", "x"),), "text", "<p>html</p>"))
    assert info.value.kind == "timeout"
    assert f"127.0.0.1:{port}" in str(info.value)


def test_a_connection_error_names_the_smtp_server() -> None:
    result = classify(ConnectionRefusedError(111, "Connection refused"), "127.0.0.1:2525")
    assert str(result) == "cannot reach the SMTP server 127.0.0.1:2525: [Errno 111] Connection refused"


def test_the_sender_names_the_server_it_could_not_reach() -> None:
    from alerting.consumer.mime import Email
    from alerting.consumer.settings import SMTPSettings
    from alerting.consumer.smtp import SMTPSender

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = SMTPSettings("127.0.0.1", port, "none", None, None, 1.0, None, True)
    sender = SMTPSender(settings, "a@example.com", ("b@example.com",))
    with pytest.raises(TransientDeliveryError) as info:
        sender.send(Email((("Subject", "x"),), "text", "<p>html</p>"))
    assert info.value.kind == "connection"
    assert f"cannot reach the SMTP server 127.0.0.1:{port}: [Errno 111]" in str(info.value)
