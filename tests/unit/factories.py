"""Shared helpers for the unit layer: records, payloads and a clock that only moves when told to.

A plain module rather than a conftest, so that test files can call the factories directly in parametrize tables.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

from alerting.producer.capture import build, fingerprint
from alerting.producer.finalize import finalize
from alerting.producer.redact import Redactor
from alerting.shared.wire import Payload

#: The secret-key rule the handler uses by default.
REDACTOR = Redactor()
IS_SECRET_KEY = REDACTOR.is_secret_key


class FakeClock:
    """A clock for code that takes ``clock=``: returns ``now`` until a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_record(
    msg: object = "order %s failed",
    args: Any = (17,),
    *,
    name: Any = "app.payments",
    level: int = logging.CRITICAL,
    pathname: str = "/srv/app/payments/charge.py",
    lineno: Any = 42,
    func: str | None = "charge",
    exc_info: Any = None,
    extra: dict[str, Any] | None = None,
) -> logging.LogRecord:
    """A record as ``Logger.makeRecord`` would make it (``extra`` keys become attributes)."""
    record = logging.LogRecord(name, level, pathname, lineno, msg, args, exc_info, func)
    for key, value in (extra or {}).items():
        record.__dict__[key] = value
    return record


def record_with_exception(exc: BaseException, **kwargs: Any) -> logging.LogRecord:
    """A record carrying ``exc`` (raised for real, so it has a traceback)."""
    try:
        raise exc
    except BaseException:
        return make_record(exc_info=sys.exc_info(), **kwargs)


def build_payload(record: logging.LogRecord, *, service: str | None = "shop", **kwargs: Any) -> Payload:
    """The payload as it leaves the application: built in the logging thread, finalized by the publisher."""
    raw = build(record, fingerprint=fingerprint(record), service=service, is_secret_key=IS_SECRET_KEY, **kwargs)
    return finalize(raw, REDACTOR)


def make_payload(**overrides: Any) -> Payload:
    """A valid payload v1 as the application publishes it; ``overrides`` replace (or, with None, set) fields."""
    payload: Payload = {
        "v": 1,
        "id": uuid.uuid4().hex,
        "fingerprint": "fp0123456789abcdef01",
        "created": 1_700_000_000.123,
        "level": "CRITICAL",
        "levelno": 50,
        "logger": "app.payments",
        "message": "order 17 failed",
        "template": "order %s failed",
        "pathname": "/srv/app/payments/charge.py",
        "lineno": 42,
        "func": "charge",
        "exc_type": None,
        "traceback": None,
        "stack": None,
        "host": "web-1",
        "pid": 4242,
        "process_name": "MainProcess",
        "thread_name": "MainThread",
        "service": "shop",
        "extra": None,
        "context": None,
        "count": 1,
    }
    payload.update(overrides)
    return payload
