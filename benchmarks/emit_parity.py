"""emit() next to the stdlib's QueueHandler with a running QueueListener: p50 / p99 per call, 1 and 4 threads.

Side by side in one run: ``logging.getLogger(...).critical(msg)`` through (a) ``QueueHandler`` with a running
``QueueListener(NullHandler())`` and (b) ``AlertHandler`` publishing to a private redis-server started for this run
(so its publisher thread runs and competes for the GIL, as the listener does). Each call is timed on its own
(``time.perf_counter_ns``); messages distinct (an f-string per call: a fingerprint each) or repeated (one
fingerprint: coalesced). Each call is followed by ``time.sleep(--gap)``, untimed, which releases the GIL as an
application's own I/O would and lets the background thread (listener or publisher) keep up (``--gap 0``: no sleep,
a tight loop that never releases the GIL between calls: a flood, where 4 threads outrun the publisher and the buffer
takes its drop path; the table's last column says how many were dropped). Handlers take turns
(queue, alert, then alert, queue in the next rep); the figures are medians over ``--reps`` runs.

    .venv/bin/python benchmarks/emit_parity.py [--calls 3000] [--reps 3] [--gap 5e-5] [--threads 1 4] [--json F]
"""

from __future__ import annotations

import contextlib
import gc
import logging
import logging.handlers
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import cli
import redis
from measure import Summary, duration, median, table
from stack import RedisUnavailable

from alerting import AlertHandler

HANDLERS = ("queue", "alert")
MESSAGES = ("distinct", "repeated")


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port (nothing on disk); its URL. Stopped afterwards."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisUnavailable("redis-server is not on PATH: this benchmark starts its own")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="emit-parity-")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RedisUnavailable(f"the private redis-server on port {port} did not start") from None
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def calls_in_threads(logger: logging.Logger, threads: int, calls: int, messages: str, gap: float) -> array[int]:
    """``calls`` critical() calls in each of ``threads`` threads started together; every call's duration (ns)."""
    results: list[array[int]] = [array("q") for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def run(slot: int) -> None:
        samples = array("q", bytes(8 * calls))
        critical = logger.critical
        clock = time.perf_counter_ns
        sleep = time.sleep
        token = f"{uuid.uuid4().hex[:6]}-{slot}"  # distinct stays distinct across threads and blocks
        barrier.wait()
        for i in range(calls):
            msg = f"payment provider timed out (order {token}-{i})" if messages == "distinct" else "provider down"
            t0 = clock()
            critical(msg)
            samples[i] = clock() - t0
            if gap:
                sleep(gap)
        results[slot] = samples

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out: array[int] = array("q")
    for r in results:
        out.extend(r)
    return out


def one_block(handler_kind: str, url: str, threads: int, calls: int, messages: str, gap: float) -> dict[str, Any]:
    logger = logging.getLogger(f"bench.parity.{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)
    stats: dict[str, Any] = {}
    if handler_kind == "queue":
        q: queue.Queue[logging.LogRecord] = queue.Queue()
        handler: logging.Handler = logging.handlers.QueueHandler(q)
        listener = logging.handlers.QueueListener(q, logging.NullHandler())
        listener.start()
    else:
        handler = AlertHandler(broker_url=url, queue=f"parity-{uuid.uuid4().hex[:8]}", flush_timeout=5.0)
        listener = None
        # Start the publisher and its connection before timing: the first alert's connect is not emit()'s cost.
        handler.handle(logging.makeLogRecord({"name": "bench.warmup", "levelno": 50, "levelname": "CRITICAL"}))
        handler.flush(5.0)
    logger.addHandler(handler)
    gc.collect()
    try:
        samples = calls_in_threads(logger, threads, calls, messages, gap)
    finally:
        logger.removeHandler(handler)
        if listener is not None:
            listener.stop()
        if isinstance(handler, AlertHandler):
            handler.flush(5.0)
            stats = handler.stats()
        handler.close()
    summary = Summary.of_ns(samples)
    return {"p50": summary.p50 if summary else float("nan"), "p99": summary.p99 if summary else float("nan"), **stats}


@dataclass
class Result:
    calls: int
    reps: int
    gap: float
    # (threads, messages, handler) -> per-rep p50 / p99 in seconds, and the AlertHandler's drop counts
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def cell(self, threads: int, messages: str, handler: str, what: str) -> float:
        return median([r[what] for r in self.runs[f"{threads}/{messages}/{handler}"]])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure(calls: int, reps: int, gap: float, thread_counts: list[int]) -> Result:
    result = Result(calls, reps, gap)
    with private_redis() as url:
        for rep in range(reps):
            order = HANDLERS if rep % 2 == 0 else tuple(reversed(HANDLERS))
            for threads in thread_counts:
                for messages in MESSAGES:
                    for kind in order:
                        cli.progress(f"rep {rep + 1}/{reps}: {threads} thread(s), {messages}, {kind}")
                        block = one_block(kind, url, threads, calls, messages, gap)
                        result.runs.setdefault(f"{threads}/{messages}/{kind}", []).append(block)
    return result


def report(r: Result) -> str:
    rows = []
    keys = sorted({k.rsplit("/", 1)[0] for k in r.runs}, key=lambda k: (int(k.split("/")[0]), k))
    for key in keys:
        threads, messages = key.split("/")
        t = int(threads)
        q50, q99 = r.cell(t, messages, "queue", "p50"), r.cell(t, messages, "queue", "p99")
        a50, a99 = r.cell(t, messages, "alert", "p50"), r.cell(t, messages, "alert", "p99")
        dropped = max(b.get("dropped", 0) for b in r.runs[f"{key}/alert"])
        rows.append(
            (
                f"{t} thread(s), {messages}",
                duration(q50),
                duration(a50),
                f"{a50 / q50:.2f}x",
                duration(q99),
                duration(a99),
                f"{a99 / q99:.2f}x",
                dropped,
            )
        )
    title = (
        f"critical() per call, QueueHandler + running QueueListener(NullHandler) vs AlertHandler "
        f"(private Redis); medians of {r.reps} runs, {r.calls} calls per thread, gap {r.gap * 1e6:.0f} µs"
    )
    headers = ("case", "queue p50", "alert p50", "ratio", "queue p99", "alert p99", "ratio", "max dropped")
    return table(headers, rows, title)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--calls", type=int, default=3000, help="calls per thread per block")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--gap", type=float, default=5e-5, help="seconds slept (untimed) after each call")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    return cli.run(lambda: measure(args.calls, args.reps, args.gap, args.threads), report, Result.to_json, args.json)


if __name__ == "__main__":
    sys.exit(main())
