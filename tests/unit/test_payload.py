"""alerting.producer.capture: a log record becomes payload v1 (JSON-safe, bounded, never mutating the record), and
records of "the same problem" share a fingerprint."""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from alerting.consumer.schema import parse
from alerting.producer import tracebacks
from alerting.producer.capture import (
    CREATED_AS_LOGGED,
    EXTRA_ITEMS_MAX,
    EXTRA_VALUE_MAX,
    MESSAGE_MAX,
    TRACEBACK_MAX,
    build,
    capture_record,
    fingerprint,
)
from alerting.producer.finalize import finalize
from alerting.shared.wire import MAX_PAYLOAD_BYTES, encoded_size
from tests.unit.factories import IS_SECRET_KEY, REDACTOR, build_payload, make_record, record_with_exception

MARK = "…[truncated"
V1_FIELDS = {
    "v",
    "id",
    "fingerprint",
    "created",
    "level",
    "levelno",
    "logger",
    "message",
    "template",
    "pathname",
    "lineno",
    "func",
    "exc_type",
    "traceback",
    "stack",
    "host",
    "pid",
    "process_name",
    "thread_name",
    "service",
    "extra",
    "context",
}


class PaymentError(Exception):
    pass


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class Widget:
    def __repr__(self) -> str:
        return "<Widget 7>"


def _record_snapshot(record: logging.LogRecord) -> dict[str, Any]:
    return copy.copy(record.__dict__)


# -- the fields of payload v1 ------------------------------------------------------------------------------
def test_build_fills_every_field_of_payload_v1() -> None:
    record = make_record("order %s failed", (17,), name="app.payments", level=logging.CRITICAL)
    payload = build_payload(record, service="shop")

    assert not V1_FIELDS - payload.keys()  # every v1 field is there
    assert payload["v"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", payload["id"])
    assert payload["fingerprint"] == fingerprint(record)
    assert payload["created"] == record.created
    assert payload["level"] == "CRITICAL"
    assert payload["levelno"] == logging.CRITICAL
    assert payload["logger"] == "app.payments"
    assert payload["message"] == "order 17 failed"
    assert payload["template"] == "order %s failed"
    assert payload["pathname"] == "/srv/app/payments/charge.py"
    assert payload["lineno"] == 42
    assert payload["func"] == "charge"
    assert payload["exc_type"] is None
    assert payload["traceback"] is None
    assert payload["stack"] is None
    assert payload["host"] == socket.gethostname()
    assert payload["pid"] == os.getpid()
    assert payload["process_name"] == record.processName
    assert payload["thread_name"] == threading.current_thread().name
    assert payload["service"] == "shop"
    assert payload["extra"] is None
    assert payload["context"] is None


def test_each_payload_gets_its_own_id() -> None:
    record = make_record()
    ids = {build_payload(record)["id"] for _ in range(50)}
    assert len(ids) == 50


def test_build_result_is_accepted_by_the_worker_schema() -> None:
    record = record_with_exception(PaymentError("card declined"), extra={"order_id": 17})
    alert = parse(json.loads(json.dumps(build_payload(record))))
    assert alert.message == "order 17 failed"
    assert alert.exc_type is not None
    assert alert.exc_type.endswith("PaymentError")
    assert alert.extra == {"order_id": 17}


def test_build_includes_the_stack_when_logged_with_stack_info() -> None:
    record = make_record()
    record.stack_info = "Stack (most recent call last):\n  File 'x.py', line 1, in <module>"
    assert build_payload(record)["stack"] == record.stack_info


def test_build_copies_the_context_with_secrets_redacted() -> None:
    payload = build_payload(make_record(), context={"path": "/pay", "cookie": "sessionid=abc"})
    assert payload["context"] == {"path": "/pay", "cookie": "[redacted]"}


# -- the record is never mutated ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record",
    [
        make_record(),
        make_record("%d orders", ("x",)),
        make_record(StrRaises(), ()),
        record_with_exception(PaymentError("declined"), extra={"order": {"id": 17}, "password": "hunter2"}),
    ],
    ids=["plain", "bad-args", "str-raises", "exception-and-extras"],
)
def test_build_never_mutates_the_record(record: logging.LogRecord) -> None:
    before = _record_snapshot(record)
    args_before = record.args
    build_payload(record)
    fingerprint(record)
    assert record.__dict__ == before
    assert record.args is args_before
    assert "message" not in record.__dict__  # logging.Formatter sets it; we must not
    assert record.exc_text is None  # nor cache a formatted traceback other handlers would then reuse


def test_build_leaves_an_exception_record_intact_for_other_handlers() -> None:
    record = record_with_exception(PaymentError("declined"))
    exc_info_before = record.exc_info
    build_payload(record)
    assert record.exc_info is exc_info_before
    formatted = logging.Formatter("%(message)s").format(record)
    assert "PaymentError: declined" in formatted


def test_build_uses_a_traceback_already_formatted_by_another_handler() -> None:
    record = record_with_exception(PaymentError("declined"))
    logging.Formatter().format(record)  # sets record.exc_text, as a console handler earlier in the chain would
    before = _record_snapshot(record)
    payload = build_payload(record)
    assert payload["traceback"] is not None
    assert "PaymentError: declined" in payload["traceback"]
    assert record.__dict__ == before


# -- odd records -------------------------------------------------------------------------------------------
def test_message_that_is_not_a_string_is_formatted_with_str() -> None:
    payload = build_payload(make_record({"order": 17}, ()))
    assert payload["message"] == "{'order': 17}"
    assert payload["template"] == "{'order': 17}"


def test_message_object_whose_str_raises_still_makes_an_alert() -> None:
    payload = build_payload(make_record(StrRaises(), ()))
    assert payload["message"]
    assert "StrRaises" in payload["message"]
    json.dumps(payload)


def test_message_with_bad_format_args_keeps_the_template_and_the_args() -> None:
    payload = build_payload(make_record("%d orders failed", ("x",)))
    assert "%d orders failed" in payload["message"]
    assert "'x'" in payload["message"]


def test_message_with_args_that_fail_to_format_keeps_the_template() -> None:
    payload = build_payload(make_record("order %s failed", (StrRaises(),)))
    assert "order %s failed" in payload["message"]
    assert "StrRaises" in payload["message"]


def test_message_with_too_few_args_keeps_the_template_and_the_args() -> None:
    payload = build_payload(make_record("%s paid %s", ("alice",)))
    assert "%s paid %s" in payload["message"]
    assert "'alice'" in payload["message"]


def test_huge_message_is_capped_with_a_visible_marker() -> None:
    payload = build_payload(make_record("x" * 1_000_000, ()))
    assert len(payload["message"]) <= MESSAGE_MAX
    assert MARK in payload["message"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param(make_record(lineno=None), "order 17 failed", id="lineno-none"),
        pytest.param(make_record(name=123), "order 17 failed", id="name-int"),
        pytest.param(make_record(name=None), "order 17 failed", id="name-none"),
        pytest.param(make_record(name=("tuple", "name")), "order 17 failed", id="name-tuple"),
        pytest.param(make_record(func=None), "order 17 failed", id="func-none"),
        pytest.param(
            logging.makeLogRecord({"msg": "boom", "levelno": 50, "levelname": "CRITICAL"}), "boom", id="makeLogRecord"
        ),
        pytest.param(
            logging.makeLogRecord({"msg": "boom %s", "args": ("x",), "name": "app", "levelno": 50}),
            "boom x",
            id="makeLogRecord-args",
        ),
        # no level, no name: everything at LogRecord's defaults (levelno None)
        pytest.param(logging.makeLogRecord({"msg": "boom"}), "boom", id="makeLogRecord-bare"),
        pytest.param(logging.makeLogRecord({"msg": "boom", "exc_info": True, "levelno": 50}), "boom", id="exc-true"),
        pytest.param(
            logging.makeLogRecord({"msg": "boom", "exc_info": (None, None, None), "levelno": 50}),
            "boom",
            id="exc-nones",
        ),
        pytest.param(
            logging.makeLogRecord({"msg": "boom", "process": None, "thread": None, "levelno": 50}),
            "boom",
            id="no-process-info",
        ),
    ],
)
def test_odd_records_still_become_valid_alerts(record: logging.LogRecord, message: str) -> None:
    payload = build_payload(record)
    fingerprint(record)
    alert = parse(json.loads(json.dumps(payload)))  # the worker accepts it: the alert is not lost on the way
    assert alert.message == message
    assert isinstance(alert.lineno, int)
    assert isinstance(alert.logger, str)


def test_lineno_none_becomes_zero() -> None:
    assert build_payload(make_record(lineno=None))["lineno"] == 0


def test_record_name_that_is_not_a_string_becomes_its_text() -> None:
    assert build_payload(make_record(name=123))["logger"] == "123"


# -- exceptions --------------------------------------------------------------------------------------------
def test_exception_type_and_traceback_are_included() -> None:
    payload = build_payload(record_with_exception(PaymentError("card declined")))
    assert payload["exc_type"].endswith(".PaymentError")
    assert "Traceback (most recent call last)" in payload["traceback"]
    assert "PaymentError: card declined" in payload["traceback"]


def test_builtin_exception_type_is_named_without_a_module() -> None:
    payload = build_payload(record_with_exception(KeyError("sku")))
    assert payload["exc_type"] == "KeyError"


def test_chained_exceptions_appear_in_the_traceback() -> None:
    try:
        try:
            raise ConnectionResetError("db connection reset")
        except ConnectionResetError as cause:
            raise PaymentError("could not charge") from cause
    except PaymentError:
        record = make_record(exc_info=sys.exc_info())
    tb = build_payload(record)["traceback"]
    assert "ConnectionResetError: db connection reset" in tb
    assert "The above exception was the direct cause of the following exception" in tb
    assert "PaymentError: could not charge" in tb
    assert tb.index("ConnectionResetError") < tb.index("PaymentError: could not charge")


def test_implicitly_chained_exceptions_appear_in_the_traceback() -> None:
    try:
        try:
            raise KeyError("missing")
        except KeyError:
            raise PaymentError("while handling")  # noqa: B904 -- implicit chaining is what this test is about
    except PaymentError:
        record = make_record(exc_info=sys.exc_info())
    tb = build_payload(record)["traceback"]
    assert "KeyError: 'missing'" in tb
    assert "During handling of the above exception, another exception occurred" in tb


def _ping(n: int) -> None:
    if n == 0:
        raise ValueError("the bottom of a deep stack")
    _pong(n - 1)


def _pong(n: int) -> None:
    _ping(n)  # alternating frames: Python cannot fold them into "[Previous line repeated ...]"


def test_huge_traceback_is_capped_but_keeps_the_exception_at_the_bottom() -> None:
    try:
        _ping(400)
    except ValueError:
        record = make_record(exc_info=sys.exc_info())
    tb = build_payload(record)["traceback"]
    assert len(tb) <= TRACEBACK_MAX
    assert MARK in tb
    assert tb.startswith("Traceback (most recent call last)")
    assert tb.rstrip().endswith("ValueError: the bottom of a deep stack")


# -- fingerprint -------------------------------------------------------------------------------------------
def test_same_template_with_different_args_has_the_same_fingerprint() -> None:
    assert fingerprint(make_record("order %s failed", (17,))) == fingerprint(make_record("order %s failed", (99,)))


def test_same_code_installed_under_different_paths_has_the_same_fingerprint() -> None:
    a = make_record(pathname="/home/deploy/venv-a/lib/python3.11/site-packages/shop/payments.py")
    b = make_record(pathname="/opt/venv-b/lib/python3.12/site-packages/shop/payments.py")
    assert fingerprint(a) == fingerprint(b)


@pytest.mark.parametrize(
    "other",
    [
        make_record(lineno=43),
        make_record(pathname="/srv/app/orders/charge.py"),
        make_record(level=logging.ERROR),
        make_record(name="app.orders"),
        make_record("refund %s failed"),
        record_with_exception(PaymentError("x")),
    ],
    ids=["other-line", "other-file", "other-level", "other-logger", "other-template", "with-exception"],
)
def test_a_different_problem_has_a_different_fingerprint(other: logging.LogRecord) -> None:
    assert fingerprint(make_record()) != fingerprint(other)


def test_a_different_exception_type_has_a_different_fingerprint() -> None:
    assert fingerprint(record_with_exception(PaymentError("x"))) != fingerprint(record_with_exception(KeyError("x")))


def test_alert_key_overrides_everything_else() -> None:
    a = make_record("order %s failed", level=logging.CRITICAL, lineno=1, extra={"alert_key": "payments-down"})
    b = record_with_exception(
        PaymentError("x"), name="other", level=logging.ERROR, lineno=99, extra={"alert_key": "payments-down"}
    )
    c = make_record("order %s failed", level=logging.CRITICAL, lineno=1, extra={"alert_key": "db-down"})
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)
    assert fingerprint(a) != fingerprint(make_record("order %s failed", level=logging.CRITICAL, lineno=1))


def test_fingerprints_are_the_same_digests_as_before_the_key_moved_off_the_logging_thread() -> None:
    # Pinned: a changed digest would restart every throttle window and digest in Redis on upgrade.
    assert fingerprint(make_record("order %s failed", (17,))) == "47afefea35eb74780019"
    assert fingerprint(make_record("x" * 5000)) == "29ef7a43dd4c9ae6957b"
    assert fingerprint(make_record(extra={"alert_key": "payments-down"})) == "ee03767411928b5e5ada"


def test_the_logging_thread_leaves_a_key_and_finalize_turns_it_into_the_records_fingerprint() -> None:
    record = make_record("order %s failed", (17,))
    payload, key, _ = capture_record(record, service=None, is_secret_key=IS_SECRET_KEY)
    assert payload["fingerprint"] == key  # no hashing on the logging thread
    out = finalize(payload, REDACTOR)
    assert out["fingerprint"] == fingerprint(record)
    json.dumps(out)  # the key never reaches the wire


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (make_record("x" * 5000 + "a"), make_record("x" * 5000 + "b")),  # differ past the template cap
        (make_record(pathname="/venv-a/shop/payments.py"), make_record(pathname="/venv-b/shop/payments.py")),
        (make_record(extra={"alert_key": "k"}), make_record("other", lineno=7, extra={"alert_key": "k"})),
    ],
    ids=["long-templates", "same-source-tail", "alert-key"],
)
def test_records_with_one_fingerprint_have_one_coalescing_key(a: logging.LogRecord, b: logging.LogRecord) -> None:
    # The buffer coalesces by key: equal fingerprints must mean equal keys, or repeats would not fold.
    key_a = capture_record(a, service=None, is_secret_key=IS_SECRET_KEY)[1]
    key_b = capture_record(b, service=None, is_secret_key=IS_SECRET_KEY)[1]
    assert fingerprint(a) == fingerprint(b)
    assert key_a == key_b


def test_alert_key_is_not_shown_as_an_extra() -> None:
    payload = build_payload(make_record(extra={"alert_key": "payments-down", "order_id": 17}))
    assert payload["extra"] == {"order_id": 17}


def test_fingerprint_is_a_token_the_worker_accepts() -> None:
    for record in (make_record(), make_record(name=None, lineno=None), make_record(extra={"alert_key": "a b\r\n"})):
        assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,80}", fingerprint(record))


# -- extras ------------------------------------------------------------------------------------------------
_loop: list[Any] = ["a"]
_loop.append(_loop)
_cycle: dict[str, Any] = {"name": "node"}
_cycle["parent"] = _cycle


@pytest.mark.parametrize(
    ("value", "check"),
    [
        (ReprRaises(), lambda v: "ReprRaises" in v and "unrepresentable" in v),
        (b"\x00\xffraw", lambda v: v == repr(b"\x00\xffraw")),
        ({3}, lambda v: v == [3]),
        (_loop, lambda v: v == ["a", "<recursive list>"]),
        (_cycle, lambda v: v == {"name": "node", "parent": "<recursive dict>"}),
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc), lambda v: "2024, 5, 6, 7, 8, 9" in v),
        (Decimal("12.50"), lambda v: v == "Decimal('12.50')"),
        (Widget(), lambda v: v == "<Widget 7>"),
        ("q" * 100_000, lambda v: len(v) <= EXTRA_VALUE_MAX and MARK in v),
    ],
    ids=["repr-raises", "bytes", "set", "recursive-list", "recursive-dict", "datetime", "decimal", "custom", "huge"],
)
def test_extras_of_any_type_become_bounded_json(value: object, check: Any) -> None:
    payload = build_payload(make_record(extra={"thing": value}))
    assert check(payload["extra"]["thing"])
    json.dumps(payload)


@pytest.mark.parametrize(
    "extra",
    [
        {"password": "hunter2"},
        {"api_key": "hunter2"},
        {"Authorization": "Bearer hunter2"},
        {"session_id": "hunter2"},
        {"db_password": "hunter2"},
        {"X-Api-Key": "hunter2"},
        {"request": {"headers": {"Cookie": "hunter2"}}},
        {"config": {"smtp": {"secret": "hunter2"}}},
    ],
    ids=lambda e: next(iter(e)),
)
def test_secret_looking_extras_are_redacted(extra: dict[str, Any]) -> None:
    payload = build_payload(make_record(extra=extra))
    dumped = json.dumps(payload)
    assert "hunter2" not in dumped
    assert "[redacted]" in dumped


def test_extras_next_to_a_secret_are_kept() -> None:
    payload = build_payload(make_record(extra={"password": "hunter2", "order_id": 17, "user": "alice"}))
    assert payload["extra"] == {"password": "[redacted]", "order_id": 17, "user": "alice"}


def test_too_many_extras_are_capped_and_counted() -> None:
    extra = {f"field_{i}": i for i in range(EXTRA_ITEMS_MAX + 12)}
    payload = build_payload(make_record(extra=extra))
    assert len([k for k in payload["extra"] if k.startswith("field_")]) == EXTRA_ITEMS_MAX
    assert "12" in payload["extra"]["…"]


def test_private_attributes_set_on_the_record_are_not_extras() -> None:
    payload = build_payload(make_record(extra={"_internal": 1, "visible": 2}))
    assert payload["extra"] == {"visible": 2}


def test_payload_with_every_kind_of_odd_extra_is_json_serialisable() -> None:
    record = record_with_exception(
        PaymentError("declined"),
        extra={
            "repr_raises": ReprRaises(),
            "bytes": b"\xff",
            "set": {1, 2},
            "loop": _loop,
            "cycle": _cycle,
            "when": dt.datetime.now(tz=dt.timezone.utc),
            "amount": Decimal("1.5"),
            "nan": float("nan"),
            "widget": Widget(),
            "huge": "h" * 1_000_000,
            "password": "hunter2",
        },
    )
    payload = build(record, fingerprint=fingerprint(record), service=None, is_secret_key=lambda k: "pass" in k)
    text = json.dumps(payload, allow_nan=False)
    assert "hunter2" not in text
    assert len(text) < 100_000


# -- hardening: implausible times, bounded work, the size cap --------------------------------------------------
class Opaque:
    def __repr__(self) -> str:
        return "<Opaque clock>"


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        (1_796_000_000_000.0, "1796000000000.0"),  # milliseconds
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (1e20, "1e+20"),
        (-5.0, "-5.0"),
        (0.0, "0.0"),
        (10**400, "1000000000"),  # an int too big for a float
        ("yesterday", "'yesterday'"),
        (None, "None"),
        (True, "True"),
        (Opaque(), "<Opaque clock>"),
    ],
    ids=["ms", "nan", "inf", "1e20", "negative", "zero", "huge-int", "str", "none", "bool", "object"],
)
def test_implausible_created_becomes_the_time_of_capture_and_the_original_is_kept(created: Any, shown: str) -> None:
    record = make_record()
    record.created = created
    before = time.time()
    payload, _, retimed = capture_record(record, service=None, is_secret_key=IS_SECRET_KEY)
    assert retimed
    assert before <= payload["created"] <= time.time()
    assert shown in payload["extra"][CREATED_AS_LOGGED]
    assert parse(finalize(payload, REDACTOR)).created == payload["created"]


@pytest.mark.parametrize("created", [1_700_000_000, 1_700_000_000.5], ids=["int", "float"])
def test_plausible_created_int_or_float_is_kept_as_seconds(created: Any) -> None:
    record = make_record()
    record.created = created
    payload, _, retimed = capture_record(record, service=None, is_secret_key=IS_SECRET_KEY)
    assert not retimed
    assert payload["created"] == float(created)
    assert payload["extra"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("lineno", -1), ("lineno", True), ("process", -7), ("process", "1234")],
    ids=["negative-lineno", "bool-lineno", "negative-pid", "str-pid"],
)
def test_numbers_the_worker_would_reject_are_replaced(field: str, value: Any) -> None:
    record = make_record()
    record.__dict__[field] = value
    parse(build_payload(record))  # the worker's own check: ints >= 0


def test_undecodable_file_names_leave_the_application_as_valid_utf8_with_the_bytes_shown() -> None:
    odd = os.fsdecode(b"/srv/caf\xe9.py")
    record = make_record("cannot read %s", (odd,), pathname=odd, extra={"upload": odd})
    payload = build_payload(record)
    json.dumps(payload, ensure_ascii=False).encode("utf-8")
    assert payload["pathname"] == "/srv/caf\\xe9.py"
    assert payload["message"] == "cannot read /srv/caf\\xe9.py"
    assert payload["extra"]["upload"] == "/srv/caf\\xe9.py"


BIG = 1_000_000


@pytest.mark.parametrize(
    ("msg", "args", "starts"),
    [
        ("upload: %s", ("é" * BIG,), "upload: ééé"),
        ("upload: %r", (b"\xff" * BIG,), "upload: b'\\xff\\xff"),
        ("ids: %s", (list(range(BIG)),), "ids: [0, 1, 2"),
        ("user %(name)s: %(body)s", ({"name": "ann", "body": "x" * BIG},), "user ann: xxx"),
        ("x" * BIG + " %s", ("tail",), "xxx"),
        ("y" * BIG, (), "yyy"),
    ],
    ids=["str-arg", "bytes-arg", "list-arg", "mapping-arg", "huge-template-with-args", "huge-template"],
)
def test_huge_messages_are_cut_before_formatting_with_a_visible_marker(msg: str, args: Any, starts: str) -> None:
    payload = build_payload(make_record(msg, args))
    assert payload["message"].startswith(starts)
    assert len(payload["message"]) <= MESSAGE_MAX + 100
    assert MARK in payload["message"]


def test_small_arguments_are_formatted_exactly_as_logging_does() -> None:
    record = make_record("order %s for %r: %d items, %.2f EUR", ("o-17", "ann", 3, 9.5))
    assert build_payload(record)["message"] == record.getMessage()


def _recurse(n: int) -> int:
    return _recurse(n + 1) + 1


def test_recursion_error_traceback_keeps_both_ends_and_says_how_many_frames_it_left_out() -> None:
    try:
        _recurse(0)
    except RecursionError:
        record = make_record(exc_info=sys.exc_info())
    tb = build_payload(record)["traceback"]
    assert tb.startswith("Traceback (most recent call last)")
    assert re.search(r"…\[truncated: [\d,]+ frames not shown\]", tb)
    assert "test_recursion_error_traceback_keeps_both_ends" in tb  # the entry point: the outermost frame
    assert "in _recurse" in tb
    assert tb.rstrip().endswith("RecursionError: maximum recursion depth exceeded")
    assert tb.count("\n") < 80


def _chain(links: int) -> BaseException:
    try:
        if links == 0:
            raise KeyError("root cause")
        try:
            raise _chain(links - 1)
        except Exception as exc:
            raise RuntimeError(f"link {links}") from exc
    except BaseException as exc:
        return exc


def test_long_exception_chain_shows_the_newest_and_the_root_cause() -> None:
    exc = _chain(50)
    tb = build_payload(make_record(exc_info=(type(exc), exc, exc.__traceback__)))["traceback"]
    assert "KeyError: 'root cause'" in tb
    assert tb.rstrip().endswith("RuntimeError: link 50")
    assert "RuntimeError: link 47" in tb
    assert "RuntimeError: link 20" not in tb
    assert re.search(r"…\[truncated: [\d,]+ more exceptions of this chain not shown\]", tb)
    assert tb.index("KeyError: 'root cause'") < tb.index("RuntimeError: link 50")


class _StandInExceptionGroup(Exception):
    """Python 3.10 has no exception groups: a stand-in with the same shape (``exceptions``, the same ``str()``), so
    the rendering of groups is tested on every supported version, with the real class wherever it exists."""

    def __init__(self, message: str, exceptions: list[BaseException]) -> None:
        super().__init__(message, exceptions)
        self.message, self.exceptions = message, tuple(exceptions)

    def __str__(self) -> str:
        return f"{self.message} ({len(self.exceptions)} sub-exceptions)"


_StandInExceptionGroup.__name__ = _StandInExceptionGroup.__qualname__ = "ExceptionGroup"


@pytest.fixture
def exception_group(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[BaseException]], BaseException]:
    real: Callable[[str, list[BaseException]], BaseException] | None = getattr(builtins, "ExceptionGroup", None)
    if real is not None:
        return real
    monkeypatch.setattr(tracebacks, "_GROUP", _StandInExceptionGroup)
    return _StandInExceptionGroup


def test_exception_group_shows_its_first_members_and_counts_the_rest(
    exception_group: Callable[[str, list[BaseException]], BaseException],
) -> None:
    members: list[BaseException] = [ValueError(f"item {i}") for i in range(12)]
    group = exception_group("batch failed", members)
    record = record_with_exception(group)
    tb = build_payload(record)["traceback"]
    assert "ExceptionGroup: batch failed (12 sub-exceptions)" in tb
    assert "ValueError: item 0" in tb
    assert "ValueError: item 4" in tb
    assert "ValueError: item 5" not in tb
    assert "…[truncated: 7 more sub-exceptions not shown]" in tb


def test_exception_message_of_megabytes_is_cut_before_it_is_copied_keeping_its_end() -> None:
    record = record_with_exception(ValueError("head " + "z" * BIG + " tail"))
    tb = build_payload(record)["traceback"]
    assert MARK in tb
    assert tb.rstrip().endswith("tail")
    assert len(tb) < 10_000


def test_syntax_error_and_notes_are_shown() -> None:
    try:
        compile("x = (1,\n", "config.py", "exec")
    except SyntaxError as exc:
        exc.__notes__ = ["while loading the plugin list"]  # type: ignore[attr-defined]  # add_note() on Python 3.11+
        record = make_record(exc_info=(type(exc), exc, exc.__traceback__))
    tb = build_payload(record)["traceback"]
    assert 'File "config.py", line 1' in tb
    assert "SyntaxError: '(' was never closed" in tb
    assert "while loading the plugin list" in tb


def test_ten_thousand_extras_show_the_first_and_count_the_rest() -> None:
    payload = build_payload(make_record(extra={f"field_{i}": i for i in range(10_000)}))
    assert len([k for k in payload["extra"] if k.startswith("field_")]) == EXTRA_ITEMS_MAX
    assert payload["extra"]["…"] == "[more than 1,001 more extras]"


def _hostile_record(kind: str) -> logging.LogRecord:
    big = 1_000_000
    if kind == "trees":
        tree: Any = "leaf " * 100
        for _ in range(6):
            tree = {f"k{i}": tree for i in range(30)}
        return make_record(extra={f"t{i}": tree for i in range(30)})
    if kind == "recursion":
        try:
            _recurse(0)
        except RecursionError:
            return make_record(exc_info=sys.exc_info())
    if kind == "chain":
        exc = _chain(30)
        return make_record(exc_info=(type(exc), exc, exc.__traceback__))
    odd = os.fsdecode(b"/srv/\xe9\xff" * 100)
    return {
        "huge-msg": lambda: make_record("x" * big),
        "huge-args": lambda: make_record("upload %s %r", ("é" * big, b"\x00" * big)),
        "huge-extras": lambda: make_record(
            extra={"body": "日本語" * big, "blob": b"\x01" * big, "items": list(range(200_000))}
        ),
        "huge-exc": lambda: record_with_exception(ValueError("\x00" * big)),
        "surrogates": lambda: make_record("odd %s", (odd,), pathname=odd, extra={odd: odd}),
    }[kind]()


@pytest.mark.parametrize(
    "kind", ["huge-msg", "huge-args", "trees", "huge-extras", "recursion", "chain", "huge-exc", "surrogates"]
)
def test_every_hostile_record_still_fits_the_64_kib_payload_cap_and_the_worker_schema(kind: str) -> None:
    payload = build_payload(_hostile_record(kind))
    assert encoded_size(payload) <= MAX_PAYLOAD_BYTES
    parse(payload)
    json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _deep_then_raise(depth: int, exc: BaseException) -> None:
    if depth == 0:
        raise exc
    _deep_then_raise(depth - 1, exc)


def test_groups_of_long_chains_stay_within_the_frame_and_exception_budget_newest_first(
    exception_group: Callable[[str, list[BaseException]], BaseException],
) -> None:
    members: list[BaseException] = []
    for m in range(8):
        chained = _chain(10)
        try:
            _deep_then_raise(50, RuntimeError(f"member {m}"))
        except RuntimeError as exc:
            exc.__cause__ = chained
            members.append(exc)
    try:
        _deep_then_raise(50, exception_group("everything failed", members))
    except BaseException:  # the group
        record = make_record(exc_info=sys.exc_info())
    tb = build_payload(record)["traceback"]
    assert tb.count('  File "') <= 60 + 20  # the frame budget (60), at least one frame per exception shown (20)
    assert tb.count("Traceback (most recent call last)") <= 20
    assert "ExceptionGroup: everything failed (8 sub-exceptions)" in tb
    # The exception that was logged got its frames first: its innermost frame, where it was raised, is there.
    assert tb.index("in _deep_then_raise") < tb.index("ExceptionGroup: everything failed")
    assert "…[truncated" in tb
