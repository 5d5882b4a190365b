"""The whole path of one alert: logging call → AlertHandler → Redis → real worker process → real SMTP server."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until, wait_until_settled


def _charge(order: int) -> None:
    raise ZeroDivisionError(f"no money for order {order}")


def test_alert_logged_through_dictconfig_arrives_with_traceback(
    redis_url: str,
    redis_client: redis.Redis,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "alerts": {
                    "class": "alerting.AlertHandler",
                    "level": "CRITICAL",
                    "broker_url": redis_url,
                    "queue": queue,
                    "service": "shop",
                }
            },
            "loggers": {"shop.payments": {"handlers": ["alerts"], "level": "INFO", "propagate": False}},
        }
    )
    log = logging.getLogger("shop.payments")
    try:
        log.info("not an alert")
        log.error("not an alert either")
        try:
            _charge(42)
        except ZeroDivisionError:
            log.critical("charge failed for order %s", 42, exc_info=True, extra={"customer": "c-17"})

        (mail,) = mail_sink.wait_for(1)
        assert mail.subject == "[CRITICAL] shop.payments: charge failed for order 42"
        assert mail.rcpt_tos == ("ops@example.com", "oncall@example.com")
        text = mail.text()
        assert "Traceback (most recent call last)" in text
        assert "ZeroDivisionError: no money for order 42" in text
        assert "in _charge" in text
        assert "shop" in text
        assert "customer: c-17" in text
        assert "<pre" in mail.html()
        assert "no money for order 42" in mail.html()
        for handler in log.handlers:
            handler.flush()  # whatever the handler took is published...
        wait_until_settled(redis_client, queue)  # ...and handled by the worker
        assert len(mail_sink.received) == 1, "only the CRITICAL record becomes an alert"
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()


def test_451_twice_is_retried_and_delivered_exactly_once(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    start_worker()
    mail_sink.fail_next("451 4.3.0 Mailbox busy, try again later", times=2)
    log = logging.getLogger("test.retry451")
    make_handler(log)

    log.critical("disk full on db-1")

    (mail,) = mail_sink.wait_for(1)
    assert "disk full on db-1" in mail.subject
    wait_until_settled(redis_client, queue)  # no retry left waiting in the worker
    assert len(mail_sink.received) == 1
    assert mail_sink.attempts == 3  # two refusals, then the one accepted copy


def test_550_is_dead_lettered_after_one_attempt(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    start_worker()
    mail_sink.reject_all("550 5.7.1 Relaying denied")
    log = logging.getLogger("test.reject550")
    make_handler(log)

    log.critical("payment provider down")

    (raw,) = wait_until(lambda: dead_letters(redis_client))
    record = json.loads(raw)
    assert "550" in record["reason"]
    assert "Relaying denied" in record["reason"]
    assert record["attempts"] == 1
    assert record["kind"] == "alert"
    assert record["payload"]["message"] == "payment provider down"
    wait_until_settled(redis_client, queue)  # a retry would wait in the worker (unacked) for its countdown
    assert mail_sink.attempts == 1
    assert mail_sink.received == []


def test_slow_smtp_server_does_not_slow_logging_threads(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    mail_sink.delay = 2.0  # seconds per message, as a struggling mail server
    start_worker()
    log = logging.getLogger("test.slowsmtp")
    make_handler(log)
    timings: list[float] = []
    lock = threading.Lock()

    def app_thread(n: int) -> None:
        for i in range(50):
            started = time.perf_counter()
            log.critical("thread %d: request %d failed", n, i)
            with lock:
                timings.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=app_thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    # 200 alerts were logged in less time than the server needs for a single message: nobody waited for SMTP.
    assert len(timings) == 200
    assert elapsed < mail_sink.delay
    (mail,) = mail_sink.wait_for(1, timeout=15)
    assert "request" in mail.subject


def test_worker_refuses_to_start_on_a_bad_setting(worker_env: dict[str, str], queue: str) -> None:
    env = {**worker_env, "ALERTING_SMTP_PORT": "not-a-port"}
    worker = WorkerProcess(env, queue=queue)
    proc = subprocess.run(worker.args, env=worker.env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 78
    assert "ALERTING_SMTP_PORT" in proc.stderr
    assert "not-a-port" in proc.stderr


def test_every_bad_setting_is_named_at_worker_start(worker_env: dict[str, str]) -> None:
    cases: dict[str, Any] = {
        "ALERTING_SMTP_SECURITY": "tls",
        "ALERTING_MAIL_TO": "",
        "ALERTING_RATE_LIMIT": "lots",
        "ALERTING_THROTTLE_WINDOW": "-5",
    }
    for name, value in cases.items():
        env = {**os.environ, **worker_env, name: value}
        proc = subprocess.run(
            [sys.executable, "-c", "import alerting.worker"], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 78, name
        assert f"configuration error: {name}:" in proc.stderr
