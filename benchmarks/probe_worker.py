"""The bundled alert worker (``alerting.worker``) with a probe, for the throughput benchmark:
``celery -A probe_worker worker ...`` with this directory on PYTHONPATH (``stack.alert_worker(app="probe_worker")``).

In each pool process, every successful task appends one line to ``$BENCH_PROBE_FILE.<pid>``: the runtime Celery
itself reports ("Task ... succeeded in Xs", the ``task_success`` signal's ``runtime``: from the tracer's start to
after the task body returned), then, with ``BENCH_PROBE_DETAIL=1``, the seconds the task spent in the throttle
decision (``store.admit``), rendering, the SMTP send and recording the send (``store.mark_sent``). The detail wraps
those four calls in the pool process (a few microseconds each); the runtime alone adds one buffered write per task.
Only ``alerting.deliver`` tasks are probed.

It also registers the throughput benchmark's two yardsticks on the SAME Celery app, so they run with exactly the
bundled configuration (acks_late, reject_on_worker_lost, prefetch 1, JSON, the same pool):
``bench.noop`` (does nothing but note when it ran, in ``$BENCH_STAMP_FILE.<pid>``: the floor Celery itself sets)
and ``bench.naive_send`` (django-celery-email style: one new SMTP connection per mail, connect/sendmail/quit).
"""

from __future__ import annotations

import functools
import os
import smtplib
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

from celery import signals
from measure import PROBE_PARTS as PARTS

import alerting.consumer.delivery
import alerting.consumer.quarantine
from alerting.consumer.render import render_alert
from alerting.consumer.smtp import SMTPSender
from alerting.shared.stores.redis_store import RedisStore
from alerting.worker import app

__all__ = ["app"]

_path = os.environ.get("BENCH_PROBE_FILE")
_detail = os.environ.get("BENCH_PROBE_DETAIL") == "1"
_parts: dict[str, float] = dict.fromkeys(PARTS, 0.0)
_out: dict[int, IO[str]] = {}

F = TypeVar("F", bound=Callable[..., Any])


def _timed(part: str, fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _parts[part] += time.perf_counter() - start

    return wrapper  # type: ignore[return-value]


if _detail:
    RedisStore.admit = _timed("decide", RedisStore.admit)  # type: ignore[method-assign]
    RedisStore.mark_sent = _timed("mark_sent", RedisStore.mark_sent)  # type: ignore[method-assign]
    SMTPSender.send = _timed("smtp", SMTPSender.send)  # type: ignore[method-assign]
    alerting.consumer.delivery.render_alert = _timed("render", render_alert)  # type: ignore[attr-defined]


@signals.task_prerun.connect(weak=False)
def _started(**_: Any) -> None:
    for part in PARTS:
        _parts[part] = 0.0


@signals.task_success.connect(weak=False)
def _succeeded(sender: Any = None, runtime: float | None = None, **_: Any) -> None:
    if not _path or runtime is None or getattr(sender, "name", None) != "alerting.deliver":
        return
    pid = os.getpid()
    out = _out.get(pid)
    if out is None:
        out = _out[pid] = open(f"{_path}.{pid}", "a", buffering=1, encoding="ascii")  # noqa: SIM115
    fields = [runtime, *(_parts[p] for p in PARTS)] if _detail else [runtime]
    out.write(" ".join(f"{v:.6f}" for v in fields) + "\n")


_stamps: dict[int, IO[str]] = {}
# The worker's transport quarantines any task that is not celery-alerting's; let the two yardsticks through (the
# check still runs for them, so they pay the same guard as alerting.deliver).
alerting.consumer.quarantine.KNOWN_TASKS = alerting.consumer.quarantine.KNOWN_TASKS | {"bench.noop", "bench.naive_send"}


@app.task(name="bench.noop")
def noop(_payload: object) -> None:
    """The floor: a task that does nothing, so the rate is Celery's own per-task cost. One line-buffered write
    notes when it ran (the benchmark's only way to time it without touching Redis)."""
    pid = os.getpid()
    out = _stamps.get(pid)
    if out is None:
        out = _stamps[pid] = open(f"{os.environ['BENCH_STAMP_FILE']}.{pid}", "a", buffering=1, encoding="ascii")  # noqa: SIM115
    out.write(f"{time.time():.6f}\n")


@app.task(name="bench.naive_send")
def naive_send(message: str) -> None:
    """What a django-celery-email-style task does: a new SMTP connection for every mail."""
    conn = smtplib.SMTP(os.environ["ALERTING_SMTP_HOST"], int(os.environ["ALERTING_SMTP_PORT"]), timeout=10)
    try:
        conn.sendmail(os.environ["ALERTING_MAIL_FROM"], [os.environ["ALERTING_MAIL_TO"]], message.encode())
    finally:
        conn.quit()
