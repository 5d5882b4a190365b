"""alerting.shared.outbox: digests and summaries have one JSON form, which both stores, the Lua scripts, dead letters
and the renderer share."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.shared import outbox
from alerting.shared.outbox import Digest, Summary, SummaryEntry

T0 = 1_700_000_000.123456789
DIGEST = Digest("fp-1", 2, 41, T0 + 1, T0 + 290, '{"id":"x"}', T0, T0 + 300)
SUMMARY = outbox.summary_of([SummaryEntry("b", 3, "[ERROR] b"), SummaryEntry("a", 1, "[CRITICAL] a")], T0)


@pytest.mark.parametrize("item", [DIGEST, SUMMARY, Summary(since=None, entries=())], ids=["digest", "summary", "empty"])
def test_an_item_comes_back_from_its_json_form_unchanged(item: outbox.Item) -> None:
    assert outbox.from_json(outbox.to_json(item)) == item
    assert outbox.from_dict(json.loads(outbox.to_json(item))) == item


def test_the_json_form_names_each_field_as_documented() -> None:
    assert outbox.to_dict(DIGEST) == {
        "kind": "digest",
        "fingerprint": "fp-1",
        "seq": 2,
        "count": 41,
        "first": T0 + 1,
        "last": T0 + 290,
        "sample": '{"id":"x"}',
        "window_start": T0,
        "window_end": T0 + 300,
    }
    assert outbox.to_dict(SUMMARY) == {
        "kind": "summary",
        "since": T0,
        "entries": [
            {"fingerprint": "a", "count": 1, "subject": "[CRITICAL] a"},
            {"fingerprint": "b", "count": 3, "subject": "[ERROR] b"},
        ],
    }


def test_what_lua_writes_reads_as_the_same_item() -> None:
    # Times as the strings Redis stored (repr of the float, every digit kept), an empty list as cjson's {}.
    as_lua = {**outbox.to_dict(DIGEST), "first": repr(T0 + 1), "window_start": repr(T0), "count": 41.0}
    assert outbox.from_dict(as_lua) == DIGEST
    assert outbox.from_json('{"kind":"summary","since":"' + repr(T0) + '","entries":{}}') == Summary(T0, ())


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 9), st.text(max_size=5)), unique_by=lambda e: e[0]))
def test_summary_entries_have_one_order_whatever_order_a_store_kept_them_in(
    entries: list[tuple[str, int, str]],
) -> None:
    made = [SummaryEntry(*e) for e in entries]
    assert outbox.summary_of(made, T0) == outbox.summary_of(reversed(made), T0)


@pytest.mark.parametrize(
    "body",
    [{"kind": "newsletter"}, {}, {"kind": "digest", "count": 3}, {"kind": "summary", "entries": [{"count": 1}]}],
)
def test_a_body_that_is_not_an_item_is_refused(body: dict[str, object]) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        outbox.from_dict(body)


def test_item_ids_say_their_kind() -> None:
    assert outbox.is_digest_id(outbox.digest_id("fp", 7))
    assert not outbox.is_digest_id(outbox.summary_id(7))
