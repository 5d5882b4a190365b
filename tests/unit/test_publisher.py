"""alerting.producer.publisher.Publisher with a fake transport and a fake clock: no broker, no real waiting.

Most tests drive one unit of the thread's work (``_step``) from the test itself; those that need the thread wait
for an event the fake transport sets, never for time to pass. Timed waits go through ``FakeClock``, which moves
its own time instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from alerting.producer import publisher as publisher_module
from alerting.producer.publisher import (
    BATCH_LINGER,
    RECONNECT_BASE,
    RECONNECT_MAX,
    Clock,
    Publisher,
    State,
    StepResult,
    Waitable,
)
from alerting.producer.redact import Redactor
from alerting.producer.spool import Spool
from alerting.producer.transport import PublishFailed
from alerting.shared import forks
from alerting.shared.wire import Payload

REAL_WAIT = 5.0  # seconds a test waits for the publisher thread's event before failing (never reached when green)


class FakeClock(Clock):
    """Moves its own time on every timed wait instead of sleeping; records each wait's timeout."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.waits: list[tuple[Waitable | threading.Thread, float | None]] = []
        # A join waits (really) this long for a thread that is about to end by itself; a test whose thread is
        # stuck in a hung publish sets 0, and the join takes its whole timeout on the fake clock at once.
        self.join_real_limit = REAL_WAIT
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.time += seconds
        time.sleep(0)  # let the other thread run (a yield of the GIL, not a wait)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        if timeout is None:  # waiting for work: a real wait on the event, which the test (or close()) sets
            return waitable.wait(None)
        with self._lock:
            self.waits.append((waitable, timeout))
        if waitable.is_set():
            return waitable.wait(0)
        self.sleep(timeout)
        return False

    def join(self, thread: threading.Thread, timeout: float) -> None:
        with self._lock:
            self.waits.append((thread, timeout))
        thread.join(self.join_real_limit)
        if thread.is_alive():
            self.sleep(timeout)


class FakeTransport:
    """Publishes into a list. ``fail`` makes the next publishes raise as a broker that is down; ``hang`` makes
    them block until ``release`` is set."""

    def __init__(self) -> None:
        self.published: list[Payload] = []
        self.attempts = 0
        self.fail = 0  # this many next publishes fail
        self.fail_always = False
        self.hang = False
        self.entered = threading.Event()  # a publish has started (set before hanging)
        self.release = threading.Event()
        self.got: list[threading.Event] = []  # set when at least n alerts were published (see expect())
        self.closed = False

    def expect(self, n: int) -> threading.Event:
        event = threading.Event()
        self.got.append(event)
        event.n = n  # type: ignore[attr-defined]
        self._notify()
        return event

    def publish_many(self, payloads: Sequence[Payload]) -> int:
        self.attempts += 1
        self.entered.set()
        if self.hang:
            self.release.wait(REAL_WAIT)
        if self.fail_always or self.fail > 0:
            self.fail = max(self.fail - 1, 0)
            raise PublishFailed(0, ConnectionRefusedError(111, "Connection refused"))
        self.published.extend(payloads)
        self._notify()
        return len(payloads)

    def _notify(self) -> None:
        for event in self.got:
            if len(self.published) >= event.n:  # type: ignore[attr-defined]
                event.set()

    def close(self) -> None:
        self.closed = True


class Factory:
    """The transport factory the handler passes: counts how often the publisher (re)connects."""

    def __init__(self) -> None:
        self.made: list[FakeTransport] = []
        self.next = FakeTransport()

    def __call__(self) -> FakeTransport:
        transport, self.next = self.next, FakeTransport()
        self.made.append(transport)
        return transport


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def publishers() -> Iterator[list[Publisher]]:
    made: list[Publisher] = []
    yield made
    for publisher in made:  # end the threads the test started (a real close; their transports are fakes)
        if publisher.state is not State.CLOSED:
            publisher.close(0.0)


def make(
    publishers: list[Publisher], factory: Factory, clock: FakeClock, *, spool: Spool | None = None, capacity: int = 100
) -> Publisher:
    publisher = Publisher(
        transport_factory=factory,
        capacity=capacity,
        coalesce_interval=60.0,
        redactor=Redactor(),
        spool=spool,
        clock=clock,
    )
    publishers.append(publisher)
    return publisher


def state_of(publisher: Publisher) -> State:
    """The state now (a call, so that the type checker does not carry an earlier assertion over a transition)."""
    return publisher.state


def alert(n: int, fingerprint: str | None = None) -> tuple[dict[str, Any], str, int]:
    fp = fingerprint or f"fp{n}"
    return {"v": 1, "id": f"id{n}", "fingerprint": fp, "message": f"alert {n}"}, fp, logging.CRITICAL


def test_a_submitted_alert_is_published_by_the_thread_and_close_ends_it(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    transport = factory.next
    got = transport.expect(1)
    assert state_of(publisher) is State.NEW
    publisher.submit(*alert(1))
    assert state_of(publisher) is State.RUNNING
    assert got.wait(REAL_WAIT)
    assert [p["id"] for p in transport.published] == ["id1"]
    publisher.close(2.0)
    assert publisher.state is State.CLOSED
    assert publisher.stats()["published"] == 1
    assert publisher.stats()["lost"] == 0
    assert transport.closed
    assert publisher._thread is not None
    assert not publisher._thread.is_alive()


def test_one_step_publishes_the_buffer_in_one_batch_and_then_has_nothing_to_do(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    for n in range(3):
        publisher.buffer.put(*alert(n))
    assert publisher._step() is StepResult.PUBLISHED
    assert [p["id"] for p in factory.made[0].published] == ["id0", "id1", "id2"]
    assert factory.made[0].attempts == 1  # one round trip for the three
    assert publisher._step() is StepResult.IDLE


def test_a_failed_publish_keeps_the_batch_in_memory_and_the_next_step_delivers_it(
    publishers: list[Publisher], factory: Factory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = make(publishers, factory, clock)
    factory.next.fail = 1
    publisher.buffer.put(*alert(1))
    with caplog.at_level(logging.WARNING, logger="alerting.publisher"):
        assert publisher._step() is StepResult.FAILED
        assert len(publisher.buffer) == 1  # nothing lost, nothing published
        clock.sleep(3.0)
        assert publisher._step() is StepResult.PUBLISHED
    assert [p["id"] for p in factory.made[0].published] == ["id1"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "cannot publish alerts (ConnectionRefusedError" in m and "holding up to 100 in memory" in m for m in messages
    )
    assert "celery-alerting publishing again after 3.0s" in messages  # the outage's length, on the fake clock


def test_a_broker_down_is_retried_with_exponential_backoff_until_it_returns(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    transport = factory.next
    transport.fail = 7
    got = transport.expect(1)
    publisher.submit(*alert(1))
    assert got.wait(REAL_WAIT)
    assert transport.attempts == 8
    backoffs = [t for w, t in clock.waits if w is publisher._interrupt and t is not None and t != BATCH_LINGER]
    assert len(backoffs) == 7  # one wait after each failure, none once it went out
    for attempt, delay in enumerate(backoffs):  # equal jitter: between half a step and a step, doubling to the cap
        step = min(RECONNECT_MAX, RECONNECT_BASE * 2**attempt)
        assert step / 2 <= delay <= step, (attempt, delay)
    assert backoffs[-1] >= RECONNECT_MAX / 2  # 0.2 s doubled six times is past the 10 s cap


def test_with_a_spool_a_failed_batch_goes_to_disk_and_is_replayed_first_when_the_broker_returns(
    publishers: list[Publisher], factory: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    publisher = make(publishers, factory, clock, spool=spool)
    transport = factory.next
    transport.fail_always = True
    publisher.buffer.put(*alert(1))
    publisher.buffer.put(*alert(2))
    assert publisher._step() is StepResult.FAILED
    assert spool.count() == 2
    assert len(publisher.buffer) == 0
    assert publisher.stats()["spooled"] == 2
    transport.fail_always = False
    publisher.buffer.put(*alert(3))
    assert publisher._step() is StepResult.PUBLISHED
    assert [p["id"] for p in transport.published] == ["id1", "id2", "id3"]  # the spool's oldest first
    assert spool.count() == 0
    assert publisher._step() is StepResult.IDLE
    assert publisher.stats()["published"] == 3


def test_alerts_arriving_during_a_backoff_go_straight_to_the_spool(
    publishers: list[Publisher], factory: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    publisher = make(publishers, factory, clock, spool=spool)
    publisher.buffer.put(*alert(1))
    publisher._wake.set()  # as submit() does
    publisher._back_off(5.0)
    assert spool.count() == 1
    assert len(publisher.buffer) == 0
    assert factory.made == []  # a backoff never touches the broker


def test_flush_gives_up_after_its_timeout_when_the_broker_hangs(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    transport = factory.next
    transport.hang = True
    publisher.submit(*alert(1))
    assert transport.entered.wait(REAL_WAIT)
    started, real_start = clock.now(), time.monotonic()
    assert publisher.flush(2.0) is False
    assert 2.0 <= clock.now() - started < 2.01  # waited its timeout on the clock it was given, and no longer
    assert time.monotonic() - real_start < REAL_WAIT / 2
    transport.release.set()


def test_close_waits_at_most_flush_timeout_for_a_hung_broker_and_reports_the_batch_in_flight(
    publishers: list[Publisher], factory: Factory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = make(publishers, factory, clock)
    transport = factory.next
    transport.hang = True
    publisher.submit(*alert(1))
    assert transport.entered.wait(REAL_WAIT)
    clock.join_real_limit = 0
    with caplog.at_level(logging.ERROR, logger="alerting.publisher"):
        publisher.close(2.0)
    thread = publisher._thread
    assert thread is not None
    assert [t for w, t in clock.waits if w is thread] == [2.0]  # joined for flush_timeout, once
    assert publisher.state is State.CLOSED
    assert publisher.stats()["lost"] == 1  # no spool: the alert in flight is counted, not silently held
    assert any("lost 1 alerts (1 not published before close" in r.getMessage() for r in caplog.records)
    assert not transport.closed  # the hung thread still uses it
    transport.release.set()
    thread.join(REAL_WAIT)
    assert not thread.is_alive()  # it noticed the close and ended


def test_close_with_a_spool_saves_what_the_hung_broker_did_not_take(
    publishers: list[Publisher], factory: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    publisher = make(publishers, factory, clock, spool=spool)
    transport = factory.next
    transport.hang = True
    publisher.submit(*alert(1))
    assert transport.entered.wait(REAL_WAIT)
    publisher.submit(*alert(2))
    clock.join_real_limit = 0
    publisher.close(0.5)
    assert publisher.stats()["lost"] == 0
    assert publisher.stats()["spooled"] == 2  # the batch in flight and the one behind it
    assert Spool(tmp_path / "spool.sqlite").count() == 2
    transport.release.set()


def test_an_alert_logged_after_close_is_counted_as_lost_and_starts_no_thread(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    publisher.close(1.0)
    assert publisher.state is State.CLOSED
    publisher.submit(*alert(1))
    publisher.start()
    assert publisher._thread is None
    assert publisher.stats()["lost"] == 1


def test_the_state_only_moves_forward_through_its_life_cycle(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    assert not publisher._enter(State.CLOSED)  # NEW -> CLOSED skips CLOSING: refused
    assert publisher._enter(State.CLOSING)
    assert not publisher._enter(State.RUNNING)  # a start() that lost the race with close() changes nothing
    assert state_of(publisher) is State.CLOSING
    assert publisher._enter(State.CLOSED)
    assert not publisher._enter(State.CLOSING)
    assert state_of(publisher) is State.CLOSED


def test_a_forked_child_gets_a_fresh_empty_publisher_that_connects_again(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    parent_transport = factory.next
    parent_transport.hang = True
    publisher.submit(*alert(1))
    assert parent_transport.entered.wait(REAL_WAIT)
    publisher.submit(*alert(2))  # waits in the parent's buffer
    parent_thread = publisher._thread

    publisher._after_fork_in_child()  # what alerting.shared.forks runs in a child (see test_forks for a real fork)

    assert publisher.state is State.NEW
    assert publisher._thread is None
    assert publisher._transport is None
    assert len(publisher.buffer) == 0  # the parent's alerts are the parent's to publish
    child_transport = factory.next
    got = child_transport.expect(1)
    publisher.submit(*alert(3))
    assert got.wait(REAL_WAIT)
    assert [p["id"] for p in child_transport.published] == ["id3"]
    assert publisher._thread is not parent_thread
    parent_transport.release.set()


def test_the_publisher_registers_its_fork_callbacks_with_the_one_fork_module() -> None:
    assert publisher_module._before_fork in forks._before
    assert publisher_module._after_fork_in_parent in forks._after_in_parent
    assert publisher_module._after_fork_in_child in forks._after_in_child


def test_a_fork_waits_for_the_unit_of_work_in_progress_and_the_parent_goes_on_after_it(
    publishers: list[Publisher], factory: Factory, clock: FakeClock
) -> None:
    publisher = make(publishers, factory, clock)
    publisher_module._before_fork()
    try:
        assert publisher._held_for_fork  # the fork holds the thread's work lock: no half-done step is copied
        assert not publisher._working.acquire(blocking=False)
    finally:
        publisher_module._after_fork_in_parent()
    assert not getattr(publisher, "_held_for_fork")  # noqa: B009  # read again: the callback changed it
    assert publisher._working.acquire(blocking=False)
    publisher._working.release()
