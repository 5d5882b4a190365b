"""An alert email on the wire: headers and a multipart/alternative body, written out directly. Pure.

The stdlib's structured-header API (``EmailMessage``) re-parses every header it is given, and its generator
re-folds them on the way out: together about a third of a worker's time per alert. An alert always has the same
simple shape (ASCII headers from validated settings and payload tokens, a cleaned subject, a text part and an
HTML part), so it is written here directly: RFC 2047 for a non-ASCII subject, base64 bodies (no line too long,
none starting with a dot), CRLF line ends. Any line break in a header value is refused: no header injection.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, replace
from email.header import Header


@dataclass(frozen=True)
class Email:
    headers: tuple[tuple[str, str], ...]
    text: str
    html: str

    def __post_init__(self) -> None:
        for name, value in self.headers:
            if any(c in value for c in "\r\n\x00") or any(c in name for c in "\r\n\x00: "):
                raise ValueError(f"header {name!r} contains a line break or NUL")

    @property
    def subject(self) -> str:
        return self.header("Subject") or ""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def with_header(self, name: str, value: str) -> Email:
        return replace(self, headers=(*self.headers, (name, value)))

    def as_bytes(self) -> bytes:
        boundary = f"=_alerting_{uuid.uuid4().hex}"
        lines = [f"{name}: {_encode(name, value)}" for name, value in self.headers]
        lines += ["MIME-Version: 1.0", "Content-Type: multipart/alternative;", f' boundary="{boundary}"', ""]
        for subtype, content in (("plain", self.text), ("html", self.html)):
            lines += [
                f"--{boundary}",
                f'Content-Type: text/{subtype}; charset="utf-8"',
                "Content-Transfer-Encoding: base64",
                "",
                base64.encodebytes(content.encode("utf-8")).decode("ascii").rstrip("\n").replace("\n", "\r\n"),
            ]
        lines += [f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("ascii")


def _encode(name: str, value: str) -> str:
    if value.isascii():
        return value  # our headers stay far below the 998-character line limit (subjects are capped at 150)
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
