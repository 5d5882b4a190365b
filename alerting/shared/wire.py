"""The wire contract between the application and the workers: task names, payload v1, size cap, envelope. Pure.

Both sides import these from here, so a worker never imports the application's transport (Celery, kombu, redis)
to learn a task name, and the payload's fields are written down once: :class:`PayloadFields` is what the
producer builds (``alerting.producer.capture``, checked by mypy) and what the consumer's ``Alert`` dataclass
(``alerting.consumer.schema``) reads back; ``tests/unit/test_wire.py`` proves the two name the same fields.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any, TypedDict

#: One alert, one argument: the payload dict. Public: it stays valid on the wire (README, "Public contract").
TASK_NAME = "alerting.deliver"
#: Sends an owed digest or summary (the worker's own outbox poller publishes it).
DIGEST_TASK_NAME = "alerting.send_digest"
#: Dead-letters a message the broker guard could not decode (``alerting.consumer.brokerguard``).
QUARANTINE_TASK_NAME = "alerting.quarantine"

PAYLOAD_VERSION = 1

#: No payload published by the application is larger than this once serialised (JSON, ASCII-escaped).
MAX_PAYLOAD_BYTES = 64 * 1024

#: A payload as it travels and as code passes it around: a JSON object. :class:`PayloadFields` says what is in it.
Payload = dict[str, Any]


class _RequiredFields(TypedDict):
    v: int
    fingerprint: str
    created: float  # epoch seconds
    level: str
    levelno: int
    logger: str
    message: str


class PayloadFields(_RequiredFields, total=False):
    """The fields of payload v1. ``id`` is set when the payload leaves the application (``finalize``); the
    worker requires it. Optional fields may be absent or null."""

    id: str
    template: str
    pathname: str
    lineno: int
    func: str | None
    exc_type: str | None
    traceback: str | None
    stack: str | None
    host: str | None
    pid: int | None
    process_name: str | None
    thread_name: str | None
    service: str | None
    extra: dict[str, Any] | None
    context: dict[str, Any] | None
    count: int  # occurrences coalesced into this alert, >= 1
    first_created: float | None  # with count > 1: when the earliest was logged
    dropped: dict[str, Any] | None  # {"total": int, "by_fingerprint": {fingerprint: int}}
    recipients: list[str] | None  # only on a replayed dead letter: mail these addresses only


def encoded_size(payload: Payload) -> int:
    """Bytes on the wire: kombu's JSON serializer escapes non-ASCII, so measure the same way."""
    return len(json.dumps(payload, separators=(",", ":")))


# Celery protocol 2 headers that do not vary for an alerting.deliver message (see producer.transport.RedisTransport;
# tests/integration/test_transport_contract.py compares the result, field by field, with what Celery produces).
_HEADERS: dict[str, Any] = {
    "lang": "py",
    "task": TASK_NAME,
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "parent_id": None,
    "kwargsrepr": "{}",
    "ignore_result": True,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: What follows the payload in a task body: ``[[payload],{},embed]``.
BODY_TAIL = b"],{}," + json.dumps(_EMBED, separators=(",", ":")).encode() + b"]"
#: The four strings that differ between two messages of one publisher; ``envelope_template`` leaves them as parts.
PLACEHOLDERS = ("@BODY@", "@TASK@", "@TAG@", "@ALERT@")


def _envelope(
    *, body: str, task: str, task_id: str, tag: str, queue: str, argsrepr: str, origin: str
) -> dict[str, Any]:
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            **_HEADERS,
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "argsrepr": argsrepr,
            "origin": origin,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": tag,
        },
    }


def envelope_template(queue: str, origin: str) -> list[str]:
    """kombu's Redis envelope of a Celery protocol 2 message, cut into fixed parts and placeholders."""
    envelope = _envelope(
        body="@BODY@",
        task=TASK_NAME,
        task_id="@TASK@",
        tag="@TAG@",
        queue=queue,
        argsrepr="[<alert @ALERT@>]",
        origin=origin,
    )
    return re.split("(" + "|".join(PLACEHOLDERS) + ")", json.dumps(envelope, separators=(",", ":")))


def task_envelope(task: str, args: list[Any], *, queue: str, origin: str, argsrepr: str) -> bytes:
    """One whole task message, as kombu's Redis transport stores it, calling ``task(*args)`` (for the rare
    message the worker side writes itself; the publisher's hot path fills :func:`envelope_template` instead)."""
    task_id = str(uuid.uuid4())
    body = base64.b64encode(json.dumps([args, {}, _EMBED]).encode("utf-8")).decode("ascii")
    envelope = _envelope(
        body=body, task=task, task_id=task_id, tag=str(uuid.uuid4()), queue=queue, argsrepr=argsrepr, origin=origin
    )
    return json.dumps(envelope).encode("ascii")
