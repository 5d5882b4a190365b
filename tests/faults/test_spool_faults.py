"""Fault 6: a spool_path that cannot be used must never lose more than no spool at all.

Each test runs a real application process (tests/support/app_process.py) against a real redis-server that is
stopped while the process logs, then started again; the alerts must all reach the queue, and the process must
say once, naming the path and the reason, that it keeps them in memory instead. The broken paths are real:
tmpfs mounts that are read-only or full (the tests run as root, which ignores file modes but not a read-only
or full file system), a missing directory, random bytes, a directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.integration.conftest import wait_until
from tests.support.servers import RedisServer

ROOT = Path(__file__).parents[2]
MOUNT = shutil.which("mount") or "/usr/bin/mount"
UMOUNT = shutil.which("umount") or "/usr/bin/umount"
N = 300  # alerts logged during the outage: within the default capacity (1000), so memory alone holds them all


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems under tmp_path (root only: no skip, a clear failure otherwise)."""
    mounted: list[Path] = []

    def mount(name: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(
            [MOUNT, "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"these fault tests mount a tmpfs and need root (CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run([UMOUNT, "-l", str(where)], capture_output=True, check=False)


def remount_read_only(where: Path) -> None:
    subprocess.run([MOUNT, "-o", "remount,ro", str(where)], capture_output=True, check=True)


def fill_up(where: Path, leave: int = 0) -> None:
    """Fill the file system at ``where`` until writing fails (or only ``leave`` bytes remain)."""
    with open(where / "filler", "wb", buffering=0) as f:
        try:
            while True:
                free = free_bytes(where)
                if free <= leave:
                    break
                f.write(b"\0" * min(64 * 1024, free - leave))
        except OSError:
            pass  # ENOSPC: full


def free_bytes(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


class Output:
    """A process's stdout and stderr, read as they come (threads), so a test can wait for a line."""

    def __init__(self, app: subprocess.Popen[str]) -> None:
        self.text = {"stdout": "", "stderr": ""}
        self._threads = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", app.stdout), ("stderr", app.stderr))
        ]
        for t in self._threads:
            t.start()

    def _read(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.text[name] += line

    def join(self) -> None:
        for t in self._threads:
            t.join(10)


def outage(
    private_redis: RedisServer, queue: str, spool: str, *, also: Callable[[str], object] = lambda stderr: True
) -> tuple[list[str], str]:
    """Redis down; the app logs N alerts and notices the outage; Redis back. Returns the messages on the queue and
    the app's stderr. ``also``: one more condition (on the app's stderr so far) to wait for before Redis is back."""
    private_redis.stop()
    app = subprocess.Popen(
        [sys.executable, "-m", "tests.support.app_process", "--broker", private_redis.url, "--queue", queue,
         "--spool", spool, "--count", str(N), "--linger", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out = Output(app)
    try:
        # Every alert was logged while Redis was down, and the publisher has failed to publish (so the alerts went
        # the outage's way: spool or memory) before Redis comes back.
        def ready() -> bool:
            stdout, stderr = out.text["stdout"], out.text["stderr"]
            return f"logged {N}" in stdout and "cannot publish alerts" in stderr and bool(also(stderr))

        wait_until(lambda: ready() or app.poll() is not None, timeout=20)
        assert app.poll() is None, out.text["stderr"][-3000:]
        private_redis.start()
        client = private_redis.client()
        try:
            wait_until(lambda: client.llen(queue) >= N, timeout=20)
        except pytest.fail.Exception:
            app.kill()
            app.wait(10)
            out.join()
            pytest.fail(
                f"{client.llen(queue)} of {N} alerts reached the queue; the app said:\n{out.text['stderr'][-3000:]}"
            )
        messages = []
        for raw in client.lrange(queue, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            messages.append(body[0][0]["message"])
    finally:
        app.kill()
        app.wait(10)
        out.join()
    return messages, out.text["stderr"]


def assert_all_delivered_and_said_once(messages: list[str], stderr: str, spool: str, reason: str) -> None:
    assert sorted(messages) == sorted(f"app alert {i}" for i in range(N)), (len(messages), stderr[-3000:])
    warnings = [line for line in stderr.splitlines() if "cannot use its spool" in line]
    assert len(warnings) == 1, stderr[-3000:]
    assert spool in warnings[0]
    assert reason in warnings[0]
    assert "lost" not in stderr


def test_a_spool_on_a_read_only_file_system_keeps_alerts_in_memory(
    private_redis: RedisServer, queue: str, mount_tmpfs: Callable[[str], Path]
) -> None:
    where = mount_tmpfs("ro")
    remount_read_only(where)
    spool = str(where / "alerts.sqlite")
    messages, stderr = outage(private_redis, queue, spool)
    assert_all_delivered_and_said_once(messages, stderr, spool, "not writable")


def test_a_spool_in_a_missing_directory_keeps_alerts_in_memory(
    private_redis: RedisServer, queue: str, tmp_path: Path
) -> None:
    spool = str(tmp_path / "no-such-dir" / "alerts.sqlite")
    messages, stderr = outage(private_redis, queue, spool)
    assert_all_delivered_and_said_once(messages, stderr, spool, "does not exist")


def test_a_corrupt_spool_file_keeps_alerts_in_memory_and_is_left_as_it_was(
    private_redis: RedisServer, queue: str, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.sqlite"
    garbage = os.urandom(64 * 1024)
    path.write_bytes(garbage)
    messages, stderr = outage(private_redis, queue, str(path))
    assert_all_delivered_and_said_once(messages, stderr, str(path), "not a database")
    assert path.read_bytes() == garbage  # someone may want to look at it: never overwritten


def test_a_directory_at_the_spool_path_keeps_alerts_in_memory(
    private_redis: RedisServer, queue: str, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.sqlite"
    path.mkdir()
    messages, stderr = outage(private_redis, queue, str(path))
    assert_all_delivered_and_said_once(messages, stderr, str(path), "is a directory")


def test_a_spool_on_a_full_disk_keeps_alerts_in_memory(
    private_redis: RedisServer, queue: str, mount_tmpfs: Callable[[str], Path]
) -> None:
    where = mount_tmpfs("full")
    fill_up(where)
    spool = str(where / "alerts.sqlite")
    messages, stderr = outage(private_redis, queue, spool)
    assert_all_delivered_and_said_once(messages, stderr, spool, "full")


def test_a_disk_that_fills_up_during_the_outage_loses_nothing(
    private_redis: RedisServer, queue: str, mount_tmpfs: Callable[[str], Path]
) -> None:
    # Room for the empty spool and some alerts, not for all: the spool works at first, then the disk is full.
    where = mount_tmpfs("filling")
    fill_up(where, leave=200 * 1024)
    spool = str(where / "alerts.sqlite")
    # Redis returns once the app has reported the failed write (today's wording, or the wording before the fix).
    failed_write = re.compile(r"cannot (use|write) its spool")
    messages, stderr = outage(private_redis, queue, spool, also=failed_write.search)
    assert f"spooling to {spool}" in stderr  # the spool worked when the outage began
    assert_all_delivered_and_said_once(messages, stderr, spool, "full")
