"""alerting.consumer.schema: the worker reads payload v1 back or says precisely why not; payloads never exceed the size
bound and keep what identifies them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alerting.consumer.schema import DropReport, parse
from alerting.errors import PayloadError
from alerting.producer.finalize import enforce_size
from alerting.shared.wire import MAX_PAYLOAD_BYTES, encoded_size
from tests.unit.factories import make_payload

MARK = "…[truncated"
IDENTITY = ("v", "id", "fingerprint", "created", "level", "levelno", "logger")


# -- parse -------------------------------------------------------------------------------------------------
def test_parse_reads_every_field_of_a_valid_payload() -> None:
    payload = make_payload(
        exc_type="shop.PaymentError",
        traceback="Traceback...",
        extra={"order_id": 17},
        context={"path": "/pay"},
        count=3,
        first_created=1_699_999_999.0,
        dropped={"total": 4, "by_fingerprint": {"abc": 3, "def": 1}},
    )
    alert = parse(payload)
    assert alert.id == payload["id"]
    assert alert.fingerprint == payload["fingerprint"]
    assert alert.created == payload["created"]
    assert (alert.level, alert.levelno, alert.logger) == ("CRITICAL", 50, "app.payments")
    assert alert.message == "order 17 failed"
    assert (alert.pathname, alert.lineno, alert.func) == ("/srv/app/payments/charge.py", 42, "charge")
    assert alert.exc_type == "shop.PaymentError"
    assert alert.extra == {"order_id": 17}
    assert alert.context == {"path": "/pay"}
    assert alert.count == 3
    assert alert.first_created == 1_699_999_999.0
    assert alert.dropped == DropReport(total=4, by_fingerprint={"abc": 3, "def": 1})


def test_parse_accepts_a_minimal_payload_with_defaults() -> None:
    minimal = {k: make_payload()[k] for k in ("v", "id", "fingerprint", "created", "level", "levelno", "logger")}
    minimal["message"] = "boom"
    alert = parse(minimal)
    assert alert.count == 1
    assert alert.extra == {}
    assert alert.pid is None
    assert alert.dropped is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a string", "must be a JSON object"),
        ([1, 2], "must be a JSON object"),
        (None, "must be a JSON object"),
        (make_payload(v=2), "unsupported payload version 2"),
        (make_payload(v="1"), "unsupported payload version '1'"),
        ({k: v for k, v in make_payload().items() if k != "v"}, "unsupported payload version None"),
    ],
    ids=["str", "list", "none", "v2", "v-as-string", "no-version"],
)
def test_parse_rejects_what_is_not_payload_v1(raw: object, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse(raw)


@pytest.mark.parametrize("field", ["id", "fingerprint", "created", "level", "levelno", "logger", "message"])
def test_parse_names_a_missing_required_field(field: str) -> None:
    raw = make_payload()
    del raw[field]
    with pytest.raises(PayloadError, match=f"'{field}'"):
        parse(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created", "yesterday"),
        ("created", None),
        ("levelno", "50"),
        ("levelno", True),
        ("levelno", -1),
        ("level", 50),
        ("logger", ["app"]),
        ("message", None),
        ("message", 17),
        ("lineno", 4.2),
        ("func", 3),
        ("pid", -5),
        ("count", 0),
        ("count", "3"),
        ("extra", ["not", "a", "dict"]),
        ("context", "path=/pay"),
        ("dropped", {"total": "many"}),
        ("dropped", {"total": 1, "by_fingerprint": ["abc"]}),
        ("first_created", "earlier"),
    ],
)
def test_parse_names_a_field_of_the_wrong_type(field: str, value: Any) -> None:
    with pytest.raises(PayloadError, match=f"'{field}"):
        parse(make_payload(**{field: value}))


@pytest.mark.parametrize("field", ["id", "fingerprint"])
@pytest.mark.parametrize(
    "value",
    ["", "../../etc/passwd", "a b", "x\r\ny", "abc123\n", "alerts:*", "key{1}", "é", "a" * 81, 12345, None],
    ids=[
        "empty",
        "path",
        "space",
        "crlf",
        "trailing-newline",
        "glob",
        "braces",
        "non-ascii",
        "too-long",
        "int",
        "none",
    ],
)
def test_parse_rejects_ids_with_unsafe_characters(field: str, value: object) -> None:
    with pytest.raises(PayloadError, match=f"'{field}'"):
        parse(make_payload(**{field: value}))


@pytest.mark.parametrize("value", ["0123abcdef", "digest:fp:12", "A-Z_a.z-09", "a" * 80])
def test_parse_accepts_ids_of_the_safe_alphabet(value: str) -> None:
    assert parse(make_payload(id=value)).id == value


# -- size bound --------------------------------------------------------------------------------------------
def _huge_extra() -> dict[str, Any]:
    return {f"field_{i}": "e" * 5_000 for i in range(100)}


@pytest.mark.parametrize(
    "overrides",
    [
        {"message": "m" * 5_000_000},
        {"message": "é" * 5_000_000},
        {"message": "😀" * 1_000_000},
        {"traceback": "Traceback (most recent call last):\n" + "  File 'x.py', line 1\n" * 250_000 + "ValueError: end"},
        {"extra": _huge_extra()},
        {"context": _huge_extra()},
        {
            "message": "ü" * 2_000_000,
            "template": "t" * 1_000_000,
            "traceback": "\u2028" * 1_000_000,
            "stack": "s" * 1_000_000,
            "extra": _huge_extra(),
            "context": _huge_extra(),
        },
    ],
    ids=["5MB-ascii", "5MB-latin", "emoji", "traceback", "extras", "context", "everything"],
)
def test_enforce_size_caps_any_payload_and_keeps_its_identity(overrides: dict[str, Any]) -> None:
    payload = make_payload(**overrides)
    out = enforce_size(payload)

    assert encoded_size(out) <= MAX_PAYLOAD_BYTES
    for key in IDENTITY:
        assert out[key] == payload[key]
    dumped = json.dumps(out, ensure_ascii=False)
    assert MARK in dumped or "over the size limit" in dumped
    parse(out)  # still a payload the worker accepts


@pytest.mark.parametrize("char", ["m", "é", "😀", "\n"], ids=["ascii", "latin", "emoji", "newline"])
def test_enforce_size_keeps_the_beginning_of_a_huge_message(char: str) -> None:
    message = "Payment provider timed out" + char * 5_000_000
    out = enforce_size(make_payload(message=message))
    assert encoded_size(out) <= MAX_PAYLOAD_BYTES
    assert out["message"].startswith("Payment provider timed out" + char * 1_000)
    assert MARK in out["message"]


@pytest.mark.parametrize("frame", ["  frame\n", "  é\n"], ids=["ascii", "non-ascii"])
def test_enforce_size_keeps_the_end_of_a_huge_traceback(frame: str) -> None:
    tb = "Traceback (most recent call last):\n" + frame * 500_000 + "PaymentError: the real problem"
    out = enforce_size(make_payload(traceback=tb))
    assert encoded_size(out) <= MAX_PAYLOAD_BYTES
    assert out["traceback"].startswith("Traceback (most recent call last):")
    assert out["traceback"].endswith(frame * 100 + "PaymentError: the real problem")
    assert MARK in out["traceback"]


def test_enforce_size_leaves_a_small_payload_as_it_is() -> None:
    payload = make_payload(message="small", extra={"order_id": 17})
    assert enforce_size(payload) == payload


def test_enforce_size_does_not_modify_its_argument() -> None:
    payload = make_payload(message="m" * 200_000)
    enforce_size(payload)
    assert len(payload["message"]) == 200_000


def test_encoded_size_counts_escaped_non_ascii_as_it_travels() -> None:
    assert encoded_size({"m": "é"}) == len('{"m":"\\u00e9"}')
    assert encoded_size({"m": "😀"}) == len('{"m":"\\ud83d\\ude00"}')
