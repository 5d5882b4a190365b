"""A bounded SQLite spool that keeps alerts while the broker is unreachable. I/O (local disk).

It outlives the process: the next process that opens the same file (or this one, once the broker is back)
publishes what it holds, oldest first. Several processes may share one file: rows are claimed with a lease
before being published, so two processes do not publish the same row (and a crashed claimer's rows come
back after the lease). WAL mode lets writers and readers from different processes proceed together.

A spool is an improvement on memory, never a risk to it: when the file cannot be used (its directory is
missing or read-only, the path is a directory, the file is not a database, the disk is full) ``add`` raises
:class:`SpoolUnavailable` and the caller keeps the alerts in memory, as it would without a spool. The first
failure is logged once, with the path and the reason; writing is tried again after ``retry_interval``.

``max_bytes`` bounds what is on disk (database file, ``-wal`` and ``-shm`` together), not the size of the
rows: pages are counted, the write-ahead log is checkpointed and truncated, and an emptied spool gives its
pages back (``auto_vacuum=INCREMENTAL``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from alerting.errors import AlertingError, ConfigError
from alerting.shared import forks
from alerting.shared.wire import Payload

log = logging.getLogger("alerting.spool")

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

MIN_MAX_BYTES = 1024 * 1024
# Bytes set aside, out of max_bytes, for the -shm index (32 KiB per ~4,000 WAL frames; the WAL is kept far
# smaller than that) and the sqlite_sequence/schema pages.
_SHM_RESERVE = 64 * 1024
# SQLite's per-row cost beyond the body and fingerprint (cell header, the other columns, a claim) and page
# slack: only used to size write chunks and to choose victims; the cap itself is checked in pages.
_ROW_OVERHEAD = 200
# SQLite result codes (the low byte of an extended code) that mean "another connection holds the lock": worth
# waiting out, not a broken spool.
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


# Connections inherited across fork(), kept referenced (and unused) for the life of the child: see
# Spool.after_fork_in_child.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


@dataclass(frozen=True)
class SpooledAlert:
    row_id: int
    payload: Payload


class SpoolUnavailable(AlertingError):
    """``add`` could not store (all of) its payloads; the caller keeps ``payloads[stored:]`` elsewhere.

    ``dropped`` is what the caps pushed out before the failure, as ``add`` would have returned it.
    """

    def __init__(self, reason: str, stored: int = 0, dropped: dict[str, int] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stored = stored
        self.dropped = dropped or {}


class Spool:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 50 * 1024 * 1024,
        max_age: float = 7 * 24 * 3600.0,
        lease: float = 30.0,
        busy_timeout: float = 2.0,
        retry_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < MIN_MAX_BYTES:
            raise ConfigError("max_bytes", f"expected an integer of at least {MIN_MAX_BYTES} bytes, got {max_bytes!r}")
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.lease = lease
        self.busy_timeout = busy_timeout
        self.retry_interval = retry_interval
        self._clock = clock
        # One write transaction stores at most this much, so the WAL (checkpointed past half of it) and the
        # database file's overshoot before the oldest rows give way stay small parts of the cap.
        self._chunk_bytes = min(max(max_bytes // 16, 64 * 1024), 2 * 1024 * 1024)
        # What the rows' pages may use; the rest of max_bytes is room for one chunk's overshoot of the
        # database file, the WAL (checkpointed at half a chunk, plus one chunk being written) and the -shm file.
        self._data_budget = max_bytes - 3 * self._chunk_bytes - _SHM_RESERVE
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._page_size = 4096
        self.dropped_total = 0
        # Why the spool cannot be written (None while it can), and when to try again.
        self.problem: str | None = None
        self._retry_at = 0.0
        _spools.add(self)

    @property
    def usable(self) -> bool:
        """False while the spool is known to be broken: the caller should keep alerts in memory."""
        return self.problem is None or time.monotonic() >= self._retry_at

    def check(self) -> str | None:
        """Open the file now (at construction) so a bad path is reported at once; returns the problem, if any."""
        try:
            with self._lock:
                self._connection()
                # Closed again: an application that forks after building its handler (gunicorn --preload) must not
                # hand an open SQLite connection to its children. The publisher thread reopens it when needed.
                self._close_connection()
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
        return self.problem

    # -- writing ---------------------------------------------------------------------------------------
    def add(self, payloads: Sequence[Payload]) -> dict[str, int]:
        """Store payloads; returns what the caps pushed out, as {fingerprint: count}.

        Raises :class:`SpoolUnavailable` when the file cannot be written: ``stored`` of the payloads (the first
        ones) are in the spool, the rest are the caller's to keep.
        """
        if not payloads:
            return {}
        if not self.usable:
            raise SpoolUnavailable(self.problem or "unavailable")
        now = self._clock()
        rows = [(now, str(p.get("fingerprint", "")), json.dumps(p, separators=(",", ":"))) for p in payloads]
        dropped: dict[str, int] = {}
        # A batch larger than the whole budget: its oldest give way before anything is written.
        skip = _oldest_beyond(rows, self._data_budget)
        for _, fp, _ in rows[:skip]:
            dropped[fp] = dropped.get(fp, 0) + 1
        stored = skip
        try:
            with self._lock:
                for chunk in _chunks(rows[skip:], self._chunk_bytes):
                    with self._transaction() as conn:
                        conn.executemany("INSERT INTO spool (spooled_at, fingerprint, body) VALUES (?, ?, ?)", chunk)
                        self._enforce_caps(conn, now, dropped)
                    stored += len(chunk)
                    self._checkpoint_if_large()
        except (sqlite3.Error, OSError) as exc:
            self.dropped_total += sum(dropped.values())
            raise SpoolUnavailable(self._failed(exc), stored, dropped) from exc
        self.dropped_total += sum(dropped.values())
        if self.problem is not None:
            self.problem = None
            log.warning("celery-alerting spool %s is usable again", self.path)
        return dropped

    def _enforce_caps(self, conn: sqlite3.Connection, now: float, dropped: dict[str, int]) -> None:
        cutoff = now - self.max_age
        # Rows are appended in time order: look at the oldest before scanning them all (no index on spooled_at;
        # the scan of a full spool on every add cost 20 ms).
        oldest = conn.execute("SELECT spooled_at FROM spool ORDER BY id LIMIT 1").fetchone()
        expired = []
        if oldest is not None and oldest[0] < cutoff:
            expired = conn.execute(
                "SELECT fingerprint, COUNT(*) FROM spool WHERE spooled_at < ? GROUP BY fingerprint", (cutoff,)
            ).fetchall()
        if expired:
            conn.execute("DELETE FROM spool WHERE spooled_at < ?", (cutoff,))
        for fp, n in expired:
            dropped[fp] = dropped.get(fp, 0) + n
        # The cap is on pages in use (what the file holds, or will once the WAL is checkpointed), not on the
        # rows' lengths: page slack and per-row overhead made the old byte count a third of the real size.
        while (excess := self._used_bytes(conn) - self._data_budget) > 0:
            victims: list[int] = []
            for row_id, fp, size in conn.execute(
                "SELECT id, fingerprint, LENGTH(body) + LENGTH(fingerprint) + ? FROM spool ORDER BY id",
                (_ROW_OVERHEAD,),
            ):
                if excess <= 0:
                    break
                victims.append(row_id)
                excess -= size
                dropped[fp] = dropped.get(fp, 0) + 1
            if not victims:
                break  # nothing left to drop: the schema alone is over a (tiny) budget
            conn.executemany("DELETE FROM spool WHERE id = ?", [(v,) for v in victims])

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        return int(pages - free) * self._page_size

    # -- replaying -------------------------------------------------------------------------------------
    def claim(self, limit: int) -> list[SpooledAlert]:
        """Up to ``limit`` unclaimed rows, oldest first, leased to this process.

        Tried even when writing new rows failed (what the file holds may still be readable); a failure here
        is logged once like any other and yields nothing: the rows stay for a later attempt or process.
        """
        now = self._clock()
        rows: list[tuple[int, str]] = []
        try:
            with self._lock:
                with self._transaction() as conn:
                    size = 0
                    unclaimed = conn.execute(
                        "SELECT id, body FROM spool WHERE claimed_until IS NULL OR claimed_until < ?"
                        " ORDER BY id LIMIT ?",
                        (now, limit),
                    ).fetchall()
                    for row_id, body in unclaimed:
                        # SQLite rewrites a whole row to update its claim: bound the bytes claimed at once, as
                        # for writes, or the WAL would hold a batch of the largest alerts.
                        if rows and size + len(body) > self._chunk_bytes // 2:
                            break
                        rows.append((row_id, body))
                        size += len(body)
                    conn.executemany(
                        "UPDATE spool SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                        [(self._owner, now + self.lease, row_id) for row_id, _ in rows],
                    )
                self._checkpoint_if_large()
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return []
        out = []
        for row_id, body in rows:
            try:
                out.append(SpooledAlert(row_id, json.loads(body)))
            except ValueError:  # a damaged row must not block the others: forget it, loudly
                log.error("celery-alerting spool %s: row %d is not valid JSON; dropped", self.path, row_id)
                self.dropped_total += 1
                self.remove([row_id])
        return out

    def remove(self, row_ids: Sequence[int]) -> None:
        """Forget rows that were published. A failure leaves them leased: replayed after the lease (the worker
        recognises an alert id it has already mailed)."""
        if row_ids:
            try:
                with self._lock:
                    with self._transaction() as conn:
                        conn.executemany("DELETE FROM spool WHERE id = ?", [(r,) for r in row_ids])
                        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM spool)").fetchone()[0]
                    if empty:
                        self._give_back_space()
                    else:
                        self._checkpoint_if_large()
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)

    def release(self, row_ids: Sequence[int]) -> None:
        """Give back claimed rows that could not be published (on failure, the lease expires them anyway)."""
        if row_ids:
            try:
                with self._lock, self._transaction() as conn:
                    conn.executemany(
                        "UPDATE spool SET claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?",
                        [(r, self._owner) for r in row_ids],
                    )
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)

    def count(self) -> int:
        with self._lock:
            (n,) = self._connection().execute("SELECT COUNT(*) FROM spool").fetchone()
        return int(n)

    def disk_bytes(self) -> int:
        """What the spool occupies on disk now: the database file, its -wal and its -shm."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):  # -wal and -shm exist only while a connection is open
                total += os.stat(self.path + suffix).st_size
        return total

    def close(self) -> None:
        with self._lock:
            self._close_connection()

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def after_fork_in_child(self) -> None:
        """Abandon the parent's connection (SQLite connections must not cross a fork); reopen lazily."""
        self._lock = threading.Lock()
        if self._conn is not None:
            # Never close it here, not even by letting it be collected: the child holds none of the parent's
            # POSIX locks, so SQLite would believe it was the last user of the file and checkpoint and delete
            # the -wal and -shm files the parent is still using.
            _INHERITED_CONNECTIONS.append(self._conn)
        self._conn = None
        self._owner = uuid.uuid4().hex

    # -- plumbing --------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # sqlite3 would create a missing file, but not a missing directory, and says only "unable to open"
            # for that and for a directory at the path: name the real reason.
            if os.path.isdir(self.path):
                raise OSError(f"{self.path} is a directory")
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise OSError(f"directory {parent} does not exist")
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            try:
                # Must precede the first table of a new file; ignored by existing files (which keep their mode).
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
                (self._page_size,) = conn.execute("PRAGMA page_size").fetchone()
                # The WAL is reset once checkpointed; this trims its file back (it would keep its peak size).
                conn.execute(f"PRAGMA journal_size_limit={self._chunk_bytes // 2}")
                conn.execute(f"PRAGMA wal_autocheckpoint={max(self._chunk_bytes // 2 // self._page_size, 1)}")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _transaction(self) -> _Transaction:
        return _Transaction(self._connection())

    def _checkpoint_if_large(self) -> None:
        """Copy the WAL into the database and truncate it once it passes half a chunk (caller holds the lock)."""
        try:
            wal = os.stat(self.path + "-wal").st_size
        except OSError:
            return
        if wal > self._chunk_bytes // 2 and self._conn is not None:
            # Busy (another process reading) is not an error: the result row says so, and the next write retries.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def _give_back_space(self) -> None:
        """The spool is empty: return its free pages and its WAL to the file system (caller holds the lock)."""
        if self._conn is not None:
            try:
                # executescript steps the pragma to the end; execute() would free a single page (one step).
                self._conn.executescript("PRAGMA incremental_vacuum;")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error:
                pass  # the rows are gone, which is what matters; the space comes back with a later attempt

    def _failed(self, exc: BaseException) -> str:
        """Note a failure; the first of a run is logged (once), with the path and the reason. Returns the reason."""
        reason = _describe(self.path, exc)
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the message says the same on 3.10
        if (code & 0xFF in _BUSY_CODES) if isinstance(code, int) else "is locked" in str(exc):
            return reason  # another process holds the lock for longer than busy_timeout: a moment, not a fault
        if self._conn is not None:  # a connection that failed may be wedged; the retry opens a fresh one
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self._retry_at = time.monotonic() + self.retry_interval
        if self.problem is None:
            self.problem = reason
            log.warning(
                "celery-alerting cannot use its spool %s (%s); keeping alerts in memory instead, trying the file "
                "again in %.0fs",
                self.path,
                reason,
                self.retry_interval,
            )
        return reason


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front so claims cannot interleave."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite has already rolled back after some errors (disk full, I/O)
            with contextlib.suppress(sqlite3.Error):  # the original error is the one worth reporting
                self.conn.execute("ROLLBACK")


def _describe(path: str, exc: BaseException) -> str:
    """A reason a person can act on: SQLite says "unable to open database file" for several different causes."""
    if isinstance(exc, OSError) and exc.strerror is None:
        return str(exc)  # raised by _connection with the reason already spelled out
    name = getattr(exc, "sqlite_errorname", None)
    if name == "SQLITE_CANTOPEN":
        parent = os.path.dirname(os.path.abspath(path))
        if not os.access(parent, os.W_OK):  # also False for root on a read-only file system
            return f"directory {parent} is not writable: a read-only file system, or permissions"
        if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is not readable and writable"
    return f"{exc} ({name})" if name else str(exc)


def _oldest_beyond(rows: Sequence[tuple[float, str, str]], budget: int) -> int:
    """How many of the oldest ``rows`` cannot fit in ``budget`` bytes with all the newer ones."""
    total = 0
    for i in range(len(rows) - 1, -1, -1):
        total += len(rows[i][2]) + len(rows[i][1]) + _ROW_OVERHEAD
        if total > budget:
            return i + 1
    return 0


def _chunks(rows: Sequence[tuple[float, str, str]], max_bytes: int) -> Iterator[Sequence[tuple[float, str, str]]]:
    """Consecutive runs of rows of about ``max_bytes`` each (at least one row each)."""
    start, size = 0, 0
    for i, (_, fp, body) in enumerate(rows):
        cost = len(body) + len(fp) + _ROW_OVERHEAD
        if i > start and size + cost > max_bytes:
            yield rows[start:i]
            start, size = i, 0
        size += cost
    if start < len(rows):
        yield rows[start:]


def parse_spool_path(setting: str, value: object) -> str | None:
    """The ``spool_path`` argument: None, or a file name. A malformed value is a :class:`ConfigError`; a path
    that is well-formed but unusable (missing directory, read-only, corrupt file) is not: see ``Spool.check``."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(setting, f"expected a file name, got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise ConfigError(setting, "expected a str path, not bytes")
    # "" and ":memory:" are valid to sqlite3 but hold nothing past the process: not a spool.
    if path.strip() in ("", ":memory:") or path.startswith("file:"):
        raise ConfigError(setting, f"expected the name of a file that outlives the process, got {path!r}")
    return path


# Every spool of this process abandons its parent's connection in a forked child (see Spool.after_fork_in_child).
_spools: weakref.WeakSet[Spool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for spool in list(_spools):
        spool.after_fork_in_child()


forks.on_fork(after_in_child=_after_fork_in_child)
