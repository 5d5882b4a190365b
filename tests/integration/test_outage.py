"""The broker fails under a running application: stopped, or hung (accepts TCP, never answers).

The application must not notice, alerts must wait (bounded by ``capacity``) and arrive when Redis is back, and
whatever had to be dropped is counted and reported in the next alert that gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import wait_until, wait_until_settled
from tests.support.servers import HungServer, RedisServer, wait_for_port_free


def _log_timed(log: logging.Logger, messages: list[str], level: int = logging.CRITICAL) -> float:
    started = time.perf_counter()
    for m in messages:
        log.log(level, m, extra={"alert_key": m})
    return time.perf_counter() - started


def test_broker_stopped_the_app_does_not_notice_and_alerts_arrive_when_it_is_back(
    private_redis: RedisServer,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"ALERTING_BROKER_URL": private_redis.url}
    start_worker(env)
    log = logging.getLogger("test.outage.stopped")
    handler = make_handler(log, broker_url=private_redis.url)
    log.critical("before the outage")
    mail_sink.wait_for(1)

    private_redis.stop()
    messages = [f"during the outage {i}" for i in range(20)]
    elapsed = _log_timed(log, messages)
    wait_until(lambda: "cannot publish alerts" in caplog.text)  # the publisher tried, failed, and backs off
    wait_until(lambda: handler.stats()["buffered"] == 20)  # the failed batch is put back (right after that line)

    private_redis.start()  # same port, empty: as a restarted Redis without persistence
    mails = mail_sink.wait_for(21, timeout=45)
    assert {m.subject.split(": ", 1)[1] for m in mails[1:]} == set(messages)
    assert elapsed < 0.5, "logging 20 alerts must not wait for the broker"
    assert handler.stats()["dropped"] == 0


def test_broker_hung_the_app_does_not_notice_and_alerts_arrive_when_redis_answers_again(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hung = HungServer().start()
    log = logging.getLogger("test.outage.hung")
    handler = make_handler(log, broker_url=hung.url)
    messages = [f"while redis hangs {i}" for i in range(10)]

    elapsed = _log_timed(log, messages)
    # The first publish attempt waited for an answer that never came, and gave up.
    wait_until(lambda: "cannot publish alerts" in caplog.text)
    assert handler.stats()["published"] == 0
    assert elapsed < 0.5, "logging must not wait for a hung broker"

    hung.stop()
    wait_for_port_free(hung.port)
    with RedisServer(port=hung.port) as redis_back:
        start_worker({"ALERTING_BROKER_URL": redis_back.url})
        mails = mail_sink.wait_for(10, timeout=45)
        assert {m.subject.split(": ", 1)[1] for m in mails} == set(messages)


def test_overflow_drops_least_severe_then_oldest_and_the_next_alert_reports_the_drops(
    private_redis: RedisServer,
    queue: str,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    port = private_redis.port
    private_redis.stop()
    log = logging.getLogger("test.outage.overflow")
    log.setLevel(logging.ERROR)
    handler = make_handler(log, broker_url=f"redis://127.0.0.1:{port}/0", capacity=5, level=logging.ERROR)

    errors = [f"error {i}" for i in range(4)]
    criticals = [f"critical {i}" for i in range(6)]
    _log_timed(log, errors[:2], logging.ERROR)
    _log_timed(log, criticals, logging.CRITICAL)
    _log_timed(log, errors[2:], logging.ERROR)  # less severe than everything held: these give way themselves
    # The publisher thread may hold one entry for a failing attempt: it comes back (and gives way) within ms.
    wait_until(lambda: handler.stats()["dropped"] == 5, timeout=5)
    assert handler.stats()["buffered"] == 5

    private_redis.start()
    start_worker({"ALERTING_BROKER_URL": private_redis.url})
    mails = mail_sink.wait_for(5, timeout=45)
    assert {m.subject.split(": ", 1)[1] for m in mails} == set(criticals[1:])  # the oldest critical gave way too
    reports = [m.text() for m in mails if "Dropped before this alert" in m.text()]
    assert len(reports) == 1
    assert "5 alerts did not fit the application's buffer" in reports[0]
    wait_until_settled(redis.Redis.from_url(private_redis.url, decode_responses=True), queue)
    assert len(mail_sink.received) == 5
