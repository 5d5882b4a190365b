"""A bounded SQLite spool that keeps alerts while the broker is unreachable. I/O (local disk).

It outlives the process: the next process that opens the same file (or this one, once the broker is back)
publishes what it holds, oldest first. Several processes may share one file: rows are claimed with a lease
before being published, so two processes do not publish the same row (and a crashed claimer's rows come
back after the lease). WAL mode lets writers and readers from different processes proceed together.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alerting.payload import Payload

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spooled_at REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    body TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until REAL
)
"""


@dataclass(frozen=True)
class SpooledAlert:
    row_id: int
    payload: Payload


class Spool:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 50 * 1024 * 1024,
        max_age: float = 7 * 24 * 3600.0,
        lease: float = 30.0,
        busy_timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.lease = lease
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.dropped_total = 0

    # -- writing ---------------------------------------------------------------------------------------
    def add(self, payloads: Sequence[Payload]) -> dict[str, int]:
        """Store payloads; returns what the caps pushed out, as {fingerprint: count}."""
        if not payloads:
            return {}
        now = self._clock()
        rows = [(now, str(p.get("fingerprint", "")), json.dumps(p, separators=(",", ":"))) for p in payloads]
        with self._lock, self._transaction() as conn:
            conn.executemany("INSERT INTO spool (spooled_at, fingerprint, body) VALUES (?, ?, ?)", rows)
            return self._enforce_caps(conn, now)

    def _enforce_caps(self, conn: sqlite3.Connection, now: float) -> dict[str, int]:
        dropped: dict[str, int] = {}
        expired = conn.execute(
            "SELECT fingerprint, COUNT(*) FROM spool WHERE spooled_at < ? GROUP BY fingerprint",
            (now - self.max_age,),
        ).fetchall()
        if expired:
            conn.execute("DELETE FROM spool WHERE spooled_at < ?", (now - self.max_age,))
        for fp, n in expired:
            dropped[fp] = dropped.get(fp, 0) + n
        (total,) = conn.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM spool").fetchone()
        if total > self.max_bytes:
            # Oldest first: walk rows until enough bytes are freed.
            victims: list[int] = []
            for row_id, fp, size in conn.execute("SELECT id, fingerprint, LENGTH(body) FROM spool ORDER BY id"):
                if total <= self.max_bytes:
                    break
                victims.append(row_id)
                total -= size
                dropped[fp] = dropped.get(fp, 0) + 1
            conn.executemany("DELETE FROM spool WHERE id = ?", [(v,) for v in victims])
        self.dropped_total += sum(dropped.values())
        return dropped

    # -- replaying -------------------------------------------------------------------------------------
    def claim(self, limit: int) -> list[SpooledAlert]:
        """Up to ``limit`` unclaimed rows, oldest first, leased to this process."""
        now = self._clock()
        with self._lock, self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, body FROM spool WHERE claimed_until IS NULL OR claimed_until < ? ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE spool SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                [(self._owner, now + self.lease, row_id) for row_id, _ in rows],
            )
        return [SpooledAlert(row_id, json.loads(body)) for row_id, body in rows]

    def remove(self, row_ids: Sequence[int]) -> None:
        """Forget rows that were published."""
        if row_ids:
            with self._lock, self._transaction() as conn:
                conn.executemany("DELETE FROM spool WHERE id = ?", [(r,) for r in row_ids])

    def release(self, row_ids: Sequence[int]) -> None:
        """Give back claimed rows that could not be published."""
        if row_ids:
            with self._lock, self._transaction() as conn:
                conn.executemany(
                    "UPDATE spool SET claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?",
                    [(r, self._owner) for r in row_ids],
                )

    def count(self) -> int:
        with self._lock:
            (n,) = self._connection().execute("SELECT COUNT(*) FROM spool").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def after_fork_in_child(self) -> None:
        """Abandon the parent's connection (SQLite connections must not cross a fork); reopen lazily."""
        self._lock = threading.Lock()
        self._conn = None
        self._owner = uuid.uuid4().hex

    # -- plumbing --------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def _transaction(self) -> _Transaction:
        return _Transaction(self._connection())


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front so claims cannot interleave."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
