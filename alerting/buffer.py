"""The bounded buffer between ``emit()`` and the publisher thread. Thread-safe, no I/O, never blocks.

Two kinds of entry: a *first* occurrence of a fingerprint is ready at once (coalescing never delays it);
*repeats* of a fingerprint seen less than ``coalesce_interval`` ago fold into one slot per fingerprint that
becomes ready one interval later and carries how many occurrences it stands for. A hot loop logging the
same critical 100,000 times therefore costs a handful of broker messages, and the counts add up.

When full, the least severe and then oldest entry gives way; what was dropped is counted per fingerprint
and the report rides on the next message that gets out (``payload["dropped"]``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from alerting.payload import Payload

# Per-fingerprint detail kept in a drop report; beyond this, drops are only counted in the total.
DROP_REPORT_FINGERPRINTS = 50


@dataclass(eq=False)
class Entry:
    payload: Payload
    fingerprint: str
    levelno: int
    seq: int
    count: int = 1
    due: float = 0.0  # monotonic time a repeat slot becomes ready; 0 for first occurrences
    first_created: float | None = None  # a repeat slot's earliest occurrence (payload["created"] is the latest)
    finalized: bool = False  # redacted and size-capped by the publisher (kept if put back)


@dataclass
class DropCounter:
    total: int = 0
    by_fingerprint: Counter[str] = field(default_factory=Counter)

    def add(self, fingerprint: str, count: int) -> None:
        self.total += count
        self._note(fingerprint, count)

    def merge(self, report: dict[str, Any]) -> None:
        self.total += int(report.get("total", 0))
        for fp, n in (report.get("by_fingerprint") or {}).items():
            self._note(fp, int(n))

    def report(self) -> dict[str, Any]:
        return {"total": self.total, "by_fingerprint": dict(self.by_fingerprint)}

    def _note(self, fingerprint: str, count: int) -> None:
        if fingerprint in self.by_fingerprint or len(self.by_fingerprint) < DROP_REPORT_FINGERPRINTS:
            self.by_fingerprint[fingerprint] += count


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
        self._lock = threading.Lock()
        self._ready: deque[Entry] = deque()
        self._slots: dict[str, Entry] = {}
        self._levels: Counter[int] = Counter()  # levelno -> entries of that level in _ready
        self._hot: dict[str, float] = {}  # fingerprint -> when its last message left the buffer or entered it
        self._hot_limit = 4 * capacity + 100  # prune _hot past this size (raised when it is all recent)
        self._seq = 0
        self._pending_drops = DropCounter()  # not yet reported in a message
        self.dropped_total = 0  # lifetime, for stats()
        self.coalesced_total = 0

    def __len__(self) -> int:
        return len(self._ready) + len(self._slots)

    def put(self, payload: Payload, fingerprint: str, levelno: int) -> bool:
        """Add one occurrence. Returns True when the publisher should wake up (something new to schedule)."""
        with self._lock:
            now = self._clock()
            slot = self._slots.get(fingerprint)
            if slot is not None:  # a slot still waiting: fold into it (one message per interval, not two)
                slot.count += 1
                slot.payload = payload  # the digest shows the latest sample
                slot.levelno = max(slot.levelno, levelno)
                self.coalesced_total += 1
                return False
            last = self._hot.get(fingerprint)
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
                    self._slots[fingerprint] = entry
                self.coalesced_total += 1
                return True
            self._hot[fingerprint] = now
            if len(self._hot) > self._hot_limit:
                self._forget_cold(now)
            self._seq += 1
            entry = Entry(payload, fingerprint, levelno, self._seq)
            if self._make_room(entry):
                self._ready.append(entry)
                self._levels[levelno] += 1
            return True

    def take(self, limit: int, *, everything: bool = False) -> list[Entry]:
        """Up to ``limit`` entries ready to publish, oldest first; ``everything`` ignores slots' due times."""
        with self._lock:
            out: list[Entry] = []
            while self._ready and len(out) < limit:
                entry = self._ready.popleft()
                self._levels[entry.levelno] -= 1
                out.append(entry)
            if self._slots and len(out) < limit:
                now = self._clock()
                for fp, slot in list(self._slots.items()):
                    if len(out) >= limit:
                        break
                    if everything or slot.due <= now:
                        del self._slots[fp]
                        self._hot[fp] = now
                        out.append(slot)
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
        with self._lock:
            for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
                entry.due = 0.0
                if self._make_room(entry):
                    self._ready.appendleft(entry)
                    self._levels[entry.levelno] += 1

    def next_due(self) -> float | None:
        """Monotonic time the earliest repeat slot becomes ready, if any."""
        with self._lock:
            return min((s.due for s in self._slots.values()), default=None)

    def has_ready(self) -> bool:
        return bool(self._ready)

    def drop_report(self) -> dict[str, Any] | None:
        """Drops not yet reported in a message (for stats and for exit)."""
        with self._lock:
            return self._pending_drops.report() if self._pending_drops.total else None

    def record_drops(self, by_fingerprint: dict[str, int]) -> None:
        """Count drops that happened downstream (the spool's caps) in the next message's report."""
        with self._lock:
            for fp, n in by_fingerprint.items():
                self._pending_drops.add(fp, n)
                self.dropped_total += n

    def _make_room(self, entry: Entry) -> bool:
        """Evict to fit ``entry``; False when ``entry`` itself is what gives way. Caller holds the lock."""
        if len(self._ready) + len(self._slots) < self.capacity:
            return True
        victim = self._victim()
        # Least severe, then oldest, gives way: a newcomer loses only when it is less severe than everything
        # held; an entry put back after a failed publish also loses to newer entries of its level.
        if victim is None or (entry.levelno, entry.seq) < (victim.levelno, victim.seq):
            self._count_drop(entry)
            return False
        if victim.due:
            del self._slots[victim.fingerprint]
        else:
            self._ready.remove(victim)
            self._levels[victim.levelno] -= 1
        self._count_drop(victim)
        return True

    def _victim(self) -> Entry | None:
        lowest = min((lvl for lvl, n in self._levels.items() if n > 0), default=None)
        candidate: Entry | None = None
        if lowest is not None:
            candidate = next(e for e in self._ready if e.levelno == lowest)
        for slot in self._slots.values():
            if candidate is None or (slot.levelno, slot.seq) < (candidate.levelno, candidate.seq):
                candidate = slot
        return candidate

    def _count_drop(self, entry: Entry) -> None:
        self._pending_drops.add(entry.fingerprint, entry.count)
        self.dropped_total += entry.count
        carried = entry.payload.get("dropped")
        if carried:  # the dropped entry was carrying an earlier report: keep it for the next message
            self._pending_drops.merge(carried)

    def _forget_cold(self, now: float) -> None:
        horizon = now - self.coalesce_interval
        self._hot = {fp: t for fp, t in self._hot.items() if t >= horizon or fp in self._slots}
        # When most fingerprints are recent (thousands of distinct alerts a second), the next prune waits until
        # the dict has doubled: amortised O(1) per put instead of a full rebuild on every one.
        self._hot_limit = max(4 * self.capacity + 100, 2 * len(self._hot))
