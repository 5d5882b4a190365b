"""``WorkerProcess``: a real ``celery worker`` process for tests, benchmarks and demos.

Started in its own process group (so the pool children go down with it), ready when the worker's
``worker_ready`` signal has written ``ALERTING_READY_FILE``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from alerting.shared.config import DEFAULT_QUEUE


class WorkerProcess:
    def __init__(
        self,
        env: Mapping[str, str],
        *,
        queue: str = DEFAULT_QUEUE,
        concurrency: int = 1,
        pool: str = "prefork",
        app: str = "alerting.worker",
        name: str | None = None,
        loglevel: str = "INFO",
        extra_args: Sequence[str] = (),
        cluster_chatter: bool = False,
    ) -> None:
        """``cluster_chatter=True`` runs the worker as users do, with Celery's gossip, mingle and heartbeat (off by
        default: they slow start-up and only matter to tests about several workers meeting)."""
        self.queue = queue
        self.name = name or f"alerting-{uuid.uuid4().hex[:8]}"
        self._dir = Path(tempfile.mkdtemp(prefix="alerting-worker-"))
        self.ready_file = self._dir / "ready"
        self.log_file = self._dir / "worker.log"
        self.env = {**os.environ, **env, "ALERTING_READY_FILE": str(self.ready_file)}
        self.args = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "-P", pool, "-c", str(concurrency), "-n", f"{self.name}@%h", "-Q", queue,
            *(() if cluster_chatter else ("--without-gossip", "--without-mingle", "--without-heartbeat")),
            "-l", loglevel, *extra_args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        self.ready_file.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"worker not ready within {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """Warm shutdown (SIGTERM to the main process, which stops its pool); SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: a crash, with no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)

    def children(self) -> list[int]:
        """The pool processes' pids (Linux)."""
        if self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def output(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
