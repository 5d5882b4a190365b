"""Run alerting's tasks in a worker of your own Celery app: ``configure(app)``, then a worker with ``-Q alerts``.
I/O setup (Celery signal handlers); see docs/existing-celery.md.

    app = Celery("shop", broker="redis://localhost:6379/0")
    configure(app)              # celery -A shop worker -Q alerts --prefetch-multiplier 1

What it does to ``app``, and only that: includes ``alerting.consumer.tasks``, routes ``alerting.*`` to the alerts queue
(ahead of your own routes), and, in a worker that consumes that queue, reads the ``ALERTING_*`` settings at start
(a bad one stops the worker with exit code 78, naming it), caps our tasks' run time, runs the outbox poller that
sends digests, and writes ``ALERTING_READY_FILE``. Workers of the app that do not consume the alerts queue need no
``ALERTING_*`` settings and do nothing more. Your broker, serializers, default queue and your tasks' options are
left as they are: ``acks_late`` and ``reject_on_worker_lost`` are set on our two tasks alone.

It refuses an app that accepts anything but JSON (``accept_content``): alerts are JSON only, and a worker that
takes pickle off the broker runs whatever is put there.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals

from alerting.consumer.celery_config import time_limits
from alerting.consumer.settings import WorkerSettings
from alerting.consumer.signals import AlertWorkerLifecycle
from alerting.errors import ConfigError
from alerting.shared.config import DEFAULT_QUEUE, parse_queue
from alerting.shared.wire import DIGEST_TASK_NAME, QUARANTINE_TASK_NAME, TASK_NAME

__all__ = ["configure"]

log = logging.getLogger("alerting.contrib.celery")

TASKS_MODULE = "alerting.consumer.tasks"
_JSON = frozenset({"json", "application/json"})
_REDIS_BROKERS = ("redis", "rediss", "sentinel", "sentinels")
_KOMBU_DEFAULT_VISIBILITY = 3600.0  # kombu's Redis transport, when broker_transport_options do not set it


def configure(app: Celery, *, queue: str | None = None) -> str:
    """Prepare ``app`` so that a worker of it started with ``-Q <queue>`` delivers alerts. Returns the queue name.

    ``queue`` defaults to ``ALERTING_QUEUE``, else ``"alerts"``: the queue the AlertHandlers publish to. Raises
    :class:`~alerting.errors.ConfigError` when the app accepts content other than JSON.
    """
    _check_json_only(app)
    name = parse_queue("ALERTING_QUEUE", queue or os.environ.get("ALERTING_QUEUE", "").strip() or DEFAULT_QUEUE)
    include = list(app.conf.include or ())
    if TASKS_MODULE not in include:
        app.conf.include = [*include, TASKS_MODULE]
    app.conf.task_routes = _with_our_route(app.conf.task_routes, name)
    _WorkerHooks(app, name).connect()
    return name


def _check_json_only(app: Celery) -> None:
    for setting in ("accept_content", "result_accept_content"):
        value = app.conf.get(setting)
        others = sorted(str(v) for v in (value or ()) if str(v).lower() not in _JSON)
        if others:
            raise ConfigError(
                setting,
                f"a worker that runs alerting's tasks must accept JSON only, this app also accepts {others}: "
                "alert payloads are JSON, and a worker that accepts pickle runs whatever the broker hands it. "
                "Run the bundled worker (celery -A alerting.worker worker -Q alerts) for alerts instead.",
            )


def _with_our_route(routes: Any, queue: str) -> tuple[Any, ...]:
    """Our route first (Celery asks routers in order), then the application's routes as they were."""
    ours = {"alerting.*": {"queue": queue}}
    if routes is None:
        return (ours,)
    if isinstance(routes, (list, tuple)):
        rest = [r for r in routes if not (isinstance(r, dict) and r.keys() == ours.keys())]  # configure() twice
        return (ours, *rest)
    return (ours, routes)


class _WorkerHooks:
    """Decides at start whether a worker of ``app`` delivers alerts; the rest is the shared lifecycle's."""

    def __init__(self, app: Celery, queue: str) -> None:
        self.app = app
        self.queue = queue
        self.lifecycle = AlertWorkerLifecycle(app, lambda consumer: queue)

    def connect(self) -> None:
        uid = f"alerting.contrib.celery:{id(self.app)}"
        signals.worker_init.connect(self.on_worker_init, weak=False, dispatch_uid=f"{uid}:init")
        self.lifecycle.connect()

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app or not self._consumes_alerts():
            return
        try:
            settings = _load_settings(self.app)
        except ConfigError as exc:
            print(f"celery-alerting: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(78) from None  # EX_CONFIG, as the bundled worker
        limits = time_limits(settings)
        for name in (TASK_NAME, DIGEST_TASK_NAME, QUARANTINE_TASK_NAME):
            task = self.app.tasks[name]
            if task.time_limit is None:
                task.time_limit = limits.hard
            if task.soft_time_limit is None:
                task.soft_time_limit = limits.soft
        self.lifecycle.activate(settings)

    def _consumes_alerts(self) -> bool:
        queues = self.app.amqp.queues
        selected = queues.consume_from  # the -Q selection; None when the worker consumes every known queue
        return self.queue in (selected if selected is not None else queues)


def _load_settings(app: Celery) -> WorkerSettings:
    """The ``ALERTING_*`` settings, read from the environment as the tasks read them
    (``alerting.consumer.resources``)."""
    env = os.environ
    if not env.get("ALERTING_STATE_URL", "").strip() and not env.get("ALERTING_BROKER_URL", "").strip():
        # The bundled worker's default (the broker, when it is Redis) would be localhost here, not the app's broker.
        raise ConfigError(
            "ALERTING_STATE_URL",
            "required in a worker of your own Celery app: the Redis that holds throttle state and dead letters "
            "(e.g. redis://localhost:6379/1); it is not taken from the app's broker_url",
        )
    settings = WorkerSettings.from_env(env)
    broker = str(app.conf.broker_url or "")
    if urlsplit(broker).scheme in _REDIS_BROKERS:
        options = app.conf.broker_transport_options or {}
        visibility = float(options.get("visibility_timeout", _KOMBU_DEFAULT_VISIBILITY))
        if visibility <= settings.retry_backoff_max:
            # Retries wait in the worker as ETA messages; unacked longer than this, Redis hands them out again.
            raise ConfigError(
                "ALERTING_RETRY_BACKOFF_MAX",
                f"must be less than the app's broker_transport_options visibility_timeout ({visibility:g}s), "
                f"got {settings.retry_backoff_max:g}s",
            )
    return settings
