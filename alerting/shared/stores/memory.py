"""In-memory state store: the pure throttle policy applied under one lock. For tests and single processes."""

from __future__ import annotations

import json
import threading
from typing import Any

from alerting.shared.stores import Claim, Occurrence, OutboxItem, StoreConfig, StoreStatus
from alerting.shared.throttle import Bucket, Verdict, Window, admit, roll, take_token


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
        self._summary: dict[str, int] = {}
        self._summary_subjects: dict[str, str] = {}
        self._summary_since: float | None = None
        self._outbox: dict[str, float] = {}  # item id -> ready (or lease expiry) time
        self._items: dict[str, dict[str, Any]] = {}
        self._item_seq = 0
        self._dead: list[dict[str, Any]] = []  # newest first, as in Redis

    def admit(self, occurrence: Occurrence, *, now: float) -> Verdict:
        with self._lock:
            if occurrence.alert_id in self._sent:
                return Verdict.DUPLICATE
            prior = self._decided.get(occurrence.alert_id)
            if prior is not None:
                return prior
            verdict, window = admit(
                self._windows.get(occurrence.fingerprint),
                now=now,
                length=self.config.window,
                count=occurrence.count,
                first_seen=occurrence.first_seen,
                last_seen=occurrence.last_seen,
                sample=occurrence.sample,
            )
            if window is not None:
                self._windows[occurrence.fingerprint] = window
            if verdict is Verdict.SEND and self.config.rate is not None:
                reserved = sum(1 for t in self._outbox.values() if t <= now) + (1 if self._summary else 0)
                allowed, self._bucket = take_token(self._bucket, now=now, rate=self.config.rate, reserved=reserved)
                if not allowed:
                    verdict = Verdict.FOLD
                    fp = occurrence.fingerprint
                    self._summary[fp] = self._summary.get(fp, 0) + 1
                    self._summary_subjects[fp] = occurrence.subject
                    if self._summary_since is None:
                        self._summary_since = now
            self._decided[occurrence.alert_id] = verdict
            return verdict

    def mark_sent(self, key: str) -> None:
        with self._lock:
            self._sent.add(key)
            self._claims.pop(key, None)

    def claim(self, key: str, owner: str, *, lease: float, now: float, steal: str = "") -> Claim:
        with self._lock:
            if key in self._sent:
                return Claim("sent")
            holder, expiry = self._claims.get(key, ("", now))
            if not holder or expiry <= now or holder == owner or (steal and holder == steal):
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
            due = sorted((w.end, fp) for fp, w in self._windows.items() if w.end <= now)[:limit]
            for _, fp in due:
                digest, following = roll(fp, self._windows[fp], now=now, length=self.config.window)
                if following is None:
                    del self._windows[fp]
                else:
                    self._windows[fp] = following
                if digest is not None:
                    self._item_seq += 1
                    item_id = f"digest:{fp}:{self._item_seq}"
                    self._items[item_id] = {
                        "kind": "digest",
                        "fingerprint": fp,
                        "seq": digest.seq,
                        "count": digest.count,
                        "first": digest.first,
                        "last": digest.last,
                        "sample": digest.sample,
                        "window_start": digest.window_start,
                        "window_end": digest.window_end,
                    }
                    self._outbox[item_id] = now
                    owed += 1
            return owed

    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]:
        with self._lock:
            rate = self.config.rate
            out: list[OutboxItem] = []
            if self._summary and limit > 0:
                allowed, bucket = take_token(self._bucket, now=now, rate=rate)
                if allowed:
                    self._bucket = bucket
                    self._item_seq += 1
                    item_id = f"summary:{self._item_seq}"
                    entries = [
                        {"fingerprint": fp, "count": n, "subject": self._summary_subjects.get(fp, fp)}
                        for fp, n in self._summary.items()
                    ]
                    self._items[item_id] = {
                        "kind": "summary",
                        "since": self._summary_since,
                        "entries": entries,
                    }
                    self._outbox[item_id] = now + self.config.lease
                    self._summary, self._summary_subjects, self._summary_since = {}, {}, None
                    out.append(OutboxItem(item_id, json.loads(json.dumps(self._items[item_id]))))
            ready = sorted((t, item_id) for item_id, t in self._outbox.items() if t <= now)[:limit]
            for _, item_id in ready:
                if len(out) >= limit:
                    break
                allowed, bucket = take_token(self._bucket, now=now, rate=rate)
                if not allowed:
                    break
                self._bucket = bucket
                self._outbox[item_id] = now + self.config.lease
                out.append(OutboxItem(item_id, dict(self._items[item_id])))
            return out

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
            owed_windows = sum(1 for w in self._windows.values() if w.repeats > 0)
            digests = sum(1 for i in self._outbox if i.startswith("digest:"))
            return StoreStatus(
                open_windows=len(self._windows),
                owed_digests=owed_windows + digests,
                outbox=len(self._outbox),
                folded=len(self._summary),
                dead_letters=len(self._dead),
            )

    def ping(self) -> None:
        return None
