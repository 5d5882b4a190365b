"""The bounded buffer between ``emit()`` and the publisher thread. Thread-safe, no I/O, never blocks.

Two kinds of entry: a *first* occurrence of a fingerprint is ready at once (coalescing never delays it);
*repeats* of a fingerprint seen less than ``coalesce_interval`` ago fold into one slot per fingerprint that
becomes ready one interval later and carries how many occurrences it stands for. A hot loop logging the
same critical 100,000 times therefore costs a handful of broker messages, and the counts add up.

When full, the least severe and then oldest entry gives way; what was dropped is counted per fingerprint
and the report rides on the next message that gets out (``payload["dropped"]``). Every operation on the
logging thread's path is O(1): entries are kept per severity level, oldest first, so the one that gives way
is found without a scan.

Everything held is bounded by ``capacity``: the entries, the table of recently seen fingerprints that
coalescing needs (``HOT_PER_ENTRY`` x capacity, least recently seen forgotten first), and the hand-off that
takes calls re-entering the buffer on the thread that is already inside it.

Re-entry: a signal handler (or a finaliser run by the garbage collector) that logs a critical runs on a thread
that may be in the middle of ``put()``. Waiting for the lock there would wait forever for itself. The lock is
re-entrant and ``_busy`` marks the critical section, so the inner call sees it is nested and, instead of
touching half-changed state, appends to a lock-free hand-off that the next ``put()`` or ``take()`` moves in.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from alerting.producer.capture import resolve_fingerprint
from alerting.shared.wire import Payload

#: What the buffer groups occurrences by: a fingerprint, or the coalescing key the logging thread makes instead
#: (``alerting.producer.capture.coalescing_key``: equal keys exactly when equal fingerprints); the digest is made
#: from it off the logging thread, when a message or a drop report needs it.
Key = Hashable

# Per-fingerprint detail kept in a drop report; beyond this, drops are only counted in the total.
DROP_REPORT_FINGERPRINTS = 50
# Fingerprints remembered for coalescing, per entry of capacity. A fingerprint forgotten while still recent only
# means its next occurrence goes out as a first occurrence (a message more, not an alert less), and that happens
# only when more distinct fingerprints than this arrive within one coalescing interval: a flood the buffer
# itself cannot hold either.
HOT_PER_ENTRY = 4
HOT_MIN = 100
# Re-entrant calls waiting in the hand-off, at most (and never more than capacity).
HANDOFF_MAX = 256
# The drop report's key for re-entrant calls that found the hand-off full (their fingerprints are not kept).
REENTRANT_KEY = "(logged re-entrantly while the buffer was busy)"


@dataclass(eq=False, slots=True)
class Entry:
    payload: Payload
    key: Key
    levelno: int
    seq: int
    count: int = 1
    due: float = 0.0  # monotonic time a repeat slot becomes ready; 0 for first occurrences
    first_created: float | None = None  # a repeat slot's earliest occurrence (payload["created"] is the latest)
    finalized: bool = False  # redacted and size-capped by the publisher (kept if put back)

    @property
    def fingerprint(self) -> str:
        return resolve_fingerprint(self.key)


@dataclass
class DropCounter:
    total: int = 0
    by_fingerprint: Counter[Key] = field(default_factory=Counter)  # by key: the digests are made by report()

    def add(self, fingerprint: Key, count: int) -> None:
        self.total += count
        self._note(fingerprint, count)

    def merge(self, report: dict[str, Any]) -> None:
        self.total += int(report.get("total", 0))
        for fp, n in (report.get("by_fingerprint") or {}).items():
            self._note(fp, int(n))

    def report(self) -> dict[str, Any]:
        by_fingerprint: Counter[str] = Counter()
        for key, n in self.by_fingerprint.items():
            by_fingerprint[resolve_fingerprint(key)] += n
        return {"total": self.total, "by_fingerprint": dict(by_fingerprint)}

    def _note(self, fingerprint: Key, count: int) -> None:
        if fingerprint in self.by_fingerprint or len(self.by_fingerprint) < DROP_REPORT_FINGERPRINTS:
            self.by_fingerprint[fingerprint] += count


class _Level:
    """The entries of one severity level, each kind oldest first (insertion order is ``seq`` order)."""

    __slots__ = ("ready", "slots")

    def __init__(self) -> None:
        self.ready: OrderedDict[Entry, None] = OrderedDict()
        self.slots: OrderedDict[Entry, None] = OrderedDict()

    def oldest(self) -> Entry | None:
        ready = next(iter(self.ready), None)
        slot = next(iter(self.slots), None)
        if ready is None or (slot is not None and slot.seq < ready.seq):
            return slot
        return ready


class AlertBuffer:
    def __init__(
        self,
        capacity: int,
        coalesce_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.coalesce_interval = coalesce_interval
        self._clock = clock
        # Re-entrant, with _busy marking the critical section: see the module's docstring.
        self._lock = threading.RLock()
        self._busy = False
        # Ready entries in publishing order (put_back inserts at the front): an OrderedDict, so that an evicted
        # entry leaves from the middle in O(1).
        self._ready: OrderedDict[Entry, None] = OrderedDict()
        self._slots: dict[Key, Entry] = {}
        self._levels: dict[int, _Level] = {}  # levelno -> its entries; no empty levels (min() stays cheap)
        # fingerprint -> when its last message left the buffer or entered it; least recently refreshed first.
        self._hot: OrderedDict[Key, float] = OrderedDict()
        self._hot_limit = HOT_PER_ENTRY * capacity + HOT_MIN
        self._seq = 0
        self._pending_drops = DropCounter()  # not yet reported in a message
        self.dropped_total = 0  # lifetime, for stats(): overflow and the spool's caps
        self.coalesced_total = 0
        # Calls from a thread that may be holding the lock (a signal handler, a finaliser): appended without it
        # (deque.append is atomic) and moved into the buffer by the next put() or take().
        self._handoff: deque[tuple[Payload, Key, int]] = deque()
        self._handoff_limit = max(1, min(capacity, HANDOFF_MAX))
        # Re-entrant calls that found the hand-off full: counted without a lock too. next() on a count is atomic;
        # reading it is a next() as well, so the reads are subtracted (see _harvest_skips).
        self._skips = itertools.count()
        self._skip_reads = 0
        self.skipped_total = 0  # lifetime, harvested under the lock
        self._late_drops: deque[dict[str, int]] = deque()  # record_drops() calls that could not take the buffer

    def __len__(self) -> int:
        return len(self._ready) + len(self._slots) + len(self._handoff)

    def put(self, payload: Payload, fingerprint: Key, levelno: int) -> bool:
        """Add one occurrence. Returns True when the publisher should wake up (something new to schedule).
        Never waits for itself: a call nested in another on the same thread goes to the hand-off."""
        with self._lock:
            if self._busy:
                self.put_reentrant(payload, fingerprint, levelno)
                return True
            self._busy = True
            try:
                if self._handoff:
                    self._drain_handoff()
                return self._put(payload, fingerprint, levelno)
            finally:
                self._busy = False

    def put_reentrant(self, payload: Payload, fingerprint: Key, levelno: int) -> None:
        """Add one occurrence without the lock, into the bounded hand-off (``deque.append`` is atomic); beyond its
        bound, counted and reported like a drop."""
        if len(self._handoff) < self._handoff_limit:
            self._handoff.append((payload, fingerprint, levelno))
        else:
            next(self._skips)

    def _put(self, payload: Payload, fingerprint: Key, levelno: int) -> bool:
        now = self._clock()
        slot = self._slots.get(fingerprint)
        if slot is not None:  # a slot still waiting: fold into it (one message per interval, not two)
            slot.count += 1
            slot.payload = payload  # the digest shows the latest sample
            if levelno > slot.levelno:  # now as severe as its latest occurrence, and as young
                self._remove(slot)
                slot.levelno = levelno
                self._seq += 1
                slot.seq = self._seq
                self._add_slot(slot)
            self.coalesced_total += 1
            return False
        hot = self._hot
        last = hot.get(fingerprint)
        if last is not None and now - last < self.coalesce_interval:
            self._seq += 1
            entry = Entry(
                payload,
                fingerprint,
                levelno,
                self._seq,
                due=last + self.coalesce_interval,
                first_created=payload.get("created"),
            )
            if self._make_room(entry):
                self._add_slot(entry)
            self.coalesced_total += 1
            return True
        hot[fingerprint] = now
        if last is not None:
            hot.move_to_end(fingerprint)
        elif len(hot) > self._hot_limit:
            hot.popitem(last=False)  # the least recently seen fingerprint
        self._seq += 1
        entry = Entry(payload, fingerprint, levelno, self._seq)
        if len(self._ready) + len(self._slots) < self.capacity:  # room: _add_ready inlined (the common case)
            level = self._levels.get(levelno)
            if level is None:
                level = self._levels[levelno] = _Level()
            self._ready[entry] = None
            level.ready[entry] = None
        elif self._make_room(entry):
            self._add_ready(entry)
        return True

    def take(self, limit: int, *, everything: bool = False) -> list[Entry]:
        """Up to ``limit`` entries ready to publish, oldest first; ``everything`` ignores slots' due times."""
        with self._exclusive() as mine:
            if not mine:
                return []
            if self._handoff:
                self._drain_handoff()
            self._harvest_skips()
            out: list[Entry] = []
            ready = self._ready
            while ready and len(out) < limit:
                entry, _ = ready.popitem(last=False)
                self._forget_level(entry, self._levels[entry.levelno].ready)
                out.append(entry)
            if self._slots and len(out) < limit:
                now = self._clock()
                due = [s for s in self._slots.values() if everything or s.due <= now]
                for slot in due[: limit - len(out)]:
                    self._remove(slot)
                    self._hot[slot.key] = now
                    self._hot.move_to_end(slot.key)
                    out.append(slot)
                while len(self._hot) > self._hot_limit:
                    self._hot.popitem(last=False)
            if out and self._pending_drops.total:
                first = out[0]
                if first.payload.get("dropped"):  # put back after a failed publish with a report already
                    self._pending_drops.merge(first.payload["dropped"])
                first.payload = {**first.payload, "dropped": self._pending_drops.report()}
                first.finalized = False
                self._pending_drops = DropCounter()
            return out

    def put_back(self, entries: Iterable[Entry]) -> None:
        """Return entries whose publication failed to the front, in their original order."""
        with self._exclusive() as mine:
            if not mine:  # only the publisher thread puts back, and nothing there logs re-entrantly
                raise RuntimeError("AlertBuffer.put_back() re-entered")
            for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
                entry.due = 0.0
                if self._make_room(entry):
                    self._add_ready(entry, front=True)

    def next_due(self) -> float | None:
        """Monotonic time the earliest repeat slot becomes ready, if any."""
        with self._exclusive() as mine:
            return min((s.due for s in self._slots.values()), default=None) if mine else None

    def drop_report(self) -> dict[str, Any] | None:
        """Drops not yet reported in a message (for stats and for exit)."""
        with self._exclusive() as mine:
            if mine:
                self._harvest_skips()
            return self._pending_drops.report() if self._pending_drops.total else None

    def skipped(self) -> int:
        """Re-entrant calls that found the hand-off full, since start (lifetime, for stats)."""
        with self._exclusive() as mine:
            if mine:
                self._harvest_skips()
            return self.skipped_total

    def record_drops(self, by_fingerprint: dict[str, int]) -> None:
        """Count drops that happened downstream (the spool's caps) in the next message's report."""
        with self._exclusive() as mine:
            if not mine:  # nested in a call on this thread (close() from a signal handler): counted by the next one
                self._late_drops.append(dict(by_fingerprint))
                return
            for fp, n in by_fingerprint.items():
                self._pending_drops.add(fp, n)
                self.dropped_total += n

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """The lock, and whether this call has the buffer to itself (False: nested in a call on this thread)."""
        with self._lock:
            if self._busy:
                yield False
                return
            self._busy = True
            try:
                yield True
            finally:
                self._busy = False

    # -- internals; the caller holds the lock -----------------------------------------------------------------
    def _add_ready(self, entry: Entry, *, front: bool = False) -> None:
        level = self._levels.get(entry.levelno)
        if level is None:
            level = self._levels[entry.levelno] = _Level()
        self._ready[entry] = None
        level.ready[entry] = None
        if front:  # put back: older than everything held (it was taken from the front), so first in both orders
            self._ready.move_to_end(entry, last=False)
            level.ready.move_to_end(entry, last=False)

    def _add_slot(self, slot: Entry) -> None:
        level = self._levels.get(slot.levelno)
        if level is None:
            level = self._levels[slot.levelno] = _Level()
        self._slots[slot.key] = slot
        level.slots[slot] = None

    def _remove(self, entry: Entry) -> None:
        level = self._levels[entry.levelno]
        if entry.due:
            del self._slots[entry.key]
            self._forget_level(entry, level.slots)
        else:
            del self._ready[entry]
            self._forget_level(entry, level.ready)

    def _forget_level(self, entry: Entry, kind: OrderedDict[Entry, None]) -> None:
        del kind[entry]
        level = self._levels[entry.levelno]
        if not level.ready and not level.slots:
            del self._levels[entry.levelno]

    def _make_room(self, entry: Entry) -> bool:
        """Evict to fit ``entry``; False when ``entry`` itself is what gives way."""
        if len(self._ready) + len(self._slots) < self.capacity:
            return True
        # Least severe, then oldest, gives way: a newcomer loses only when it is less severe than everything
        # held; an entry put back after a failed publish also loses to newer entries of its level.
        victim = self._levels[min(self._levels)].oldest() if self._levels else None
        if victim is None or (entry.levelno, entry.seq) < (victim.levelno, victim.seq):
            self._count_drop(entry)
            return False
        self._remove(victim)
        self._count_drop(victim)
        return True

    def _count_drop(self, entry: Entry) -> None:
        self._pending_drops.add(entry.key, entry.count)
        self.dropped_total += entry.count
        carried = entry.payload.get("dropped")
        if carried:  # the dropped entry was carrying an earlier report: keep it for the next message
            self._pending_drops.merge(carried)

    def _drain_handoff(self) -> None:
        handoff = self._handoff
        while True:
            try:
                payload, fingerprint, levelno = handoff.popleft()
            except IndexError:
                return
            self._put(payload, fingerprint, levelno)

    def _harvest_skips(self) -> None:
        while self._late_drops:
            for fp, n in self._late_drops.popleft().items():
                self._pending_drops.add(fp, n)
                self.dropped_total += n
        # next() returns how many next() calls came before: the skips so far plus this buffer's own reads.
        skips = next(self._skips) - self._skip_reads
        self._skip_reads += 1
        new = skips - self.skipped_total
        if new:
            self.skipped_total = skips
            self._pending_drops.add(REENTRANT_KEY, new)
