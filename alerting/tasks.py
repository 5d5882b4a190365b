"""The Celery tasks. Thin: decoding, retry and acknowledgement are Celery's; decisions are ``alerting.delivery``'s.

Defined with ``shared_task`` so that any Celery app that imports this module can run them: the bundled
``alerting.worker`` app, or an application's own worker (see the README, "Existing Celery users").
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from alerting import runtime
from alerting.transport import DIGEST_TASK_NAME, TASK_NAME

_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,  # a worker that dies mid-send leaves the message to be redelivered
    "reject_on_worker_lost": True,  # ... including when only its pool process was killed
    "ignore_result": True,
    "max_retries": None,  # retries are counted and capped by the deliverer (ALERTING_MAX_RETRIES)
    "serializer": "json",
}


@shared_task(name=TASK_NAME, **_TASK_OPTIONS)
def deliver(self: Task[Any, Any], payload: object) -> str:
    outcome = runtime.get().deliverer.deliver(payload, attempt=self.request.retries)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name=DIGEST_TASK_NAME, **_TASK_OPTIONS)
def send_item(self: Task[Any, Any], item_id: object) -> str:
    if not isinstance(item_id, str):
        return "invalid"
    outcome = runtime.get().deliverer.send_item(item_id, attempt=self.request.retries)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status
