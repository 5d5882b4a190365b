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
from tests.support.servers import RedisServer

# By default the tests start a throwaway redis-server of their own on a free port and flush only that: a
# developer's Redis is never touched. ALERTING_TEST_REDIS_URL points them at an existing server instead (its
# database is flushed before each test, so give them one that holds nothing of yours).
EXTERNAL_REDIS_URL = os.environ.get("ALERTING_TEST_REDIS_URL")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # lets fixtures see whether the test failed
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return bool(report is None or report.failed)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    if EXTERNAL_REDIS_URL:
        try:
            redis.Redis.from_url(EXTERNAL_REDIS_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            pytest.fail(f"ALERTING_TEST_REDIS_URL={EXTERNAL_REDIS_URL} does not answer ({exc})", pytrace=False)
        yield EXTERNAL_REDIS_URL
        return
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}. Install redis-server (Debian: apt-get install redis-server)", pytrace=False)
    yield f"redis://127.0.0.1:{server.port}/9"
    server.stop()


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
