"""Log record → payload v1 (a JSON-safe dict), and the alert fingerprint. Pure; runs in the logging thread.

The payload is the wire format between the application and the workers (``alerting.consumer.schema`` reads it
back). Building it must be cheap and must never mutate the record or raise: everything taken from the
record is copied into plain strings and numbers, capped in size, with a visible marker when cut.

The work is bounded too, whatever the record holds: long strings are cut before they are formatted or
hashed, tracebacks keep their outer and inner frames (``alerting.producer.tracebacks``), extras are walked within a
node and character budget (``alerting.shared.jsonsafe``). A ``created`` that is not a plausible time (milliseconds,
NaN, a string) is replaced by the time of capture, and the original is kept in the alert's extras.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from alerting.producer.tracebacks import format_exception
from alerting.shared.jsonsafe import BIG_CONTAINER, safe_repr, safe_str, to_json_safe, truncate
from alerting.shared.wire import PAYLOAD_VERSION, Payload, PayloadFields

# Field caps, in characters. The whole payload is capped again in bytes before it is published
# (finalize.enforce_size), so these keep the common case small rather than guarantee the bound.
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

#: The extra that keeps a ``record.created`` replaced by the time of capture, as it was logged.
CREATED_AS_LOGGED = "created_as_logged"
# Plausible times of a record, epoch seconds: 2000-01-01 to 2100-01-01 UTC. Outside it, the value is in the
# wrong unit (milliseconds: 1.7e12) or not a time at all; the worker could not show or use it.
CREATED_MIN = 946_684_800.0
CREATED_MAX = 4_102_444_800.0

# Extra attributes looked at before giving up counting them exactly (a record with 100,000 attributes).
_EXTRAS_COUNT_MAX = 1_000

_LOG_RECORD = logging.LogRecord
_STD_GET_MESSAGE = logging.LogRecord.getMessage
# Arguments whose text "%s" builds (or copies) in full, and the length past which they are cut before formatting.
_ARG_LIMITS: dict[type, int] = {
    **dict.fromkeys((str, bytes, bytearray), MESSAGE_MAX),
    **dict.fromkeys((list, tuple, dict, set, frozenset), BIG_CONTAINER),
}

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

# The fingerprint is a hash of a *coalescing key*: the tuple of the normalised parts below. The logging thread
# builds only the key (a tuple, hashed by the buffer with Python's own string hash, cached on each string); the
# publisher thread turns it into the hex digest (``fingerprint_of_key``), off the caller's path. Equal keys are
# exactly equal digests' inputs, so coalescing in the buffer groups exactly what the fingerprint groups.
CoalescingKey = tuple[object, ...]

# Digests of recent keys: the same few lines log again and again. Cleared when it grows too big.
_FP_CACHE: dict[CoalescingKey, str] = {}
_FP_CACHE_MAX = 4096
# pathname -> its last two components: a program has a few hundred source files, asked for every record.
_TAIL_CACHE: dict[str, str] = {}
_TAIL_CACHE_MAX = 4096


def fingerprint(record: logging.LogRecord) -> str:
    """What makes two records "the same problem".

    ``extra={"alert_key": ...}`` decides alone when given. Otherwise: logger, level, message template
    (not the formatted message, so "order %s failed" groups across orders), exception type, and the
    source location as its last two path components (the same code installed under different
    virtualenv paths on different hosts still groups).
    """
    return fingerprint_of_key(coalescing_key(record, _exc_type_name(record)))


def coalescing_key(record: logging.LogRecord, exc_type: str | None) -> CoalescingKey:
    """The parts the fingerprint hashes, normalised (capped text, source tail): cheap, for the logging thread.

    Two records have equal keys exactly when they have equal fingerprints (short of a digest collision)."""
    key = record.__dict__.get(ALERT_KEY_ATTR)
    if key is not None:
        return ("key", key if type(key) is str and len(key) <= TEMPLATE_MAX else safe_str(key, TEMPLATE_MAX))
    name, levelno, msg, pathname, lineno = record.name, record.levelno, record.msg, record.pathname, record.lineno
    if type(pathname) is str:
        try:
            tail = _TAIL_CACHE[pathname]
        except KeyError:
            tail = _source_tail(pathname)
            if len(_TAIL_CACHE) >= _TAIL_CACHE_MAX:
                _TAIL_CACHE.clear()
            _TAIL_CACHE[pathname] = tail
    else:
        tail = _source_tail(pathname)
    return (
        name if type(name) is str and len(name) <= NAME_MAX else safe_str(name, NAME_MAX),
        levelno if type(levelno) is int else str(levelno),  # str() of anything; odd records still fingerprint
        msg if type(msg) is str and len(msg) <= TEMPLATE_MAX else safe_str(msg, TEMPLATE_MAX),
        exc_type or "",
        tail,
        lineno if type(lineno) is int else str(lineno),
    )


def fingerprint_of_key(key: CoalescingKey) -> str:
    """The fingerprint (hex digest) of a coalescing key. Runs in the publisher thread, or for the public API."""
    try:
        return _FP_CACHE[key]
    except KeyError:
        pass
    basis = "\0".join([str(part) for part in key])
    digest = hashlib.blake2b(basis.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()
    if len(_FP_CACHE) >= _FP_CACHE_MAX:
        _FP_CACHE.clear()
    _FP_CACHE[key] = digest
    return digest


def resolve_fingerprint(value: object) -> str:
    """A payload's ``fingerprint`` as it goes on the wire: a coalescing key (as the logging thread left it) becomes
    its digest; a fingerprint already made (``build(fingerprint=...)``, a spooled payload) stays as it is."""
    if type(value) is tuple:
        return fingerprint_of_key(value)
    return value if type(value) is str else safe_str(value, NAME_MAX)


def capture_record(
    record: logging.LogRecord,
    *,
    service: str | None,
    is_secret_key: Callable[[str], bool],
    context: Mapping[str, Any] | None = None,
) -> tuple[Payload, CoalescingKey, bool]:
    """The payload for ``record``, its coalescing key, and whether ``created`` had to be replaced (the logging
    thread's path). The payload's ``fingerprint`` is the key until ``finalize`` (publisher thread) makes it the
    digest: hashing is a third of this function's cost, and nothing in the logging thread needs the digest."""
    exc_type = _exc_type_name(record)
    key = coalescing_key(record, exc_type)
    payload, retimed = _build(record, key, exc_type, service, is_secret_key, context)
    return payload, key, retimed


def build(
    record: logging.LogRecord,
    *,
    fingerprint: str,
    service: str | None,
    is_secret_key: Callable[[str], bool],
    context: Mapping[str, Any] | None = None,
) -> Payload:
    """The payload for ``record``. Never raises for odd records; never mutates them."""
    return _build(record, fingerprint, _exc_type_name(record), service, is_secret_key, context)[0]


def _build(
    record: logging.LogRecord,
    fingerprint: str | CoalescingKey,
    exc_type: str | None,
    service: str | None,
    is_secret_key: Callable[[str], bool],
    context: Mapping[str, Any] | None,
) -> tuple[Payload, bool]:
    # Each text field takes the fast path (already a str within its cap) inline: emit() runs this per record.
    msg, name, pathname = record.msg, record.name, record.pathname
    func, process_name, thread_name, levelname = (
        record.funcName,
        record.processName,
        record.threadName,
        record.levelname,
    )
    template = msg if type(msg) is str and len(msg) <= TEMPLATE_MAX else _text(msg, TEMPLATE_MAX)
    lineno, process, levelno, created = record.lineno, record.process, record.levelno, record.created
    extra = _extras(record, is_secret_key) if len(record.__dict__) > _STANDARD_ATTRS else None
    retimed = False
    if type(created) is not float or not CREATED_MIN <= created < CREATED_MAX:  # NaN fails the comparison too
        created, extra, retimed = _plausible_created(created, extra)
    # Typed as the wire contract's fields, so mypy checks every key and value type written here.
    payload: PayloadFields = {
        "v": PAYLOAD_VERSION,
        # "id" is assigned by finalize.finalize, off the logging thread (uuid4 is a third of emit's own cost).
        "fingerprint": fingerprint,  # type: ignore[typeddict-item]  # a key: resolved by finalize, off-thread
        "created": created,
        "level": levelname if type(levelname) is str and len(levelname) <= 50 else _text(levelname, 50),
        "levelno": levelno if type(levelno) is int and levelno >= 0 else 0,  # the worker wants an int >= 0
        "logger": name if type(name) is str and len(name) <= NAME_MAX else _text(name, NAME_MAX),
        # A plain LogRecord with no arguments: its message is the template itself (what getMessage() returns).
        "message": (
            (msg if len(msg) <= MESSAGE_MAX else truncate(msg, MESSAGE_MAX))
            if type(msg) is str and not record.args and type(record) is _LOG_RECORD
            else _message(record, template)
        ),
        "template": template,
        "pathname": pathname if type(pathname) is str and len(pathname) <= PATH_MAX else _text(pathname, PATH_MAX),
        "lineno": lineno if type(lineno) is int and lineno >= 0 else 0,
        "func": (func if type(func) is str and len(func) <= NAME_MAX else _text(func, NAME_MAX)) if func else None,
        "exc_type": exc_type,
        "traceback": _traceback(record) if exc_type is not None or record.exc_text else None,
        "stack": truncate(record.stack_info, STACK_MAX, keep_tail=True) if record.stack_info else None,
        "host": HOST,
        "pid": process if type(process) is int and process >= 0 else os.getpid(),
        "process_name": (
            (
                process_name
                if type(process_name) is str and len(process_name) <= NAME_MAX
                else _text(process_name, NAME_MAX)
            )
            if process_name
            else None
        ),
        "thread_name": (
            (thread_name if type(thread_name) is str and len(thread_name) <= NAME_MAX else _text(thread_name, NAME_MAX))
            if thread_name
            else None
        ),
        "service": service,
        "extra": extra,
        "context": (
            to_json_safe(context, is_secret_key=is_secret_key, max_str=EXTRA_VALUE_MAX, max_items=EXTRA_ITEMS_MAX)
            if context
            else None
        ),
        "count": 1,
    }
    return cast(Payload, payload), retimed


def _plausible_created(created: object, extra: dict[str, Any] | None) -> tuple[float, dict[str, Any] | None, bool]:
    """``created`` as epoch seconds if it is a plausible time; otherwise the time of capture, with the original
    kept (visibly) in the extras. The last item says whether it was replaced."""
    if isinstance(created, (int, float)) and not isinstance(created, bool):  # int, numpy floats: fine if plausible
        try:
            seconds = float(created)
        except (OverflowError, ValueError):  # an int too big for a float
            seconds = math.nan
        if CREATED_MIN <= seconds < CREATED_MAX:
            return seconds, extra, False
    note = f"{safe_repr(created, 200)} (not a plausible time: the alert shows when it was captured)"
    return time.time(), {**(extra or {}), CREATED_AS_LOGGED: note}, True


def _text(value: object, limit: int) -> str:
    # The common case, a str within its cap, without safe_str's conversions.
    if type(value) is str:
        return value if len(value) <= limit else truncate(value, limit)
    return safe_str(value, limit)


def _message(record: logging.LogRecord, template: str) -> str:
    try:
        if type(record).getMessage is _STD_GET_MESSAGE:
            message = _format_bounded(record.msg, record.args)
        else:  # a custom record class formats its own way
            message = record.getMessage()
    except Exception as exc:
        # A bad format call (log.critical("%d", "x")) is a bug in the caller, but the alert still matters:
        # send the template and the arguments as they were.
        message = (
            f"{template} [message formatting failed: {type(exc).__name__}: {safe_str(exc, 200)}; "
            f"args={safe_repr(record.args, 1000)}]"
        )
    return truncate(message, MESSAGE_MAX)


def _format_bounded(msg: object, args: Any) -> str:
    """``LogRecord.getMessage()``, with whatever would make it copy megabytes cut first: a huge template, huge
    arguments (strings, bytes, big containers). The result is cut to MESSAGE_MAX anyway, so nothing shown is lost."""
    text = msg if type(msg) is str else safe_str(msg, MESSAGE_MAX + 1) if type(msg) in _ARG_LIMITS else str(msg)
    if not args:
        return text
    limits = _ARG_LIMITS
    if type(args) is tuple:
        for arg in args:
            kind = type(arg)
            if kind in limits and len(arg) > limits[kind]:
                args = tuple(_capped_arg(a) for a in args)
                break
    elif (
        type(args) is dict  # "%(name)s" with one mapping argument
        and len(args) <= BIG_CONTAINER
        and any(type(v) in limits and len(v) > limits[type(v)] for v in args.values())
    ):
        args = {k: _capped_arg(v) for k, v in args.items()}
    if len(text) <= MESSAGE_MAX:
        formatted: str = text % args
        return formatted
    head = text[:MESSAGE_MAX]  # the cut may fall inside a placeholder, or leave arguments over: then say so
    try:
        formatted = head % args
        return formatted + f"…[truncated: the message was {len(text):,} chars before formatting]"
    except (TypeError, ValueError, KeyError):
        return f"{head}…[truncated {len(text) - MESSAGE_MAX:,} chars, not formatted]; args={safe_repr(args, 1000)}"


class _Shown:
    """Stands for an argument in "%s" / "%r" with text made in advance (cut), so formatting copies no more."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _capped_arg(arg: object) -> object:
    kind = type(arg)
    if kind is str:
        return truncate(arg, MESSAGE_MAX)  # type: ignore[arg-type]
    if kind in _ARG_LIMITS and len(arg) > _ARG_LIMITS[kind]:  # type: ignore[arg-type]
        return _Shown(safe_repr(arg, MESSAGE_MAX))  # str() of bytes and containers is their repr()
    return arg


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
        text = format_exception(*exc_info)  # follows __cause__ / __context__ chains; bounded cost
    except Exception as exc:
        text = f"<traceback unavailable: {type(exc).__name__}> {safe_repr(exc_info[1], 1000)}"
    return truncate(text, TRACEBACK_MAX, keep_tail=True)


def _extras(record: logging.LogRecord, is_secret_key: Callable[[str], bool]) -> dict[str, Any] | None:
    attrs = record.__dict__
    keys = iter(attrs)
    names: list[str] = []
    for k in keys:  # stop at the first extra over the cap: a record may carry 100,000 attributes
        if k not in _RECORD_KEYS and not k.startswith("_"):
            names.append(k)
            if len(names) > EXTRA_ITEMS_MAX:
                break
    if not names:
        return None
    picked = {k: attrs[k] for k in names[:EXTRA_ITEMS_MAX]}
    out: dict[str, Any] = to_json_safe(
        picked, is_secret_key=is_secret_key, max_str=EXTRA_VALUE_MAX, max_items=EXTRA_ITEMS_MAX
    )
    if len(names) > EXTRA_ITEMS_MAX:
        rest = list(itertools.islice(keys, _EXTRAS_COUNT_MAX + 1))
        more = 1 + sum(1 for k in rest[:_EXTRAS_COUNT_MAX] if k not in _RECORD_KEYS and not k.startswith("_"))
        out["…"] = f"[more than {more:,} more extras]" if len(rest) > _EXTRAS_COUNT_MAX else f"[{more} more extras]"
    return out


def _source_tail(pathname: object) -> str:
    text = pathname if isinstance(pathname, str) else safe_str(pathname, PATH_MAX)
    return "/".join(text.replace("\\", "/").rsplit("/", 2)[-2:])
