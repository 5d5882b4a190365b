"""An application's own Celery app that also delivers alerts (``alerting.contrib.celery.configure``).

Run by the tests as ``celery -A tests.support.user_celery worker -Q <alerts queue>``: configure() writes
ALERTING_READY_FILE once the worker consumes, as the bundled worker does.
"""

from __future__ import annotations

import os

from celery import Celery

from alerting.contrib.celery import configure

app = Celery("shop", broker=os.environ["USERAPP_BROKER_URL"])
app.conf.update(
    task_default_queue="shop-default",  # the application's own work, consumed by its other workers
    task_routes={"shop.*": {"queue": "shop-default"}},
    worker_hijack_root_logger=False,
)


@app.task(name="shop.charge")
def charge(order: int) -> str:
    return f"charged {order}"


configure(app)  # the alerts queue from ALERTING_QUEUE
