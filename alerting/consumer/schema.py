"""Payload v1 (``alerting.shared.wire``) read back into a typed :class:`Alert`. Pure.

The worker never trusts what is on the queue: :func:`parse` checks the version and the shape and raises
:class:`~alerting.errors.PayloadError` with the reason, which sends the message to the dead letters
instead of into a crash or retry loop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from alerting.errors import PayloadError
from alerting.shared.wire import PAYLOAD_VERSION

# Ids and fingerprints end up in Redis key names: keep them to a small, safe alphabet.
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
# Times must be finite and inside what a date can show (years 1970-9999): 1e20 or NaN would pass the type check
# and then break rendering, after the throttle had already counted the alert.
_MAX_EPOCH = 253_402_300_799.0
# A re-send names its recipients (see ``Alert.recipients``): addresses, one line each.
_MAX_RECIPIENTS = 100
_ADDRESS = re.compile(r"^[^\s,<>\x00-\x1f\x7f]{1,254}$")


@dataclass(frozen=True)
class DropReport:
    """Alerts the application's buffer had to drop before this one got through."""

    total: int
    by_fingerprint: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    id: str
    fingerprint: str
    created: float
    level: str
    levelno: int
    logger: str
    message: str
    template: str = ""
    pathname: str = ""
    lineno: int = 0
    func: str | None = None
    exc_type: str | None = None
    traceback: str | None = None
    stack: str | None = None
    host: str | None = None
    pid: int | None = None
    process_name: str | None = None
    thread_name: str | None = None
    service: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    first_created: float | None = None  # with count > 1: when the earliest of the coalesced occurrences was logged
    dropped: DropReport | None = None
    # Set only on a re-send to the recipients an SMTP server refused (a dead letter, replayed): mail these only.
    recipients: tuple[str, ...] | None = None


def parse(obj: object) -> Alert:
    """Validate a task argument and return the alert; :class:`PayloadError` says what is wrong."""
    if not isinstance(obj, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version != PAYLOAD_VERSION:
        raise PayloadError(f"unsupported payload version {version!r}; this worker understands {PAYLOAD_VERSION}")
    return Alert(
        id=_token(obj, "id"),
        fingerprint=_token(obj, "fingerprint"),
        created=_time(obj, "created"),
        level=_str(obj, "level", required=True) or "",
        levelno=_int(obj, "levelno", required=True, minimum=0),
        logger=_str(obj, "logger", required=True) or "",
        message=_str(obj, "message", required=True) or "",
        template=_str(obj, "template") or "",
        pathname=_str(obj, "pathname") or "",
        lineno=_int(obj, "lineno", minimum=0),
        func=_str(obj, "func"),
        exc_type=_str(obj, "exc_type"),
        traceback=_str(obj, "traceback"),
        stack=_str(obj, "stack"),
        host=_str(obj, "host"),
        pid=_int(obj, "pid", minimum=0) if obj.get("pid") is not None else None,
        process_name=_str(obj, "process_name"),
        thread_name=_str(obj, "thread_name"),
        service=_str(obj, "service"),
        extra=_dict(obj, "extra"),
        context=_dict(obj, "context"),
        count=_int(obj, "count", minimum=1) if obj.get("count") is not None else 1,
        first_created=_time(obj, "first_created") if obj.get("first_created") is not None else None,
        dropped=_drops(obj.get("dropped")),
        recipients=_recipients(obj.get("recipients")),
    )


def _token(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise PayloadError(f"field {name!r} must be 1-80 characters of [A-Za-z0-9_.:-], got {value!r:.100}")
    return value


def _str(obj: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _int(obj: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None) -> int:
    value = obj.get(name)
    if value is None and not required:
        return 0
    if type(value) is not int or (minimum is not None and value < minimum):
        raise PayloadError(f"field {name!r} must be an integer >= {minimum}, got {value!r:.100}")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if type(value) is int or type(value) is float:
        return float(value)
    raise PayloadError(f"field {name!r} must be a number, got {value!r:.100}")


def _time(obj: dict[str, Any], name: str) -> float:
    value = _number(obj, name)
    if not (math.isfinite(value) and 0 <= value <= _MAX_EPOCH):
        raise PayloadError(f"field {name!r} must be a time in seconds since 1970 (before year 10000), got {value!r}")
    return value


def _recipients(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= _MAX_RECIPIENTS
        or not all(isinstance(r, str) and _ADDRESS.fullmatch(r) for r in value)
    ):
        raise PayloadError(f"field 'recipients' must be a list of 1-{_MAX_RECIPIENTS} email addresses")
    return tuple(value)


def _dict(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"field {name!r} must be an object, got {type(value).__name__}")
    return value


def _drops(value: object) -> DropReport | None:
    if value is None:
        return None
    if not isinstance(value, dict) or type(value.get("total")) is not int:
        raise PayloadError("field 'dropped' must be an object with an integer 'total'")
    by_fp = value.get("by_fingerprint") or {}
    if not isinstance(by_fp, dict):
        raise PayloadError("field 'dropped.by_fingerprint' must be an object")
    return DropReport(total=value["total"], by_fingerprint={str(k): v for k, v in by_fp.items() if type(v) is int})
