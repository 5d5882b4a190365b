"""The buffer between ``emit()`` and the publisher thread, broken the ways review broke it: re-entered from a signal
handler while it holds its own lock, and flooded with distinct alerts while the broker is down. Each scenario runs in
an application process of its own (this module, run with ``python -m``), since the promises are about a process:
that it does not hang, and that it does not grow.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import RedisServer, free_port
from tests.support.wire import queued_messages, task_payload

ROOT = Path(__file__).parents[2]


def run_child(*args: str, timeout: float) -> dict[str, Any]:
    """Run a scenario below in a fresh process; its last stdout line is a JSON summary."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.faults.test_buffer_faults", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the application process did not finish within {timeout}s (deadlocked?): {exc.stderr!r}")
    assert done.returncode == 0, done.stderr[-4000:]
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    summary["stderr"] = done.stderr
    return summary


# -- Fault 1: a signal handler that logs a critical while the same thread is inside emit() -------------------------
@pytest.mark.parametrize("warm_up", [False, True], ids=["from-the-first-alert", "publisher-running"])
def test_a_signal_handler_that_logs_while_its_thread_is_inside_emit_does_not_deadlock_and_every_alert_is_accounted_for(
    private_redis: RedisServer, queue: str, warm_up: bool
) -> None:
    # SIGALRM every 2 ms while the main thread logs criticals in a loop, and the signal handler logs one too: it
    # lands inside emit() (holding the buffer's lock, or starting the publisher thread) hundreds of times.
    extra = ["--warm-up"] if warm_up else []
    summary = run_child("signal-storm", "--broker", private_redis.url, "--queue", queue, *extra, timeout=30)
    assert summary["from_signal_handler"] > 50  # the timer really did interrupt the loop, many times
    payloads = [task_payload(m) for m in queued_messages(private_redis.client(), queue)]
    delivered = sum(p["count"] for p in payloads)
    reported = sum(p["dropped"]["total"] for p in payloads if p.get("dropped"))  # overflow and re-entrant skips
    assert delivered + reported == summary["logged"]
    assert summary["stats"]["published"] == len(payloads)


def _signal_storm(args: argparse.Namespace) -> dict[str, Any]:
    from alerting import AlertHandler

    handler = AlertHandler(broker_url=args.broker, queue=args.queue, flush_timeout=10.0)
    log = logging.getLogger("app.signals")
    log.addHandler(handler)
    log.propagate = False
    from_handler = itertools.count(1)  # next() is atomic: a handler interrupting a handler still counts once each
    fired = [0]
    if args.warm_up:  # the publisher thread already running: the storm meets the buffer's lock, not start()
        log.critical("warm-up")
        handler.flush(5.0)

    def on_alarm(signum: int, frame: object) -> None:
        fired[0] = next(from_handler)
        log.critical("timer alarm %d", fired[0] % 7)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    logged = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        log.critical("main loop %d", logged % 5, extra={"alert_key": f"main-{logged % 50}"})
        logged += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    flushed = handler.flush(10.0)
    return {
        "logged": logged + fired[0] + args.warm_up,
        "from_signal_handler": fired[0],
        "flushed": flushed,
        "stats": handler.stats(),
    }


# -- Memory: everything the handler holds is bounded by its settings, whatever the logging rate ----------------------
# With capacity 100 the handler may hold 100 entries (a few KiB each), 4 x 100 + 100 recently seen fingerprints for
# coalescing, a drop report of 50 fingerprints; the payload module caches 4096 fingerprints. Together well under
# 2 MiB; the bound leaves room for the allocator. Before the fix the table of recently seen fingerprints grew with
# the logging rate (12 to 24 MiB here, depending on how fast the loop ran), and stayed.
MEMORY_BOUND_MIB = 5.0


def test_two_hundred_thousand_distinct_criticals_with_redis_down_grow_the_process_only_by_what_capacity_allows() -> (
    None
):
    summary = run_child("distinct-flood", "--capacity", "100", "--count", "200000", timeout=60)
    assert summary["stats"]["buffered"] == 100
    assert summary["stats"]["dropped"] + summary["stats"]["buffered"] == summary["logged"]  # counted, not silent
    assert summary["growth_mib"] < MEMORY_BOUND_MIB, summary


def _distinct_flood(args: argparse.Namespace) -> dict[str, Any]:
    import gc

    from alerting import AlertHandler

    logging.getLogger("alerting").setLevel(logging.CRITICAL + 1)  # its expected warnings about the outage
    handler = AlertHandler(broker_url=args.broker, queue=args.queue, capacity=args.capacity, flush_timeout=0)
    log = logging.getLogger("app.flood")
    log.addHandler(handler)
    log.propagate = False
    warm_up = 2 * args.capacity  # the thread, the first failed connection, a full buffer: not what is measured
    for i in range(warm_up):
        log.critical("payment failed for order %d", i, extra={"alert_key": f"warm-{i}"})
    gc.collect()
    before = _rss_mib()
    for i in range(args.count):  # plain records at full speed: distinct problems, as fast as the loop goes
        log.critical("payment failed for order %d", i, extra={"alert_key": f"order-{i}"})
    gc.collect()
    growth = _rss_mib() - before
    logged = warm_up + args.count
    # The publisher thread may hold a batch for a failing attempt (milliseconds): wait for it to come back.
    deadline = time.monotonic() + 10
    while (stats := handler.stats())["dropped"] + stats["buffered"] != logged and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"logged": logged, "growth_mib": growth, "stats": stats}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# -- the application processes -------------------------------------------------------------------------------------
def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["signal-storm", "distinct-flood"])
    parser.add_argument("--broker", default=f"redis://127.0.0.1:{free_port()}/0")
    parser.add_argument("--queue", default="faults")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--warm-up", action="store_true")
    parser.add_argument("--capacity", type=int, default=1000)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args(argv)
    summary = {"signal-storm": _signal_storm, "distinct-flood": _distinct_flood}[args.scenario](args)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
