"""End-to-end latency on an idle machine: from the ``logger.critical()`` call to the SMTP server accepting the email.

Separate alerts (a distinct message template each, so a fingerprint each; rate limit off) are logged one at a
time, ``--spacing`` apart, through ``AlertHandler`` -> Redis -> one real ``celery worker`` process -> a local SMTP
server (``MailSink``) that answers at once. One warm-up alert before them is not counted. The yardstick, in the
same run: the stdlib's synchronous ``SMTPHandler`` to the same kind of server (it sends inside ``critical()``).

    .venv/bin/python benchmarks/e2e_latency.py [--alerts 100] [--spacing 0.05] [--json F]
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
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
    smtphandler_delivered: int = 0
    smtphandler_latency: Summary | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("latency", "smtphandler_latency"):
            value = getattr(self, key)
            out[key] = asdict(value) if value else None
        return out


class _SubjectIsMessage(logging.handlers.SMTPHandler):
    def getSubject(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def _latencies(received: Sequence[Any], sent: dict[str, float]) -> list[float]:
    latencies = []
    for r in received:
        probe = next((t for t in sent if t in r.subject), None)
        if probe is not None:
            latencies.append(r.at - sent.pop(probe))
    return latencies


def measure_smtphandler(alerts: int, spacing: float) -> tuple[int, Summary | None]:
    """The same probes through a synchronous stdlib SMTPHandler: the latency a user has without us."""
    logger = logging.getLogger("bench.e2e.smtphandler")
    logger.propagate = False
    token = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    with MailSink() as sink:
        handler = _SubjectIsMessage(("127.0.0.1", sink.port), "bench@example.com", ["ops@example.com"], "", timeout=10)
        logger.handlers = [handler]
        try:
            logger.critical(f"e2e warm-up {token}")
            for i in range(alerts):
                tag = f"e2e probe {i:03d} {token}"
                sent[tag] = time.time()
                logger.critical(tag)
                time.sleep(spacing)
            with contextlib.suppress(TimeoutError):
                sink.wait_for(alerts + 1, timeout=15)
            received = list(sink.received)
        finally:
            logger.handlers = []
            handler.close()
    latencies = _latencies(received, sent)
    return len(latencies), Summary.of(latencies)


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
    latencies = _latencies(received, sent)
    yard_delivered, yard_latency = measure_smtphandler(alerts, spacing)
    return EndToEnd(alerts, spacing, len(latencies), Summary.of(latencies), yard_delivered, yard_latency)


def _ratio(ours: float | None, yard: float | None) -> str:
    return f"{ours / yard:.2f}x" if ours is not None and yard else "-"


def report(e2e: EndToEnd) -> str:
    lat, yard = e2e.latency, e2e.smtphandler_latency
    rows = [
        [
            f"AlertHandler -> Redis -> 1 worker ({e2e.alerts} separate alerts, {e2e.spacing:g} s apart)",
            f"{e2e.delivered}/{e2e.alerts}",
            duration(lat.p50 if lat else None),
            duration(lat.p99 if lat else None),
            duration(lat.max if lat else None),
        ],
        [
            "stdlib SMTPHandler, synchronous (yardstick)",
            f"{e2e.smtphandler_delivered}/{e2e.alerts}",
            duration(yard.p50 if yard else None),
            duration(yard.p99 if yard else None),
            duration(yard.max if yard else None),
        ],
        [
            "ratio (goal: p50 <= 1.2x, p99 <= 1.5x)",
            "",
            _ratio(lat.p50 if lat else None, yard.p50 if yard else None),
            _ratio(lat.p99 if lat else None, yard.p99 if yard else None),
            "",
        ],
    ]
    return table(["end to end (critical() -> SMTP accepted)", "delivered", "p50", "p99", "max"], rows)


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
