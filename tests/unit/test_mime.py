"""The wire format of alert emails: parseable by any mail client, and no header can carry a line break."""

from __future__ import annotations

import pytest

from alerting.consumer.mime import Email
from alerting.testing import received


def test_an_email_reads_back_with_its_headers_and_both_parts() -> None:
    mail = Email((("Subject", "Größe ✓ " * 20), ("To", "ops@example.com")), "text ü\n.dot line", "<p>html</p>")
    parsed = received(mail)
    assert parsed["Subject"] == "Größe ✓ " * 20
    assert parsed["To"] == "ops@example.com"
    assert parsed.get_body(("plain",)).get_content() == "text ü\n.dot line"  # type: ignore[union-attr]
    assert parsed.get_body(("html",)).get_content() == "<p>html</p>"  # type: ignore[union-attr]
    raw = mail.as_bytes()
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))  # folded and base64-wrapped
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only


@pytest.mark.parametrize("value", ["a\r\nBcc: x@evil.example", "a\nb", "a\rb", "a\x00b"])
def test_a_header_with_a_line_break_or_nul_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        Email((("Subject", value),), "", "")
