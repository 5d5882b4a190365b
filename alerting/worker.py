"""The Celery app that alert workers run: ``celery -A alerting.worker worker -Q alerts``. I/O setup.

Settings are read from the environment when this module is imported; a bad value stops the worker right
there with a message naming the variable.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery

from alerting.consumer.celery_config import worker_config
from alerting.consumer.settings import WorkerSettings
from alerting.consumer.signals import AlertWorkerLifecycle
from alerting.errors import ConfigError

try:
    settings = WorkerSettings.from_env(os.environ)
except ConfigError as exc:
    print(f"celery-alerting: configuration error: {exc}", file=sys.stderr)
    # 78 is EX_CONFIG (sysexits.h); supervisors should not restart-loop on it.
    raise SystemExit(78) from None

app = Celery("alerting")
app.conf.update(worker_config(settings))
app.conf.include = ["alerting.consumer.tasks"]


def _digest_queue(consumer: Any) -> str:
    """Owed digests go to a queue this worker consumes: ALERTING_QUEUE if it is one of them (``-Q``), else the
    first, so a worker started with ``-Q something-else`` still sends its digests."""
    try:
        names = [q.name for q in consumer.task_consumer.queues]
    except AttributeError:
        names = []
    return settings.queue if settings.queue in names or not names else names[0]


lifecycle = AlertWorkerLifecycle(app, _digest_queue)
lifecycle.activate(settings)
lifecycle.connect()
