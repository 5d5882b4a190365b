"""The Celery configuration a worker that delivers alerts needs, derived from the settings. Pure."""

from __future__ import annotations

from typing import Any

from alerting.consumer.brokerguard import transport_for
from alerting.consumer.deadlines import TimeLimits, task_time_limits
from alerting.consumer.settings import WorkerSettings
from alerting.shared.sentinel import kombu_broker


def time_limits(settings: WorkerSettings) -> TimeLimits:
    """The task's soft and hard time limits (defined in ``alerting.consumer.deadlines``)."""
    return task_time_limits(settings.smtp.timeout)


def worker_config(settings: WorkerSettings) -> dict[str, Any]:
    visibility = settings.visibility_timeout
    broker = kombu_broker(settings.broker_url, ca_file=settings.redis_ca_file)
    # kombu sweeps unacked messages back to the queue only every restore_interval x restore_throttle seconds
    # (~100 s by default); sweep often enough that a lost worker's alert comes back soon after the timeout.
    restore_interval = int(max(1, min(30, visibility // 5)))
    limits = time_limits(settings)
    return {
        "broker_url": broker.url,
        # kombu's Redis transport, with unreadable messages dead-lettered rather than crashing the worker.
        "broker_transport": transport_for(broker.url),
        "broker_use_ssl": broker.use_ssl,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 15.0,
            "socket_connect_timeout": 5.0,
            **broker.transport_options,
        },
        # JSON only: a pickled message on the alerts queue is refused before it is deserialised.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        # At-least-once: ack after the task ran, requeue when the process running it dies, take one at a time;
        # a task killed by the hard time limit is not acked either (back after the visibility timeout).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": False,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.queue,
        "task_routes": {"alerting.*": {"queue": settings.queue}},
        # A task that overruns settles as a retry or dead letter (soft); one that hangs past that is killed (hard)
        # and, not acknowledged, comes back. Both are above the SMTP transaction deadline.
        "task_soft_time_limit": limits.soft,
        "task_time_limit": limits.hard,
        "worker_send_task_events": False,
    }
