"""End-to-end latency on an idle machine: from the ``logger.critical()`` call to the SMTP server accepting the email.

Separate alerts (a distinct message template each, so a fingerprint each; rate limit off) are logged one at a
time, ``--spacing`` apart, through ``AlertHandler`` -> Redis -> one real ``celery worker`` process -> a local SMTP
server (``MailSink``) that answers at once. One warm-up alert before them is not counted.

    .venv/bin/python benchmarks/e2e_latency.py [--alerts 100] [--spacing 0.05] [--json F]
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cli
from measure import Summary, duration, table
from stack import Isolation, alert_worker, broker_url, require_redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink


@dataclass
class EndToEnd:
    alerts: int
    spacing: float
    delivered: int
    latency: Summary | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "latency": asdict(self.latency) if self.latency else None}


def measure(url: str, alerts: int = 100, spacing: float = 0.05) -> EndToEnd:
    iso = Isolation.fresh(url, "e2e")
    logger = logging.getLogger("bench.e2e")
    logger.propagate = False
    token = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    try:
        with MailSink() as sink, alert_worker(iso, sink, ALERTING_RATE_LIMIT="off"):
            handler = AlertHandler(broker_url=url, queue=iso.queue)
            logger.handlers = [handler]
            try:
                logger.critical(f"e2e warm-up {token}")  # connects the publisher, loads the worker's scripts
                sink.wait_for(1, timeout=15)
                for i in range(alerts):
                    tag = f"e2e probe {i:03d} {token}"  # a distinct template: a fingerprint of its own
                    sent[tag] = time.time()
                    logger.critical(tag)
                    time.sleep(spacing)
                with contextlib.suppress(TimeoutError):  # reported as fewer delivered
                    sink.wait_for(alerts + 1, timeout=15 + alerts * 0.1)
                received = list(sink.received)
            finally:
                logger.handlers = []
                handler.close()
    finally:
        iso.cleanup()
    latencies = []
    for r in received:
        probe = next((t for t in sent if t in r.subject), None)
        if probe is not None:
            latencies.append(r.at - sent.pop(probe))
    return EndToEnd(alerts, spacing, len(latencies), Summary.of(latencies))


def report(e2e: EndToEnd) -> str:
    lat = e2e.latency
    return table(
        ["end to end (critical() -> SMTP accepted)", "delivered", "p50", "p99", "max"],
        [
            [
                f"{e2e.alerts} separate alerts, {e2e.spacing:g} s apart, 1 worker",
                f"{e2e.delivered}/{e2e.alerts}",
                duration(lat.p50 if lat else None),
                duration(lat.p99 if lat else None),
                duration(lat.max if lat else None),
            ]
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0.05, help="seconds between alerts (default %(default)s)")
    args = parser.parse_args(argv)

    def measured() -> EndToEnd:
        url = broker_url()
        require_redis(url)
        return measure(url, args.alerts, args.spacing)

    return cli.run(measured, report, EndToEnd.to_json, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
