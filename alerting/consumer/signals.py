"""The lifecycle of a worker that delivers alerts: the signal handlers that the bundled worker
(``alerting.worker``) and an application's own Celery worker (``alerting.contrib.celery``) share. I/O setup.

At worker start: the outbox poller (digests and summaries), metrics, the ready file. In each pool process: a
fresh set of resources (its own SMTP connection). At shutdown: the reverse.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, signals

from alerting.consumer import resources
from alerting.consumer.poller import OutboxPoller
from alerting.consumer.settings import WorkerSettings
from alerting.shared.wire import DIGEST_TASK_NAME

log = logging.getLogger("alerting.worker")


class AlertWorkerLifecycle:
    def __init__(self, app: Celery, digest_queue: Callable[[Any], str]) -> None:
        """``digest_queue(consumer)`` names the queue owed digests are published to (one this worker consumes)."""
        self.app = app
        self._digest_queue = digest_queue
        self.settings: WorkerSettings | None = None  # None: this worker does not deliver alerts
        self.poller: OutboxPoller | None = None
        self._metrics: Any = None

    def activate(self, settings: WorkerSettings) -> None:
        """This worker delivers alerts with ``settings``; call before the pool forks."""
        self.settings = settings
        resources.use_settings(settings)
        if settings.metrics_port is not None:
            from alerting.consumer import metrics

            metrics.prepare()  # before prometheus_client is imported: pool processes write per-process files
            resources.set_events(metrics.PrometheusEvents())
            self._metrics = metrics

    def connect(self) -> None:
        uid = f"alerting.consumer.signals:{id(self.app)}"
        # weak=False: these bound methods are referenced by nothing else.
        signals.worker_process_init.connect(self._process_started, weak=False, dispatch_uid=f"{uid}:process")
        signals.worker_ready.connect(self._ready, weak=False, dispatch_uid=f"{uid}:ready")
        signals.worker_process_shutdown.connect(self._process_exited, weak=False, dispatch_uid=f"{uid}:exited")
        signals.worker_shutdown.connect(self._shutdown, weak=False, dispatch_uid=f"{uid}:shutdown")

    def _process_started(self, **_: Any) -> None:
        if self.settings is not None:
            resources.reset()  # a prefork child builds its own SMTP connection and Redis client

    def _ready(self, sender: Any = None, **_: Any) -> None:
        settings = self.settings
        if settings is None or getattr(sender, "app", self.app) is not self.app:
            return
        app, queue = self.app, self._digest_queue(sender)

        def publish(item_id: str) -> None:
            app.send_task(DIGEST_TASK_NAME, args=[item_id], queue=queue)

        self.poller = OutboxPoller(resources.open_store(settings), publish, interval=settings.digest_poll_interval)
        self.poller.start()
        log.info(
            "celery-alerting: %s delivers alerts; digests to queue %s, SMTP %s:%s (%s), throttle window %gs, "
            "rate limit %s",
            app.main,
            queue,
            settings.smtp.host,
            settings.smtp.port,
            settings.smtp.security,
            settings.throttle_window,
            settings.rate_limit or "off",
        )
        if self._metrics is not None and settings.metrics_port is not None:
            self._metrics.serve(settings.metrics_port)
            log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
        if settings.ready_file:
            Path(settings.ready_file).write_text(str(os.getpid()), encoding="utf-8")

    def _process_exited(self, pid: int | None = None, **_: Any) -> None:
        if self._metrics is not None and pid is not None:
            self._metrics.process_exited(pid)

    def _shutdown(self, **_: Any) -> None:
        settings = self.settings
        if settings is None:
            return
        if self.poller is not None:
            self.poller.stop()
        resources.reset()
        if settings.ready_file:
            Path(settings.ready_file).unlink(missing_ok=True)
