"""What ``AlertHandler`` costs the calling thread, next to the stdlib's cheapest hand-off, and how long an alert
takes to reach the SMTP server.

Part 1, emit cost: ``logger.critical(...)`` timed per call (``time.perf_counter_ns``) through three handlers in
the same run, blocks interleaved A/B/C then C/B/A to cancel drift: ``NullHandler`` (logging's own cost:
building the LogRecord), stdlib ``QueueHandler`` on a plain ``queue.Queue`` with no listener, and
``AlertHandler`` publishing to a real Redis queue (nobody consumes it; it is emptied between blocks), so its
publisher thread is busy while the calls are timed. Records: plain message, or with ``exc_info``; messages
identical (one fingerprint: coalesced in the app) or distinct (an f-string per call: one fingerprint each).

Part 2, end to end: separate alerts (distinct fingerprints, rate limit off) spaced apart, through a real
worker to a fast SMTP sink; from the ``critical()`` call to the server accepting the mail.

    .venv/bin/python benchmarks/emit_cost.py [--calls 20000] [--reps 4] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import logging.handlers
import queue
import sys
import time
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from measure import Summary, duration, table
from stack import Isolation, RedisUnavailable, alert_worker, broker_url, require_redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink

HANDLERS = ("null", "queue", "alert")
HANDLER_LABELS = {"null": "NullHandler", "queue": "QueueHandler", "alert": "AlertHandler"}
CASES = (("plain", "identical"), ("plain", "distinct"), ("exc_info", "identical"), ("exc_info", "distinct"))

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


def _exc_info() -> ExcInfo:
    def lookup(order: int) -> None:
        raise TimeoutError(f"payment provider did not answer for order {order}")

    def charge(order: int) -> None:
        lookup(order)

    try:
        charge(100_000)
    except TimeoutError as exc:
        if exc.__traceback__ is not None:
            return type(exc), exc, exc.__traceback__
    raise RuntimeError("charge() was expected to raise with a traceback")


def timed_block(logger: logging.Logger, calls: int, kind: str, messages: str, exc: ExcInfo) -> array[int]:
    """``calls`` critical() calls, each timed on its own. The message is built before the clock starts."""
    samples = array("q", bytes(8 * calls))
    critical = logger.critical
    clock = time.perf_counter_ns
    exc_info: ExcInfo | None = exc if kind == "exc_info" else None
    token = uuid.uuid4().hex[:6]  # distinct messages stay distinct from one block to the next
    for i in range(calls):
        msg = f"payment provider timed out (order {token}-{i})" if messages == "distinct" else "payment provider down"
        t0 = clock()
        critical(msg, exc_info=exc_info)
        samples[i] = clock() - t0
    return samples


@dataclass
class CaseResult:
    kind: str
    messages: str
    summaries: dict[str, Summary | None] = field(default_factory=dict)  # handler -> pooled over repetitions
    rep_p50s: dict[str, list[float]] = field(default_factory=dict)  # handler -> p50 of each repetition
    alert_stats: dict[str, int] = field(default_factory=dict)  # AlertHandler counters over this case's blocks

    def ratio(self, attr: str, minus_null: bool = False) -> float | None:
        a, q, n = (self.summaries.get(h) for h in ("alert", "queue", "null"))
        if a is None or q is None:
            return None
        top, bottom = getattr(a, attr), getattr(q, attr)
        if minus_null and n is not None:
            top, bottom = top - getattr(n, attr), bottom - getattr(n, attr)
        return top / bottom if bottom > 0 else None


@dataclass
class EndToEnd:
    alerts: int
    spacing: float
    delivered: int
    latency: Summary | None


@dataclass
class EmitReport:
    calls: int
    reps: int
    cases: list[CaseResult]
    e2e: EndToEnd | None

    def to_json(self) -> dict[str, Any]:
        def summary(s: Summary | None) -> dict[str, float] | None:
            return asdict(s) if s else None

        return {
            "calls": self.calls,
            "reps": self.reps,
            "cases": [
                {
                    "kind": c.kind,
                    "messages": c.messages,
                    "summaries": {h: summary(s) for h, s in c.summaries.items()},
                    "rep_p50s": c.rep_p50s,
                    "ratio_p50": c.ratio("p50"),
                    "ratio_p99": c.ratio("p99"),
                    "ratio_p50_minus_null": c.ratio("p50", minus_null=True),
                    "alert_stats": c.alert_stats,
                }
                for c in self.cases
            ],
            "e2e": None
            if self.e2e is None
            else {**asdict(self.e2e), "latency": summary(self.e2e.latency) if self.e2e.latency else None},
        }


def measure_emit(url: str, calls: int, reps: int, progress: Callable[[str], None] | None = None) -> list[CaseResult]:
    iso = Isolation.fresh(url, "emitcost")
    alert = AlertHandler(broker_url=url, queue=iso.queue)
    handlers: dict[str, logging.Handler] = {
        "null": logging.NullHandler(),
        "queue": logging.handlers.QueueHandler(queue.Queue()),
        "alert": alert,
    }
    logger = logging.getLogger("bench.emit")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    exc = _exc_info()

    def between_blocks() -> None:
        alert.flush(10.0)  # start each block with an empty buffer and nothing left to publish
        iso.drop_queue()
        queue_handler = handlers["queue"]
        assert isinstance(queue_handler, logging.handlers.QueueHandler)
        queue_handler.queue = queue.Queue()  # let the previous block's records go
        gc.collect()

    results = [CaseResult(kind, messages) for kind, messages in CASES]
    pooled: dict[tuple[int, str], list[array[int]]] = {}
    try:
        for handler in handlers.values():  # warm-up: connect to Redis, start the publisher, warm caches
            logger.handlers = [handler]
            for kind, messages in CASES:
                timed_block(logger, min(calls, 2000), kind, messages, exc)
            between_blocks()
        for rep in range(reps):
            order = HANDLERS if rep % 2 == 0 else HANDLERS[::-1]
            if progress:
                progress(f"emit cost: repetition {rep + 1}/{reps}")
            for index, case in enumerate(results):
                for name in order:
                    logger.handlers = [handlers[name]]
                    before = alert.stats()
                    samples = timed_block(logger, calls, case.kind, case.messages, exc)
                    logger.handlers = []
                    if name == "alert":
                        for key, value in alert.stats().items():
                            if key != "buffered":
                                case.alert_stats[key] = case.alert_stats.get(key, 0) + value - before[key]
                    between_blocks()
                    pooled.setdefault((index, name), []).append(samples)
                    rep_summary = Summary.of_ns(samples)
                    case.rep_p50s.setdefault(name, []).append(rep_summary.p50 if rep_summary else 0.0)
    finally:
        logger.handlers = []
        alert.close()
        iso.cleanup()
    for index, case in enumerate(results):
        for name in HANDLERS:
            case.summaries[name] = Summary.of_ns([ns for block in pooled.get((index, name), []) for ns in block])
    return results


def measure_end_to_end(url: str, alerts: int = 50, spacing: float = 0.1) -> EndToEnd:
    """Separate alerts through a real worker to a fast SMTP sink: critical() call -> SMTP server accepted it."""
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
                logger.critical(f"e2e warm-up {token}")  # connects the publisher; not counted
                sink.wait_for(1, timeout=15)
                for i in range(alerts):
                    tag = f"e2e probe {i:03d} {token}"  # a distinct template: a fingerprint of its own
                    sent[tag] = time.time()
                    logger.critical(tag)
                    time.sleep(spacing)
                with_timeout = 15 + alerts * 0.1
                with contextlib.suppress(TimeoutError):  # reported as fewer delivered
                    sink.wait_for(alerts + 1, timeout=with_timeout)
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


def run(
    url: str | None = None,
    *,
    calls: int = 20_000,
    reps: int = 4,
    e2e_alerts: int = 50,
    e2e_spacing: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> EmitReport:
    url = url or broker_url()
    require_redis(url)
    cases = measure_emit(url, calls, reps, progress)
    if progress and e2e_alerts:
        progress(f"end to end: {e2e_alerts} alerts, {e2e_spacing:g} s apart")
    e2e = measure_end_to_end(url, e2e_alerts, e2e_spacing) if e2e_alerts else None
    return EmitReport(calls, reps, cases, e2e)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def report(result: EmitReport) -> str:
    rows = []
    for c in result.cases:
        row: list[object] = [f"{c.kind}, {c.messages}"]
        for name in HANDLERS:
            s = c.summaries.get(name)
            row.append(f"{duration(s.p50)} / {duration(s.p99)}" if s else "-")
        spread = c.rep_p50s.get("alert", [])
        row += [
            _ratio(c.ratio("p50")),
            _ratio(c.ratio("p99")),
            _ratio(c.ratio("p50", minus_null=True)),
            f"{duration(min(spread))}..{duration(max(spread))}" if spread else "-",
            "/".join(str(c.alert_stats.get(k, 0)) for k in ("published", "coalesced", "dropped")),
        ]
        rows.append(row)
    headers = [
        "record, messages",
        "NullHandler p50/p99",
        "QueueHandler p50/p99",
        "AlertHandler p50/p99",
        "AH/QH p50",
        "AH/QH p99",
        "p50 w/o logging",
        "AH p50 per rep",
        "AH during blocks: published/coalesced/dropped",
    ]
    title = (
        f"emit cost: logger.critical() per call, {result.calls:,} calls x {result.reps} repetitions per cell, "
        "interleaved; 'w/o logging' subtracts NullHandler (record creation) from both"
    )
    lines = [table(headers, rows, title)]
    e2e = result.e2e
    if e2e is not None:
        lat = e2e.latency
        lines.append("")
        lines.append(
            table(
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
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per block (default %(default)s)")
    parser.add_argument("--reps", type=int, default=4, help="repetitions of every block (default %(default)s)")
    parser.add_argument("--e2e-alerts", type=int, default=50, help="end-to-end alerts; 0 skips the part")
    parser.add_argument("--e2e-spacing", type=float, default=0.1, help="seconds between them")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        result = run(
            calls=args.calls,
            reps=args.reps,
            e2e_alerts=args.e2e_alerts,
            e2e_spacing=args.e2e_spacing,
            progress=lambda text: print(text, file=sys.stderr),
        )
    except RedisUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
