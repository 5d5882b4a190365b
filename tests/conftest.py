"""Fixtures shared by every test layer. Services are real; a missing one fails the run, it never skips it."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from alerting import AlertHandler

REDIS_HOST = os.environ.get("ALERTING_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("ALERTING_TEST_REDIS_PORT", "6379"))
# Tests own one database number so that other runs on the same Redis are not disturbed (and do not disturb us).
REDIS_DB = int(os.environ.get("ALERTING_TEST_REDIS_DB", "9"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # lets fixtures see whether the test failed
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return bool(report is None or report.failed)


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not answering at {url} ({exc}). Start one: "
            "redis-server --daemonize yes --port 6379 --save '' --appendonly no",
            pytrace=False,
        )
    return url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """A Redis database emptied for this test."""
    redis.Redis.from_url(redis_server_url).flushdb()
    return redis_server_url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own, so a leftover message from another test can never be consumed here."""
    return f"alerts-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_handler(redis_url: str, queue: str) -> Iterator[Callable[..., AlertHandler]]:
    """Build AlertHandlers publishing to this test's Redis and queue; closed (and detached) at teardown."""
    made: list[tuple[AlertHandler, logging.Logger | None]] = []

    def make(logger: logging.Logger | None = None, **kwargs: Any) -> AlertHandler:
        kwargs.setdefault("broker_url", redis_url)
        kwargs.setdefault("queue", queue)
        handler = AlertHandler(**kwargs)
        if logger is not None:
            logger.addHandler(handler)
            logger.propagate = False
        made.append((handler, logger))
        return handler

    yield make
    for handler, logger in made:
        if logger is not None:
            logger.removeHandler(handler)
        handler.close()
