"""What ``logger.critical()`` costs while the buffer is full: the broker is down, the buffer holds ``capacity``
alerts, and every call makes one give way (least severe, then oldest). Choosing it must not grow with capacity.

5,000 fingerprints cycle (so repeats fold into coalescing slots as well as first occurrences), plain records, one
call at a time timed with ``time.perf_counter_ns``, for ``NullHandler`` (logging's own cost), ``QueueHandler``
with a ``QueueListener`` draining into a ``NullHandler`` (the stdlib's hand-off), and ``AlertHandler`` with Redis
refusing connections; the handlers take turns in blocks (A/B/C, then C/B/A), all in one run.

    .venv/bin/python benchmarks/full_buffer.py [--calls 20000] [--reps 3] [--fingerprints 5000] [--capacity 1000]
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from array import array
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from time import perf_counter_ns

import cli
from measure import Summary, duration, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerting import AlertHandler
from tests.support.servers import free_port

HANDLERS = ("NullHandler", "QueueHandler + listener", "AlertHandler, buffer full")


def timed_block(logger: logging.Logger, calls: int, fingerprints: int, start: int) -> array[int]:
    samples = array("q", bytes(8 * calls))
    critical = logger.critical
    for i in range(calls):
        key = f"problem-{(start + i) % fingerprints}"
        extra = {"alert_key": key}
        t0 = perf_counter_ns()
        critical("payment failed: %s", key, extra=extra)
        samples[i] = perf_counter_ns() - t0
    return samples


def run(calls: int, reps: int, fingerprints: int, capacity: int) -> dict[str, Summary | None]:
    logging.getLogger("alerting").setLevel(logging.CRITICAL + 1)  # its expected warnings about the outage
    logger = logging.getLogger("bench.full_buffer")
    logger.propagate = False
    alert = AlertHandler(
        broker_url=f"redis://127.0.0.1:{free_port()}/0", queue="full-buffer", capacity=capacity, flush_timeout=0
    )
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = logging.handlers.QueueListener(records, logging.NullHandler())
    listener.start()
    handlers: dict[str, logging.Handler] = {
        "NullHandler": logging.NullHandler(),
        "QueueHandler + listener": logging.handlers.QueueHandler(records),
        "AlertHandler, buffer full": alert,
    }
    pooled: dict[str, list[int]] = {name: [] for name in HANDLERS}
    position = 0
    try:
        logger.handlers = [alert]  # fill the buffer (and make every fingerprint "recent") before measuring
        timed_block(logger, 2 * fingerprints, fingerprints, 0)
        for rep in range(reps):
            for name in HANDLERS if rep % 2 == 0 else HANDLERS[::-1]:
                logger.handlers = [handlers[name]]
                pooled[name].extend(timed_block(logger, calls, fingerprints, position))
                position += calls
        if alert.stats()["buffered"] != capacity:  # it must have been full throughout, or this measured nothing
            raise RuntimeError(f"the buffer was not full: {alert.stats()}")
    finally:
        logger.handlers = []
        listener.stop()
        alert.close()
    return {name: Summary.of_ns(samples) for name, samples in pooled.items()}


def report(results: dict[str, Summary | None], calls: int, reps: int, fingerprints: int, capacity: int) -> str:
    null = results["NullHandler"]
    rows = []
    for name in HANDLERS:
        s = results[name]
        ratio = f"{s.p50 / null.p50:.1f}x" if s and null else "-"
        rows.append([name, duration(s.p50 if s else None), duration(s.p99 if s else None), ratio])
    title = (
        f"critical() with the broker down and the buffer full: capacity {capacity:,}, {fingerprints:,} fingerprints "
        f"cycling, {calls:,} calls x {reps} repetitions per handler"
    )
    return table(["handler", "p50", "p99", "p50 / NullHandler"], rows, title)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fingerprints", type=int, default=5_000)
    parser.add_argument("--capacity", type=int, default=1_000)
    args = parser.parse_args(argv)
    return cli.run(
        lambda: run(args.calls, args.reps, args.fingerprints, args.capacity),
        lambda results: report(results, args.calls, args.reps, args.fingerprints, args.capacity),
        lambda results: {name: asdict(s) if s else None for name, s in results.items()},
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
