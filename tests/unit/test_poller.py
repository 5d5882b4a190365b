"""alerting.consumer.poller.OutboxPoller: transient store errors are retried; anything else ends the worker,
not the thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, cast

import pytest

from alerting.consumer.poller import OutboxPoller
from alerting.errors import StoreError
from alerting.shared.stores import OutboxItem, StateStore


class ScriptedStore:
    """Answers roll_due from a script of results: an exception is raised, anything else returned."""

    def __init__(self, *results: object) -> None:
        self.results = list(results)
        self.rounds = 0
        self.drained = threading.Event()

    def roll_due(self, *, now: float, limit: int = 100) -> int:
        self.rounds += 1
        result = self.results.pop(0) if self.results else 0
        if not self.results:
            self.drained.set()
        if isinstance(result, BaseException):
            raise result
        return cast(int, result)

    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]:
        return []


def _poller(store: ScriptedStore, fatal: list[BaseException], **kwargs: Any) -> OutboxPoller:
    return OutboxPoller(cast(StateStore, store), lambda _: None, interval=0.001, on_fatal=fatal.append, **kwargs)


def test_store_errors_are_retried_and_never_stop_the_worker() -> None:
    store = ScriptedStore(StoreError("ConnectionError: refused"), ConnectionResetError(), StoreError("timeout"), 0)
    fatal: list[BaseException] = []
    poller = _poller(store, fatal)
    poller.start()
    assert store.drained.wait(5)
    poller.stop()
    assert fatal == []
    assert store.rounds >= 4


def test_an_unexpected_error_stops_the_worker_with_that_error_and_ends_the_thread() -> None:
    bug = ValueError("invalid literal for int() with base 10: 'OK'")
    store = ScriptedStore(bug)
    fatal: list[BaseException] = []
    poller = _poller(store, fatal)
    poller.start()
    assert poller._thread is not None
    poller._thread.join(5)
    assert fatal == [bug]
    assert store.rounds == 1  # it did not go on half-alive


def test_a_wait_that_cannot_be_made_stops_the_worker_too() -> None:
    fatal: list[BaseException] = []
    poller = OutboxPoller(cast(StateStore, ScriptedStore()), lambda _: None, interval=1e300, on_fatal=fatal.append)
    poller.start()
    assert poller._thread is not None
    poller._thread.join(5)
    assert [type(e) for e in fatal] == [OverflowError]  # was: the thread died, the worker ran without digests


class OutboxStore:
    """Holds owed items; a lease hands each out once, and records the time it was asked at."""

    def __init__(self, *item_ids: str) -> None:
        self.items = [OutboxItem(item_id, {"kind": "digest"}) for item_id in item_ids]
        self.asked_at: list[float] = []
        self.fail_next = 0

    def roll_due(self, *, now: float, limit: int = 100) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise StoreError("ConnectionError: Connection refused")
        self.asked_at.append(now)
        return 0

    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]:
        leased, self.items = self.items[:limit], self.items[limit:]
        return leased


def no_fatal(exc: BaseException) -> None:
    pytest.fail(f"the poller gave up: {exc!r}")


def test_a_tick_publishes_one_task_per_owed_item_and_asks_the_store_at_the_clocks_time() -> None:
    store = OutboxStore("digest-1", "summary-2")
    published: list[str] = []
    poller = OutboxPoller(cast(StateStore, store), published.append, interval=1.0, clock=lambda: 1234.5)
    assert poller.tick() == 2
    assert published == ["digest-1", "summary-2"]
    assert store.asked_at == [1234.5]
    assert poller.tick() == 0  # leased once: not published again by the next round
    assert published == ["digest-1", "summary-2"]


def test_an_outage_of_the_state_store_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    store = OutboxStore()
    store.fail_next = 3
    poller = OutboxPoller(cast(StateStore, store), lambda _: None, interval=1.0, on_fatal=no_fatal)
    with caplog.at_level(logging.WARNING, logger="alerting.poller"):
        for _ in range(5):
            poller._round()  # one turn of the thread's loop, run here
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "outbox poller: ConnectionError: Connection refused; will keep trying",
        "outbox poller: state store reachable again",
    ]


def test_stop_ends_the_thread_without_waiting_for_the_interval() -> None:
    poller = OutboxPoller(cast(StateStore, OutboxStore()), lambda _: None, interval=3600.0, on_fatal=no_fatal)
    poller.start()
    thread = poller._thread
    assert thread is not None
    started = time.monotonic()
    poller.stop(timeout=5.0)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0  # stop sets the event the thread waits on: the hour is cut short
