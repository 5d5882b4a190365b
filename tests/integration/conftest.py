"""Integration fixtures: a real SMTP server (aiosmtpd), real `celery worker` processes, real Redis."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

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


def dead_letters(client: redis.Redis, prefix: str = "alerting") -> list[str]:
    return list(client.lrange(f"{prefix}:dead", 0, -1))
