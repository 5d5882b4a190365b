"""Run every benchmark with sensible defaults (about two minutes) and print one combined table.

Writes the figures to benchmarks/results/latest.json and the problem-scenario plot to docs/problem_scenario.png.

    .venv/bin/python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import emit_cost
import problem_scenario
from measure import duration, table
from stack import RedisUnavailable, broker_url, require_redis

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
PLOT = HERE.parent / "docs" / "problem_scenario.png"


def combined(scenario_results: Sequence[problem_scenario.VariantResult], emit: emit_cost.EmitReport) -> str:
    by_key = {r.key: r for r in scenario_results}
    base = by_key.get("none")
    columns = [("smtp", None), ("queue", "queue"), ("alert", "alert")]  # (scenario variant, emit_cost handler)
    headers = ["figure", "stdlib SMTPHandler", "stdlib QueueHandler", "AlertHandler"]

    def scenario_row(label: str, cell: Callable[[problem_scenario.VariantResult], str]) -> list[str]:
        return [label] + [cell(by_key[k]) if k in by_key else "-" for k, _ in columns]

    def emit_row(label: str, kind: str, messages: str) -> list[str]:
        case = next(c for c in emit.cases if (c.kind, c.messages) == (kind, messages))
        cells = []
        for _, handler in columns:
            s = case.summaries.get(handler) if handler else None
            cells.append(f"{duration(s.p50)} / {duration(s.p99)}" if s else "-")
        return [label, *cells]

    rows = [
        scenario_row(
            "scenario: iterations, % of no handler",
            lambda r: (
                f"{r.iterations:,} ({100 * r.iterations / base.iterations:.0f}%)" if base else f"{r.iterations:,}"
            ),
        ),
        scenario_row("scenario: loop ran (asked for the duration)", lambda r: f"{r.loop_seconds:.1f} s"),
        scenario_row(
            "scenario: critical() p50 / p99",
            lambda r: f"{duration(r.latency.p50)} / {duration(r.latency.p99)}" if r.latency else "-",
        ),
        scenario_row(
            "scenario: mails at end / after exit+grace",
            lambda r: f"{r.delivered_at_end} / {r.delivered_after} of {r.criticals} criticals",
        ),
        scenario_row("scenario: first alert -> SMTP accepted", lambda r: duration(r.first_alert_e2e)),
        emit_row("emit: plain, identical p50 / p99", "plain", "identical"),
        emit_row("emit: plain, distinct p50 / p99", "plain", "distinct"),
        emit_row("emit: exc_info, identical p50 / p99", "exc_info", "identical"),
        emit_row("emit: exc_info, distinct p50 / p99", "exc_info", "distinct"),
    ]
    e2e = emit.e2e
    if e2e is not None and e2e.latency is not None:
        rows.append(
            [
                f"end to end, {e2e.alerts} separate alerts: p50 / p99",
                "-",
                "-",
                f"{duration(e2e.latency.p50)} / {duration(e2e.latency.p99)} ({e2e.delivered}/{e2e.alerts})",
            ]
        )
    return table(headers, rows, "Combined (details above; emit rows: logger.critical() per call, AH vs QH same run)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test, ~40 s)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    url = broker_url()
    try:
        require_redis(url)
    except RedisUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", file=sys.stderr, flush=True)

    started = time.monotonic()
    scenario = problem_scenario.Scenario(duration=2.0 if args.quick else 5.0)
    scenario_results = problem_scenario.run_variants(scenario, url=url, progress=progress)
    emit = emit_cost.run(
        url,
        calls=5_000 if args.quick else 20_000,
        reps=2 if args.quick else 3,
        e2e_alerts=20 if args.quick else 50,
        progress=progress,
    )
    elapsed = time.monotonic() - started

    print(problem_scenario.report(scenario_results, scenario))
    print()
    print(emit_cost.report(emit))
    print()
    print(combined(scenario_results, emit))
    print(f"\n{elapsed:.0f} s in all; figures are noisy on shared machines: compare ratios within one run.")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "problem_scenario": problem_scenario.to_json(scenario_results, scenario),
        "emit_cost": emit.to_json(),
        "seconds": round(elapsed, 1),
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    problem_scenario.plot(scenario_results, scenario, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
