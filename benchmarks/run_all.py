"""Run every benchmark, print their tables and one table of the project's performance goals (pass/fail).

Writes every figure to benchmarks/results/latest.json and the problem-scenario plot to docs/problem_scenario.png.
With ``--runs N`` the whole set runs N times; the goals table then shows the median of each figure, with min..max.

    .venv/bin/python benchmarks/run_all.py [--runs 1] [--quick]
"""

from __future__ import annotations

import operator
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cli
import e2e_latency
import emit_cost
import memory
import problem_scenario
import storm
import throughput
import webserver
from measure import duration, median, table
from stack import RedisUnavailable, broker_url, private_redis, require_redis

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
PLOT = HERE.parent / "docs" / "problem_scenario.png"


# -- the goals ------------------------------------------------------------------------------------------------
def _times(v: float) -> str:
    return f"{v:.2f}x"


def _pct(v: float) -> str:
    return f"{v:.1f}%"


def _mib(v: float) -> str:
    return f"{v:.1f} MiB"


def _count(v: float) -> str:
    return f"{v:g}"


_OP_SIGNS = {"<": "<", "<=": "≤", ">=": "≥"}


@dataclass(frozen=True)
class Criterion:
    key: str  # a key of the per-run figures
    op: str  # "<", "<=", ">="
    limit: float
    fmt: Callable[[float], str]

    def met(self, value: float | None) -> bool:
        ops: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}
        return value is not None and ops[self.op](value, self.limit)

    def goal_text(self) -> str:
        return f"{_OP_SIGNS[self.op]} {self.fmt(self.limit)}"


@dataclass(frozen=True)
class Goal:
    number: int
    title: str
    criteria: tuple[Criterion, ...]


GOALS = (
    Goal(
        1,
        "emit() with the publisher busy: p50 AlertHandler/QueueHandler; AlertHandler p99",
        (Criterion("emit_ratio_p50", "<=", 1.0, _times), Criterion("emit_p99", "<", 50e-6, duration)),
    ),
    Goal(
        2,
        "problem scenario: loop iterations with AlertHandler, % of no handler",
        (Criterion("scenario_pct", ">=", 97.0, _pct),),
    ),
    Goal(
        3,
        "end to end, idle machine, critical() -> SMTP accepted: p50; p99 / synchronous stdlib SMTPHandler's",
        (Criterion("e2e_p50_ratio", "<=", 1.2, _times), Criterion("e2e_p99_ratio", "<=", 1.5, _times)),
    ),
    Goal(
        4,
        "worker throughput, one worker process: % of plain smtplib",
        (Criterion("throughput_pct", ">=", 60, _pct),),
    ),
    Goal(
        5,
        "200,000 criticals with Redis down: process growth (worst case)",
        (Criterion("memory_mib", "<", 20, _mib),),
    ),
    Goal(
        6,
        "storm of 100,000 identical criticals: broker messages; emails per window",
        (Criterion("storm_messages", "<", 50, _count), Criterion("storm_emails_per_window", "<=", 2, _count)),
    ),
    Goal(
        7,
        "Flask under gunicorn, wrk, 2% criticals, SMTP 1 s: AlertHandler req/s, % of no handler; p99 / no handler's",
        (Criterion("web_rps_pct", ">=", 98.0, _pct), Criterion("web_p99_ratio", "<=", 1.1, _times)),
    ),
)

FIGURE_LABELS = {
    "emit_ratio_p50": "1  emit p50 AH/QH",
    "emit_p99": "1  emit p99 AH",
    "scenario_pct": "2  scenario % of (a)",
    "e2e_p50_ratio": "3  e2e p50 / SMTPHandler",
    "e2e_p99_ratio": "3  e2e p99 / SMTPHandler",
    "throughput_pct": "4  throughput % of smtplib",
    "memory_mib": "5  memory growth",
    "storm_messages": "6  storm broker messages",
    "storm_emails_per_window": "6  storm emails per window",
    "web_rps_pct": "7  web req/s % of no handler",
    "web_p99_ratio": "7  web p99 / no handler",
}


# -- one run of everything ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    scenario: problem_scenario.Scenario
    emit_calls: int
    emit_reps: int
    busy_calls: int
    e2e_alerts: int
    throughput_alerts: int
    throughput_trials: int
    memory_criticals: int
    storm_criticals: int
    storm_decisions: int
    web_seconds: float  # wrk load per web-server variant

    @classmethod
    def default(cls, quick: bool) -> Settings:
        if quick:
            return cls(problem_scenario.Scenario(duration=2.0), 2_000, 2, 1_000, 30, 200, 2, 50_000, 20_000, 100, 3.0)
        return cls(problem_scenario.Scenario(duration=5.0), 10_000, 3, 4_000, 100, 500, 3, 200_000, 100_000, 300, 10.0)


@dataclass
class Run:
    variants: list[problem_scenario.VariantResult]
    emit: emit_cost.EmitReport
    e2e: e2e_latency.EndToEnd
    rate: throughput.Throughput
    growth: list[memory.MemoryResult]
    flood: storm.StormResult
    decision: storm.DecisionCost
    seconds: float
    web: list[list[webserver.VariantRun]] | None = None  # None when wrk or gunicorn is missing

    def figures(self) -> dict[str, float | None]:
        by_key = {r.key: r for r in self.variants}
        none, alert = by_key.get("none"), by_key.get("alert")
        lat, yard = self.e2e.latency, self.e2e.smtphandler_latency
        complete = lat is not None and yard is not None and self.e2e.delivered == self.e2e.alerts
        return {
            **emit_cost.goal_figures(self.emit),
            "scenario_pct": 100 * alert.iterations / none.iterations if none and alert and none.iterations else None,
            "e2e_p50_ratio": lat.p50 / yard.p50 if complete and lat and yard and yard.p50 else None,
            "e2e_p99_ratio": lat.p99 / yard.p99 if complete and lat and yard and yard.p99 else None,
            "throughput_pct": 100 * self.rate.ratio,
            "memory_mib": max(m.growth_mib for m in self.growth),
            "storm_messages": float(self.flood.broker_messages),
            "storm_emails_per_window": self.flood.emails_per_window,
            **(webserver.goal_figures(self.web) if self.web else {"web_rps_pct": None, "web_p99_ratio": None}),
        }

    def details(self, scenario: problem_scenario.Scenario) -> str:
        parts = [
            problem_scenario.report(self.variants, scenario),
            emit_cost.report(self.emit),
            e2e_latency.report(self.e2e),
            throughput.report(self.rate),
            memory.report(self.growth),
            storm.report(self.flood, self.decision),
        ]
        if self.web:
            parts.append(webserver.report(self.web))
        return "\n\n".join(parts)

    def to_json(self, scenario: problem_scenario.Scenario) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "figures": self.figures(),
            "problem_scenario": problem_scenario.to_json(self.variants, scenario),
            "emit_cost": self.emit.to_json(),
            "e2e": self.e2e.to_json(),
            "throughput": self.rate.to_json(),
            "memory": [asdict(m) for m in self.growth],
            "storm": {
                **asdict(self.flood),
                "windows": self.flood.windows,
                "emails_per_window": self.flood.emails_per_window,
            },
            "decision": asdict(self.decision),
            "webserver": [[v.to_json() for v in run] for run in self.web] if self.web else None,
        }


def run_once(url: str, s: Settings, progress: Callable[[str], None]) -> Run:
    started = time.monotonic()
    variants = problem_scenario.run_variants(s.scenario, url=url, progress=lambda label: progress(f"scenario {label}"))
    emit = emit_cost.run(url, calls=s.emit_calls, reps=s.emit_reps, busy_calls=s.busy_calls, progress=progress)
    progress(f"end to end: {s.e2e_alerts} alerts")
    e2e = e2e_latency.measure(url, s.e2e_alerts)
    progress(f"throughput: {s.throughput_trials} trials of {s.throughput_alerts} alerts")
    with private_redis() as own_url:  # its Redis command counts and CPU must be the run's alone
        tp = throughput.measure(own_url, s.throughput_alerts, s.throughput_trials)
    progress(f"memory: {s.memory_criticals:,} criticals, Redis down")
    mem = memory.measure(s.memory_criticals)
    progress(f"storm: {s.storm_criticals:,} identical criticals")
    storm_result, decision = storm.run(s.storm_criticals, decisions=s.storm_decisions)
    web = None
    missing = webserver.missing_tools()
    if missing:
        progress(f"web server: skipped ({missing})")
    else:
        progress(f"web server: 4 variants x {s.web_seconds:g} s of wrk")
        web = webserver.run_all(webserver.options(["--duration", str(s.web_seconds)]))
    return Run(variants, emit, e2e, tp, mem, storm_result, decision, time.monotonic() - started, web)


# -- the tables ----------------------------------------------------------------------------------------------
def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    criterion = next(c for g in GOALS for c in g.criteria if c.key == key)
    return criterion.fmt(value)


def aggregate(runs: Sequence[dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Per figure: median, min and max over the runs that produced it."""
    out: dict[str, dict[str, float | None]] = {}
    for key in FIGURE_LABELS:
        values = [v for r in runs if (v := r.get(key)) is not None]
        out[key] = {
            "median": median(values) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
        }
    return out


def per_run_table(runs: Sequence[dict[str, float | None]]) -> str:
    headers = ["figure", *(f"run {i + 1}" for i in range(len(runs)))]
    rows = [[label, *(_fmt(key, r.get(key)) for r in runs)] for key, label in FIGURE_LABELS.items()]
    return table(headers, rows, "Goal figures of each run")


def goals_table(runs: Sequence[dict[str, float | None]], quick: bool = False) -> tuple[str, list[str], bool]:
    """The final table, the shortfalls (goal, figure, by how much), and whether every goal was met."""
    agg = aggregate(runs)
    several = len(runs) > 1
    rows = []
    shortfalls = []
    all_met = True
    for goal in GOALS:
        figures, spreads, goal_texts, met = [], [], [], True
        for c in goal.criteria:
            mid, low, high = agg[c.key]["median"], agg[c.key]["min"], agg[c.key]["max"]
            figures.append(_fmt(c.key, mid))
            spreads.append(f"{_fmt(c.key, low)}..{_fmt(c.key, high)}")
            goal_texts.append(c.goal_text())
            if not c.met(mid):
                met = False
                if mid is None:
                    shortfalls.append(f"goal {goal.number}: {c.key} was not measured")
                else:
                    shortfalls.append(f"goal {goal.number}: {_shortfall(c, mid)}")
        all_met &= met
        row = [f"{goal.number}. {goal.title}", "; ".join(figures)]
        if several:
            row.append("; ".join(spreads))
        row += ["; ".join(goal_texts), "pass" if met else "FAIL"]
        rows.append(row)
    headers = ["goal", f"median of {len(runs)} runs" if several else "figure"]
    if several:
        headers.append("min..max")
    headers += ["target", "result"]
    title = f"Performance goals ({len(runs)} run{'s' if several else ''}; figures measured side by side in each run)"
    if quick:
        title += " -- QUICK: smaller runs than the goals say, not comparable"
    return table(headers, rows, title), shortfalls, all_met


def _shortfall(c: Criterion, value: float) -> str:
    label = FIGURE_LABELS[c.key].split("  ", 1)[1]
    if c.op == ">=":
        return f"{label} is {c.fmt(value)}, short of {c.fmt(c.limit)} by {c.fmt(c.limit - value)}"
    over = value / c.limit if c.limit else float("inf")
    return f"{label} is {c.fmt(value)}, over {c.fmt(c.limit)} by {c.fmt(value - c.limit)} ({over:.1f}x the target)"


# -- main ------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__, json_default=RESULTS)
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole set; report medians (default 1)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test; figures not comparable)")
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    url = broker_url()
    try:
        require_redis(url)
    except RedisUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    settings = Settings.default(args.quick)
    started = time.monotonic()

    runs: list[Run] = []
    for index in range(args.runs):

        def progress(text: str, index: int = index) -> None:
            clock = f"[{time.monotonic() - started:6.1f}s]"
            print(f"{clock} run {index + 1}/{args.runs}: {text}", file=sys.stderr, flush=True)

        run = run_once(url, settings, progress)
        runs.append(run)
        heading = f"== run {index + 1} of {args.runs} ({run.seconds:.0f} s) "
        print(f"{heading}{'=' * max(0, 110 - len(heading))}\n")
        print(run.details(settings.scenario))
        print(flush=True)
    elapsed = time.monotonic() - started

    figures = [r.figures() for r in runs]
    if len(runs) > 1:
        print(per_run_table(figures))
        print()
    final, shortfalls, all_met = goals_table(figures, args.quick)
    print(final)
    for line in shortfalls:
        print(f"  {line}")
    print(
        f"\n{elapsed:.0f} s in all. Figures move between runs on this machine: compare figures from the same run, "
        "and medians."
    )

    medians = aggregate(figures)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "broker": url.rsplit("@", 1)[-1],
        "quick": args.quick,
        "settings": {**asdict(settings), "scenario": asdict(settings.scenario)},
        "goals": {
            "all_met": all_met,
            "figures": medians,
            "shortfalls": shortfalls,
            "per_goal": [
                {
                    "goal": g.number,
                    "title": g.title,
                    "criteria": [
                        {
                            "figure": c.key,
                            "op": c.op,
                            "limit": c.limit,
                            "median": medians[c.key]["median"],
                            "met": c.met(medians[c.key]["median"]),
                        }
                        for c in g.criteria
                    ],
                }
                for g in GOALS
            ],
        },
        "runs": [r.to_json(settings.scenario) for r in runs],
        "seconds": round(elapsed, 1),
    }
    cli.write_json(args.json, document)
    problem_scenario.plot([r.variants for r in runs], settings.scenario, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
