"""RabbitMQ as the broker, Redis as the state store (ALERTING_STATE_URL): the whole path, the start-up check, and an
unreachable RabbitMQ on the application side."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from kombu import Connection

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import task_outcomes, wait_until
from tests.support.servers import free_port

pytestmark = pytest.mark.rabbitmq

RABBITMQ_URL = os.environ.get("ALERTING_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    try:
        with Connection(RABBITMQ_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is not answering at {Connection(RABBITMQ_URL).as_uri()} ({type(exc).__name__}: {exc}). "
            "Start it (guest/guest, vhost /): `rabbitmq-server -detached`, `systemctl start rabbitmq-server`, "
            "or `docker run -d -p 5672:5672 rabbitmq:3`; or set ALERTING_TEST_RABBITMQ_URL.",
            pytrace=False,
        )
    return RABBITMQ_URL


@pytest.fixture
def rabbit_queue(rabbitmq_url: str, queue: str) -> Iterator[str]:
    """This test's queue on RabbitMQ; it and the exchange Celery declares with it are deleted at teardown.

    Request it before ``start_worker`` and ``make_handler`` so that it is torn down after them."""
    yield queue
    with Connection(rabbitmq_url, connect_timeout=3) as conn:
        for delete in ("queue_delete", "exchange_delete"):
            channel = conn.channel()  # a failed delete closes its channel: one each
            with contextlib.suppress(Exception):
                getattr(channel, delete)(queue)
            with contextlib.suppress(Exception):
                channel.close()  # type: ignore[attr-defined]  # kombu's StdChannel declares no close(); Channel has it


def _ledger_alert(log: logging.Logger) -> None:
    log.critical("ledger export stalled")


def test_alert_through_rabbitmq_is_mailed_and_its_throttle_state_is_in_redis(
    rabbit_queue: str,
    rabbitmq_url: str,
    redis_url: str,
    redis_client: redis.Redis,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(
        {"ALERTING_BROKER_URL": rabbitmq_url, "ALERTING_STATE_URL": redis_url, "ALERTING_THROTTLE_WINDOW": "30"}
    )
    log = logging.getLogger("test.rabbitmq")
    handler = make_handler(log, broker_url=rabbitmq_url, coalesce_interval=0)  # each occurrence its own message

    _ledger_alert(log)

    (mail,) = mail_sink.wait_for(1)
    assert mail.subject == "[CRITICAL] test.rabbitmq: ledger export stalled"
    (window,) = redis_client.keys("alerting:win:*")  # the throttle window, opened in the state Redis

    _ledger_alert(log)  # a repeat inside the 30 s window (same call site, so the same fingerprint)

    wait_until(lambda: redis_client.hget(window, "repeats") == "1")  # counted in Redis for the digest...
    wait_until(lambda: len(task_outcomes(worker)) == 2)  # (the repeat's task has finished)
    assert len(mail_sink.received) == 1  # ...and not mailed
    assert handler.stats()["published"] == 2
    # Both messages went through RabbitMQ: kombu's Redis transport left nothing in the state database.
    assert not redis_client.exists(rabbit_queue)
    assert not redis_client.keys("_kombu*")
    assert "Connected to amqp://guest:**@127.0.0.1:5672//" in worker.output()


def test_worker_on_rabbitmq_without_a_state_url_refuses_to_start_naming_it(
    worker_env: dict[str, str], queue: str
) -> None:
    worker = WorkerProcess({**worker_env, "ALERTING_BROKER_URL": RABBITMQ_URL}, queue=queue)
    worker.env.pop("ALERTING_STATE_URL", None)  # whatever the developer's shell holds
    proc = subprocess.run(worker.args, env=worker.env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 78  # EX_CONFIG: before connecting to anything
    assert "celery-alerting: configuration error: ALERTING_STATE_URL: required when the broker is not Redis" in (
        proc.stderr
    )


def test_unreachable_rabbitmq_neither_blocks_logging_nor_delays_exit_and_the_loss_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flush_timeout = 1.0
    handler = AlertHandler(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}//", flush_timeout=flush_timeout)
    log = logging.getLogger("test.rabbitmq.down")
    log.addHandler(handler)
    log.propagate = False
    publisher_log = logging.getLogger("alerting.publisher")
    publisher_log.addHandler(caplog.handler)  # directly: whatever another test did to propagation
    try:
        started = time.perf_counter()
        log.critical("settlement batch rejected")
        emit_s = time.perf_counter() - started
        assert emit_s < 0.05

        # The publisher learns of the outage at once (refused connection), not after a connect timeout.
        wait_until(lambda: "cannot publish alerts" in caplog.text, timeout=flush_timeout)

        started = time.perf_counter()
        handler.close()
        close_s = time.perf_counter() - started
    finally:
        log.removeHandler(handler)
        publisher_log.removeHandler(caplog.handler)
        handler.close()
    assert close_s <= flush_timeout + 0.3
    assert handler.stats()["lost"] == 1
    assert "lost 1 alerts" in caplog.text
