"""alerting.shared.jsonsafe: whatever the application puts in a record comes out bounded and JSON-serialisable."""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.shared.jsonsafe import REDACTED, safe_repr, safe_str, to_json_safe, truncate, valid_text
from tests.unit.factories import IS_SECRET_KEY

MARK = "…[truncated"


class ReprRaises:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        return "<StrRaises>"


class BothRaise:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Colour(enum.IntEnum):
    RED = 1


class ExplodingMapping(Mapping[str, Any]):
    """A user mapping that fails half-way through being read."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield "a"
        raise OSError("disk on fire")

    def __len__(self) -> int:
        return 2


def convert(value: object, **kwargs: Any) -> Any:
    return to_json_safe(value, is_secret_key=IS_SECRET_KEY, **kwargs)


# -- truncate ----------------------------------------------------------------------------------------------
def test_truncate_leaves_text_within_the_limit_unchanged() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("x" * 100, 100) == "x" * 100


def test_truncate_keeps_the_start_and_says_it_cut() -> None:
    text = "START" + "x" * 10_000
    out = truncate(text, 200)
    assert len(out) <= 200
    assert out.startswith("START")
    assert MARK in out


def test_truncate_with_keep_tail_keeps_the_end_where_the_exception_is() -> None:
    text = "Traceback (most recent call last):\n" + "  frame\n" * 5_000 + "ValueError: the real problem"
    out = truncate(text, 500, keep_tail=True)
    assert len(out) <= 500
    assert out.startswith("Traceback")
    assert out.endswith("ValueError: the real problem")
    assert MARK in out


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=3_000), limit=st.integers(min_value=40, max_value=2_000), keep_tail=st.booleans())
def test_truncate_never_exceeds_its_limit(text: str, limit: int, keep_tail: bool) -> None:
    out = truncate(text, limit, keep_tail=keep_tail)
    assert len(out) <= limit
    assert out == text or MARK in out


# -- safe_repr / safe_str ----------------------------------------------------------------------------------
def test_safe_repr_of_an_object_whose_repr_raises_names_its_type() -> None:
    out = safe_repr(ReprRaises(), 200)
    assert "ReprRaises" in out
    assert "ValueError" in out


def test_safe_repr_caps_a_huge_repr() -> None:
    out = safe_repr(list(range(100_000)), 300)
    assert len(out) <= 300
    assert MARK in out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        (17, "17"),
        (StrRaises(), "<StrRaises>"),  # str() fails: fall back to repr()
    ],
)
def test_safe_str_gives_str_or_falls_back_to_repr(value: object, expected: str) -> None:
    assert safe_str(value, 100) == expected


def test_safe_str_of_an_object_whose_str_and_repr_both_raise_still_returns_text() -> None:
    out = safe_str(BothRaise(), 100)
    assert isinstance(out, str)
    assert "BothRaise" in out


def test_safe_str_caps_long_strings() -> None:
    out = safe_str("y" * 5_000, 100)
    assert len(out) <= 100
    assert MARK in out


# -- to_json_safe ------------------------------------------------------------------------------------------
_recursive_list: list[Any] = [1]
_recursive_list.append(_recursive_list)
_recursive_dict: dict[str, Any] = {"a": 1}
_recursive_dict["self"] = _recursive_dict


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (3, 3),
        (1.5, 1.5),
        ("text", "text"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (b"\xff\x00bytes", repr(b"\xff\x00bytes")),
        ((1, "two"), [1, "two"]),
        (frozenset({7}), [7]),
        ({3}, [3]),
        (Decimal("1.50"), "Decimal('1.50')"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "datetime.datetime(2024, 1, 2, 3, 4, 5)"),
        (Colour.RED, repr(Colour.RED)),  # an int subclass is an object, not a number
        ({1: "a", (2, 3): "b"}, {"1": "a", "(2, 3)": "b"}),
        (_recursive_list, [1, "<recursive list>"]),
        (_recursive_dict, {"a": 1, "self": "<recursive dict>"}),
    ],
    ids=lambda v: type(v).__name__,
)
def test_to_json_safe_converts_values_to_plain_json(value: object, expected: object) -> None:
    out = convert(value)
    assert out == expected
    json.dumps(out, allow_nan=False)


def test_to_json_safe_describes_an_object_whose_repr_raises() -> None:
    out = convert({"obj": ReprRaises()})
    assert "unrepresentable" in out["obj"]
    assert "ReprRaises" in out["obj"]


def test_to_json_safe_survives_a_mapping_that_fails_while_being_read() -> None:
    out = convert({"m": ExplodingMapping()})
    assert "ExplodingMapping" in out["m"]
    json.dumps(out)


def test_to_json_safe_caps_strings_items_and_depth() -> None:
    out = convert(
        {"long": "z" * 10_000, "many": list(range(100)), "deep": {"a": {"b": {"c": {"d": 1}}}}},
        max_str=100,
        max_items=10,
        max_depth=3,
    )
    assert len(out["long"]) <= 100
    assert MARK in out["long"]
    assert out["many"][:10] == list(range(10))
    assert out["many"][10] == "…[90 more]"
    assert len(out["many"]) == 11
    assert out["deep"]["a"]["b"] == "<dict with 1 items>"


def test_to_json_safe_caps_the_number_of_keys_of_a_mapping() -> None:
    out = convert({f"k{i}": i for i in range(50)}, max_items=5)
    assert len(out) == 6
    assert out["…"] == "[45 more]"


@pytest.mark.parametrize(
    "value",
    [
        {"password": "hunter2"},
        {"nested": {"deeper": {"api_key": "abc"}}},
        {"items": [{"Authorization": "Bearer xyz"}]},
        {"session_id": ["a", "b"]},
    ],
)
def test_to_json_safe_redacts_values_under_secret_keys_at_any_depth(value: dict[str, Any]) -> None:
    dumped = json.dumps(convert(value))
    for secret in ("hunter2", "abc", "xyz", '"a"'):
        assert secret not in dumped
    assert REDACTED in dumped


_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=50),
    st.binary(max_size=20),
    st.decimals(allow_nan=True),
    st.datetimes(),
    st.builds(ReprRaises),
    st.builds(BothRaise),
)
_values = st.recursive(
    _json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), children, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=80, deadline=None)
@given(value=_values)
def test_to_json_safe_output_is_always_strict_json(value: object) -> None:
    out = convert(value, max_str=50)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out


# -- valid UTF-8, bounded work, secrets in pairs (hardening) ----------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain ascii", "plain ascii"),
        ("Größe ✓ 日本語", "Größe ✓ 日本語"),
        (os.fsdecode(b"/srv/caf\xe9.py"), "/srv/caf\\xe9.py"),  # surrogateescape: the byte is shown
        ("broken pair \ud83d here", "broken pair \\ud83d here"),  # half of a UTF-16 pair
    ],
    ids=["ascii", "valid-unicode", "fsdecoded-latin1", "lone-high-surrogate"],
)
def test_valid_text_shows_each_lone_surrogate_as_an_escape_and_keeps_the_rest(text: str, expected: str) -> None:
    out = valid_text(text)
    assert out == expected
    out.encode("utf-8")  # what the worker will do with it


SECRET = "s3cr3t-value"


@pytest.mark.parametrize(
    "value",
    [
        {"headers": [("Authorization", f"Bearer {SECRET}"), ("Accept", "text/html")]},
        {"headers": (("X-Api-Key", SECRET), ("Accept", "text/html"))},
        {"headers": [["api_key", SECRET], ["Accept", "text/html"]]},
        {"headers": [(b"Authorization", SECRET), ("Accept", "text/html")]},
        {"calls": [{"Accept": "text/html", "Authorization": f"Bearer {SECRET}"}]},
        {"form": [("password", {"nested": SECRET}), ("Accept", "text/html")]},
        [("session", SECRET), ("Accept", "text/html")],
    ],
    ids=["list-of-tuples", "tuple-of-tuples", "list-of-lists", "bytes-key", "dict-in-list", "pair-of-dict", "top-list"],
)
def test_to_json_safe_redacts_the_value_of_secret_pairs_and_keeps_the_others(value: object) -> None:
    out = json.dumps(convert(value))
    assert SECRET not in out
    assert REDACTED in out
    assert "text/html" in out


def test_to_json_safe_keeps_pairs_whose_key_is_not_secret() -> None:
    assert convert({"h": [("Accept", "text/html")]}) == {"h": [["Accept", "text/html"]]}


def test_to_json_safe_walk_stops_at_its_node_budget_and_says_so() -> None:
    tree: Any = "leaf"
    for _ in range(8):
        tree = {f"k{i}": tree for i in range(30)}  # shared children: 30**8 nodes to walk without a budget
    out = convert({f"t{i}": tree for i in range(30)}, max_nodes=200)
    text = json.dumps(out)
    assert "size limit" in text
    assert text.count('"k') < 400


def test_to_json_safe_keeps_at_most_its_character_budget_of_text() -> None:
    out = convert([f"{i:03d}" + "x" * 497 for i in range(30)], max_str=500, max_items=30, max_chars=2_000)
    kept = "".join(out)
    assert len(kept) <= 2_000 + 30 * len("…[truncated 500 chars]")  # past the budget, a marker alone
    assert out[0].startswith("000x")
    assert MARK in out[-1]


@pytest.mark.parametrize(
    ("value", "unit"),
    [("é" * 5_000_000, "chars"), (b"\xff" * 5_000_000, "bytes"), (bytearray(5_000_000), "bytes")],
    ids=["str", "bytes", "bytearray"],
)
def test_safe_repr_cuts_long_strings_and_bytes_before_repr_and_says_how_long(value: object, unit: str) -> None:
    out = safe_repr(value, 300)
    assert len(out) <= 300
    assert out.endswith(f"…[truncated: 5,000,000 {unit} in all]")


def test_safe_str_of_a_big_builtin_container_is_a_bounded_repr() -> None:
    out = safe_str(list(range(1_000_000)), 500)
    assert out.startswith("[0, 1, 2")
    assert out.endswith("…[truncated: 1,000,000 items in all]")
    assert len(out) <= 500
