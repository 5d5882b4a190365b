"""The background thread that moves alerts from the buffer to the broker. I/O; fork- and exit-aware.

``submit()`` is all the logging thread does here: a put into the bounded buffer and, at most, setting an
event. The thread (started lazily, one per handler, per process) redacts and size-caps each payload,
publishes in batches, and on broker trouble backs off while alerts wait in the buffer, or in the SQLite
spool when one is configured. After ``os.fork()`` the child gets a fresh, empty publisher of its own.

State shared between threads, and who writes it:

- ``state`` (:class:`State`), changed only by ``_enter()``: NEW -> RUNNING (thread started) -> CLOSING
  (``close()`` called: drain, then stop) -> CLOSED (``close()`` gave up waiting or the thread ended; what is
  left was spooled or reported). ``close()`` from NEW goes straight through CLOSING. A fork resets the child
  to NEW. Logging threads read it (``submit`` after CLOSED counts the alert as lost).
- ``_draining``: a ``flush()``/``close()`` asks the thread to publish repeat slots now instead of waiting
  for their coalescing interval. Set by the caller, cleared by ``flush()`` unless closing.
- ``_busy``: the thread holds entries taken from the buffer and not yet settled (``flush()`` waits for it).
- ``_spool_dirty``: the spool file may hold alerts (a previous process's, or this one's) to replay.
- ``_working`` / ``_held_for_fork``: a unit of work runs under ``_working``; a fork waits for it.

Each unit of work returns a :class:`StepResult`; timed waits go through a :class:`Clock`, so that the thread's
logic can be unit-tested with a fake transport and a fake clock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Protocol

from alerting.producer.buffer import AlertBuffer, DropCounter, Entry, Key
from alerting.producer.capture import resolve_fingerprint
from alerting.producer.finalize import finalize
from alerting.producer.redact import Redactor
from alerting.producer.spool import Spool, SpoolUnavailable
from alerting.producer.transport import PublishFailed, Transport
from alerting.shared import forks
from alerting.shared.backoff import backoff_delay

log = logging.getLogger("alerting.publisher")

BATCH_SIZE = 100
BATCH_LINGER = 0.005  # seconds between publishes while alerts keep coming
RECONNECT_BASE = 0.2  # seconds; doubled per failed attempt
RECONNECT_MAX = 10.0

_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()


class State(Enum):
    """Where a publisher is in its life; see the module's docstring for the transitions."""

    NEW = "new"  # no thread yet (built, or reset in a forked child)
    RUNNING = "running"  # the thread publishes
    CLOSING = "closing"  # close() called: publish what is held, then stop
    CLOSED = "closed"  # nothing will publish any more; later alerts are counted as lost


_TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.RUNNING, State.CLOSING}),
    State.RUNNING: frozenset({State.CLOSING}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class StepResult(Enum):
    """What one unit of the thread's work came to, and so what it does next."""

    PUBLISHED = "published"  # something went out (or the spool was found empty): go on, after a short linger
    FAILED = "failed"  # the broker is unreachable: back off
    IDLE = "idle"  # nothing to do: wait for work (or stop, when closing)


class Waitable(Protocol):
    def wait(self, timeout: float | None) -> bool: ...

    def is_set(self) -> bool: ...


class Clock:
    """Time and timed waits of the publisher: the real ones. Tests pass a fake that never sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """Wait until ``waitable`` is set, at most ``timeout`` seconds (None: no limit); True when it was set."""
        return waitable.wait(timeout)

    def join(self, thread: threading.Thread, timeout: float) -> None:
        thread.join(timeout)


class Wakeup:
    """A flag the publisher thread waits for and any thread sets without ever blocking.

    ``threading.Event.set()`` takes a lock: a signal handler that logs while its thread is inside ``set()``
    would wait for itself forever. Here setting is releasing a plain lock (never blocks, and a lock may be
    released by any thread); waiting is acquiring it, which also clears the flag.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held: not set

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # already set (another thread got there first)
            self._lock.release()

    def is_set(self) -> bool:
        return not self._lock.locked()

    def clear(self) -> None:
        self._lock.acquire(blocking=False)

    def wait(self, timeout: float | None) -> bool:
        """Wait until set (at most ``timeout`` seconds, None: no limit); True when it was set. Leaves it clear."""
        return self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


class Publisher:
    def __init__(
        self,
        *,
        transport_factory: Callable[[], Transport],
        capacity: int,
        coalesce_interval: float,
        redactor: Redactor,
        spool: Spool | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or Clock()
        self._transport_factory = transport_factory
        self._capacity = capacity
        self._coalesce_interval = coalesce_interval
        self._redactor = redactor
        self.spool = spool
        self.published_total = 0
        self.spooled_total = 0
        self.lost_total = 0
        self._reset_runtime_state()
        _publishers.add(self)

    def _reset_runtime_state(self) -> None:
        self.buffer = AlertBuffer(self._capacity, self._coalesce_interval, clock=self._clock.now)
        self._wake = Wakeup()  # something to publish (or to schedule)
        self._interrupt = threading.Event()  # cut a backoff wait short: closing, or an explicit flush
        self._busy = False  # the thread holds entries taken from the buffer and not yet settled
        self._working = threading.Lock()  # held by the thread during a unit of work; a fork waits for it
        self._held_for_fork = False
        self._start_lock = threading.RLock()
        self._starting = False
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._inflight: list[Entry] = []
        self._draining = False  # publish repeat slots without waiting for their coalescing interval
        self.state = State.NEW
        self._state_lock = threading.RLock()
        self._spool_dirty = self.spool is not None  # a spool file may hold a previous process's alerts
        self._down_since: float | None = None
        self.thread_ident: int | None = None

    def _enter(self, state: State) -> bool:
        """The one place ``state`` changes (but for a fork's reset to NEW). Returns False, changing nothing, when
        the life cycle does not allow it from the current state: e.g. a start() that lost the race with close(),
        or a second close()."""
        # Re-entrant: a signal handler that logs may get here (through start()) while its thread is in here.
        with self._state_lock:
            if state not in _TRANSITIONS[self.state]:
                return False
            self.state = state
            return True

    @property
    def _closing(self) -> bool:
        """close() has been called (the thread drains, then stops)."""
        return self.state in (State.CLOSING, State.CLOSED)

    @property
    def _closed(self) -> bool:
        """close() is over: nothing publishes any more."""
        return self.state is State.CLOSED

    # -- called from the logging threads ---------------------------------------------------------------
    def submit(self, payload: dict[str, Any], fingerprint: Key, levelno: int) -> None:
        """Hand one alert over. Never blocks on I/O (the buffer lock is held for microseconds), and never waits
        at all when re-entered on the same thread."""
        if self.state is State.CLOSED:  # logged after close(): nothing will publish it; say so, never hold it silently
            self.lost_total += 1
            log.error(
                "celery-alerting lost an alert logged after its handler was closed (fingerprint %s)",
                resolve_fingerprint(fingerprint),  # the key holds the unredacted template: log only its digest
            )
            return
        # A signal handler (or a finaliser) that logs may run this again, on this thread, at any point in here:
        # the buffer and start() let a nested call through without waiting, and setting _wake never blocks.
        if self.buffer.put(payload, fingerprint, levelno) and not self._wake.is_set():
            self._wake.set()
        if self._thread is None:
            self.start()

    def start(self) -> None:
        # _start_lock is re-entrant and _starting marks the start in progress: a call nested in it on this thread
        # (a signal handler that logs while Thread.start() waits) returns at once; the outer call starts the thread.
        with self._start_lock:
            if self._thread is None and self.state is not State.CLOSED and not self._starting:
                self._starting = True
                try:
                    thread = threading.Thread(target=self._run, name="alerting-publisher", daemon=True)
                    thread.start()
                    self._thread = thread
                    self.thread_ident = thread.ident
                    self._enter(State.RUNNING)  # unless closing already: a flush() in close() starts one too
                finally:
                    self._starting = False

    def flush(self, timeout: float) -> bool:
        """Publish everything held now, repeat slots included; wait up to ``timeout``. True when all went out."""
        deadline = self._clock.now() + timeout
        if self._thread is None:
            if self._drained():
                return True
            self.start()
        self._draining = True
        self._interrupt.set()
        try:
            while not self._drained():
                self._wake.set()
                if self._clock.now() >= deadline:
                    return False
                self._clock.sleep(0.002)  # flush is rare (tests, exit, send-test); polling keeps the thread lock-free
            return True
        finally:
            if not self._closing:
                self._draining = False

    def _drained(self) -> bool:
        return len(self.buffer) == 0 and not self._busy and not self._spool_dirty

    def close(self, timeout: float) -> None:
        """Publish what is held within ``timeout``; spool (or report as lost) whatever could not go out."""
        deadline = self._clock.now() + timeout
        self._draining = True
        self._enter(State.CLOSING)  # a second close() goes through the rest again, as it always has
        self._wake.set()
        self._interrupt.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._clock.join(thread, max(deadline - self._clock.now(), 0.0))
        self._enter(State.CLOSED)
        still_running = thread is not None and thread.is_alive()
        # An in-flight batch of a thread stuck on a hung broker is spooled too: the worker recognises a
        # payload id it has already mailed, so a late publish of the same batch cannot mail twice.
        leftovers = (list(self._inflight) if still_running else []) + self.buffer.take(1 << 30, everything=True)
        lost = self._save_or_report(leftovers, reason="not published before close", announce=False)
        self._report_at_exit(lost)
        if not still_running and self._transport is not None:
            self._transport.close()
        if self.spool is not None:
            self.spool.close()

    def _report_at_exit(self, lost_now: list[Entry]) -> None:
        """One line that accounts for every alert of this handler that was not delivered: lost, dropped (overflow,
        the spool's caps), re-entrant calls skipped, and what waits in the spool. Silent when there is none."""
        # Drop counts that never rode on a message that got out: still pending, or carried by a lost entry.
        unreported = DropCounter()
        for entry in lost_now:
            if entry.payload.get("dropped"):
                unreported.merge(entry.payload["dropped"])
        pending = self.buffer.drop_report()
        if pending:
            unreported.merge(pending)
        stats = self.stats()
        lost, dropped, skipped = stats["lost"], stats["dropped"], stats["skipped"]
        parts = []
        if lost:
            text = f"lost {lost} alerts"
            if lost_now:
                fingerprints = _sample(Counter({e.fingerprint: e.count for e in lost_now}))
                text += f" ({sum(e.count for e in lost_now)} not published before close: fingerprints {fingerprints})"
            parts.append(text)
        if dropped:
            parts.append(f"dropped {dropped} alerts while its buffer (or spool) was full")
        if skipped:
            parts.append(f"skipped {skipped} alerts logged re-entrantly (a signal handler) while the hand-off was full")
        if unreported.total:
            parts.append(f"{unreported.total} of the dropped and skipped were reported in no alert that got out")
        elif dropped or skipped:
            parts.append("every drop was reported in an alert that got out")
        waiting = self._spool_count()
        if waiting:
            parts.append(f"{waiting} alerts wait in the spool {self.spool.path if self.spool else ''} for the next run")
        if not parts:
            return
        total = lost + dropped + skipped
        summary = f"{total} alerts not delivered" if total else "every alert delivered or kept"
        hint = "; configure spool_path to keep them" if self.spool is None and lost else ""
        level = logging.ERROR if lost or unreported.total else logging.WARNING
        log.log(level, "celery-alerting at exit: %s: %s%s", summary, "; ".join(parts), hint)

    def _spool_count(self) -> int:
        if self.spool is None:
            return 0
        try:
            return self.spool.count()
        except Exception:  # a spool that cannot be read has said so already; the exit line goes out regardless
            return 0

    def stats(self) -> dict[str, int]:
        return {
            "buffered": len(self.buffer),
            "published": self.published_total,
            "coalesced": self.buffer.coalesced_total,
            "dropped": self.buffer.dropped_total,  # includes what the spool's caps pushed out
            "skipped": self.buffer.skipped(),  # re-entrant calls (signal handlers) that found the hand-off full
            "spooled": self.spooled_total,
            "lost": self.lost_total,
            "spool_unusable": int(
                self.spool is not None and self.spool.problem is not None
            ),  # see alerting.producer.spool
        }

    # -- the publisher thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        while True:
            # One unit of work at a time under _working, which a fork waits for (see _before_fork).
            with self._working:
                self._busy = True
                outcome = self._step()
                self._busy = False
            if outcome is StepResult.IDLE:
                if self._closing:
                    break
                self._wait_for_work()
            elif outcome is StepResult.PUBLISHED:
                attempt = 0
                # Under load, let the next batch gather for a moment: one round trip for many alerts holds the GIL
                # far less than one each. An alert after a quiet spell is published at once. A flush or close
                # cuts the wait short; clear the event so that it does not cut every later one.
                if not self._draining and self._clock.wait(self._interrupt, BATCH_LINGER):
                    self._interrupt.clear()
            else:
                if self._closed or (self._closing and self._spooling()):
                    break  # close() has given up (and saved or reported the rest), or the spool holds it all
                delay = backoff_delay(attempt, RECONNECT_BASE, RECONNECT_MAX)
                # Closing without a spool: keep trying, briefly, until close() gives up; nothing else will save them.
                self._back_off(min(delay, 0.2) if self._closing else delay)
                attempt += 1

    def _step(self) -> StepResult:
        """Replay the spool (if it holds anything), then publish a batch."""
        if self._spool_dirty and self.spool is not None:
            replayed = self._replay_spool(self.spool)
            if replayed is StepResult.FAILED:
                return replayed
        batch = self.buffer.take(BATCH_SIZE, everything=self._draining)
        if batch:
            return self._publish(batch)
        # The spool still holds rows (more than one batch): come straight back for them.
        return StepResult.PUBLISHED if self._spool_dirty else StepResult.IDLE

    def _back_off(self, delay: float) -> None:
        """Wait before the next attempt; with a spool, alerts arriving meanwhile go straight to disk, so a
        process that dies during the outage loses nothing."""
        end = self._clock.now() + delay
        while not self._interrupt.is_set():
            remaining = end - self._clock.now()
            if remaining <= 0:
                break
            if not self._spooling():
                self._clock.wait(self._interrupt, remaining)
                break
            if self._clock.wait(self._wake, remaining):
                with self._working:
                    self._busy = True
                    self._save_or_report(self.buffer.take(1 << 30, everything=True), reason="broker unreachable")
                    self._busy = False
        self._interrupt.clear()

    def _wait_for_work(self) -> None:
        due = self.buffer.next_due()
        self._clock.wait(self._wake, None if due is None else max(due - self._clock.now(), 0.0) + 0.001)

    def _publish(self, batch: list[Entry]) -> StepResult:
        payloads = [self._finalize(entry) for entry in batch]
        self._inflight = batch
        try:
            transport = self._transport or self._connect()
            published = transport.publish_many(payloads)
        except PublishFailed as failure:
            published = failure.published
            self._note_outage(failure.cause)
            rest = batch[failure.published :]
            if not self._closed:  # after close() the leftovers were already spooled or reported
                if self._spooling():
                    self._save_or_report(rest, reason="broker unreachable")
                else:
                    self.buffer.put_back(rest)
            self.published_total += published
            return StepResult.FAILED
        except Exception as exc:  # building the transport failed (bad URL, missing transport library)
            self._note_outage(exc)
            if not self._closed:
                self.buffer.put_back(batch)
            return StepResult.FAILED
        finally:
            self._inflight = []
        self.published_total += published
        self._note_recovery()
        return StepResult.PUBLISHED

    def _replay_spool(self, spool: Spool) -> StepResult:
        """Publish one batch of the spool's rows: PUBLISHED (IDLE when it held none), or FAILED."""
        try:
            rows = spool.claim(BATCH_SIZE)
        except Exception as exc:  # nothing more can be read from it: go on with the buffer
            log.warning("celery-alerting cannot read its spool %s: %s", spool.path, exc)
            self._spool_dirty = False
            return StepResult.IDLE
        if not rows:
            self._spool_dirty = False
            return StepResult.IDLE
        try:
            transport = self._transport or self._connect()
            transport.publish_many([row.payload for row in rows])
        except Exception as exc:
            published = exc.published if isinstance(exc, PublishFailed) else 0
            spool.remove([r.row_id for r in rows[:published]])
            spool.release([r.row_id for r in rows[published:]])
            self.published_total += published
            self._note_outage(exc.cause if isinstance(exc, PublishFailed) else exc)
            return StepResult.FAILED
        spool.remove([r.row_id for r in rows])
        self.published_total += len(rows)
        self._note_recovery()
        return StepResult.PUBLISHED

    def _connect(self) -> Transport:
        self._transport = self._transport_factory()
        return self._transport

    def _finalize(self, entry: Entry) -> dict[str, Any]:
        if not entry.finalized:
            entry.payload = finalize(
                entry.payload, self._redactor, count=entry.count, first_created=entry.first_created
            )
            entry.finalized = True
        return entry.payload

    def _save_or_report(self, entries: list[Entry], *, reason: str, announce: bool = True) -> list[Entry]:
        """Spool ``entries``, or count them as lost (logged unless ``announce`` is False); returns those lost."""
        if not entries:
            return []
        if self.spool is not None:
            try:
                dropped = self.spool.add([self._finalize(e) for e in entries])
                self.spooled_total += len(entries)
                self._spool_dirty = True
                if dropped:
                    self.buffer.record_drops(dropped)
                    log.error(
                        "celery-alerting spool %s is full: dropped %d oldest alerts (%s)",
                        self.spool.path,
                        sum(dropped.values()),
                        _sample(dropped),
                    )
                return []
            except SpoolUnavailable as exc:  # the spool has said why (once): memory, as without a spool
                entries = self._spool_fallback(entries, exc)
                if not entries:
                    return []
            except Exception as exc:
                log.error("celery-alerting cannot write its spool %s: %s", self.spool.path, exc)
        lost = sum(e.count for e in entries)
        self.lost_total += lost
        if announce:
            log.error(
                "celery-alerting lost %d alerts (%s; configure spool_path to keep them): fingerprints %s",
                lost,
                reason,
                _sample(Counter(e.fingerprint for e in entries)),
            )
        return entries

    # -- a spool that cannot be used degrades to memory, never to losing alerts (see alerting.producer.spool) --
    def _spooling(self) -> bool:
        """True while alerts go to the spool file: one is configured and not known to be broken."""
        return self.spool is not None and self.spool.usable

    def _spool_fallback(self, entries: list[Entry], failure: SpoolUnavailable) -> list[Entry]:
        """After a failed ``spool.add``: keep what it did not store in memory; returns what is left to report
        (nothing, unless the handler is closed and memory is no longer an option)."""
        self.spooled_total += failure.stored
        if failure.stored:
            self._spool_dirty = True
        if failure.dropped:
            self.buffer.record_drops(failure.dropped)
        rest = entries[failure.stored :]
        if self._closed:
            return rest
        self.buffer.put_back(rest)
        return []

    def _note_outage(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = self._clock.now()
            spool = self.spool if self.spool is not None and self.spool.usable else None
            where = f"spooling to {spool.path}" if spool else f"holding up to {self._capacity} in memory"
            log.warning(
                "celery-alerting cannot publish alerts (%s: %s); %s and retrying",
                type(exc).__name__,
                self._redactor.text(str(exc)),
                where,
            )

    def _note_recovery(self) -> None:
        if self._down_since is not None:
            log.warning("celery-alerting publishing again after %.1fs", self._clock.now() - self._down_since)
            self._down_since = None

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its buffer is the parent's to publish. A child of a closed
        # publisher starts NEW too, as it always has: the handler object is the child's to use or close.
        self._reset_runtime_state()  # the spool resets itself (alerting.producer.spool registers with forks)


def _sample(counts: Mapping[str, int], shown: int = 10) -> str:
    """The most frequent fingerprints with their counts, and how many more: a log line stays short."""
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{fp} x{n}" for fp, n in top[:shown])
    return f"{text} and {len(top) - shown} more" if len(top) > shown else text


# A fork in the middle of the publisher's work would copy a half-done state into the child: worst of all, a
# module the thread was importing for the first time (redis-py imports some lazily on its first connection)
# stays half-initialised in the child for good. So a fork waits, briefly, for the current unit of work.
FORK_WAIT = 2.0


def _before_fork() -> None:
    for publisher in list(_publishers):
        if publisher._working.acquire(timeout=FORK_WAIT):
            publisher._held_for_fork = True


def _after_fork_in_parent() -> None:
    for publisher in list(_publishers):
        if publisher._held_for_fork:
            publisher._held_for_fork = False
            publisher._working.release()


def _after_fork_in_child() -> None:
    for publisher in list(_publishers):
        publisher._after_fork_in_child()


forks.on_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
