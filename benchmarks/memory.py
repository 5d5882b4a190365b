"""Memory while the broker is down: log 200,000 criticals into a handler whose Redis refuses connections, and
report how much the process grew (RSS). The buffer is bounded by ``capacity``; nothing else may grow with it.

The worst case is plain distinct records at full speed: a traceback per record slows the loop several times over,
and a slow loop hides whatever grows with the logging *rate* (such as the table of recently seen fingerprints that
coalescing keeps).

Each case runs in a fresh Python process of its own (the cases side by side), so that memory freed by earlier work
cannot hide growth. The handler's own warnings ("cannot publish", "lost N alerts" at close) are expected and
silenced.

    .venv/bin/python benchmarks/memory.py [--criticals 200000] [--capacity 1000] [--case "all distinct"] [--json F]
"""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cli
from measure import table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerting import AlertHandler
from tests.support.servers import free_port

CASES = ("one problem", "all distinct", "all distinct, no traceback")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class MemoryResult:
    case: str
    criticals: int
    capacity: int
    growth_mib: float
    buffered: int
    dropped: int
    coalesced: int


def run_case(case: str, criticals: int, capacity: int = 1000) -> MemoryResult:
    """In this process: one handler, Redis down, ``criticals`` criticals (a traceback each but in the last case)."""
    logging.getLogger("alerting").setLevel(logging.CRITICAL + 1)  # its expected warnings about the outage
    handler = AlertHandler(
        broker_url=f"redis://127.0.0.1:{free_port()}/0", queue="memory-bench", flush_timeout=0, capacity=capacity
    )
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
        elif case == "all distinct":  # every alert a problem of its own (distinct alert keys), each with a traceback
            log.critical("payment failed for order %d", i, exc_info=exc_info, extra={"alert_key": f"order-{i}"})
        else:  # the worst case: distinct problems as fast as the loop goes (a traceback each slows it ~8x)
            log.critical("payment failed for order %d", i, extra={"alert_key": f"order-{i}"})
    gc.collect()
    growth = rss_mib() - before
    stats = handler.stats()
    log.removeHandler(handler)
    handler.close()
    return MemoryResult(case, criticals, capacity, growth, stats["buffered"], stats["dropped"], stats["coalesced"])


def measure(criticals: int = 200_000, cases: Sequence[str] = CASES, capacity: int = 1000) -> list[MemoryResult]:
    """Every case in a fresh process of its own, one after the other: a case that shares the CPU logs more slowly,
    and what grows with the logging rate would look smaller than it is."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for i, case in enumerate(cases):
            out = Path(tmp) / f"case{i}.json"
            args = ["--case", case, "--criticals", str(criticals), "--capacity", str(capacity), "--json", str(out)]
            proc = subprocess.run(
                [sys.executable, __file__, *args], stdout=subprocess.DEVNULL, timeout=600, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(f"memory benchmark case failed: {proc.args!r}")
            results.append(MemoryResult(**json.loads(out.read_text(encoding="utf-8"))[0]))
    return results


def report(results: Sequence[MemoryResult]) -> str:
    rows = [
        [
            r.case,
            f"{r.criticals:,}",
            f"{r.capacity:,}",
            f"{r.growth_mib:.1f} MiB",
            f"{r.buffered:,}",
            f"{r.dropped:,}",
            f"{r.coalesced:,}",
        ]
        for r in results
    ]
    return table(
        ["case", "criticals", "capacity", "RSS growth", "buffered", "dropped", "coalesced"],
        rows,
        "Broker down: memory after logging (each case in a fresh process)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--criticals", type=int, default=200_000)
    parser.add_argument("--capacity", type=int, default=1000, help="the handler's capacity (default %(default)s)")
    parser.add_argument("--case", choices=CASES, help="run only this case, in this process")
    args = parser.parse_args(argv)

    def measured() -> list[MemoryResult]:
        if args.case:
            return [run_case(args.case, args.criticals, args.capacity)]
        return measure(args.criticals, capacity=args.capacity)

    return cli.run(measured, report, lambda results: [asdict(r) for r in results], args.json)


if __name__ == "__main__":
    raise SystemExit(main())
