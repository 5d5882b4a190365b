"""The seed's story under a real web server: a Flask app (webapp.py) under gunicorn with threads, driven by ``wrk``
on loopback, 2% of requests logging a critical, and a mail server that takes 1 s per message.

Variants, interleaved in each run: (a) no alert handler (a ``NullHandler``: logging's own cost stays in), (b) stdlib
``SMTPHandler``, (c) stdlib ``QueueHandler`` + ``QueueListener`` with an ``SMTPHandler`` behind it, (d)
``AlertHandler`` with a real ``celery worker`` process (the bundled configuration). For each: requests/s and
wrk's p50/p99 latency, the criticals the app logged, the mails received, and where the rest are: lost when
gunicorn stopped (b: threads still waiting on the handler's lock; c: the listener's queue), or still queued in
Redis, safe, when the settle time ran out (d). The worker throttles: repeats of one fingerprint are folded into a
digest, so (d) owes one mail per distinct alert, not one per record.

A private redis-server and an aiosmtpd sink (``MailSink(delay=1.0)``) run in this process's control; gunicorn
(``-k gthread --threads 8 -w 1``) and wrk (``-t 1 -c 16``) are subprocesses. Needs ``wrk`` (Debian:
``apt-get install -y wrk``) and gunicorn (``pip install -e '.[bench]'``).

    .venv/bin/python benchmarks/webserver.py [--duration 10] [--runs 1] [--settle 10] [--plot docs/webserver.png]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli
import redis
from measure import duration, median, table
from stack import Isolation, alert_worker, private_redis

from alerting.testing.mailsink import MailSink

HERE = Path(__file__).resolve().parent
PLOT = HERE.parent / "docs" / "webserver.png"
VARIANTS = ("none", "smtp", "queue", "alert")
LABELS = {
    "none": "(a) no alert handler",
    "smtp": "(b) stdlib SMTPHandler",
    "queue": "(c) QueueHandler + QueueListener(SMTPHandler)",
    "alert": "(d) AlertHandler + celery worker",
}
SHORT = {
    "none": "(a) none",
    "smtp": "(b) SMTPHandler",
    "queue": "(c) Queue+Listener",
    "alert": "(d) AlertHandler",
}
GOAL_RPS, GOAL_P99 = 0.98, 1.1  # AlertHandler: >= 98% of (a)'s requests/s, p99 <= 1.1x (a)'s


@dataclass
class WrkFigures:
    requests: int
    rps: float
    p50: float  # seconds
    p99: float
    errors: int  # wrk's socket errors + non-2xx responses


@dataclass
class VariantRun:
    variant: str
    wrk: WrkFigures
    criticals: int  # logged by the app
    received: int  # mails at the sink once settled
    owed: int  # mails the variant should send for those criticals
    lost: int  # gone with the process (b, c)
    queued: int  # still in Redis when the settle time ran out (d): not lost

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- wrk ----------------------------------------------------------------------------------------------------
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkFigures:
    """Figures from ``wrk --latency`` output. Pure."""

    def grab(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
        return match[1]

    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx[1])
    return WrkFigures(
        requests=int(grab(r"^\s*(\d+) requests in")),
        rps=float(grab(r"^Requests/sec:\s*([\d.]+)")),
        p50=_seconds(grab(r"^\s*50%\s+(\S+)")),
        p99=_seconds(grab(r"^\s*99%\s+(\S+)")),
        errors=errors,
    )


def missing_tools() -> str | None:
    """What to install before this benchmark can run, or None."""
    if shutil.which("wrk") is None:
        return "wrk is not installed. Debian/Ubuntu: sudo apt-get install -y wrk"
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None and shutil.which("gunicorn") is None:
        return "gunicorn is not installed: pip install -e '.[bench]'"
    return None


# -- gunicorn -----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str) -> dict[str, Any]:
    import json

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback, our own app)
        body: dict[str, Any] = json.loads(response.read())
        return body


@contextlib.contextmanager
def gunicorn(env: dict[str, str], threads: int) -> Iterator[str]:
    """gunicorn serving webapp:app with one gthread worker; yields the base URL once /stats answers."""
    port = _free_port()
    exe = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    args = [
        exe, "-k", "gthread", "--threads", str(threads), "-w", "1", "-b", f"127.0.0.1:{port}",
        "--chdir", str(HERE), "--graceful-timeout", "5", "--log-level", "warning", "webapp:app",
    ]  # fmt: skip
    paths = [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]
    proc = subprocess.Popen(
        args, env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, paths))}, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get_json(base + "/stats")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start (exit status {proc.poll()})") from None
                time.sleep(0.1)
        yield base
    finally:
        # SIGTERM: gunicorn's graceful stop, as a deploy or a restart does; atexit handlers run in the worker.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_wrk(base: str, seconds: float, connections: int) -> WrkFigures:
    out = subprocess.run(
        [
            shutil.which("wrk") or "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "60s",
            "--latency",
            base + "/",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(out.stdout)


# -- one variant --------------------------------------------------------------------------------------------
def _settle(sink: MailSink, owed: int, settle: float) -> int:
    """Mails received once ``owed`` arrived or nothing arrived for 2.5 s, at most ``settle`` seconds."""
    deadline = time.monotonic() + settle
    last, seen = time.monotonic(), len(sink.received)
    while time.monotonic() < deadline and seen < owed:
        time.sleep(0.2)
        now_seen = len(sink.received)
        if now_seen != seen:
            last, seen = time.monotonic(), now_seen
        elif time.monotonic() - last > 2.5:
            break
    return len(sink.received)


def run_variant(variant: str, url: str, args: argparse.Namespace) -> VariantRun:
    iso = Isolation.fresh(url, "webserver")
    env = {
        "BENCH_VARIANT": variant,
        "ALERTING_BROKER_URL": url,
        "BENCH_QUEUE": iso.queue,
        "BENCH_CRITICAL_EVERY": str(args.critical_every),
        "BENCH_DISTINCT_EVERY": str(args.distinct_every),
    }
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(MailSink(delay=args.mail_delay))
        env["BENCH_SMTP_PORT"] = str(sink.port)
        if variant == "alert":
            stack.enter_context(alert_worker(iso, sink))
        with gunicorn(env, args.threads) as base:
            for _ in range(20):  # warm-up: imports, first connections (no critical: request 50 is the first)
                _get_json(base + "/stats")
            figures = run_wrk(base, args.duration, args.connections)
            stats = _get_json(base + "/stats")
        criticals = int(stats["criticals"])
        distinct = criticals // args.distinct_every
        # (d) folds repeats: one mail per distinct alert plus the repeated one's first mail (its digest comes
        # at the window's end, after the settle). The stdlib handlers owe one mail per record.
        owed = distinct + (1 if criticals > distinct else 0) if variant == "alert" else criticals
        owed = 0 if variant == "none" else owed
        received = _settle(sink, owed, args.settle)
        queued = 0
        if variant == "alert":
            client = redis.Redis.from_url(url)
            queued = int(client.llen(iso.queue))
            client.close()
        # The stdlib handlers hold records in the process only: what never arrived went with it.
        lost = max(0, owed - received) if variant in ("smtp", "queue") else 0
        iso.cleanup()
    return VariantRun(variant, figures, criticals, received, owed, lost, queued)


def run_all(args: argparse.Namespace) -> list[list[VariantRun]]:
    runs: list[list[VariantRun]] = []
    with private_redis() as url:
        for r in range(args.runs):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            results: dict[str, VariantRun] = {}
            for variant in order:
                cli.progress(f"webserver: run {r + 1}/{args.runs}, {LABELS[variant]}")
                results[variant] = run_variant(variant, url, args)
            runs.append([results[v] for v in VARIANTS])
    return runs


# -- report -------------------------------------------------------------------------------------------------
def _med(runs: Sequence[Sequence[VariantRun]], i: int, attr: str) -> float:
    return median([float(getattr(run[i].wrk, attr)) for run in runs])


def _spread(values: Sequence[float], fmt: Any) -> str:
    return f"{fmt(min(values))}..{fmt(max(values))}" if len(values) > 1 else ""


def goal_figures(runs: Sequence[Sequence[VariantRun]]) -> dict[str, float]:
    """AlertHandler's requests/s as a share of (a)'s and its p99 over (a)'s, per run then the median."""
    a, d = VARIANTS.index("none"), VARIANTS.index("alert")
    rps = [run[d].wrk.rps / run[a].wrk.rps for run in runs]
    p99 = [run[d].wrk.p99 / run[a].wrk.p99 for run in runs]
    return {"web_rps_pct": 100 * median(rps), "web_p99_ratio": median(p99)}


def report(runs: list[list[VariantRun]]) -> str:
    a = VARIANTS.index("none")
    rows = []
    for i, variant in enumerate(VARIANTS):
        rps = [run[i].wrk.rps for run in runs]
        p99 = [run[i].wrk.p99 for run in runs]
        last = runs[-1][i]
        mails = (
            "-"
            if variant == "none"
            else f"{median([r[i].received for r in runs]):g} / {median([r[i].owed for r in runs]):g}"
        )
        where = ""
        if variant in ("smtp", "queue"):
            where = f"{median([r[i].lost for r in runs]):g} lost at exit"
        elif variant == "alert":
            where = f"{median([r[i].queued for r in runs]):g} task messages still queued in Redis (safe)"
        rows.append(
            [
                LABELS[variant],
                f"{median(rps):,.0f}",
                f"{100 * median([run[i].wrk.rps / run[a].wrk.rps for run in runs]):.1f}%",
                _spread(rps, lambda v: f"{v:,.0f}"),
                duration(_med(runs, i, "p50")),
                duration(median(p99)),
                _spread(p99, duration),
                f"{median([run[i].wrk.p99 / run[a].wrk.p99 for run in runs]):.2f}x",
                f"{median([r[i].criticals for r in runs]):g}",
                mails,
                where,
                f"{last.wrk.errors}" if last.wrk.errors else "",
            ]
        )
    headers = ["variant", "req/s", "of (a)", "req/s per run", "p50", "p99", "p99 per run", "p99/(a)", "criticals",
               "mails received / owed", "the rest", "wrk errors"]  # fmt: skip
    title = (
        f"Web server: Flask under gunicorn gthread, wrk on loopback, 2% of requests log a critical, SMTP 1 s per "
        f"message; medians of {len(runs)} run(s), variants interleaved"
    )
    goals = goal_figures(runs)
    verdict = (
        f"Goal: AlertHandler >= {100 * GOAL_RPS:.0f}% of (a)'s req/s and p99 <= {GOAL_P99}x: "
        f"{goals['web_rps_pct']:.1f}% and {goals['web_p99_ratio']:.2f}x -> "
        f"{'met' if goals['web_rps_pct'] >= 100 * GOAL_RPS and goals['web_p99_ratio'] <= GOAL_P99 else 'NOT met'}"
    )
    return "\n".join([table(headers, rows, title), verdict])


def plot(runs: Sequence[Sequence[VariantRun]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [SHORT[v] for v in VARIANTS]
    colors = ["#888888", "#d62728", "#ff7f0e", "#2ca02c"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))

    def bars(ax: Any, values: list[list[float]], title: str, ylabel: str, log: bool = False) -> None:
        meds = [median(v) for v in values]
        lo = [m - min(v) for m, v in zip(meds, values, strict=True)]
        hi = [max(v) - m for m, v in zip(meds, values, strict=True)]
        ax.bar(names, meds, color=colors, yerr=[lo, hi] if len(values[0]) > 1 else None, capsize=4)
        for x, (m, v) in enumerate(zip(meds, values, strict=True)):
            # Above the whisker, so the label never sits on it.
            ax.annotate(f"{m:,.0f}" if m >= 10 else f"{m:.3g}", (x, max(v)), ha="center", va="bottom", fontsize=9)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", labelrotation=15)

    n = range(len(VARIANTS))
    bars(axes[0], [[run[i].wrk.rps for run in runs] for i in n], "requests/s (higher is better)", "req/s")
    bars(axes[1], [[1e3 * run[i].wrk.p99 for run in runs] for i in n], "p99 latency (lower is better)", "ms", True)
    ax = axes[2]
    idx = [VARIANTS.index(v) for v in ("smtp", "queue", "alert")]
    received = [median([run[i].received for run in runs]) for i in idx]
    lost = [median([run[i].lost for run in runs]) for i in idx]
    queued = [median([run[i].queued for run in runs]) for i in idx]
    owed = [median([run[i].owed for run in runs]) for i in idx]
    labels = [SHORT[VARIANTS[i]] for i in idx]
    ax.bar(labels, received, color="#2ca02c", label="delivered")
    ax.bar(labels, lost, bottom=received, color="#d62728", label="lost at exit")
    ax.bar(labels, queued, bottom=[r + q for r, q in zip(received, lost, strict=True)], color="#1f77b4",
           label="queued in Redis (safe)")  # fmt: skip
    for x, (r, o) in enumerate(zip(received, owed, strict=True)):
        ax.annotate(f"{r:g} of {o:g}", (x, max(o, r)), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 1.15 * max(max(owed), 1))  # room for the labels above the bars
    ax.set_title("mails owed: delivered / lost / queued")
    ax.set_ylabel("mails (AlertHandler owes 1 per distinct alert)")
    ax.legend(fontsize=8, loc="upper left")
    ax.tick_params(axis="x", labelrotation=15)
    fig.suptitle(
        "Flask + gunicorn (gthread, 8 threads), wrk, 2% of requests log a critical, SMTP server 1 s per message"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The settings of a run, from command-line arguments (run_all.py passes its own)."""
    parser = cli.parser(__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk load per variant")
    parser.add_argument("--runs", type=int, default=1, help="runs of all four variants (medians reported)")
    parser.add_argument("--settle", type=float, default=10.0, help="at most this long to wait for mails after load")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn gthread threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--critical-every", type=int, default=50, help="one request in N logs a critical (2%%)")
    parser.add_argument("--distinct-every", type=int, default=5, help="one critical in N is a distinct alert")
    parser.add_argument("--mail-delay", type=float, default=1.0, help="seconds the SMTP server takes per message")
    parser.add_argument("--plot", type=Path, default=None, help=f"draw the PNG here (e.g. {PLOT})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    missing = missing_tools()
    if missing:
        print(missing, file=sys.stderr)
        return 2

    def measured() -> list[list[VariantRun]]:
        runs = run_all(args)
        if args.plot:
            plot(runs, args.plot)
        return runs

    def to_json(runs: list[list[VariantRun]]) -> dict[str, Any]:
        return {"runs": [[v.to_json() for v in run] for run in runs], **goal_figures(runs)}

    return cli.run(measured, report, to_json, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
