"""alerting.consumer.render: alerts, digests and summaries become safe, readable emails."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.consumer.mime import Email
from alerting.consumer.render import (
    SUBJECT_MAX,
    MailConfig,
    alert_subject,
    clean_header_text,
    render_alert,
    render_digest,
    render_summary,
)
from alerting.consumer.schema import Alert, parse
from alerting.shared.outbox import Digest, Summary, SummaryEntry, summary_of
from tests.unit.factories import make_payload

MAIL = MailConfig(mail_from="alerts@example.com", mail_to=("ops@example.com", "oncall@example.com"))
INJECTION = "boom\r\nBcc: evil@x.example\r\n\r\nfake body"


def alert(**overrides: Any) -> Alert:
    return parse(make_payload(**overrides))


def digest(*, count: int, first: float, last: float, window_start: float, window_end: float) -> Digest:
    return Digest("fp", 1, count, first, last, "{}", window_start, window_end)


def summary(since: float | None, entries: list[dict[str, Any]]) -> Summary:
    return summary_of((SummaryEntry(**e) for e in entries), since)


def serialized(msg: Email) -> bytes:
    """The bytes on the wire, as smtplib sends them."""
    return msg.as_bytes()


def header_block(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def reparsed(msg: Email) -> EmailMessage:
    parsed = email.message_from_bytes(serialized(msg), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_body(msg: Email) -> str:
    part = reparsed(msg).get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_body(msg: Email) -> str:
    part = reparsed(msg).get_body(("html",))
    assert part is not None
    return str(part.get_content())


# -- clean_header_text -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "separator",
    ["\r", "\n", "\r\n", "\x00", "\x1b", "\t", "\x0b", "\x0c", "\x7f", "\x85", "\u2028", "\u2029"],
    ids=["CR", "LF", "CRLF", "NUL", "ESC", "TAB", "VT", "FF", "DEL", "NEL", "LS", "PS"],
)
def test_clean_header_text_turns_control_characters_into_a_space(separator: str) -> None:
    assert clean_header_text(f"disk full{separator}Bcc: evil@x") == "disk full Bcc: evil@x"


def test_clean_header_text_caps_the_length_with_an_ellipsis() -> None:
    out = clean_header_text("x" * 1_000)
    assert len(out) == SUBJECT_MAX
    assert out.endswith("…")
    assert len(clean_header_text("y" * 1_000, limit=40)) == 40


def test_clean_header_text_leaves_a_plain_subject_alone() -> None:
    assert clean_header_text("[CRITICAL] app: payment failed") == "[CRITICAL] app: payment failed"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), limit=st.integers(min_value=10, max_value=200))
def test_clean_header_text_output_is_always_one_bounded_line(text: str, limit: int) -> None:
    out = clean_header_text(text, limit)
    assert len(out) <= limit
    assert len(out.splitlines()) <= 1
    assert not any(ord(c) < 0x20 or c in "\x7f\x85\u2028\u2029" for c in out)


# -- subjects ----------------------------------------------------------------------------------------------
def test_subject_is_level_logger_and_first_line_of_the_message() -> None:
    a = alert(message="\n  card declined for order 17  \nmore detail\nand more", logger="app.payments")
    assert alert_subject(a) == "[CRITICAL] app.payments: card declined for order 17"


def test_subject_starts_with_the_configured_prefix() -> None:
    a = alert(message="card declined")
    assert alert_subject(a, "[prod] ") == "[prod] [CRITICAL] app.payments: card declined"
    mail = MailConfig(MAIL.mail_from, MAIL.mail_to, subject_prefix="[prod] ")
    assert reparsed(render_alert(a, mail))["Subject"] == "[prod] [CRITICAL] app.payments: card declined"


def test_subject_of_a_huge_message_is_capped() -> None:
    assert len(alert_subject(alert(message="z" * 10_000))) <= SUBJECT_MAX


# -- header injection --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"message": INJECTION},
        {"logger": "app\r\nBcc: evil@x.example"},
        {"level": "CRITICAL\r\nBcc: evil@x.example"},
        {"message": "boom\nBcc: evil@x.example", "logger": "app\rBcc: evil@x.example"},
        {"message": "boom\x00\r\nBcc: evil@x.example"},
        {"message": "boom\u2028Bcc: evil@x.example"},
    ],
    ids=["message", "logger", "level", "bare-lf-and-cr", "nul", "line-separator"],
)
def test_crlf_in_the_record_cannot_inject_headers_or_recipients(overrides: dict[str, str]) -> None:
    msg = render_alert(alert(**overrides), MAIL)
    raw = serialized(msg)
    lines = header_block(raw)

    assert sum(1 for line in lines if line.lower().startswith(b"subject:")) == 1
    assert not any(line.lower().startswith(b"bcc:") for line in lines)
    parsed = reparsed(msg)
    assert parsed.get_all("Bcc") is None
    assert parsed.get_all("Cc") is None
    assert len(parsed.get_all("Subject") or []) == 1
    recipients = getaddresses([*(parsed.get_all("To") or [])])
    assert sorted(addr for _, addr in recipients) == ["oncall@example.com", "ops@example.com"]
    assert "evil" not in str(parsed["To"])


def test_injected_text_stays_visible_inside_the_subject() -> None:
    parsed = reparsed(render_alert(alert(logger="app\r\nBcc: evil@x.example", message="boom"), MAIL))
    assert parsed["Subject"] == "[CRITICAL] app Bcc: evil@x.example: boom"


# -- encoding ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "message",
    ["Zahlung für Müller fehlgeschlagen: 12 €", "支付失败：订单 17", "🔥 disk on fire 🔥", "Ошибка оплаты"],
)
def test_non_ascii_subjects_are_rfc2047_encoded_and_decode_back(message: str) -> None:
    a = alert(message=message)
    msg = render_alert(a, MAIL)
    lines = header_block(serialized(msg))
    subject_lines: list[bytes] = []
    for line in lines:
        if line.lower().startswith(b"subject:") or (subject_lines and line[:1] in (b" ", b"\t")):
            subject_lines.append(line)
        elif subject_lines:
            break
    raw_subject = b"\r\n".join(subject_lines)
    assert raw_subject.isascii()
    assert b"=?utf-8?" in raw_subject.lower()
    assert reparsed(msg)["Subject"] == alert_subject(a)


# -- the alert body ----------------------------------------------------------------------------------------
def test_html_part_escapes_markup_from_the_record() -> None:
    a = alert(
        message="<script>alert('x')</script> failed",
        logger="app.<b>",
        extra={"note": "<img src=x onerror=alert(1)>"},
        traceback="Traceback...\nValueError: <script>",
    )
    body = html_body(render_alert(a, MAIL))
    assert "<script>" not in body
    assert "<img" not in body
    assert "&lt;script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_text_body_holds_everything_needed_to_act_on_the_alert() -> None:
    a = alert(
        created=1_700_000_000.123,
        host="web-7",
        service="shop",
        pid=4242,
        pathname="/srv/app/payments/charge.py",
        lineno=42,
        func="charge",
        exc_type="shop.PaymentError",
        traceback="Traceback (most recent call last):\n  File 'charge.py', line 42\nshop.PaymentError: declined",
        extra={"order_id": 17, "customer": "alice"},
        context={"path": "/pay", "method": "POST"},
    )
    msg = render_alert(a, MAIL)
    text = text_body(msg)
    for expected in (
        "order 17 failed",
        "2023-11-14T22:13:20.123Z",
        "web-7",
        "shop",
        "pid 4242",
        "/srv/app/payments/charge.py:42 in charge()",
        "shop.PaymentError: declined",
        "order_id: 17",
        "customer: alice",
        "path: /pay",
        a.id,
        a.fingerprint,
    ):
        assert expected in text, expected
    assert "order 17 failed" in html_body(msg)


def test_alert_mail_is_addressed_and_marked_as_automated() -> None:
    a = alert()
    parsed = reparsed(render_alert(a, MAIL))
    assert parsed["From"] == "alerts@example.com"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"]
    assert parsed["Date"]
    assert parsed["X-Alerting-Id"] == a.id
    assert parsed["X-Alerting-Fingerprint"] == a.fingerprint


def test_coalesced_alert_says_how_many_occurrences_it_stands_for() -> None:
    assert "Occurrences:" in text_body(render_alert(alert(count=12), MAIL))
    assert "12" in text_body(render_alert(alert(count=12), MAIL))
    assert "Occurrences" not in text_body(render_alert(alert(count=1), MAIL))


def test_alert_reports_what_the_buffer_dropped_before_it() -> None:
    a = alert(dropped={"total": 7, "by_fingerprint": {"fp-a": 5, "fp-b": 2}})
    text = text_body(render_alert(a, MAIL))
    assert "7 alerts did not fit" in text
    assert "fp-a ×5" in text


# -- digests and summaries ---------------------------------------------------------------------------------
def test_digest_shows_the_count_and_the_first_and_last_times() -> None:
    sample = alert(message="card declined", created=1_700_000_290.0)
    body = digest(
        count=41,
        first=1_700_000_010.5,
        last=1_700_000_290.0,
        window_start=1_700_000_000.0,
        window_end=1_700_000_300.0,
    )
    msg = render_digest(body, sample, MAIL)
    subject = reparsed(msg)["Subject"]
    text = text_body(msg)
    assert subject == "[CRITICAL] app.payments: card declined (41 more in 5 min)"
    assert "41 more occurrences" in text
    assert "2023-11-14T22:13:30.500Z" in text  # first
    assert "2023-11-14T22:18:10.000Z" in text  # last
    assert "card declined" in text


def test_digest_of_one_repeat_says_occurrence_in_the_singular() -> None:
    body = digest(count=1, first=10.0, last=10.0, window_start=0.0, window_end=60.0)
    text = text_body(render_digest(body, alert(), MAIL))
    assert "1 more occurrence of this alert" in text


def test_digest_subject_of_a_hostile_sample_has_no_line_breaks() -> None:
    body = digest(count=3, first=1.0, last=2.0, window_start=0.0, window_end=60.0)
    msg = render_digest(body, alert(message=INJECTION), MAIL)
    assert not any(line.lower().startswith(b"bcc:") for line in header_block(serialized(msg)))


def test_summary_lists_every_held_back_alert_with_its_count() -> None:
    entries = [
        {"fingerprint": "a", "count": 3, "subject": "[CRITICAL] app.payments: card declined"},
        {"fingerprint": "b", "count": 12, "subject": "[ERROR] app.db: connection lost"},
        {"fingerprint": "c", "count": 1, "subject": "[CRITICAL] app.mail: queue full\r\nBcc: evil@x"},
    ]
    msg = render_summary(summary(1_700_000_000.0, entries), MAIL, "30/m")
    text = text_body(msg)
    subject = reparsed(msg)["Subject"]
    assert "16 alerts" in subject
    assert "30/m" in subject
    for line in (
        "3 × [CRITICAL] app.payments: card declined",
        "12 × [ERROR] app.db: connection lost",
        "1 × [CRITICAL] app.mail: queue full Bcc: evil@x",
    ):
        assert line in text
    assert text.index("12 ×") < text.index("3 ×")  # most frequent first
    assert "2023-11-14T22:13:20.000Z" in text
