"""Integration fixtures: a real SMTP server (aiosmtpd), real `celery worker` processes, real Redis."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from alerting.shared.stores import StoreConfig
from alerting.shared.stores.redis_store import RedisStore
from alerting.shared.wire import TASK_NAME
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.conftest import failed
from tests.support.servers import RedisServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and start again (fault injection)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    with MailSink() as sink:
        yield sink


@pytest.fixture
def worker_env(redis_url: str, mail_sink: MailSink) -> dict[str, str]:
    """Worker settings for tests: fast retries, short poll; tests override what they exercise."""
    return {
        "ALERTING_BROKER_URL": redis_url,
        "ALERTING_SMTP_HOST": "127.0.0.1",
        "ALERTING_SMTP_PORT": str(mail_sink.port),
        "ALERTING_SMTP_TIMEOUT": "5",
        "ALERTING_MAIL_FROM": "alerts@example.com",
        "ALERTING_MAIL_TO": "ops@example.com,oncall@example.com",
        "ALERTING_RETRY_BACKOFF": "0.1",
        "ALERTING_RETRY_BACKOFF_MAX": "0.5",
        "ALERTING_DIGEST_POLL_INTERVAL": "0.2",
        "ALERTING_RATE_LIMIT": "off",
    }


@pytest.fixture
def start_worker(
    request: pytest.FixtureRequest, worker_env: dict[str, str], queue: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes on this test's queue; stopped at teardown (output shown if the test failed)."""
    workers: list[WorkerProcess] = []

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> WorkerProcess:
        kwargs.setdefault("queue", queue)
        worker = WorkerProcess({**worker_env, **(env or {})}, **kwargs)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
    if failed(request):
        for worker in workers:
            sys.stderr.write(f"\n---- output of worker {worker.name} ----\n{worker.output()[-6000:]}\n")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


def _nothing_in_flight(client: redis.Redis, queue: str, prefix: str) -> bool:
    # Tasks are acknowledged late: a message stays in kombu's "unacked" hash from the moment a worker takes it
    # until its task has finished (a retry waiting for its countdown is held there too).
    if client.llen(queue) or client.hlen("unacked"):
        return False
    status = RedisStore(client, StoreConfig(window=0, rate=None, lease=0, ttl=0, prefix=prefix)).status(now=time.time())
    return status.owed_digests == 0 and status.outbox == 0 and status.folded == 0


def wait_until_settled(client: redis.Redis, queue: str, prefix: str = "alerting", timeout: float = 15.0) -> None:
    """Wait until the workers have handled everything published to ``queue`` and the state store owes no mail (no
    digest or summary pending): from then on no further mail can come, so a test can assert the final count.

    Seen on two polls in a row: between a worker's BRPOP and its recording the message as unacked (one round trip)
    the message is in neither place."""
    streak = 0

    def twice_in_a_row() -> bool:
        nonlocal streak
        streak = streak + 1 if _nothing_in_flight(client, queue, prefix) else 0
        return streak >= 2

    wait_until(twice_in_a_row, timeout=timeout)


_FINISHED = re.compile(rf"Task {re.escape(TASK_NAME)}\[[^\]]+\] succeeded in \S+: '(\w+)'")


def task_outcomes(worker: WorkerProcess) -> list[str]:
    """What each finished alert task returned (sent, suppressed, folded, duplicate, dead), from Celery's INFO line
    in the worker's log: the event that proves a message was handled, on any broker."""
    return _FINISHED.findall(worker.output())


def dead_letters(client: redis.Redis, prefix: str = "alerting") -> list[str]:
    items = client.lrange(f"{prefix}:dead", 0, -1)
    return [item.decode() if isinstance(item, bytes) else item for item in items]  # from either kind of client
