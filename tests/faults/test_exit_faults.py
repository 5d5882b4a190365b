"""What the exit says: an application that ends while Redis is down must account, on stderr, for every alert it
did not deliver (lost at exit, dropped when the buffer overflowed, skipped re-entrant calls, left in the spool).
Each scenario runs in an application process of its own (this module, run with ``python -m``)."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).parents[2]


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.test_exit_faults", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def exit_counts(stderr: str) -> dict[str, int]:
    """The figures of the exit line: {"lost": n, "dropped": n, "skipped": n}, those it mentions."""
    return {verb: int(n) for verb, n in re.findall(r"\b(lost|dropped|skipped) (\d+) alerts", stderr)}


def test_exit_with_redis_down_after_an_overflow_reports_the_dropped_alerts_as_well_as_the_lost_ones() -> None:
    done = run_app("overflow", "--capacity", "10", "--count", "50")
    assert "lost 10 alerts" in done.stderr, done.stderr
    assert "dropped 40 alerts" in done.stderr, done.stderr
    # The 40 drops rode on no alert that got out (nothing did): the exit says so.
    assert "40 of the dropped and skipped were reported in no alert that got out" in done.stderr, done.stderr
    assert exit_counts(done.stderr) == {"lost": 10, "dropped": 40}


def test_exit_with_redis_down_and_a_spool_says_how_many_alerts_wait_in_it(tmp_path: Path) -> None:
    spool = tmp_path / "alerts.sqlite"
    done = run_app("overflow", "--capacity", "10", "--count", "5", "--spool", str(spool))
    assert f"5 alerts wait in the spool {spool}" in done.stderr, done.stderr
    assert "every alert delivered or kept" in done.stderr
    assert exit_counts(done.stderr) == {}


def test_exit_after_a_signal_handler_logged_during_an_outage_accounts_for_every_alert() -> None:
    done = run_app("signals", "--capacity", "1")
    logged = int(re.findall(r"logged (\d+)", done.stdout)[-1])
    counts = exit_counts(done.stderr)
    assert counts.get("lost", 0) + counts.get("dropped", 0) + counts.get("skipped", 0) == logged, done.stderr


# -- the application processes -------------------------------------------------------------------------------------
def _overflow(args: argparse.Namespace) -> None:
    from alerting import AlertHandler

    handler = AlertHandler(broker_url=args.broker, capacity=args.capacity, flush_timeout=0.5, spool_path=args.spool)
    log = logging.getLogger("app.exit")
    log.addHandler(handler)
    log.propagate = False
    for i in range(args.count):
        log.critical("payment failed for order %d", i, extra={"alert_key": f"order-{i}"})
    # then a normal exit: logging.shutdown() (atexit) closes the handler


def _signals(args: argparse.Namespace) -> None:
    from alerting import AlertHandler

    handler = AlertHandler(broker_url=args.broker, capacity=args.capacity, flush_timeout=0.2)
    log = logging.getLogger("app.exit.signals")
    log.addHandler(handler)
    log.propagate = False
    fired = [0]

    def on_alarm(signum: int, frame: object) -> None:
        fired[0] += 1
        log.critical("timer alarm %d", fired[0])

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    logged = 0
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        log.critical("main loop %d", logged, extra={"alert_key": f"main-{logged}"})
        logged += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    print(f"logged {logged + fired[0]}", flush=True)


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["overflow", "signals"])
    parser.add_argument("--broker", default=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    parser.add_argument("--capacity", type=int, default=1000)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--spool", default=None)
    args = parser.parse_args(argv)
    {"overflow": _overflow, "signals": _signals}[args.scenario](args)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
