"""Workers die mid-send: the alert is still delivered, once; a redelivered alert is neither re-mailed nor counted."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

import redis

from alerting import AlertHandler
from alerting.producer.redact import Redactor
from alerting.producer.transport import CeleryTransport, publisher_app
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import wait_until, wait_until_settled
from tests.unit.factories import build_payload, make_record


def test_a_pool_process_killed_while_sending_still_delivers_the_alert_once(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    mail_sink.delay = 1.5  # a slow server: the send is in progress long enough to be killed
    worker = start_worker()
    log = logging.getLogger("test.crash.child")
    make_handler(log)

    log.critical("raid array degraded")
    wait_until(lambda: mail_sink.attempts == 1)
    (child,) = worker.children()
    os.kill(child, signal.SIGKILL)  # the pool process dies mid-DATA; the main process survives

    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert "raid array degraded" in mail.subject
    assert mail_sink.aborted == 1  # the first attempt never completed...
    wait_until_settled(redis_client, queue)
    assert len(mail_sink.received) == 1  # ...and the alert arrived exactly once


def test_a_whole_worker_killed_while_sending_is_redelivered_after_the_visibility_timeout(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    # The shortest visibility timeout the worker accepts with this SMTP timeout: above the task's hard time limit
    # (3 x 1.2 + 15 s), or a task still running would be handed to a second worker.
    visibility = 19.0
    env = {"ALERTING_VISIBILITY_TIMEOUT": f"{visibility:g}", "ALERTING_SMTP_TIMEOUT": "1.2"}
    mail_sink.delay = 1.0
    first = start_worker(env)
    log = logging.getLogger("test.crash.worker")
    make_handler(log)

    log.critical("primary database unreachable")
    wait_until(lambda: mail_sink.attempts == 1)
    first.kill()  # SIGKILL to the worker and its pool: nothing acknowledges, nothing requeues
    killed_at = time.time()
    start_worker(env)

    (mail,) = mail_sink.wait_for(1, timeout=visibility + 20)
    assert "primary database unreachable" in mail.subject
    assert mail.at - killed_at >= visibility - 1.0  # it came back by the visibility timeout, not at once (1 s: jitter)
    wait_until_settled(redis_client, queue)
    assert len(mail_sink.received) == 1


def test_a_redelivered_alert_that_was_already_mailed_is_not_mailed_again_nor_counted_as_a_repeat(
    redis_url: str,
    redis_client: redis.Redis,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker({"ALERTING_THROTTLE_WINDOW": "1.5"})
    payload = build_payload(make_record("nightly export failed", ()))
    transport = CeleryTransport(publisher_app(redis_url), queue, owned=True)
    try:
        transport.publish_many([payload])
        mail_sink.wait_for(1)
        transport.publish_many([payload, payload])  # the same alert again: what a redelivery looks like
    finally:
        transport.close()
    # A miscounted repeat would leave a digest owed until the window ends, and then mail it: settled means neither.
    wait_until_settled(redis_client, queue)
    mails = mail_sink.received
    assert len(mails) == 1
    assert mails[0].message["X-Alerting-Id"] == payload["id"]
    assert "nightly export failed" in mails[0].subject
    assert Redactor().text(mails[0].subject) == mails[0].subject
