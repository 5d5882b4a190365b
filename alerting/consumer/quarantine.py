"""What a worker does with bytes on its queue that are not a task message it can run. Pure.

kombu's Redis transport decodes each message it pops (``json.loads`` in ``Channel._brpop_read``) before Celery
sees it; one message that is not JSON, or a JSON envelope that kombu or Celery cannot read (bad base64 body, a
body that is not ``[args, kwargs, embed]``), raised out of the consumer loop: ``Unrecoverable error``, worker
exit 1, and the alerts behind it waiting for a worker that dies on the same message again. :func:`inspect` says
what is wrong with a popped message; :func:`quarantine_envelope` replaces it with a well-formed message for
``alerting.quarantine``, which dead-letters the original bytes (capped). ``alerting.consumer.brokerguard``
applies both where kombu pops messages.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from alerting.shared.wire import DIGEST_TASK_NAME, MAX_PAYLOAD_BYTES, QUARANTINE_TASK_NAME, TASK_NAME, task_envelope

KNOWN_TASKS = frozenset({TASK_NAME, DIGEST_TASK_NAME, QUARANTINE_TASK_NAME})

#: Bytes of a quarantined message kept in its dead letter.
RAW_KEEP_BYTES = 64 * 1024
#: No message our publishers write is larger: a payload of MAX_PAYLOAD_BYTES is 4/3 of that in base64, plus
#: Celery's headers (argsrepr is capped at 1 KiB). Anything larger is not decoded at all.
MAX_MESSAGE_BYTES = 4 * MAX_PAYLOAD_BYTES


def inspect(raw: bytes) -> str | None:
    """Why ``raw`` (one message as popped from the queue) cannot be handed to Celery; None when it can."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return f"message of {len(raw)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not a JSON message: {exc}"
    if not isinstance(envelope, dict):
        return f"not a message envelope: a JSON {type(envelope).__name__}"
    props, headers = envelope.get("properties"), envelope.get("headers")
    if not isinstance(props, dict) or not isinstance(headers, dict):
        return "envelope without 'properties' and 'headers' objects"
    info = props.get("delivery_info")
    if not isinstance(props.get("delivery_tag"), str) or not isinstance(info, dict):
        return "envelope without a delivery tag and delivery info"
    if not isinstance(info.get("exchange"), str) or not isinstance(info.get("routing_key"), str):
        return "envelope without an exchange and routing key"
    if envelope.get("content-type") != "application/json" or headers.get("compression"):
        # Worded as Celery words the same refusal (ContentDisallowed), which operators may already search for.
        content = str(envelope.get("content-type"))[:80]
        return f"ContentDisallowed: content type {content!r} refused (only uncompressed JSON is accepted)"
    task = headers.get("task")
    if task not in KNOWN_TASKS or not isinstance(headers.get("id"), str):
        return f"not a celery-alerting task message (task {str(task)[:80]!r})"
    return _inspect_body(envelope.get("body"), props.get("body_encoding"))


def _inspect_body(body: object, encoding: object) -> str | None:
    if not isinstance(body, str):
        return "message body is not a string"
    if encoding == "base64":
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            return f"message body is not valid base64: {exc}"
    elif encoding in (None, "utf-8"):
        data = body.encode("utf-8", "surrogatepass")
    else:
        return f"unknown body encoding {str(encoding)[:40]!r}"
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"message body is not JSON: {exc}"
    if (
        not isinstance(decoded, list)
        or len(decoded) != 3
        or not isinstance(decoded[0], list)
        or not isinstance(decoded[1], dict)
        or not isinstance(decoded[2], dict | None)
    ):
        return "message body is not a task call [args, kwargs, options]"
    return None


def quarantine_info(raw: bytes, reason: str, queue: str) -> dict[str, Any]:
    """The dead letter's content: why, how large, and the first RAW_KEEP_BYTES of the bytes (text when they are
    UTF-8, else base64)."""
    kept = raw[:RAW_KEEP_BYTES]
    info: dict[str, Any] = {"reason": reason, "size": len(raw), "truncated": len(raw) > len(kept), "queue": queue}
    try:
        info["raw"] = kept.decode("utf-8")
        return info
    except UnicodeDecodeError as exc:
        # The cap may have split a multi-byte character at the very end: drop that partial character alone.
        if info["truncated"] and exc.start >= len(kept) - 3 and exc.reason == "unexpected end of data":
            info["raw"] = kept[: exc.start].decode("utf-8")
            return info
    info["raw_base64"] = base64.b64encode(kept).decode("ascii")
    return info


def quarantine_envelope(info: dict[str, Any], routing_key: str) -> bytes:
    """A well-formed task message (Celery protocol 2, JSON) calling ``alerting.quarantine(info)``."""
    return task_envelope(
        QUARANTINE_TASK_NAME,
        [info],
        queue=routing_key,
        origin="alerting.brokerguard",
        argsrepr=f"<quarantined message of {info.get('size')} bytes>",
    )
