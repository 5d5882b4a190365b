"""The services the benchmarks and the demo run against: a Redis check, isolated names, a real alert worker. I/O.

Every run gets its own queue and throttle-state key prefix, so it never disturbs a real ``alerts`` queue or
another run's throttle windows, and removes its keys afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis

from alerting.testing.mailsink import SMTPController
from alerting.testing.workerproc import WorkerProcess

HERE = Path(__file__).resolve().parent

# Used when ALERTING_BROKER_URL is not set; each run still gets a queue and key prefix of its own.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
MAIL_FROM = "app@bench.example"
MAIL_TO = "oncall@bench.example"


class RedisUnavailable(RuntimeError):
    pass


def broker_url() -> str:
    return os.environ.get("ALERTING_BROKER_URL") or DEFAULT_BROKER_URL


def require_redis(url: str) -> None:
    """Raise :class:`RedisUnavailable` with a message saying what to do when Redis does not answer."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RedisUnavailable(
            f"Redis does not answer at {url} ({exc}).\n"
            "Start one with: redis-server --port 6379 --save '' --appendonly no --daemonize yes\n"
            "or point ALERTING_BROKER_URL at a Redis you may use."
        ) from None
    finally:
        client.close()


@dataclass(frozen=True)
class Isolation:
    """Names that keep one run apart from everything else in the same Redis."""

    broker_url: str
    queue: str
    key_prefix: str

    @classmethod
    def fresh(cls, url: str, tag: str = "bench") -> Isolation:
        token = uuid.uuid4().hex[:10]
        return cls(url, f"{tag}-{token}", f"{tag}-{token}")

    def worker_env(self, smtp_port: int, **overrides: str) -> dict[str, str]:
        env = {
            "ALERTING_BROKER_URL": self.broker_url,
            "ALERTING_STATE_URL": "",
            "ALERTING_QUEUE": self.queue,
            "ALERTING_KEY_PREFIX": self.key_prefix,
            "ALERTING_SMTP_HOST": "127.0.0.1",
            "ALERTING_SMTP_PORT": str(smtp_port),
            "ALERTING_SMTP_SECURITY": "none",
            "ALERTING_SMTP_USER": "",
            "ALERTING_SMTP_PASSWORD": "",
            "ALERTING_SMTP_PASSWORD_FILE": "",
            "ALERTING_SUBJECT_PREFIX": "",
            "ALERTING_MAIL_FROM": MAIL_FROM,
            "ALERTING_MAIL_TO": MAIL_TO,
        }
        env.update(overrides)
        return env

    def cleanup(self) -> int:
        """Delete this run's queue, its kombu bindings and its throttle state. Returns the keys removed."""
        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=1.0, socket_timeout=5.0)
        try:
            keys: set[bytes] = set()
            for pattern in (f"{self.key_prefix}*", f"*{self.queue}*"):
                keys.update(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
            return len(keys)
        except redis.RedisError:
            return 0
        finally:
            client.close()

    def drop_queue(self) -> None:
        """Empty the queue (a run that publishes with no worker consuming must not pile messages up)."""
        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=1.0, socket_timeout=5.0)
        try:
            client.delete(self.queue)
        finally:
            client.close()


class SMTPServer(Protocol):
    @property
    def port(self) -> int: ...


@contextlib.contextmanager
def alert_worker(
    iso: Isolation,
    sink: SMTPServer,
    *,
    app: str = "alerting.worker",
    extra_args: Sequence[str] = (),
    **env: str,
) -> Iterator[WorkerProcess]:
    """A real ``celery -A alerting.worker worker`` process (one prefork pool process) consuming ``iso.queue`` and
    mailing ``sink``. ``app="probe_worker"`` runs the same worker with the benchmarks' probe (see probe_worker.py)."""
    if app == "probe_worker":
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])), **env}
    worker = WorkerProcess(
        iso.worker_env(sink.port, **env), queue=iso.queue, loglevel="WARNING", app=app, extra_args=extra_args
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


class _AcceptAll:
    """aiosmtpd handler: accept every message and note when, without parsing it."""

    def __init__(self, sink: FastSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        with sink._cond:
            sink.accepted.append(time.time())
            sink._cond.notify_all()
        return "250 2.0.0 OK"


class FastSink:
    """A fast local SMTP server for throughput figures: aiosmtpd that accepts every message and records only the
    time (``MailSink`` parses each message with the email package, ~1 ms of Python that would cap both sides)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.accepted: list[float] = []  # time.time() of each accepted message
        self._cond = threading.Condition()
        self._controller = SMTPController(_AcceptAll(self), hostname=host, port=0)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def __enter__(self) -> FastSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def count(self) -> int:
        with self._cond:
            return len(self.accepted)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[float]:
        """Wait until ``count`` messages in all were accepted; returns all acceptance times."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.accepted) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} messages, got {len(self.accepted)} within {timeout}s")
                self._cond.wait(remaining)
            return list(self.accepted)


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port, no persistence; yields its URL. Its counters
    (``INFO commandstats``) and CPU time are this run's alone."""
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not on PATH (Debian: apt-get install -y redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                require_redis(url)
                break
            except RedisUnavailable:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def redis_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_calls(url: str) -> int:
    """Commands Redis has executed so far (sum of ``INFO commandstats`` calls), minus nothing: take deltas."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        return sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict))
    finally:
        client.close()
