"""alerting.producer.buffer.AlertBuffer on a fake clock: first occurrences go at once, repeats coalesce into counted
slots, a full buffer gives way least-severe-oldest first and reports every drop on the next message out."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.producer.buffer import HOT_MIN, HOT_PER_ENTRY, REENTRANT_KEY, AlertBuffer, Entry
from alerting.producer.capture import fingerprint_of_key
from tests.unit.factories import FakeClock

CRITICAL, ERROR, WARNING = logging.CRITICAL, logging.ERROR, logging.WARNING


def p(name: str, created: float = 0.0) -> dict[str, Any]:
    return {"name": name, "created": created}


def names(entries: list[Entry]) -> list[str]:
    return [e.payload["name"] for e in entries]


def make(capacity: int = 100, interval: float = 1.0) -> tuple[AlertBuffer, FakeClock]:
    clock = FakeClock(100.0)
    return AlertBuffer(capacity, interval, clock=clock), clock


# -- coalescing --------------------------------------------------------------------------------------------
def test_first_occurrence_is_ready_at_once() -> None:
    buf, _ = make()
    assert buf.put(p("a1"), "A", CRITICAL) is True
    taken = buf.take(10)
    assert names(taken) == ["a1"]
    assert taken[0].count == 1
    assert len(buf) == 0


def test_different_fingerprints_are_each_ready_at_once() -> None:
    buf, _ = make()
    for fp in "ABC":
        buf.put(p(fp), fp, CRITICAL)
    assert names(buf.take(10)) == ["A", "B", "C"]


def test_repeats_within_the_interval_fold_into_one_slot_ready_one_interval_later() -> None:
    buf, clock = make(interval=1.0)
    buf.put(p("a1", 100.0), "A", CRITICAL)
    assert names(buf.take(10)) == ["a1"]

    clock.now = 100.1
    assert buf.put(p("a2", 100.1), "A", CRITICAL) is True  # a new slot: the publisher must schedule it
    clock.now = 100.5
    assert buf.put(p("a3", 100.5), "A", CRITICAL) is False  # folded into the slot: nothing new to schedule
    clock.now = 100.9
    buf.put(p("a4", 100.9), "A", CRITICAL)

    assert buf.take(10) == []  # not due yet
    assert buf.next_due() == 101.0
    clock.now = 101.0
    (slot,) = buf.take(10)
    assert slot.count == 3
    assert slot.payload["name"] == "a4"  # the latest sample
    assert slot.first_created == 100.1  # when the earliest folded occurrence was logged
    assert len(buf) == 0


def test_take_everything_ignores_slot_due_times() -> None:
    buf, clock = make()
    buf.put(p("a1"), "A", CRITICAL)
    clock.advance(0.1)
    buf.put(p("a2"), "A", CRITICAL)
    assert names(buf.take(10, everything=True)) == ["a1", "a2"]


def test_an_occurrence_after_the_interval_is_a_first_occurrence_again() -> None:
    buf, clock = make(interval=1.0)
    buf.put(p("a1"), "A", CRITICAL)
    buf.take(10)
    clock.advance(1.0)
    buf.put(p("a2"), "A", CRITICAL)
    assert names(buf.take(10)) == ["a2"]


def test_a_hot_loop_costs_a_handful_of_messages_and_the_counts_add_up() -> None:
    buf, clock = make(interval=1.0)
    taken: list[Entry] = []
    for i in range(10_000):
        clock.now = 100.0 + i * 0.001  # 10 s of logging, 1000 records a second
        buf.put(p(f"n{i}", clock.now), "HOT", CRITICAL)
        taken += buf.take(100)
    taken += buf.take(100, everything=True)
    assert sum(e.count for e in taken) == 10_000
    assert len(taken) <= 2 * 10 + 2  # at most a first occurrence and a repeat slot per coalescing interval


# -- capacity and drops ------------------------------------------------------------------------------------
def test_a_drop_report_names_fingerprints_not_the_coalescing_keys_that_hold_message_text() -> None:
    buf, _ = make(capacity=1)
    error_key = ("app", ERROR, "card 4111 declined", "", "app/pay.py", 42)  # as capture.coalescing_key makes it
    critical_key = ("app", CRITICAL, "card 4111 declined", "", "app/pay.py", 42)
    buf.put(p("e1"), error_key, ERROR)
    buf.put(p("c1"), critical_key, CRITICAL)  # full: the ERROR gives way
    [taken] = buf.take(10)
    assert taken.fingerprint == fingerprint_of_key(critical_key)
    report = taken.payload["dropped"]
    assert report == {"total": 1, "by_fingerprint": {fingerprint_of_key(error_key): 1}}
    assert "4111" not in repr(report)


def test_full_buffer_evicts_the_least_severe_entry() -> None:
    buf, _ = make(capacity=3)
    buf.put(p("c1"), "C1", CRITICAL)
    buf.put(p("e1"), "E1", ERROR)
    buf.put(p("c2"), "C2", CRITICAL)
    buf.put(p("c3"), "C3", CRITICAL)
    taken = buf.take(10)
    assert names(taken) == ["c1", "c2", "c3"]
    assert taken[0].payload["dropped"] == {"total": 1, "by_fingerprint": {"E1": 1}}
    assert buf.dropped_total == 1


def test_full_buffer_of_one_severity_evicts_the_oldest() -> None:
    buf, _ = make(capacity=2)
    for name in ("c1", "c2", "c3"):
        buf.put(p(name), name.upper(), CRITICAL)
    taken = buf.take(10)
    assert names(taken) == ["c2", "c3"]
    assert taken[0].payload["dropped"] == {"total": 1, "by_fingerprint": {"C1": 1}}


def test_a_newcomer_less_severe_than_everything_held_is_the_one_dropped() -> None:
    buf, _ = make(capacity=2)
    buf.put(p("c1"), "C1", CRITICAL)
    buf.put(p("c2"), "C2", CRITICAL)
    buf.put(p("w1"), "W1", WARNING)
    taken = buf.take(10)
    assert names(taken) == ["c1", "c2"]
    assert taken[0].payload["dropped"] == {"total": 1, "by_fingerprint": {"W1": 1}}


def test_an_evicted_repeat_slot_counts_all_the_occurrences_it_held() -> None:
    buf, clock = make(capacity=2)
    buf.put(p("e1"), "E", ERROR)
    buf.take(10)
    for _ in range(5):
        clock.advance(0.01)
        buf.put(p("e-repeat"), "E", ERROR)  # one slot standing for 5 occurrences
    buf.put(p("c1"), "C1", CRITICAL)
    buf.put(p("c2"), "C2", CRITICAL)  # full: the ERROR slot gives way
    taken = buf.take(10, everything=True)
    assert names(taken) == ["c1", "c2"]
    assert taken[0].payload["dropped"] == {"total": 5, "by_fingerprint": {"E": 5}}


def test_the_drop_report_rides_on_the_next_message_only() -> None:
    buf, _ = make(capacity=1)
    buf.put(p("c1"), "C1", CRITICAL)
    buf.put(p("c2"), "C2", CRITICAL)
    assert buf.drop_report() == {"total": 1, "by_fingerprint": {"C1": 1}}
    (first,) = buf.take(10)
    assert first.payload["dropped"]["total"] == 1
    assert buf.drop_report() is None
    buf.put(p("c3"), "C3", CRITICAL)
    (second,) = buf.take(10)
    assert "dropped" not in second.payload


def test_drop_report_carried_by_an_evicted_entry_is_not_lost() -> None:
    buf, _ = make(capacity=1)
    buf.put(p("e1"), "E1", ERROR)
    buf.put(p("c2"), "C2", CRITICAL)  # E1 dropped
    taken = buf.take(10)
    assert taken[0].payload["dropped"] == {"total": 1, "by_fingerprint": {"E1": 1}}
    buf.put_back(taken)  # the publish failed
    buf.put(p("c3"), "C3", CRITICAL)  # full again: C2 (older, same level) gives way, with the report it carried
    (out,) = buf.take(10)
    assert out.payload["name"] == "c3"
    assert out.payload["dropped"] == {"total": 2, "by_fingerprint": {"E1": 1, "C2": 1}}


def test_a_put_back_entry_keeps_its_report_and_new_drops_are_added_to_it() -> None:
    buf, _ = make(capacity=2)
    buf.put(p("c1"), "C1", CRITICAL)
    buf.put(p("c2"), "C2", CRITICAL)
    buf.put(p("c3"), "C3", CRITICAL)  # C1 dropped
    taken = buf.take(1)
    assert names(taken) == ["c2"]
    buf.put_back(taken)
    (again,) = buf.take(1)
    assert again.payload["dropped"] == {"total": 1, "by_fingerprint": {"C1": 1}}  # not counted twice
    buf.put_back([again])
    buf.put(p("c4"), "C4", CRITICAL)  # full: C2 gives way (oldest), carrying the C1 report
    buf.record_drops({"SPOOL": 2})  # drops downstream are reported the same way
    taken = buf.take(10)
    assert names(taken) == ["c3", "c4"]
    assert taken[0].payload["dropped"] == {"total": 4, "by_fingerprint": {"C1": 1, "C2": 1, "SPOOL": 2}}


def test_put_back_returns_entries_to_the_front_in_their_original_order() -> None:
    buf, _ = make()
    for name in ("a", "b", "c"):
        buf.put(p(name), name, CRITICAL)
    taken = buf.take(10)
    buf.put(p("d"), "d", CRITICAL)
    buf.put_back([taken[2], taken[0], taken[1]])
    assert names(buf.take(10)) == ["a", "b", "c", "d"]


def test_put_back_makes_a_repeat_slot_ready_at_once() -> None:
    buf, clock = make()
    buf.put(p("a1"), "A", CRITICAL)
    buf.take(10)
    clock.advance(0.1)
    buf.put(p("a2"), "A", CRITICAL)
    clock.advance(1.0)
    (slot,) = buf.take(10)
    buf.put_back([slot])
    (again,) = buf.take(10)
    assert again is slot


# -- the accounting holds for any sequence -----------------------------------------------------------------
_steps = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "put", "take", "fail"]),
        st.sampled_from(["A", "B", "C", "D"]),
        st.sampled_from([WARNING, ERROR, CRITICAL]),
        st.floats(min_value=0.0, max_value=0.8),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(steps=_steps, capacity=st.integers(min_value=1, max_value=4))
def test_every_occurrence_is_either_delivered_or_reported_as_dropped(
    steps: list[tuple[str, str, int, float]], capacity: int
) -> None:
    buf, clock = make(capacity=capacity)
    puts = 0
    delivered: list[Entry] = []
    for action, fp, level, dt in steps:
        clock.advance(dt)
        if action == "put":
            buf.put(p(fp, clock.now), fp, level)
            puts += 1
        elif action == "take":
            delivered += buf.take(2)
        else:  # a failed publish: taken, then put back
            buf.put_back(buf.take(2))
    delivered += buf.take(1 << 30, everything=True)
    reported = sum(e.payload["dropped"]["total"] for e in delivered if "dropped" in e.payload)
    leftover = buf.drop_report()
    reported += leftover["total"] if leftover else 0
    assert sum(e.count for e in delivered) + reported == puts
    assert reported == buf.dropped_total


# -- eviction order, in O(1): entries kept per level, oldest first ------------------------------------------------
def test_a_full_buffer_evicts_by_level_first_then_age_across_ready_entries_and_repeat_slots() -> None:
    buf, clock = make(capacity=4)
    buf.put(p("e-first"), "E", ERROR)
    buf.take(10)  # E was seen: its next occurrence becomes a repeat slot
    clock.advance(0.1)
    buf.put(p("w1"), "W1", WARNING)  # seq order: W1, E-slot, C1, W2
    buf.put(p("e-slot"), "E", ERROR)
    buf.put(p("c1"), "C1", CRITICAL)
    buf.put(p("w2"), "W2", WARNING)
    buf.put(p("c2"), "C2", CRITICAL)  # full: the oldest WARNING gives way
    buf.put(p("c3"), "C3", CRITICAL)  # then the other WARNING
    buf.put(p("c4"), "C4", CRITICAL)  # then the ERROR repeat slot, though it is older than nothing left
    assert buf.drop_report() == {"total": 3, "by_fingerprint": {"W1": 1, "W2": 1, "E": 1}}
    assert names(buf.take(10, everything=True)) == ["c1", "c2", "c3", "c4"]


def test_the_oldest_of_the_least_severe_gives_way_whether_it_is_a_ready_entry_or_a_repeat_slot() -> None:
    buf, clock = make(capacity=3)
    buf.put(p("a1"), "A", ERROR)
    buf.take(10)
    clock.advance(0.1)
    buf.put(p("a-slot"), "A", ERROR)  # a repeat slot, older than the ready entries below
    buf.put(p("b1"), "B", ERROR)
    buf.put(p("c1"), "C", ERROR)
    buf.put(p("d1"), "D", ERROR)  # full: the slot is the oldest ERROR
    assert buf.drop_report() == {"total": 1, "by_fingerprint": {"A": 1}}
    buf.put(p("e1"), "E", ERROR)  # now the oldest ready entry
    assert buf.drop_report() == {"total": 2, "by_fingerprint": {"A": 1, "B": 1}}
    assert names(buf.take(10, everything=True)) == ["c1", "d1", "e1"]


def test_a_repeat_slot_folding_a_more_severe_occurrence_is_held_at_that_severity() -> None:
    buf, clock = make(capacity=2)
    buf.put(p("k1"), "K", WARNING)
    buf.take(10)
    clock.advance(0.1)
    buf.put(p("k-warning"), "K", WARNING)  # a WARNING slot
    buf.put(p("k-critical"), "K", CRITICAL)  # folded in: the slot now stands for a CRITICAL
    buf.put(p("e1"), "E1", ERROR)
    buf.put(p("c1"), "C1", CRITICAL)  # full: the ERROR gives way, not the slot that now holds a CRITICAL
    assert buf.drop_report() == {"total": 1, "by_fingerprint": {"E1": 1}}
    (c1, slot) = buf.take(10, everything=True)
    assert (c1.payload["name"], slot.payload["name"], slot.count, slot.levelno) == ("c1", "k-critical", 2, CRITICAL)


class ReferenceBuffer:
    """The documented policy, written the obvious O(n) way: no coalescing, least severe then oldest gives way."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ready: list[tuple[int, int, str]] = []  # (levelno, seq, name), publishing order
        self.seq = 0
        self.dropped: list[str] = []

    def put(self, name: str, levelno: int) -> None:
        self.seq += 1
        self._admit((levelno, self.seq, name), front=False)

    def take(self, limit: int) -> list[tuple[int, int, str]]:
        out, self.ready = self.ready[:limit], self.ready[limit:]
        return out

    def put_back(self, entries: list[tuple[int, int, str]]) -> None:
        for entry in sorted(entries, key=lambda e: e[1], reverse=True):
            self._admit(entry, front=True)

    def _admit(self, entry: tuple[int, int, str], *, front: bool) -> None:
        if len(self.ready) >= self.capacity:
            victim = min(self.ready)
            if entry < victim:
                self.dropped.append(entry[2])
                return
            self.ready.remove(victim)
            self.dropped.append(victim[2])
        self.ready.insert(0, entry) if front else self.ready.append(entry)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["put", "put", "put", "take", "fail"]), st.sampled_from([WARNING, ERROR, CRITICAL])),
        max_size=80,
    ),
    capacity=st.integers(min_value=1, max_value=5),
)
def test_the_buffer_gives_way_exactly_as_the_documented_policy_says(
    steps: list[tuple[str, int]], capacity: int
) -> None:
    buf, _ = make(capacity=capacity, interval=0.0)  # no coalescing: every put is a first occurrence
    ref = ReferenceBuffer(capacity)
    delivered: list[Entry] = []
    for i, (action, level) in enumerate(steps):
        if action == "put":
            buf.put(p(f"n{i}"), f"n{i}", level)
            ref.put(f"n{i}", level)
            continue
        taken, ref_taken = buf.take(2), ref.take(2)
        assert names(taken) == [name for _, _, name in ref_taken]
        if action == "take":
            delivered += taken
        else:  # a failed publish
            buf.put_back(taken)
            ref.put_back(ref_taken)
    delivered += buf.take(1 << 30, everything=True)
    assert names(delivered[-len(ref.ready) :] if ref.ready else []) == [name for _, _, name in ref.ready]
    reports = [e.payload["dropped"] for e in delivered if "dropped" in e.payload] + [buf.drop_report() or {}]
    reported: Counter[str] = Counter()
    for report in reports:
        reported.update(report.get("by_fingerprint", {}))
    assert reported == Counter(ref.dropped)  # the same entries gave way, each reported once


# -- bounded by capacity, whatever the rate --------------------------------------------------------------------------
def test_the_table_of_recent_fingerprints_stays_bounded_by_capacity_at_any_logging_rate() -> None:
    buf, clock = make(capacity=10, interval=1.0)
    for i in range(50_000):  # 50,000 distinct fingerprints inside one coalescing interval
        clock.now = 100.0 + i * 1e-6
        buf.put(p(f"n{i}"), f"F{i}", CRITICAL)
    assert len(buf._hot) <= HOT_PER_ENTRY * 10 + HOT_MIN
    assert len(buf) == 10
    assert buf.dropped_total == 50_000 - 10


def test_a_fingerprint_forgotten_by_the_bounded_table_goes_out_as_a_first_occurrence_again() -> None:
    buf, clock = make(capacity=1, interval=1.0)
    buf.put(p("a1"), "A", CRITICAL)
    buf.take(10)
    for i in range(HOT_PER_ENTRY + HOT_MIN + 1):  # enough newer fingerprints to push A out of the table
        buf.put(p(f"n{i}"), f"F{i}", CRITICAL)
        buf.take(10)
    clock.advance(0.1)
    buf.put(p("a2"), "A", CRITICAL)
    (again,) = buf.take(10)  # ready at once, not held for the interval: a message more, never an alert less
    assert again.payload["name"] == "a2"


# -- re-entrant calls (a signal handler logging while its thread holds the lock) ------------------------------------
class InterruptingClock(FakeClock):
    """Runs ``interrupt`` once, from inside the buffer's critical section: where a signal handler can land."""

    def __init__(self) -> None:
        super().__init__(100.0)
        self.interrupt: Callable[[], object] | None = None

    def __call__(self) -> float:
        hook, self.interrupt = self.interrupt, None
        if hook is not None:
            hook()
        return self.now


def test_a_put_nested_in_a_put_on_the_same_thread_does_not_wait_and_goes_out_after_it() -> None:
    clock = InterruptingClock()
    buf = AlertBuffer(100, 1.0, clock=clock)
    nested: list[bool] = []
    clock.interrupt = lambda: nested.append(buf.put(p("from a signal handler"), "S", CRITICAL))
    buf.put(p("outer"), "O", CRITICAL)  # with a plain lock, the nested put waited for this one: forever
    assert nested == [True]  # handed off, and the publisher is told to wake up
    assert len(buf) == 2
    assert names(buf.take(10)) == ["outer", "from a signal handler"]


def test_a_put_nested_in_take_waits_in_the_handoff_for_the_next_take() -> None:
    clock = InterruptingClock()
    buf = AlertBuffer(100, 1.0, clock=clock)
    buf.put(p("a1"), "A", CRITICAL)
    buf.take(10)
    clock.advance(0.1)
    buf.put(p("a2"), "A", CRITICAL)  # a repeat slot: take() reads the clock for it
    clock.interrupt = lambda: buf.put(p("from a signal handler"), "S", CRITICAL)
    assert names(buf.take(10, everything=True)) == ["a2"]
    assert names(buf.take(10)) == ["from a signal handler"]


def test_reentrant_puts_beyond_the_handoff_are_counted_and_reported_on_the_next_message() -> None:
    buf, _ = make(capacity=3)
    for i in range(5):
        buf.put_reentrant(p(f"s{i}"), f"S{i}", CRITICAL)
    assert buf.skipped() == 2
    (first, *rest) = buf.take(10)
    assert [first.payload["name"], *names(rest)] == ["s0", "s1", "s2"]
    assert first.payload["dropped"] == {"total": 2, "by_fingerprint": {REENTRANT_KEY: 2}}
    assert buf.skipped() == 2  # lifetime, counted once
    assert buf.drop_report() is None
