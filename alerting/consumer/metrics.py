"""Prometheus metrics for alert workers, served on ``ALERTING_METRICS_PORT``. I/O; needs the ``metrics`` extra.

A prefork worker counts in its pool processes. prometheus_client's multiprocess mode (one file per process in
``PROMETHEUS_MULTIPROC_DIR``) lets the main process serve their sum; :func:`prepare` sets that up, and must run
before prometheus_client is imported.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def prepare() -> str:
    """Choose the multiprocess directory (a fresh one unless PROMETHEUS_MULTIPROC_DIR is set); returns it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="alerting-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


class PrometheusEvents:
    """The deliverer's events as Prometheus counters and a latency histogram (``alerting.consumer.delivery.Events``)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self._received = Counter("alerting_alerts_received", "Alert messages taken off the queue")
        self._sent = Counter("alerting_emails_sent", "Emails accepted by the SMTP server", ["kind"])
        self._verdicts = Counter(
            "alerting_alerts_not_mailed", "Alerts not mailed on their own, by reason", ["reason"]
        )  # suppressed (counted for a digest), folded (rate limit: in a summary), duplicate (already mailed)
        self._retries = Counter("alerting_delivery_retries", "Sends that failed and will be retried", ["kind"])
        self._failures = Counter("alerting_delivery_failures", "Failed send attempts, by kind of failure", ["kind"])
        self._dead = Counter("alerting_dead_letters", "Alerts, digests and summaries dead-lettered", ["kind"])
        self._latency = Histogram(
            "alerting_delivery_latency_seconds",
            "From the log call to the SMTP server's acceptance",
            buckets=LATENCY_BUCKETS,
        )

    def received(self) -> None:
        self._received.inc()

    def outcome(self, status: str, kind: str) -> None:
        if status == "sent":
            self._sent.labels(kind=kind).inc()
        elif status in ("suppressed", "folded", "duplicate"):
            self._verdicts.labels(reason=status).inc()
        elif status == "dead":
            self._failures.labels(kind=kind).inc()
            self._dead.labels(kind=kind).inc()

    def retried(self, kind: str) -> None:
        self._retries.labels(kind=kind).inc()
        self._failures.labels(kind=kind).inc()

    def latency(self, seconds: float) -> None:
        self._latency.observe(seconds)


def serve(port: int) -> Any:
    """Serve the sum over this worker's processes on ``port`` (all interfaces: scraped from outside the host)."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return start_http_server(port, registry=registry)


def process_exited(pid: int) -> None:
    """Forget a pool process's live gauges (counters keep counting in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
