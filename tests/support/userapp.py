"""An application's own Celery app, with AlertHandler configured at import as users do: for the prefork test."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

from alerting import AlertHandler

app = Celery("userapp", broker=os.environ["USERAPP_BROKER_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], worker_hijack_root_logger=False)

log = logging.getLogger("userapp.billing")
log.addHandler(AlertHandler(broker_url=os.environ["USERAPP_BROKER_URL"], queue=os.environ["USERAPP_ALERT_QUEUE"]))
log.propagate = False


@app.task(name="userapp.charge")
def charge(n: int) -> None:
    log.critical("charge %d failed in a prefork child", n, extra={"alert_key": f"charge-{n}"})


@signals.worker_ready.connect
def _ready(**_: Any) -> None:  # WorkerProcess waits for this file, as it does for the alerts worker
    ready = os.environ.get("ALERTING_READY_FILE")
    if ready:
        Path(ready).write_text(str(os.getpid()))
