"""The Celery app that alert workers run: ``celery -A alerting.worker worker -Q alerts``. I/O setup.

Settings are read from the environment when this module is imported; a bad value stops the worker right
there with a message naming the variable.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery, signals

from alerting import runtime
from alerting.celeryconf import worker_config
from alerting.errors import ConfigError
from alerting.poller import OutboxPoller
from alerting.settings import WorkerSettings
from alerting.transport import DIGEST_TASK_NAME

log = logging.getLogger("alerting.worker")

try:
    settings = WorkerSettings.from_env(os.environ)
except ConfigError as exc:
    print(f"celery-alerting: configuration error: {exc}", file=sys.stderr)
    # 78 is EX_CONFIG (sysexits.h); supervisors should not restart-loop on it.
    raise SystemExit(78) from None

if settings.metrics_port is not None:
    from alerting import metrics

    metrics.prepare()  # before prometheus_client is imported: pool processes write per-process files
    runtime.set_events(metrics.PrometheusEvents())

app = Celery("alerting")
app.conf.update(worker_config(settings))
app.conf.include = ["alerting.tasks"]

_poller: OutboxPoller | None = None


def _digest_queue(consumer: Any) -> str:
    """Owed digests go to a queue this worker consumes: ALERTING_QUEUE if it is one of them (``-Q``), else the
    first, so a worker started with ``-Q something-else`` still sends its digests."""
    try:
        names = [q.name for q in consumer.task_consumer.queues]
    except AttributeError:
        names = []
    return settings.queue if settings.queue in names or not names else names[0]


@signals.worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    runtime.reset()  # a prefork child builds its own SMTP connection and Redis client


@signals.worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    global _poller
    queue = _digest_queue(sender)

    def publish(item_id: str) -> None:
        app.send_task(DIGEST_TASK_NAME, args=[item_id], queue=queue)

    _poller = OutboxPoller(runtime.open_store(settings), publish, interval=settings.digest_poll_interval)
    _poller.start()
    log.info(
        "celery-alerting worker ready: digests to queue %s, SMTP %s:%s (%s), throttle window %gs, rate limit %s",
        queue,
        settings.smtp.host,
        settings.smtp.port,
        settings.smtp.security,
        settings.throttle_window,
        settings.rate_limit or "off",
    )
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)
        log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    if settings.ready_file:
        Path(settings.ready_file).write_text(str(os.getpid()), encoding="utf-8")


@signals.worker_process_shutdown.connect
def _process_exited(pid: int | None = None, **_: Any) -> None:
    if settings.metrics_port is not None and pid is not None:
        metrics.process_exited(pid)


@signals.worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    if _poller is not None:
        _poller.stop()
    runtime.reset()
    if settings.ready_file:
        Path(settings.ready_file).unlink(missing_ok=True)
