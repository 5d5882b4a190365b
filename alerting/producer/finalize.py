"""What leaves the application: a payload redacted, given its fingerprint, id and count, capped in size. Pure.

Runs in the publisher thread (off the logging thread), before a payload is published or spooled; the cap is
the wire contract's ``MAX_PAYLOAD_BYTES`` (``alerting.shared.wire``).
"""

from __future__ import annotations

import json

from alerting.producer.capture import resolve_fingerprint
from alerting.producer.ids import new_id
from alerting.producer.redact import Redactor
from alerting.shared.jsonsafe import truncate
from alerting.shared.wire import MAX_PAYLOAD_BYTES, Payload, encoded_size

# Fields cut, largest first, when a payload is over MAX_PAYLOAD_BYTES.
_SHRINKABLE = ("traceback", "stack", "message", "template")


def finalize(payload: Payload, redactor: Redactor, *, count: int = 1, first_created: float | None = None) -> Payload:
    """What leaves the application: secrets redacted, size capped, coalesced count attached.

    Done in the publisher thread (off the logging thread), before the payload is published or spooled.
    """
    out = redactor.payload(payload)
    # The logging thread leaves the coalescing key in "fingerprint"; the digest is made here, off its path.
    out["fingerprint"] = resolve_fingerprint(out.get("fingerprint"))
    out.setdefault("id", new_id())
    out["count"] = count
    if count > 1 and first_created is not None:
        out["first_created"] = first_created
    return enforce_size(out)


def enforce_size(payload: Payload, max_bytes: int = MAX_PAYLOAD_BYTES) -> Payload:
    """A copy of ``payload`` no larger than ``max_bytes``, cutting the largest text fields first.

    Messages keep their beginning, tracebacks and stacks their end (where the exception is).
    """
    if _surely_within(payload, max_bytes):
        return payload  # the common case, decided without serialising
    size = encoded_size(payload)
    if size <= max_bytes:
        return payload
    out = dict(payload)
    for name in ("extra", "context"):
        if out.get(name) and len(json.dumps(out[name])) > max_bytes // 4:
            out[name] = {"…": "[dropped: the alert was over the size limit]"}
    for _ in range(12):  # each round cuts the largest field to what the budget allows; a few rounds suffice
        size = encoded_size(out)
        if size <= max_bytes:
            return out
        name = max(_SHRINKABLE, key=lambda n: len(json.dumps(out.get(n) or "")))
        text = out.get(name) or ""
        if not text:
            break
        field_bytes = len(json.dumps(text))
        # Escaped characters take 2-12 bytes each: convert the byte budget to characters at this text's rate.
        bytes_per_char = field_bytes / len(text)
        budget = field_bytes - (size - max_bytes) - 100  # 100: room for the marker
        keep = int(budget / bytes_per_char) if budget > 0 else len(text) // 2
        out[name] = truncate(text, max(keep, 0), keep_tail=name in ("traceback", "stack"))
    if encoded_size(out) > max_bytes:  # pathological: keep what identifies the alert
        out = {k: out[k] for k in ("v", "id", "fingerprint", "created", "level", "levelno", "logger") if k in out}
        out["message"] = "[alert cut to its identity: over the size limit]"
    return out


def _surely_within(payload: Payload, max_bytes: int) -> bool:
    """True when the payload cannot exceed ``max_bytes`` even if every character were escaped (12 bytes each)."""
    if payload.get("extra") or payload.get("context") or payload.get("dropped"):
        return False
    chars = sum(len(v) for v in payload.values() if isinstance(v, str))
    return chars * 12 + 2048 <= max_bytes  # 2048: keys, numbers and punctuation of a payload without extras
