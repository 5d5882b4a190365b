"""What ``AlertHandler.emit()`` costs the calling thread, next to the stdlib's cheapest hand-off, ``QueueHandler``.

Every ``logger.critical(...)`` call is timed on its own (``time.perf_counter_ns``); handlers take turns in blocks,
interleaved A/B/C then C/B/A to cancel drift, all in one run.

Part 1, back to back: blocks of ``--calls`` calls in a tight loop through ``NullHandler`` (logging's own cost:
building the LogRecord), ``QueueHandler`` on a plain ``queue.Queue`` with no listener, and ``AlertHandler``
publishing to a real Redis queue. Records: plain message or with ``exc_info``; identical messages (one fingerprint:
coalesced in the app, so the publisher is idle) or distinct ones (an f-string per call: a fingerprint each). A tight
loop never releases the GIL, so with distinct messages the publisher thread hardly runs: the buffer (1000) fills and
the calls take the drop path. That is a flood, not a busy publisher.

Part 2, publisher busy (the goal's condition): distinct plain messages, each call followed by
``time.sleep(--gap)``, which releases the GIL as an application thread's I/O would. The publisher uses those gaps
and publishes continuously while the calls are timed: the table shows what it published during the blocks, how
much it dropped, and its thread's CPU time as a share of the block's wall time. Same loop, same gaps for
``NullHandler``, ``QueueHandler`` (no listener: the goal's yardstick), and, for comparison, a ``QueueHandler``
whose ``QueueListener`` is busy too (it LPUSHes each record's JSON to Redis, one round trip per record: what a
stdlib-only setup would do).

Part 3, deployed yardstick: the stdlib ``QueueHandler`` the way people deploy it, with a running ``QueueListener``
(a ``NullHandler`` behind it, so the listener thread costs only its own dequeue-and-dispatch), next to
``NullHandler`` and ``AlertHandler``; 1 and 4 application threads calling at once, each call followed by
``time.sleep(--gap)``; identical and distinct plain messages. p50/p99 over every call of every thread.

    .venv/bin/python benchmarks/emit_cost.py [--calls 20000] [--reps 3] [--busy-calls 4000] [--gap 5e-5]
        [--deployed-calls 3000] [--json F]
"""

from __future__ import annotations

import gc
import json
import logging
import logging.handlers
import os
import queue
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import cli
import redis
from measure import Summary, duration, table
from stack import Isolation, broker_url, require_redis

from alerting import AlertHandler

HANDLERS = ("null", "queue", "alert")
BUSY_HANDLERS = ("null", "queue", "queue_busy", "alert")
HANDLER_LABELS = {
    "null": "NullHandler",
    "queue": "QueueHandler",
    "queue_busy": "QueueHandler, listener busy",
    "alert": "AlertHandler",
}
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
    """``calls`` critical() calls back to back, each timed on its own. The message is built before the clock starts."""
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


def paced_block(logger: logging.Logger, calls: int, gap: float) -> array[int]:
    """``calls`` critical() calls with distinct plain messages, each followed by ``time.sleep(gap)`` (untimed)."""
    samples = array("q", bytes(8 * calls))
    critical = logger.critical
    clock = time.perf_counter_ns
    sleep = time.sleep
    token = uuid.uuid4().hex[:6]
    for i in range(calls):
        msg = f"payment provider timed out (order {token}-{i})"
        t0 = clock()
        critical(msg)
        samples[i] = clock() - t0
        sleep(gap)
    return samples


def thread_cpu_seconds(native_id: int | None) -> float | None:
    """CPU time (user + system) of one thread of this process so far (Linux; None elsewhere)."""
    if native_id is None:
        return None
    try:
        stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RedisListHandler(logging.Handler):
    """Behind a ``QueueListener``: each record as JSON, one LPUSH (one round trip) per record."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(url, socket_timeout=5.0)
        self.key = key
        self.handled = 0
        self.native_id: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.native_id = threading.get_native_id()
        body = {"name": record.name, "levelno": record.levelno, "created": record.created, "msg": record.getMessage()}
        self.client.lpush(self.key, json.dumps(body))
        self.handled += 1

    def close(self) -> None:
        self.client.close()
        super().close()


@dataclass
class CaseResult:
    kind: str
    messages: str
    summaries: dict[str, Summary | None] = field(default_factory=dict)  # handler -> pooled over repetitions
    rep_p50s: dict[str, list[float]] = field(default_factory=dict)  # handler -> p50 of each repetition
    alert_stats: dict[str, int] = field(default_factory=dict)  # AlertHandler counters over this case's blocks

    def ratio(self, attr: str, minus_null: bool = False, over: str = "queue") -> float | None:
        a, q, n = (self.summaries.get(h) for h in ("alert", over, "null"))
        if a is None or q is None:
            return None
        top, bottom = getattr(a, attr), getattr(q, attr)
        if minus_null and n is not None:
            top, bottom = top - getattr(n, attr), bottom - getattr(n, attr)
        return top / bottom if bottom > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "messages": self.messages,
            "summaries": {h: asdict(s) if s else None for h, s in self.summaries.items()},
            "rep_p50s": self.rep_p50s,
            "ratio_p50": self.ratio("p50"),
            "ratio_p99": self.ratio("p99"),
            "ratio_p50_minus_null": self.ratio("p50", minus_null=True),
            "alert_stats": self.alert_stats,
        }


@dataclass
class BusyResult(CaseResult):
    """Part 2. ``threads``: per handler with a thread of its own, what that thread did during the timed blocks."""

    gap: float = 0.0
    calls_per_s: dict[str, float] = field(default_factory=dict)  # handler -> calls per second of wall time
    threads: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "gap": self.gap,
            "calls_per_s": self.calls_per_s,
            "threads": self.threads,
            "ratio_p50_vs_busy_listener": self.ratio("p50", over="queue_busy"),
        }


DEPLOYED_HANDLERS = ("null", "listener", "alert")
DEPLOYED_LABELS = {"null": "NullHandler", "listener": "QueueHandler + QueueListener", "alert": "AlertHandler"}


@dataclass
class DeployedCase:
    """Part 3: one (threads, messages) cell; handler -> p50/p99 pooled over threads and repetitions."""

    threads: int
    messages: str
    summaries: dict[str, Summary | None] = field(default_factory=dict)
    alert_stats: dict[str, int] = field(default_factory=dict)  # AlertHandler counters over this case's blocks

    def ratio(self, attr: str) -> float | None:
        a, q = self.summaries.get("alert"), self.summaries.get("listener")
        if a is None or q is None or getattr(q, attr) <= 0:
            return None
        return float(getattr(a, attr) / getattr(q, attr))

    def to_json(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "messages": self.messages,
            "summaries": {h: asdict(s) if s else None for h, s in self.summaries.items()},
            "ratio_p50": self.ratio("p50"),
            "ratio_p99": self.ratio("p99"),
            "alert_stats": self.alert_stats,
        }


@dataclass
class EmitReport:
    calls: int
    reps: int
    cases: list[CaseResult]
    busy: BusyResult | None
    busy_calls: int = 0
    deployed: list[DeployedCase] = field(default_factory=list)
    deployed_calls: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "reps": self.reps,
            "busy_calls": self.busy_calls,
            "cases": [c.to_json() for c in self.cases],
            "busy": self.busy.to_json() if self.busy else None,
            "deployed_calls": self.deployed_calls,
            "deployed": [c.to_json() for c in self.deployed],
        }


def _quiet_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def measure_emit(url: str, calls: int, reps: int, progress: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Part 1: back-to-back blocks for every record kind."""
    iso = Isolation.fresh(url, "emitcost")
    alert = AlertHandler(broker_url=url, queue=iso.queue)
    handlers: dict[str, logging.Handler] = {
        "null": logging.NullHandler(),
        "queue": logging.handlers.QueueHandler(queue.Queue()),
        "alert": alert,
    }
    logger = _quiet_logger("bench.emit")
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
                progress(f"emit cost, back to back: repetition {rep + 1}/{reps}")
            for index, case in enumerate(results):
                for name in order:
                    logger.handlers = [handlers[name]]
                    before = alert.stats()
                    samples = timed_block(logger, calls, case.kind, case.messages, exc)
                    logger.handlers = []
                    if name == "alert":
                        _add_stat_deltas(case.alert_stats, before, alert.stats())
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


def _add_stat_deltas(into: dict[str, int], before: dict[str, int], after: dict[str, int]) -> None:
    """Add what the handler's counters grew by during a block (``buffered`` is a level, not a counter)."""
    for key, value in after.items():
        if key != "buffered":
            into[key] = into.get(key, 0) + value - before[key]


def _add_publisher_counts(total: dict[str, float], before: dict[str, int], after: dict[str, int]) -> None:
    for key in ("published", "dropped", "coalesced"):
        total[key] = total.get(key, 0) + after[key] - before[key]


def _busy_handler(
    name: str, alert: AlertHandler, url: str, listener_key: str
) -> tuple[logging.Handler, logging.handlers.QueueListener | None, RedisListHandler | None]:
    """The handler timed in a part-2 block, with the listener thread and its sink for ``queue_busy``."""
    if name == "null":
        return logging.NullHandler(), None, None
    if name == "queue":
        return logging.handlers.QueueHandler(queue.Queue()), None, None
    if name == "queue_busy":
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        sink = RedisListHandler(url, listener_key)
        listener = logging.handlers.QueueListener(records, sink)
        listener.start()
        return logging.handlers.QueueHandler(records), listener, sink
    return alert, None, None


def _busy_summaries(
    result: BusyResult, pooled: dict[str, list[array[int]]], totals: dict[str, dict[str, float]]
) -> None:
    for name in BUSY_HANDLERS:
        result.summaries[name] = Summary.of_ns([ns for block in pooled.get(name, []) for ns in block])
        total = totals.get(name, {})
        if total.get("wall"):
            result.calls_per_s[name] = total["calls"] / total["wall"]
            if "thread_cpu" in total:
                result.threads[name] = {
                    "cpu_share": total["thread_cpu"] / total["wall"],
                    "published": total.get("published", 0),
                    "dropped": total.get("dropped", 0),
                    "calls": total["calls"],
                }
    result.alert_stats = {k: int(totals.get("alert", {}).get(k, 0)) for k in ("published", "coalesced", "dropped")}


def measure_busy(
    url: str, calls: int, reps: int, gap: float, progress: Callable[[str], None] | None = None
) -> BusyResult:
    """Part 2: distinct plain messages, a GIL-releasing gap after each call, the publisher publishing throughout."""
    iso = Isolation.fresh(url, "emitbusy")
    listener_key = f"{iso.queue}-listener"
    before_threads = set(threading.enumerate())
    alert = AlertHandler(broker_url=url, queue=iso.queue)
    logger = _quiet_logger("bench.emit.busy")
    result = BusyResult("plain", "distinct, paced", gap=gap)
    pooled: dict[str, list[array[int]]] = {}
    totals: dict[str, dict[str, float]] = {}

    def run_block(name: str, n: int, record: bool) -> None:
        handler, listener, sink = _busy_handler(name, alert, url, listener_key)
        publisher = next(
            (t for t in threading.enumerate() if t.name == "alerting-publisher" and t not in before_threads), None
        )
        stats_before = alert.stats()
        tid = publisher.native_id if name == "alert" and publisher else None
        cpu_before = thread_cpu_seconds(tid)
        logger.handlers = [handler]
        started = time.perf_counter()
        samples = paced_block(logger, n, gap)
        wall = time.perf_counter() - started
        logger.handlers = []
        if sink is not None:
            tid = sink.native_id
            cpu_before = 0.0  # the listener thread was started for this block
        cpu_after = thread_cpu_seconds(tid)
        if record:
            pooled.setdefault(name, []).append(samples)
            rep_summary = Summary.of_ns(samples)
            result.rep_p50s.setdefault(name, []).append(rep_summary.p50 if rep_summary else 0.0)
            total = totals.setdefault(name, {"calls": 0, "wall": 0.0})
            total["calls"] += n
            total["wall"] += wall
            if cpu_before is not None and cpu_after is not None:
                total["thread_cpu"] = total.get("thread_cpu", 0.0) + cpu_after - cpu_before
            if name == "alert":
                _add_publisher_counts(total, stats_before, alert.stats())
            if sink is not None:
                total["published"] = total.get("published", 0) + sink.handled
        if listener is not None and sink is not None:
            listener.handlers = ()  # stop() would otherwise handle everything still queued first
            listener.stop()
            sink.close()
        alert.flush(10.0)
        iso.drop_queue()
        redis_client = redis.Redis.from_url(url)
        redis_client.delete(listener_key)
        redis_client.close()
        gc.collect()

    try:
        for name in BUSY_HANDLERS:  # warm-up: connections, the publisher thread, caches
            run_block(name, min(calls, 1000), record=False)
        for rep in range(reps):
            if progress:
                progress(f"emit cost, publisher busy: repetition {rep + 1}/{reps}")
            for name in BUSY_HANDLERS if rep % 2 == 0 else BUSY_HANDLERS[::-1]:
                run_block(name, calls, record=True)
    finally:
        logger.handlers = []
        alert.close()
        iso.cleanup()
    _busy_summaries(result, pooled, totals)
    return result


def paced_messages_block(logger: logging.Logger, calls: int, gap: float, messages: str) -> array[int]:
    """Like ``paced_block``, with identical or distinct messages."""
    samples = array("q", bytes(8 * calls))
    critical = logger.critical
    clock = time.perf_counter_ns
    sleep = time.sleep
    token = uuid.uuid4().hex[:6]
    for i in range(calls):
        msg = f"payment provider timed out (order {token}-{i})" if messages == "distinct" else "payment provider down"
        t0 = clock()
        critical(msg)
        samples[i] = clock() - t0
        sleep(gap)
    return samples


def _threaded(logger: logging.Logger, threads: int, calls: int, gap: float, messages: str) -> list[array[int]]:
    """``threads`` threads calling at once (released together by a barrier); each thread's samples."""
    out: list[array[int]] = [array("q") for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        barrier.wait()
        out[index] = paced_messages_block(logger, calls, gap, messages)

    workers = [threading.Thread(target=work, args=(i,), name=f"bench-app-{i}") for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return out


def measure_deployed(
    url: str, calls: int, reps: int, gap: float, progress: Callable[[str], None] | None = None
) -> list[DeployedCase]:
    """Part 3: QueueHandler with a running QueueListener (as deployed) vs AlertHandler, 1 and 4 threads."""
    iso = Isolation.fresh(url, "emitdeployed")
    alert = AlertHandler(broker_url=url, queue=iso.queue)
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = logging.handlers.QueueListener(records, logging.NullHandler())
    listener.start()
    handlers: dict[str, logging.Handler] = {
        "null": logging.NullHandler(),
        "listener": logging.handlers.QueueHandler(records),
        "alert": alert,
    }
    logger = _quiet_logger("bench.emit.deployed")
    cases = [DeployedCase(t, m) for t in (1, 4) for m in ("identical", "distinct")]
    pooled: dict[tuple[int, str], list[array[int]]] = {}
    try:
        for name in DEPLOYED_HANDLERS:  # warm-up
            logger.handlers = [handlers[name]]
            _threaded(logger, 2, min(calls, 500), gap, "distinct")
            alert.flush(10.0)
        for rep in range(reps):
            if progress:
                progress(f"emit cost, deployed yardstick: repetition {rep + 1}/{reps}")
            for index, case in enumerate(cases):
                for name in DEPLOYED_HANDLERS if rep % 2 == 0 else DEPLOYED_HANDLERS[::-1]:
                    logger.handlers = [handlers[name]]
                    before = alert.stats()
                    blocks = _threaded(logger, case.threads, calls, gap, case.messages)
                    logger.handlers = []
                    if name == "alert":
                        _add_stat_deltas(case.alert_stats, before, alert.stats())
                    alert.flush(10.0)
                    iso.drop_queue()
                    gc.collect()
                    pooled.setdefault((index, name), []).extend(blocks)
    finally:
        logger.handlers = []
        listener.stop()
        alert.close()
        iso.cleanup()
    for index, case in enumerate(cases):
        for name in DEPLOYED_HANDLERS:
            case.summaries[name] = Summary.of_ns([ns for block in pooled.get((index, name), []) for ns in block])
    return cases


def run(
    url: str | None = None,
    *,
    calls: int = 20_000,
    reps: int = 3,
    busy_calls: int = 4_000,
    gap: float = 50e-6,
    deployed_calls: int = 3_000,
    progress: Callable[[str], None] | None = None,
) -> EmitReport:
    url = url or broker_url()
    require_redis(url)
    cases = measure_emit(url, calls, reps, progress) if calls else []
    busy = measure_busy(url, busy_calls, reps, gap, progress) if busy_calls else None
    deployed = measure_deployed(url, deployed_calls, reps, gap, progress) if deployed_calls else []
    return EmitReport(calls, reps, cases, busy, busy_calls, deployed, deployed_calls)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _p50_p99(s: Summary | None) -> str:
    return f"{duration(s.p50)} / {duration(s.p99)}" if s else "-"


def _spread(values: Sequence[float]) -> str:
    return f"{duration(min(values))}..{duration(max(values))}" if values else "-"


def report(result: EmitReport) -> str:
    lines = []
    if result.cases:
        rows = []
        for c in result.cases:
            row: list[object] = [f"{c.kind}, {c.messages}"]
            row += [_p50_p99(c.summaries.get(name)) for name in HANDLERS]
            row += [
                _ratio(c.ratio("p50")),
                _ratio(c.ratio("p99")),
                _ratio(c.ratio("p50", minus_null=True)),
                _spread(c.rep_p50s.get("alert", [])),
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
            "publisher in blocks: published/coalesced/dropped",
        ]
        title = (
            f"emit cost, part 1, back to back (publisher idle or starved): logger.critical() per call, "
            f"{result.calls:,} calls x {result.reps} repetitions per cell; 'w/o logging' subtracts NullHandler"
        )
        lines.append(table(headers, rows, title))
    busy = result.busy
    if busy is not None:
        rows = []
        for name in BUSY_HANDLERS:
            s = busy.summaries.get(name)
            thread = busy.threads.get(name)
            did = "-"
            if thread is not None:
                did = (
                    f"{thread['cpu_share']:.0%} CPU; {int(thread['published']):,} of {int(thread['calls']):,} "
                    f"published, {int(thread['dropped']):,} dropped"
                )
            rows.append(
                [
                    HANDLER_LABELS[name],
                    duration(s.p50 if s else None),
                    duration(s.p99 if s else None),
                    _spread(busy.rep_p50s.get(name, [])),
                    f"{busy.calls_per_s.get(name, 0):,.0f}/s",
                    did,
                ]
            )
        title = (
            f"emit cost, part 2, publisher busy: distinct plain records, time.sleep({busy.gap:g}) after each call, "
            f"{result.busy_calls:,} calls x {result.reps} repetitions per handler"
        )
        headers = ["handler", "p50", "p99", "p50 per rep", "loop rate", "its thread during the blocks"]
        if lines:
            lines.append("")
        lines.append(table(headers, rows, title))
        lines.append(
            f"  AlertHandler/QueueHandler p50: {_ratio(busy.ratio('p50'))}, p99: {_ratio(busy.ratio('p99'))}; "
            f"AlertHandler/(QueueHandler, listener busy) p50: {_ratio(busy.ratio('p50', over='queue_busy'))}"
        )
    if result.deployed:
        rows = []
        for d in result.deployed:
            cells: list[object] = [f"{d.threads} thread{'s' if d.threads > 1 else ''}, {d.messages}"]
            cells += [_p50_p99(d.summaries.get(name)) for name in DEPLOYED_HANDLERS]
            cells += [_ratio(d.ratio("p50")), _ratio(d.ratio("p99"))]
            cells.append("/".join(str(d.alert_stats.get(k, 0)) for k in ("published", "coalesced", "dropped")))
            rows.append(cells)
        headers = [
            "threads, messages",
            *(f"{DEPLOYED_LABELS[n]} p50/p99" for n in DEPLOYED_HANDLERS),
            "AH/(QH+QL) p50",
            "AH/(QH+QL) p99",
            "AH published/coalesced/dropped",
        ]
        title = (
            f"emit cost, part 3, deployed yardstick: QueueHandler + running QueueListener(NullHandler); "
            f"{result.deployed_calls:,} calls per thread x {result.reps} repetitions, time.sleep(gap) after each"
        )
        if lines:
            lines.append("")
        lines.append(table(headers, rows, title))
    return "\n".join(lines)


def goal_figures(result: EmitReport) -> dict[str, float | None]:
    """The goal's figures: part 2's p50 ratio AlertHandler/QueueHandler and AlertHandler's p99 (seconds)."""
    busy = result.busy
    listener = next((c for c in result.deployed if c.threads == 4 and c.messages == "distinct"), None)
    deployed = {"emit_ratio_p50_listener": listener.ratio("p50") if listener else None}
    if busy is None:
        return {"emit_ratio_p50": None, "emit_p99": None, **deployed}
    alert = busy.summaries.get("alert")
    return {"emit_ratio_p50": busy.ratio("p50"), "emit_p99": alert.p99 if alert else None, **deployed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="part 1: calls per block; 0 skips part 1")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every block (default %(default)s)")
    parser.add_argument("--busy-calls", type=int, default=4_000, help="part 2: calls per block; 0 skips part 2")
    parser.add_argument("--gap", type=float, default=50e-6, help="parts 2 and 3: seconds slept after each call")
    parser.add_argument(
        "--deployed-calls", type=int, default=3_000, help="part 3: calls per thread and block; 0 skips part 3"
    )
    args = parser.parse_args(argv)

    def measured() -> EmitReport:
        return run(
            calls=args.calls,
            reps=args.reps,
            busy_calls=args.busy_calls,
            gap=args.gap,
            deployed_calls=args.deployed_calls,
            progress=cli.progress,
        )

    return cli.run(measured, report, EmitReport.to_json, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
