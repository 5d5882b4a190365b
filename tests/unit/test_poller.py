"""alerting.consumer.poller.OutboxPoller: transient store errors are retried; anything else ends the worker,
not the thread."""

from __future__ import annotations

import threading
from typing import Any, cast

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
