"""Memory while the broker is down: log 200,000 criticals into a handler whose Redis refuses connections, and
report how much the process grew (RSS). The buffer is bounded by ``capacity``; nothing else may grow with it.

    .venv/bin/python benchmarks/memory.py [--criticals 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from measure import table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerting import AlertHandler
from tests.support.servers import free_port


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class MemoryResult:
    case: str
    criticals: int
    growth_mib: float
    buffered: int
    dropped: int
    coalesced: int


def run_case(case: str, criticals: int) -> MemoryResult:
    handler = AlertHandler(broker_url=f"redis://127.0.0.1:{free_port()}/0", queue="memory-bench", flush_timeout=0)
    log = logging.getLogger(f"bench.memory.{case}")
    log.addHandler(handler)
    log.propagate = False
    try:
        raise ConnectionError("payment provider unreachable")
    except ConnectionError:
        exc_info = sys.exc_info()
    log.critical("warm-up", exc_info=exc_info)  # imports, thread, first failed connection: not what we measure
    gc.collect()
    before = rss_mib()
    for i in range(criticals):
        if case == "one problem":  # the usual storm: one fingerprint, a different order number each time
            log.critical("payment failed for order %d", i, exc_info=exc_info)
        else:  # the worst case: every alert a problem of its own (distinct alert keys), each with a traceback
            log.critical("payment failed for order %d", i, exc_info=exc_info, extra={"alert_key": f"order-{i}"})
    gc.collect()
    growth = rss_mib() - before
    stats = handler.stats()
    log.removeHandler(handler)
    logging.getLogger("alerting").disabled = True  # the "lost N alerts" report at close is expected here
    handler.close()
    logging.getLogger("alerting").disabled = False
    return MemoryResult(case, criticals, growth, stats["buffered"], stats["dropped"], stats["coalesced"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--criticals", type=int, default=200_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = [run_case(case, args.criticals) for case in ("one problem", "all distinct")]
    rows = [
        [r.case, f"{r.criticals:,}", f"{r.growth_mib:.1f} MiB", f"{r.buffered:,}", f"{r.dropped:,}", f"{r.coalesced:,}"]
        for r in results
    ]
    print(table(["case", "criticals", "RSS growth", "buffered", "dropped", "coalesced"], rows,
                "Broker down: memory after logging (capacity 1000)"))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
