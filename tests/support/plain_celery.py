"""A plain Celery app WITHOUT the alerting tasks: a worker started from it on the alerts queue takes alert
messages and discards them ("Received unregistered task of type 'alerting.deliver'"), the newcomer's mistake of
running `celery -A myproject worker -Q alerts` instead of `celery -A alerting.worker worker -Q alerts`.

Writes ALERTING_READY_FILE once consuming, so alerting.testing.WorkerProcess knows when it is ready.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

app = Celery("plain", broker=os.environ["ALERTING_BROKER_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], worker_hijack_root_logger=False)


@app.task(name="plain.add")
def add(a: int, b: int) -> int:
    return a + b


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    ready = os.environ.get("ALERTING_READY_FILE")
    if ready:
        Path(ready).write_text(str(os.getpid()), encoding="utf-8")
