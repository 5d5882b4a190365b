"""In-memory state store: plain state under one lock; every rule is a call to ``alerting.shared.throttle``.
For tests and single processes."""

from __future__ import annotations

import json
import threading
from typing import Any

from alerting.shared import outbox
from alerting.shared.outbox import Summary
from alerting.shared.stores import Claim, Occurrence, OutboxItem, StoreConfig, StoreStatus
from alerting.shared.throttle import (
    Bucket,
    Verdict,
    Window,
    decide,
    due_windows,
    may_claim,
    owes_digest,
    plan_lease,
    roll,
)


class MemoryStore:
    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}
        self._decided: dict[str, Verdict] = {}
        self._sent: set[str] = set()
        self._claims: dict[str, tuple[str, float]] = {}  # key -> (owner, expiry)
        self._starts: dict[str, int] = {}
        self._bucket: Bucket | None = None
        self._pending: Summary | None = None  # alerts folded since the last summary was leased
        self._outbox: dict[str, float] = {}  # item id -> ready (or lease expiry) time
        self._items: dict[str, dict[str, Any]] = {}  # item id -> its JSON form, as Redis keeps it
        self._item_seq = 0
        self._dead: list[dict[str, Any]] = []  # newest first, as in Redis

    def admit(self, occurrence: Occurrence, *, now: float) -> Verdict:
        with self._lock:
            fp = occurrence.fingerprint
            d = decide(
                occurrence,
                sent=occurrence.alert_id in self._sent,
                prior=self._decided.get(occurrence.alert_id),
                window=self._windows.get(fp),
                bucket=self._bucket,
                pending=self._pending,
                ready_items=sum(1 for t in self._outbox.values() if t <= now),
                now=now,
                length=self.config.window,
                rate=self.config.rate,
            )
            if d.window is not None:
                self._windows[fp] = d.window
            self._bucket, self._pending = d.bucket, d.pending
            if d.record:
                self._decided[occurrence.alert_id] = d.verdict
            return d.verdict

    def mark_sent(self, key: str) -> None:
        with self._lock:
            self._sent.add(key)
            self._claims.pop(key, None)

    def claim(self, key: str, owner: str, *, lease: float, now: float, steal: str = "") -> Claim:
        with self._lock:
            if key in self._sent:
                return Claim("sent")
            holder, expiry = self._claims.get(key, ("", now))
            if may_claim(holder, expiry, owner=owner, steal=steal, now=now):
                self._claims[key] = (owner, now + lease)
                return Claim("claimed", owner, lease)
            return Claim("busy", holder, expiry - now)

    def count_start(self, key: str) -> int:
        with self._lock:
            self._starts[key] = self._starts.get(key, 0) + 1
            return self._starts[key]

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            if self._claims.get(key, ("", 0.0))[0] == owner:
                del self._claims[key]

    def is_sent(self, key: str) -> bool:
        with self._lock:
            return key in self._sent

    def decision(self, alert_id: str) -> str | None:
        with self._lock:
            verdict = self._decided.get(alert_id)
            return verdict.value if verdict is not None else None

    def roll_due(self, *, now: float, limit: int = 100) -> int:
        with self._lock:
            owed = 0
            for fp in due_windows(self._windows, now=now, limit=limit):
                digest, following = roll(fp, self._windows[fp], now=now, length=self.config.window)
                if following is None:
                    del self._windows[fp]
                else:
                    self._windows[fp] = following
                if digest is not None:
                    self._put(outbox.digest_id(fp, self._next_seq()), digest, ready=now)
                    owed += 1
            return owed

    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]:
        with self._lock:
            plan = plan_lease(
                [(t, item_id) for item_id, t in self._outbox.items() if t <= now],
                summary_pending=self._pending is not None,
                bucket=self._bucket,
                now=now,
                rate=self.config.rate,
                limit=limit,
            )
            self._bucket = plan.bucket
            leased: list[str] = []
            if plan.summary and self._pending is not None:
                leased.append(self._put(outbox.summary_id(self._next_seq()), self._pending, ready=now))
                self._pending = None
            leased += plan.items
            for item_id in leased:
                self._outbox[item_id] = now + self.config.lease
            return [OutboxItem(item_id, dict(self._items[item_id])) for item_id in leased]

    def _next_seq(self) -> int:
        self._item_seq += 1
        return self._item_seq

    def _put(self, item_id: str, value: outbox.Item, *, ready: float) -> str:
        # Kept in the JSON form, round-tripped, so that nothing the JSON form cannot carry goes unnoticed.
        self._items[item_id] = json.loads(outbox.to_json(value))
        self._outbox[item_id] = ready
        return item_id

    def load_item(self, item_id: str) -> OutboxItem | None:
        with self._lock:
            body = self._items.get(item_id)
            return OutboxItem(item_id, dict(body)) if body is not None else None

    def complete(self, item_id: str) -> None:
        with self._lock:
            self._items.pop(item_id, None)
            self._outbox.pop(item_id, None)
            self._sent.add(item_id)

    def restore_item(self, item: OutboxItem, *, now: float) -> None:
        with self._lock:
            self._items[item.item_id] = dict(item.body)
            self._outbox[item.item_id] = now
            self._sent.discard(item.item_id)

    def dead_letter(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._dead.insert(0, json.loads(json.dumps(record)))

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._dead[:limit]]

    def remove_dead_letter(self, record: dict[str, Any]) -> bool:
        with self._lock:
            try:
                self._dead.remove(record)
            except ValueError:
                return False
            return True

    def purge_dead_letters(self) -> int:
        with self._lock:
            n = len(self._dead)
            self._dead.clear()
            return n

    def status(self, *, now: float) -> StoreStatus:
        with self._lock:
            owed_windows = sum(1 for w in self._windows.values() if owes_digest(w))
            digests = sum(1 for i in self._outbox if outbox.is_digest_id(i))
            return StoreStatus(
                open_windows=len(self._windows),
                owed_digests=owed_windows + digests,
                outbox=len(self._outbox),
                folded=len(self._pending.entries) if self._pending is not None else 0,
                dead_letters=len(self._dead),
            )

    def ping(self) -> None:
        return None
