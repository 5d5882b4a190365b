"""An application process for exit, crash and fork tests: `python -m tests.support.app_process --help`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from alerting import AlertHandler


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--spool", default=None)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--prefix", default="app alert")
    p.add_argument("--flush-timeout", type=float, default=2.0)
    p.add_argument("--exit", choices=["normal", "kill-after-spooled", "fork"], default="normal")
    p.add_argument("--linger", type=float, default=0.0, help="seconds to stay alive before exiting")
    args = p.parse_args()

    handler = AlertHandler(
        broker_url=args.broker, queue=args.queue, spool_path=args.spool, flush_timeout=args.flush_timeout
    )
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.propagate = False

    if args.exit == "fork":
        return _fork(log, args.prefix)
    for i in range(args.count):
        log.critical("%s %d", args.prefix, i, extra={"alert_key": f"{args.prefix}-{i}"})
    print(f"logged {args.count}", flush=True)  # a test may end an outage once this line is out
    if args.exit == "kill-after-spooled":
        deadline = time.monotonic() + 10
        while handler.stats()["spooled"] < args.count and time.monotonic() < deadline:
            time.sleep(0.01)
        print(f"spooled {handler.stats()['spooled']}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(args.linger)
    return 0  # normal exit: logging.shutdown() (atexit) flushes within flush_timeout


def _fork(log: logging.Logger, prefix: str) -> int:
    """A pre-forking server in miniature: the parent alerts (its publisher thread runs), then forks workers."""
    log.critical("%s parent before fork", prefix, extra={"alert_key": "parent-before"})
    children = []
    for n in range(2):
        pid = os.fork()
        if pid == 0:
            log.critical("%s child %d", prefix, n, extra={"alert_key": f"child-{n}"})
            logging.shutdown()  # what a worker's normal exit does (atexit)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    log.critical("%s parent after fork", prefix, extra={"alert_key": "parent-after"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
