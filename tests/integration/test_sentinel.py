"""Redis Sentinel as the broker and the state store: one sentinel:// URL each, with the master's name in it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.support.servers import RedisServer, SentinelServer


@pytest.fixture
def sentinel() -> Iterator[SentinelServer]:
    with RedisServer() as master, SentinelServer(master) as server:
        yield server


def test_alerts_flow_through_a_sentinel_managed_redis(
    sentinel: SentinelServer, queue: str, mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker({"ALERTING_BROKER_URL": sentinel.url})  # the state store defaults to the broker: Sentinel too
    handler = AlertHandler(broker_url=sentinel.url, queue=queue)
    log = logging.getLogger("test.sentinel")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.critical("primary failed over")
        (mail,) = mail_sink.wait_for(1, timeout=20)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert "primary failed over" in mail.subject
    master = redis.Redis(port=sentinel.master.port, decode_responses=True)
    assert master.keys("alerting:win:*")  # throttle state lives on the master Sentinel named
