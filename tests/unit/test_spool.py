"""The SQLite spool on its own (a local file, no network): its disk cap, and how it fails when it cannot be used."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from alerting import AlertHandler
from alerting.errors import ConfigError
from alerting.producer.spool import _INHERITED_CONNECTIONS, MIN_MAX_BYTES, Spool, SpoolUnavailable, _spools

CAP = MIN_MAX_BYTES  # 1 MiB: small enough to overfill many times over in well under a second


def payloads(n: int, *, size: int = 1000, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"v": 1, "id": f"id{i:06d}", "fingerprint": f"fp{i}", "message": "x" * size} for i in range(start, start + n)
    ]


def spooled_ids(spool: Spool) -> list[str]:
    """Every alert the spool holds, oldest first (claimed: each claim returns a bounded number of bytes)."""
    ids: list[str] = []
    while rows := spool.claim(1000):
        ids += [row.payload["id"] for row in rows]
    return ids


def test_the_bytes_on_disk_stay_within_max_bytes_however_far_the_spool_is_overfilled(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    added, peak = 0, 0
    # 3.5 MiB of alerts into a 1 MiB spool: small ones in batches, and batches of the largest payloads (64 KiB cap).
    for round_ in range(12):
        batch = payloads(100, start=added) if round_ % 4 else payloads(12, size=60_000, start=added)
        spool.add(batch)
        added += len(batch)
        peak = max(peak, spool.disk_bytes())  # database file + -wal + -shm, as os.stat sees them
    assert peak <= CAP  # the cap is what the disk holds, with no slack beyond it
    kept = spool.count()
    assert spool.dropped_total == added - kept  # every alert that gave way is counted
    assert kept > 0


def test_the_oldest_alerts_give_way_and_the_newest_are_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    dropped: dict[str, int] = {}
    for start in range(0, 3000, 100):
        for fp, n in spool.add(payloads(100, start=start)).items():
            dropped[fp] = dropped.get(fp, 0) + n
    ids = spooled_ids(spool)
    assert ids == sorted(ids)
    assert ids[-1] == "id002999"  # the newest survived
    assert len(ids) + sum(dropped.values()) == 3000
    assert dropped.get("fp0") == 1  # the oldest was dropped, and reported by fingerprint
    assert "fp2999" not in dropped


def test_a_single_batch_larger_than_the_cap_keeps_its_newest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    dropped = spool.add(payloads(3000))
    assert spool.disk_bytes() <= CAP
    assert spool.count() + sum(dropped.values()) == 3000
    assert spooled_ids(spool)[-1] == "id002999"


def test_an_emptied_spool_gives_its_disk_space_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    for start in range(0, 1000, 100):
        spool.add(payloads(100, start=start))
    assert spool.disk_bytes() > CAP // 2
    while rows := spool.claim(100):
        spool.remove([r.row_id for r in rows])
    assert spool.count() == 0
    assert spool.disk_bytes() < 100 * 1024  # a few pages and the -shm index, not the peak


def test_replaying_a_spool_of_the_largest_alerts_stays_within_the_cap(tmp_path: Path) -> None:
    # Claiming rewrites each claimed row (SQLite updates whole rows): 100 alerts of 60 KB would put 6 MB in the WAL.
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    spool.add(payloads(16, size=60_000))
    peak, replayed = 0, 0
    while rows := spool.claim(100):
        peak = max(peak, spool.disk_bytes())
        spool.remove([r.row_id for r in rows])
        replayed += len(rows)
    assert replayed > 0
    assert peak <= CAP


def test_max_bytes_below_the_minimum_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        Spool(tmp_path / "s.sqlite", max_bytes=64 * 1024)


# -- a spool that cannot be used ---------------------------------------------------------------------------------
def broken_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(os.urandom(8192))
    directory = tmp_path / "dir.sqlite"
    directory.mkdir()
    return {
        "missing directory": (tmp_path / "nope" / "s.sqlite", "does not exist"),
        "directory": (directory, "is a directory"),
        "corrupt": (corrupt, "not a database"),
    }


@pytest.mark.parametrize("case", ["missing directory", "directory", "corrupt"])
def test_an_unusable_path_is_reported_once_with_the_reason_and_add_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    path, reason = broken_paths(tmp_path)[case]
    spool = Spool(path)
    with caplog.at_level(logging.WARNING, logger="alerting"):
        assert reason in (spool.check() or "")
        assert not spool.usable
        for _ in range(3):
            with pytest.raises(SpoolUnavailable) as failure:
                spool.add(payloads(2))
            assert failure.value.stored == 0  # the caller keeps all of them
        assert spool.claim(10) == []  # replaying finds nothing, and does not raise
        spool.remove([1])
        spool.release([1])
    warnings = [r for r in caplog.records if r.name.startswith("alerting") and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert reason in warnings[0].getMessage()


def test_a_file_corrupted_after_start_makes_add_refuse_instead_of_raising_sqlite_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    spool.add(payloads(3))
    spool.close()
    path.write_bytes(os.urandom(16384))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(SpoolUnavailable, match="not a database"):
        spool.add(payloads(1))
    assert spool.problem is not None


def test_the_spool_is_tried_again_after_retry_interval_and_says_it_is_usable_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later" / "s.sqlite"
    spool = Spool(path, retry_interval=0.0)
    with caplog.at_level(logging.WARNING, logger="alerting"):
        assert spool.check() is not None
        path.parent.mkdir()  # the volume got mounted, the directory created
        spool.add(payloads(2))
    assert spool.problem is None
    assert spool.count() == 2
    assert "usable again" in caplog.records[-1].getMessage()


def test_a_lock_held_by_another_process_is_a_moment_not_a_broken_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, busy_timeout=0.05)
    spool.add(payloads(1))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="alerting"), pytest.raises(SpoolUnavailable):
            spool.add(payloads(1, start=1))
        assert spool.problem is None  # the next attempt writes to the file again
        assert spool.usable
        assert not caplog.records
    finally:
        other.execute("ROLLBACK")
        other.close()
    spool.add(payloads(1, start=2))
    assert spool.count() == 2


@pytest.mark.parametrize("value", ["", ":memory:", 42, b"/tmp/x.sqlite"])
def test_a_malformed_spool_path_is_a_config_error_naming_it(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^spool_path"):
        AlertHandler(broker_url="redis://127.0.0.1:1/0", spool_path=value)  # type: ignore[arg-type]


def test_an_unusable_spool_path_does_not_stop_the_handler_from_being_built(tmp_path: Path) -> None:
    # dictConfig builds the handler while the application starts: raising here would stop the application.
    handler = AlertHandler(broker_url="redis://127.0.0.1:1/0", spool_path=str(tmp_path / "nope" / "s.sqlite"))
    try:
        assert handler.stats()["spool_unusable"] == 1
    finally:
        handler.close()


def test_a_forked_child_writes_through_its_own_connection_and_the_parents_keeps_working(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    spool.add(payloads(1))  # the parent's connection is open (WAL mode) when it forks
    parents = spool._conn
    pid = os.fork()
    if pid == 0:  # the child: alerting.shared.forks ran Spool.after_fork_in_child; leave without pytest's teardown
        code = 1
        try:
            if spool._conn is None and spool in _spools:
                spool.add(payloads(1, start=1))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert spool._conn is parents  # the parent's is untouched
    spool.add(payloads(1, start=2))
    assert spooled_ids(spool) == ["id000000", "id000001", "id000002"]


def test_after_fork_the_inherited_connection_is_kept_open_not_closed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=CAP)
    spool.add(payloads(1))
    inherited = spool._conn
    assert inherited is not None
    spool.after_fork_in_child()
    # Closing it in a child would make SQLite delete the -wal and -shm files its parent still uses.
    assert spool._conn is None
    assert inherited in _INHERITED_CONNECTIONS
    inherited.execute("SELECT 1")  # still open
    _INHERITED_CONNECTIONS.remove(inherited)
    assert spool.count() == 1  # and the spool reopens on its own
