"""The Flask app benchmarks/webserver.py runs under gunicorn: one route doing a little work, 2% of requests
logging a critical. The alert handler is chosen by ``BENCH_VARIANT``. Runs in the gunicorn worker. I/O.

Environment: ``BENCH_VARIANT`` (none | smtp | queue | alert), ``BENCH_SMTP_PORT``, ``BENCH_CRITICAL_EVERY``
(one request in N logs a critical; default 50 = 2%), ``BENCH_DISTINCT_EVERY`` (one critical in N is distinct,
the others repeat one message; default 5), ``ALERTING_BROKER_URL`` and ``BENCH_QUEUE`` for ``alert``.
"""

from __future__ import annotations

import itertools
import logging
import logging.handlers
import os
import queue

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from alerting import AlertHandler

VARIANT = os.environ.get("BENCH_VARIANT", "none")
CRITICAL_EVERY = int(os.environ.get("BENCH_CRITICAL_EVERY", "50"))
DISTINCT_EVERY = int(os.environ.get("BENCH_DISTINCT_EVERY", "5"))

app = Flask(__name__)
log = logging.getLogger("bench.web")
log.propagate = False  # only the handler under test sees the records
log.setLevel(logging.CRITICAL)
_requests = itertools.count(1)  # next() on a count is atomic under the GIL: no lock needed
_criticals = itertools.count(1)
_logged = {"criticals": 0}


def _smtp_handler() -> logging.Handler:
    port = int(os.environ["BENCH_SMTP_PORT"])
    return logging.handlers.SMTPHandler(
        ("127.0.0.1", port), "app@bench.example", ["oncall@bench.example"], "critical", timeout=30.0
    )


def _handler() -> logging.Handler:
    if VARIANT == "none":
        return logging.NullHandler()  # logging's own cost stays in the baseline
    if VARIANT == "smtp":
        return _smtp_handler()
    if VARIANT == "queue":
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        # As people deploy it: started at import, never stopped. Its thread is a daemon, so whatever is still
        # queued when the worker exits is lost: that is what webserver.py counts.
        logging.handlers.QueueListener(records, _smtp_handler()).start()
        return logging.handlers.QueueHandler(records)
    if VARIANT == "alert":
        return AlertHandler(queue=os.environ["BENCH_QUEUE"], service="bench-web")
    raise SystemExit(f"BENCH_VARIANT={VARIANT!r}: expected none, smtp, queue or alert")


log.addHandler(_handler())


@app.get("/")
def index() -> ResponseReturnValue:
    n = next(_requests)
    total = sum(i * i for i in range(200))  # a little work, as a real view would do
    if n % CRITICAL_EVERY == 0:
        k = next(_criticals)
        _logged["criticals"] = k
        if k % DISTINCT_EVERY == 0:
            # An f-string: the template differs, so each of these is a fingerprint of its own (a distinct alert).
            log.critical(f"payment provider timed out for order {n}")
        else:
            log.critical("payment provider down")
    return jsonify(n=n, total=total)


@app.get("/stats")
def stats() -> ResponseReturnValue:
    """What the app logged: the mails the handlers owe. Never logs."""
    return jsonify(requests=next(_requests) - 1, criticals=_logged["criticals"])
