"""Reading what is on the wire: task messages as kombu left them in a Redis list, mail as the SMTP server got it."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from alerting.testing.mailsink import Received


def queued_messages(client: redis.Redis, queue: str) -> list[str]:
    """The raw kombu envelopes waiting in ``queue`` (the Redis transport keeps a queue as a list of JSON strings)."""
    return [r.decode() if isinstance(r, bytes) else str(r) for r in client.lrange(queue, 0, -1)]


def task_payload(envelope: str) -> Any:
    """The first argument of the task in one kombu envelope: body is base64 of JSON ``[args, kwargs, embed]``."""
    message = json.loads(envelope)
    assert message["content-type"] == "application/json"
    assert message["properties"]["body_encoding"] == "base64"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return args[0]


def header_lines(raw: bytes) -> list[str]:
    """The top-level header fields of a raw message, each unfolded onto one line, exactly as sent."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    fields: list[str] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def header_values(raw: bytes, name: str) -> list[str]:
    prefix = name.lower() + ":"
    return [f[len(prefix) :].strip() for f in header_lines(raw) if f.lower().startswith(prefix)]


def everything_in(mail: Received) -> str:
    """The raw bytes and every decoded part of a mail, so a search cannot miss text hidden by a transfer encoding."""
    parts = [mail.raw.decode("utf-8", "replace")]
    for part in mail.message.walk():
        if not part.is_multipart():
            parts.append(str(part.get_content()))
    return "\n".join(parts)
