"""The Celery tasks. Thin: decoding, retry and acknowledgement are Celery's; decisions are
``alerting.consumer.delivery``'s.

Defined with ``shared_task`` so that any Celery app that imports this module can run them: the bundled
``alerting.worker`` app, or an application's own worker (see the README, "Existing Celery users").

Each task is one boundary: whatever the message holds and whatever goes wrong while handling it (a bug, a
payload that breaks rendering, the soft time limit), it ends sent, retried (bounded), or in the dead letters.
Only Celery's own ``Retry`` leaves a task as an exception.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from alerting.consumer import resources
from alerting.consumer.delivery import Outcome
from alerting.shared.wire import DIGEST_TASK_NAME, QUARANTINE_TASK_NAME, TASK_NAME

log = logging.getLogger("alerting.tasks")

_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,  # a worker that dies mid-send leaves the message to be redelivered
    "reject_on_worker_lost": True,  # ... including when only its pool process was killed
    # A task killed by the hard time limit is not acknowledged either: its message comes back after the
    # visibility timeout (ack-on-timeout would drop it: no mail, no retry, no dead letter).
    "acks_on_failure_or_timeout": False,
    "ignore_result": True,
    "max_retries": None,  # retries are counted and capped by the deliverer (ALERTING_MAX_RETRIES)
    "serializer": "json",
}


def _settle(task: Task[Any, Any], outcome: Outcome) -> str:
    if outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in)
    return outcome.status


def _run(task: Task[Any, Any], kind: str, arg: object) -> str:
    attempt = task.request.retries
    deliverer = resources.get().deliverer
    # kombu marks a message it put back (unacked: requeued or restored) as redelivered; count those per attempt
    # (Celery keeps the task id across retries).
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    try:
        outcome = deliverer.guarded(
            kind, arg, attempt=attempt, redelivered=f"{task.request.id}:{attempt}" if redelivered else None
        )
    except SoftTimeLimitExceeded as exc:
        # Raised asynchronously, possibly outside the deliverer's own boundary: still a retry or a dead letter.
        log.error("%s %r ran into the soft time limit (attempt %d)", kind, arg if kind == "item" else "", attempt + 1)
        outcome = deliverer.unexpected(kind, arg, exc, attempt=attempt)
    return _settle(task, outcome)


@shared_task(name=TASK_NAME, **_TASK_OPTIONS)
def deliver(self: Task[Any, Any], payload: object = None, *args: object, **kwargs: object) -> str:
    # Extra arguments are accepted (and the message dead-lettered) rather than failing Celery's call.
    if args or kwargs:
        return _settle(self, resources.get().deliverer.malformed(payload, args, kwargs, attempt=self.request.retries))
    return _run(self, "alert", payload)


@shared_task(name=DIGEST_TASK_NAME, **_TASK_OPTIONS)
def send_item(self: Task[Any, Any], item_id: object = None) -> str:
    if not isinstance(item_id, str):
        return "invalid"
    return _run(self, "item", item_id)


@shared_task(name=QUARANTINE_TASK_NAME, **_TASK_OPTIONS)
def quarantined(self: Task[Any, Any], info: object = None) -> str:
    """A message the broker guard could not hand to Celery (not a task message we can read): dead-lettered."""
    return _settle(self, resources.get().deliverer.quarantined(info, attempt=self.request.retries))
