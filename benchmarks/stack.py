"""The services the benchmarks and the demo run against: a Redis check, isolated names, a real alert worker. I/O.

Every run gets its own queue and throttle-state key prefix, so it never disturbs a real ``alerts`` queue or
another run's throttle windows, and removes its keys afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess

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


@contextlib.contextmanager
def alert_worker(iso: Isolation, sink: MailSink, **env: str) -> Iterator[WorkerProcess]:
    """A real ``celery -A alerting.worker worker`` process consuming ``iso.queue`` and mailing ``sink``."""
    worker = WorkerProcess(iso.worker_env(sink.port, **env), queue=iso.queue, loglevel="WARNING")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
