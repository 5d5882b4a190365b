"""The only module that talks SMTP. I/O.

One connection per worker process, reused between tasks and re-opened when the server has dropped it.
:func:`classify` is the one place where smtplib, ssl and socket errors become ours: transient (retry
later) or permanent (dead letters).
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading

from alerting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alerting.mime import Email
from alerting.settings import SMTPSettings

log = logging.getLogger("alerting.smtp")


def classify(exc: BaseException) -> DeliveryError:
    """Map an exception raised while sending to a transient or permanent :class:`DeliveryError`."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
        if any(400 <= c < 500 for c in codes):
            return TransientDeliveryError(f"recipients refused for now: {detail}", kind="smtp-4xx")
        return PermanentDeliveryError(f"all recipients refused: {detail}", kind="recipients")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:
            return TransientDeliveryError(
                f"authentication deferred: {exc.smtp_code} {_text(exc.smtp_error)}", kind="auth"
            )
        return PermanentDeliveryError(f"authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}", kind="auth")
    if isinstance(exc, smtplib.SMTPResponseException):  # data, sender, helo, connect errors carry a code
        code = exc.smtp_code
        text = f"server replied {code} {_text(exc.smtp_error)}"
        if 400 <= code < 500:
            return TransientDeliveryError(text, kind=f"smtp-{code}")
        if 500 <= code < 600:
            return PermanentDeliveryError(text, kind=f"smtp-{code}")
        return TransientDeliveryError(text, kind="smtp-other")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentDeliveryError(f"server does not support what the settings require: {exc}", kind="unsupported")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"TLS certificate refused: {exc.verify_message}", kind="tls-verify")
    if isinstance(exc, ssl.SSLError):
        return TransientDeliveryError(f"TLS error: {exc}", kind="tls")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientDeliveryError(f"server disconnected: {exc}", kind="disconnected")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientDeliveryError("timed out talking to the SMTP server", kind="timeout")
    if isinstance(exc, socket.gaierror):
        return TransientDeliveryError(f"cannot resolve the SMTP host: {exc}", kind="dns")
    if isinstance(exc, OSError):
        return TransientDeliveryError(f"cannot reach the SMTP server: {exc}", kind="connection")
    return TransientDeliveryError(f"unexpected error while sending: {type(exc).__name__}: {exc}", kind="unexpected")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """Verified by default (system CAs, or ``ALERTING_SMTP_CA_FILE``); unverified only when configured so."""
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SMTPSender:
    """Sends messages over one reused connection. Safe to share between threads (sends are serialised)."""

    def __init__(self, settings: SMTPSettings, mail_from: str, mail_to: tuple[str, ...]) -> None:
        self.settings = settings
        self.mail_from = mail_from
        self.mail_to = mail_to
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self.connections_opened = 0

    def send(self, msg: Email) -> None:
        with self._lock:
            for _ in range(2):
                reused = self._conn is not None
                try:
                    conn = self._conn or self._connect()
                    refused = conn.sendmail(self.mail_from, list(self.mail_to), msg.as_bytes())
                except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    self._drop()
                    if reused:  # the server closed an idle connection: one fresh try, at once
                        continue
                    raise classify(exc) from exc
                except Exception as exc:
                    self._drop()  # state of the SMTP dialogue unknown: start clean next time
                    raise classify(exc) from exc
                if refused:
                    log.warning("SMTP server refused some recipients: %s", sorted(refused))
                return
            raise TransientDeliveryError("server disconnected twice in a row", kind="disconnected")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.quit()
                except Exception:  # closing a dead connection: nothing to report
                    self._conn.close()
                self._conn = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=tls_context(s))
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.security == "starttls":
                conn.starttls(context=tls_context(s))
                conn.ehlo()
            if s.user and s.password:
                conn.login(s.user, s.password)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.connections_opened += 1
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
