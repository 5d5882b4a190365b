"""Log record → payload v1 (a JSON-safe dict), and the alert fingerprint. Pure; runs in the logging thread.

The payload is the wire format between the application and the workers (``alerting.schema`` reads it
back). Building it must be cheap and must never mutate the record or raise: everything taken from the
record is copied into plain strings and numbers, capped in size, with a visible marker when cut.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from alerting.jsonsafe import safe_repr, safe_str, to_json_safe, truncate

PAYLOAD_VERSION = 1

# Field caps, in characters. The whole payload is capped again in bytes before it is published
# (schema.enforce_size), so these keep the common case small rather than guarantee the bound.
MESSAGE_MAX = 4_000
TEMPLATE_MAX = 1_000
TRACEBACK_MAX = 16_000
STACK_MAX = 4_000
NAME_MAX = 200
PATH_MAX = 300
EXTRA_VALUE_MAX = 500
EXTRA_ITEMS_MAX = 30

#: Record attributes that ``extra=`` keys may set to steer the alert rather than be shown in it.
ALERT_KEY_ATTR = "alert_key"

# Attributes every LogRecord has; anything else on a record came from ``extra=``. Derived from a blank
# record (as structlog does) so new Python versions' attributes (taskName in 3.12) are covered.
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    ALERT_KEY_ATTR,
}

# A record with no more attributes than a plain one has no extras: a length check instead of a set difference.
_STANDARD_ATTRS = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)

HOST = socket.gethostname()

Payload = dict[str, Any]


# Fingerprints of recent (logger, level, template, exception, location) combinations: the same few lines log
# again and again, so a dict lookup replaces hashing in the common case. Cleared when it grows too big.
_FP_CACHE: dict[tuple[object, ...], str] = {}
_FP_CACHE_MAX = 4096


def fingerprint(record: logging.LogRecord) -> str:
    """What makes two records "the same problem".

    ``extra={"alert_key": ...}`` decides alone when given. Otherwise: logger, level, message template
    (not the formatted message, so "order %s failed" groups across orders), exception type, and the
    source location as its last two path components (the same code installed under different
    virtualenv paths on different hosts still groups).
    """
    return _fingerprint(record, _exc_type_name(record))


def _fingerprint(record: logging.LogRecord, exc_type: str | None) -> str:
    key = record.__dict__.get(ALERT_KEY_ATTR)
    if key is not None:
        cache_key: tuple[object, ...] = ("key", key)
    else:
        cache_key = (record.name, record.levelno, record.msg, exc_type, record.pathname, record.lineno)
    try:
        return _FP_CACHE[cache_key]
    except (KeyError, TypeError):  # not seen yet, or something unhashable in it
        pass
    if key is not None:
        basis = "key\0" + safe_str(key, TEMPLATE_MAX)
    else:
        basis = "\0".join(
            (
                safe_str(record.name, NAME_MAX),
                str(record.levelno),  # str() of anything; odd records still fingerprint
                safe_str(record.msg, TEMPLATE_MAX),
                exc_type or "",
                _source_tail(record.pathname),
                str(record.lineno),
            )
        )
    digest = hashlib.blake2b(basis.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()
    try:
        if len(_FP_CACHE) >= _FP_CACHE_MAX:
            _FP_CACHE.clear()
        _FP_CACHE[cache_key] = digest
    except TypeError:
        pass
    return digest


def capture_record(
    record: logging.LogRecord,
    *,
    service: str | None,
    is_secret_key: Callable[[str], bool],
    context: Mapping[str, Any] | None = None,
) -> tuple[Payload, str]:
    """The payload for ``record`` and its fingerprint, sharing the work both need (the logging thread's path)."""
    exc_type = _exc_type_name(record)
    fp = _fingerprint(record, exc_type)
    return _build(record, fp, exc_type, service, is_secret_key, context), fp


def build(
    record: logging.LogRecord,
    *,
    fingerprint: str,
    service: str | None,
    is_secret_key: Callable[[str], bool],
    context: Mapping[str, Any] | None = None,
) -> Payload:
    """The payload for ``record``. Never raises for odd records; never mutates them."""
    return _build(record, fingerprint, _exc_type_name(record), service, is_secret_key, context)


def _build(
    record: logging.LogRecord,
    fingerprint: str,
    exc_type: str | None,
    service: str | None,
    is_secret_key: Callable[[str], bool],
    context: Mapping[str, Any] | None,
) -> Payload:
    # Each text field takes the fast path (already a str within its cap) inline: emit() runs this per record.
    msg, name, pathname = record.msg, record.name, record.pathname
    func, process_name, thread_name = record.funcName, record.processName, record.threadName
    template = msg if type(msg) is str and len(msg) <= TEMPLATE_MAX else _text(msg, TEMPLATE_MAX)
    lineno, process = record.lineno, record.process
    return {
        "v": PAYLOAD_VERSION,
        # "id" is assigned by publisher.finalize, off the logging thread (uuid4 is a third of emit's own cost).
        "fingerprint": fingerprint,
        "created": float(record.created),
        "level": _text(record.levelname, 50),
        "levelno": record.levelno if isinstance(record.levelno, int) else 0,
        "logger": name if type(name) is str and len(name) <= NAME_MAX else _text(name, NAME_MAX),
        "message": _message(record, template),
        "template": template,
        "pathname": pathname if type(pathname) is str and len(pathname) <= PATH_MAX else _text(pathname, PATH_MAX),
        "lineno": lineno if isinstance(lineno, int) else 0,
        "func": (func if type(func) is str and len(func) <= NAME_MAX else _text(func, NAME_MAX)) if func else None,
        "exc_type": exc_type,
        "traceback": _traceback(record) if exc_type is not None or record.exc_text else None,
        "stack": truncate(record.stack_info, STACK_MAX, keep_tail=True) if record.stack_info else None,
        "host": HOST,
        "pid": process if isinstance(process, int) else os.getpid(),
        "process_name": _text(process_name, NAME_MAX) if process_name else None,
        "thread_name": _text(thread_name, NAME_MAX) if thread_name else None,
        "service": service,
        "extra": _extras(record, is_secret_key) if len(record.__dict__) > _STANDARD_ATTRS else None,
        "context": (
            to_json_safe(context, is_secret_key=is_secret_key, max_str=EXTRA_VALUE_MAX, max_items=EXTRA_ITEMS_MAX)
            if context
            else None
        ),
        "count": 1,
    }


def _text(value: object, limit: int) -> str:
    # The common case, a str within its cap, without safe_str's conversions.
    if type(value) is str:
        return value if len(value) <= limit else truncate(value, limit)
    return safe_str(value, limit)


def _message(record: logging.LogRecord, template: str) -> str:
    try:
        message = record.getMessage()
    except Exception as exc:
        # A bad format call (log.critical("%d", "x")) is a bug in the caller, but the alert still matters:
        # send the template and the arguments as they were.
        message = (
            f"{template} [message formatting failed: {type(exc).__name__}: {safe_str(exc, 200)}; "
            f"args={safe_repr(record.args, 1000)}]"
        )
    return truncate(message, MESSAGE_MAX)


def _exc_type_name(record: logging.LogRecord) -> str | None:
    exc_info = record.exc_info
    if not exc_info or not isinstance(exc_info, tuple) or exc_info[0] is None:
        return None
    exc_type = exc_info[0]
    module = getattr(exc_type, "__module__", None)
    name = getattr(exc_type, "__qualname__", None) or safe_repr(exc_type, NAME_MAX)
    return name if module in (None, "builtins") else f"{module}.{name}"


def _traceback(record: logging.LogRecord) -> str | None:
    if record.exc_text:  # another handler's formatter already paid for it
        return truncate(record.exc_text, TRACEBACK_MAX, keep_tail=True)
    exc_info = record.exc_info
    if not exc_info or not isinstance(exc_info, tuple) or exc_info[0] is None:
        return None
    try:
        text = "".join(traceback.format_exception(*exc_info))  # follows __cause__ / __context__ chains
    except Exception as exc:
        text = f"<traceback unavailable: {type(exc).__name__}> {safe_repr(exc_info[1], 1000)}"
    return truncate(text, TRACEBACK_MAX, keep_tail=True)


def _extras(record: logging.LogRecord, is_secret_key: Callable[[str], bool]) -> dict[str, Any] | None:
    attrs = record.__dict__
    names = [k for k in attrs if k not in _RECORD_KEYS and not k.startswith("_")]
    if not names:
        return None
    picked = {k: record.__dict__[k] for k in names[:EXTRA_ITEMS_MAX]}
    out: dict[str, Any] = to_json_safe(
        picked, is_secret_key=is_secret_key, max_str=EXTRA_VALUE_MAX, max_items=EXTRA_ITEMS_MAX
    )
    if len(names) > EXTRA_ITEMS_MAX:
        out["…"] = f"[{len(names) - EXTRA_ITEMS_MAX} more extras]"
    return out


def _source_tail(pathname: object) -> str:
    text = pathname if isinstance(pathname, str) else safe_str(pathname, PATH_MAX)
    return "/".join(text.replace("\\", "/").rsplit("/", 2)[-2:])
