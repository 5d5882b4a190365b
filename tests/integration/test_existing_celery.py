"""Applications that already run Celery: publishing through their own app, and delivering in their own worker."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery

from alerting import AlertHandler
from alerting.contrib.celery import configure
from alerting.errors import ConfigError
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import wait_until_settled

USER_APP = "tests.support.user_celery"


@pytest.fixture
def their_app(redis_url: str) -> Iterator[Celery]:
    """An application's Celery app as many legacy ones are: pickle by default (the handler must still send JSON)."""
    app = Celery("shop", broker=redis_url, set_as_current=False)
    app.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    yield app
    app.close()


def test_alert_published_through_the_applications_own_celery_app_is_mailed_by_our_worker(
    their_app: Celery, queue: str, mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()  # the bundled worker: JSON only, so the alert arriving proves it travelled as JSON
    log = logging.getLogger("test.publish")
    handler = AlertHandler(celery_app=their_app, queue=queue, service="shop")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.critical("inventory sync failed for %s", "warehouse-3")

        (mail,) = mail_sink.wait_for(1)
        assert mail.subject == "[CRITICAL] test.publish: inventory sync failed for warehouse-3"
        assert "shop" in mail.text()
        assert handler.flush(timeout=5)
        assert handler.stats()["published"] == 1
    finally:
        log.removeHandler(handler)
        handler.close()
    assert their_app.conf.broker_url  # the application's app is not closed by the handler: it is theirs
    with their_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)


def test_applications_own_worker_with_configure_mails_alerts_and_digests(
    redis_url: str,
    redis_client: redis.Redis,
    queue: str,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    env = {
        "USERAPP_BROKER_URL": redis_url,
        "ALERTING_STATE_URL": redis_url,
        "ALERTING_QUEUE": queue,
        "ALERTING_THROTTLE_WINDOW": "2",
    }
    worker = start_worker(env, app=USER_APP)  # celery -A tests.support.user_celery worker -Q <queue>
    log = logging.getLogger("test.ownworker")
    make_handler(log, coalesce_interval=0)  # every occurrence its own task: the worker's throttle sees them all

    for attempt in range(3):
        log.critical("payment gateway timed out", extra={"attempt": attempt})

    first, digest = mail_sink.wait_for(2, timeout=15)
    assert first.subject == "[CRITICAL] test.ownworker: payment gateway timed out"
    assert first.message["X-Alerting-Digest-Count"] is None
    assert digest.message["X-Alerting-Digest-Count"] == "2"  # the two repeats, mailed when the 2 s window ended
    assert "(2 more in 2 s)" in digest.subject
    wait_until_settled(redis_client, queue)  # every message handled, no digest owed: no further mail can come
    assert len(mail_sink.received) == 2
    output = worker.output()
    assert ".> app:         shop:" in output  # the application's worker (its banner), not alerting.worker's
    assert f"celery-alerting: shop delivers alerts; digests to queue {queue}" in output


def test_applications_own_worker_without_a_state_url_refuses_to_start_naming_it(
    worker_env: dict[str, str], queue: str
) -> None:
    env = {k: v for k, v in worker_env.items() if k != "ALERTING_BROKER_URL"}
    worker = WorkerProcess({**env, "USERAPP_BROKER_URL": worker_env["ALERTING_BROKER_URL"]}, queue=queue, app=USER_APP)
    for name in ("ALERTING_STATE_URL", "ALERTING_BROKER_URL", "ALERTING_QUEUE"):
        worker.env.pop(name, None)  # whatever the developer's shell holds
    worker.env["ALERTING_QUEUE"] = queue
    proc = subprocess.run(worker.args, env=worker.env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 78, proc.stderr[-2000:]
    assert "celery-alerting: configuration error: ALERTING_STATE_URL:" in proc.stderr


def test_configure_refuses_an_app_that_accepts_pickle() -> None:
    app = Celery("legacy", set_as_current=False)
    app.conf.accept_content = ["pickle", "json"]
    with pytest.raises(ConfigError) as err:
        configure(app)
    assert err.value.setting == "accept_content"
    assert "['pickle']" in str(err.value)


def test_configure_puts_our_route_ahead_of_the_applications_own() -> None:
    app = Celery("routed", set_as_current=False)
    app.conf.task_routes = {"*": {"queue": "everything"}}
    configure(app, queue="alerts-x")
    assert app.amqp.router.route({}, "alerting.deliver")["queue"].name == "alerts-x"
    assert app.amqp.router.route({}, "shop.charge")["queue"].name == "everything"
    assert "alerting.consumer.tasks" in app.conf.include
