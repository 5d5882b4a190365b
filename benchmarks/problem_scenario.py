"""The problem from DESIGN.md, measured: application threads log criticals while the mail server is slow.

Side by side in one run, each with a fresh SMTP sink that takes ``--smtp-delay`` seconds per message:
(a) no alert handler, (b) stdlib ``SMTPHandler``, (c) stdlib ``QueueHandler`` + ``QueueListener`` with an
``SMTPHandler``, (d) ``alerting.AlertHandler`` with a real ``celery worker`` process.

    .venv/bin/python benchmarks/problem_scenario.py [--duration 5] [--smtp-delay 1] [--json F] [--plot F.png]

The demo (examples/demo.py) runs a shorter version of the same scenario through :func:`run_variants`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import logging.handlers
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cli
from measure import Summary, duration, median, table
from stack import MAIL_FROM, MAIL_TO, Isolation, alert_worker, broker_url, require_redis

from alerting import AlertHandler
from alerting.consumer.settings import load as load_worker_settings
from alerting.testing.mailsink import MailSink, Received

LOGGER_NAME = "shop.checkout"
FIRST_ORDER = 100_000  # order numbers in the messages start here, so critical #k mentions order FIRST_ORDER + k

# What goes wrong: the incident most criticals belong to, and a few unrelated problems mixed in.
INCIDENT: tuple[str, type[Exception]] = ("payment provider timed out (order %d)", TimeoutError)
OTHER_PROBLEMS: tuple[tuple[str, type[Exception]], ...] = (
    ("inventory sync failed (order %d)", ConnectionError),
    ("invoice rendering crashed (order %d)", KeyError),
    ("fraud check returned garbage (order %d)", ValueError),
    ("shipping quote unavailable (order %d)", RuntimeError),
)


@dataclass(frozen=True)
class Scenario:
    threads: int = 8
    duration: float = 5.0  # seconds the threads keep starting new iterations
    work_sleep: float = 0.002  # per iteration: waiting on I/O (a database, another service) ...
    work_cpu: int = 4000  # ... and some Python work (loop rounds; ~0.2 ms on these machines)
    critical_every: int = 50  # each thread logs a critical every Nth iteration
    other_every: int = 10  # every Mth critical is one of the other problems (0: all are the incident)
    other_problems: int = 3  # how many distinct other problems (fingerprints) take turns
    smtp_delay: float = 1.0  # seconds the SMTP server takes per message
    smtp_timeout: float = 10.0  # the stdlib handlers' SMTP timeout (the worker's default is also 10 s)
    grace: float = 15.0  # after the run, how long the AlertHandler's worker may take to send immediate mails

    def problem(self, k: int) -> tuple[str, type[Exception]]:
        """The template and exception type of the k-th critical of the run."""
        if self.other_every and self.other_problems and (k + 1) % self.other_every == 0:
            return OTHER_PROBLEMS[(k // self.other_every) % min(self.other_problems, len(OTHER_PROBLEMS))]
        return INCIDENT


# -- the application ------------------------------------------------------------------------------------------
def _burn(rounds: int) -> int:
    acc = 0
    for i in range(rounds):
        acc += i * i
    return acc


def _charge(order: int, exc_type: type[Exception]) -> None:
    raise exc_type(f"upstream gave up on order {order}")


def _handle_order(order: int, exc_type: type[Exception]) -> None:
    _charge(order, exc_type)


@dataclass
class _Tally:
    iterations: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    first_call_at: float | None = None  # time.time() just before critical #0, if this thread logged it


def _app_thread(
    index: int,
    logger: logging.Logger,
    scenario: Scenario,
    counter: itertools.count[int],
    barrier: threading.Barrier,
    deadline: list[float],
    tally: _Tally,
) -> None:
    every = scenario.critical_every
    offset = index * every // scenario.threads  # spread the threads' criticals over the cycle
    barrier.wait()
    end = deadline[0]
    n = 0
    while time.perf_counter() < end:
        time.sleep(scenario.work_sleep)
        _burn(scenario.work_cpu)
        n += 1
        if (n + offset) % every:
            continue
        k = next(counter)
        template, exc_type = scenario.problem(k)
        try:
            _handle_order(FIRST_ORDER + k, exc_type)
        except Exception:
            if k == 0:
                tally.first_call_at = time.time()
            t0 = time.perf_counter_ns()
            logger.critical(template, FIRST_ORDER + k, exc_info=True)
            tally.latencies_ns.append(time.perf_counter_ns() - t0)
    tally.iterations = n


@dataclass(frozen=True)
class Load:
    iterations: int
    criticals: int
    latencies_ns: list[int]
    first_call_at: float | None
    loop_seconds: float  # from the start until the last thread finished its last iteration
    ended_at: float  # time.time()


def run_load(logger: logging.Logger, scenario: Scenario) -> Load:
    """Run the application threads for ``scenario.duration`` and wait until every one of them has finished."""
    counter = itertools.count()
    barrier = threading.Barrier(scenario.threads + 1)
    deadline = [0.0]
    tallies = [_Tally() for _ in range(scenario.threads)]
    threads = [
        threading.Thread(
            target=_app_thread, args=(i, logger, scenario, counter, barrier, deadline, tallies[i]), name=f"app-{i}"
        )
        for i in range(scenario.threads)
    ]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + scenario.duration
    barrier.wait()
    for thread in threads:
        thread.join()
    loop_seconds = time.perf_counter() - start
    latencies = [ns for t in tallies for ns in t.latencies_ns]
    firsts = [t.first_call_at for t in tallies if t.first_call_at is not None]
    return Load(
        iterations=sum(t.iterations for t in tallies),
        criticals=len(latencies),
        latencies_ns=latencies,
        first_call_at=min(firsts) if firsts else None,
        loop_seconds=loop_seconds,
        ended_at=time.time(),
    )


# -- the handlers under test ----------------------------------------------------------------------------------
def _smtp_handler(sink: MailSink, scenario: Scenario) -> logging.handlers.SMTPHandler:
    return logging.handlers.SMTPHandler(
        (sink.host, sink.port), MAIL_FROM, [MAIL_TO], "CRITICAL in shop.checkout", timeout=scenario.smtp_timeout
    )


class Variant(Protocol):
    key: str
    label: str

    def attach(self, sink: MailSink, scenario: Scenario, stack: contextlib.ExitStack) -> logging.Handler:
        """The handler to put on the application's logger (start whatever it needs; register cleanup)."""
        ...

    def at_exit(self, sink: MailSink, scenario: Scenario) -> str:
        """What the application process does when it ends; returns a note on what that means for the mail."""
        ...

    def stats(self) -> dict[str, int]: ...


class NoHandler:
    key, label = "none", "(a) no alert handler"

    def attach(self, sink: MailSink, scenario: Scenario, stack: contextlib.ExitStack) -> logging.Handler:
        return logging.NullHandler()  # without any handler, logging would fall back to printing to stderr

    def at_exit(self, sink: MailSink, scenario: Scenario) -> str:
        return ""

    def stats(self) -> dict[str, int]:
        return {}


class StdlibSMTP:
    key, label = "smtp", "(b) stdlib SMTPHandler"

    def attach(self, sink: MailSink, scenario: Scenario, stack: contextlib.ExitStack) -> logging.Handler:
        self._handler = _smtp_handler(sink, scenario)
        return self._handler

    def at_exit(self, sink: MailSink, scenario: Scenario) -> str:
        self._handler.close()
        return "synchronous: every mail was sent inside critical() itself"

    def stats(self) -> dict[str, int]:
        return {}


class StdlibQueue:
    key, label = "queue", "(c) stdlib QueueHandler+Listener"

    def attach(self, sink: MailSink, scenario: Scenario, stack: contextlib.ExitStack) -> logging.Handler:
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue()
        self._listener = logging.handlers.QueueListener(
            self._queue, _smtp_handler(sink, scenario), respect_handler_level=True
        )
        self._listener.start()
        self._running = True
        stack.callback(self._stop)
        self._lost = 0
        return logging.handlers.QueueHandler(self._queue)

    def at_exit(self, sink: MailSink, scenario: Scenario) -> str:
        # The listener thread is a daemon: when the process ends, what is still queued in memory goes with it.
        # The mail being sent at that moment is already on the wire, so the server still accepts it.
        self._lost = self._queue.qsize()
        self._stop()
        return f"process exit: {self._lost} records still queued in memory were lost"

    def _stop(self) -> None:
        self._listener.handlers = ()  # stop() would otherwise mail everything still queued first
        if self._running:
            self._running = False
            self._listener.stop()

    def stats(self) -> dict[str, int]:
        return {"lost_at_exit": self._lost}


class Alerting:
    key, label = "alert", "(d) alerting.AlertHandler"

    def __init__(self, url: str) -> None:
        self.url = url
        self._stats: dict[str, int] = {}

    def attach(self, sink: MailSink, scenario: Scenario, stack: contextlib.ExitStack) -> logging.Handler:
        iso = Isolation.fresh(self.url)
        stack.callback(iso.cleanup)
        stack.enter_context(alert_worker(iso, sink))
        self._window = load_worker_settings(iso.worker_env(sink.port)).throttle_window
        self._handler = AlertHandler(broker_url=iso.broker_url, queue=iso.queue, service="checkout")
        stack.callback(self._handler.close)  # a second close() is harmless; this one is for the error path
        return self._handler

    def at_exit(self, sink: MailSink, scenario: Scenario) -> str:
        self._handler.close()  # what logging.shutdown() does at exit: publish what is held, within flush_timeout
        self._stats = self._handler.stats()
        sink.settle(quiet=max(2.0, 2 * scenario.smtp_delay + 0.5), timeout=scenario.grace)
        return (
            f"exit flush (flush_timeout {self._handler.flush_timeout:g} s), then up to {scenario.grace:g} s for the "
            f"worker; repeats are owed as digests at the end of the {self._window:g} s throttle window"
        )

    def stats(self) -> dict[str, int]:
        return self._stats


# -- one run per variant ----------------------------------------------------------------------------------------
@dataclass
class VariantResult:
    key: str
    label: str
    iterations: int
    criticals: int
    loop_seconds: float
    latency: Summary | None
    delivered_at_end: int  # accepted by the SMTP server by the time the last application thread finished
    delivered_after: int  # ... and after the process's exit and the grace period
    after_note: str
    first_alert_e2e: float | None  # critical #0: from the critical() call to the server accepting its mail
    subjects: list[str]
    handler_stats: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency"] = asdict(self.latency) if self.latency else None
        return out


def _first_alert_arrival(received: Sequence[Received]) -> float | None:
    marker = f"(order {FIRST_ORDER})"
    times = [r.at for r in received if marker in r.subject or marker in r.text()]
    return min(times) if times else None


def run_variant(variant: Variant, scenario: Scenario) -> VariantResult:
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    with MailSink(delay=scenario.smtp_delay) as sink, contextlib.ExitStack() as stack:
        handler = variant.attach(sink, scenario, stack)
        logger.handlers = [handler]
        try:
            load = run_load(logger, scenario)
            at_end = sum(1 for r in list(sink.received) if r.at <= load.ended_at)
            note = variant.at_exit(sink, scenario)
        finally:
            logger.handlers = []
        received = list(sink.received)
    arrival = _first_alert_arrival(received)
    return VariantResult(
        key=variant.key,
        label=variant.label,
        iterations=load.iterations,
        criticals=load.criticals,
        loop_seconds=load.loop_seconds,
        latency=Summary.of_ns(load.latencies_ns),
        delivered_at_end=at_end,
        delivered_after=len(received),
        after_note=note,
        first_alert_e2e=arrival - load.first_call_at if arrival and load.first_call_at else None,
        subjects=[r.subject for r in received],
        handler_stats=variant.stats(),
    )


VARIANT_KEYS = ("none", "smtp", "queue", "alert")


def make_variant(key: str, url: str) -> Variant:
    factories: dict[str, Callable[[], Variant]] = {
        "none": NoHandler,
        "smtp": StdlibSMTP,
        "queue": StdlibQueue,
        "alert": lambda: Alerting(url),
    }
    return factories[key]()


def run_variants(
    scenario: Scenario,
    keys: Sequence[str] = VARIANT_KEYS,
    url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[VariantResult]:
    """Run each variant in turn, each with a fresh SMTP sink (and, for AlertHandler, a fresh worker)."""
    url = url or broker_url()
    if "alert" in keys:
        require_redis(url)
    results = []
    for key in keys:
        variant = make_variant(key, url)
        if progress:
            progress(variant.label)
        results.append(run_variant(variant, scenario))
    return results


# -- output ---------------------------------------------------------------------------------------------------
def report(results: Sequence[VariantResult], scenario: Scenario) -> str:
    base = next((r for r in results if r.key == "none"), None)
    rows = []
    for r in results:
        lat = r.latency
        rows.append(
            [
                r.label,
                f"{r.iterations:,}",
                f"{100 * r.iterations / base.iterations:.0f}%" if base and base.iterations else "-",
                f"{r.loop_seconds:.1f} s",
                r.criticals,
                duration(lat.p50 if lat else None),
                duration(lat.p99 if lat else None),
                duration(lat.max if lat else None),
                r.delivered_at_end if r.key != "none" else "-",
                r.delivered_after if r.key != "none" else "-",
                duration(r.first_alert_e2e),
            ]
        )
    title = (
        f"Problem scenario: {scenario.threads} threads for {scenario.duration:g} s, a critical every "
        f"{scenario.critical_every} iterations, SMTP server taking {scenario.smtp_delay:g} s per message"
    )
    headers = [
        "variant",
        "iterations",
        "of (a)",
        "loop ran",
        "criticals",
        "critical() p50",
        "p99",
        "max",
        "mails at end",
        "after exit+grace",
        "1st alert->SMTP",
    ]
    lines = [table(headers, rows, title)]
    for r in results:
        if r.after_note:
            lines.append(f"  {r.label}: {r.after_note}")
        if r.key == "alert" and r.handler_stats:
            s = r.handler_stats
            lines.append(
                f"  {r.label}: {r.criticals} criticals became {s.get('published', 0)} tasks "
                f"({s.get('coalesced', 0)} coalesced in the app, {s.get('dropped', 0)} dropped)"
            )
    return "\n".join(lines)


_PLOT_LABELS = {
    "none": "(a) no alert\nhandler",
    "smtp": "(b) stdlib\nSMTPHandler",
    "queue": "(c) stdlib\nQueueHandler",
    "alert": "(d) Alert-\nHandler",
}


def plot(runs: Sequence[Sequence[VariantResult]], scenario: Scenario, path: Path) -> None:
    """Two panels: iterations per variant, critical() p50/p99 per variant (log scale). With several runs, the bars
    are medians and the whiskers span the runs (min to max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [r.key for r in runs[0]]
    by_key = {k: [next(r for r in run if r.key == k) for run in runs] for k in keys}

    def spread(values: Sequence[float]) -> tuple[float, float, float]:
        mid = median(values)
        return mid, mid - min(values), max(values) - mid

    labels = [_PLOT_LABELS.get(k, by_key[k][0].label) for k in keys]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    several = f", median of {len(runs)} runs (whiskers: min to max)" if len(runs) > 1 else ""
    fig.suptitle(
        f"{scenario.threads} app threads, {scenario.duration:g} s, SMTP server taking {scenario.smtp_delay:g} s "
        f"per message{several}",
        fontsize=11,
    )
    xs = list(range(len(keys)))
    iterations = [spread([r.iterations for r in by_key[k]]) for k in keys]
    base = iterations[keys.index("none")][0] if "none" in keys else None
    left.bar(
        xs,
        [i[0] for i in iterations],
        yerr=[[i[1] for i in iterations], [i[2] for i in iterations]] if len(runs) > 1 else None,
        color="#4c72b0",
        capsize=4,
    )
    left.set_xticks(xs, labels, fontsize=8)
    left.set_ylabel("loop iterations completed")
    left.set_title("Work done by the application threads")
    for x, k, (mid, _, _) in zip(xs, keys, iterations, strict=True):
        loop = median([r.loop_seconds for r in by_key[k]])
        share = f" ({100 * mid / base:.0f}%)" if base else ""
        overran = f"\n(threads ran {loop:.1f} s)" if loop > scenario.duration + 0.5 else ""
        left.annotate(f"{mid:,.0f}{share}{overran}", (x, mid), ha="center", va="bottom", fontsize=8)
    width = 0.38
    for offset, which, name, color in ((-width / 2, "p50", "p50", "#55a868"), (width / 2, "p99", "p99", "#c44e52")):
        values = []
        for k in keys:
            ms = [getattr(r.latency, which) * 1e3 for r in by_key[k] if r.latency]
            values.append(spread(ms) if ms else (0.0, 0.0, 0.0))
        right.bar(
            [x + offset for x in xs],
            [v[0] for v in values],
            width,
            yerr=[[v[1] for v in values], [v[2] for v in values]] if len(runs) > 1 else None,
            label=name,
            color=color,
            capsize=3,
        )
        for x, (value, _, _) in zip(xs, values, strict=True):
            if value:
                right.annotate(duration(value / 1e3), (x + offset, value), ha="center", va="bottom", fontsize=7)
    right.set_yscale("log")
    right.set_xticks(xs, labels, fontsize=8)
    right.set_ylabel("logger.critical() latency, ms (log scale)")
    right.set_title("Cost of one critical() call in an application thread")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_json(results: Sequence[VariantResult], scenario: Scenario) -> dict[str, Any]:
    return {"scenario": asdict(scenario), "variants": [r.to_json() for r in results]}


def scenario_args(parser: argparse.ArgumentParser, defaults: Scenario = Scenario()) -> None:
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds (default %(default)s)")
    parser.add_argument("--smtp-delay", type=float, default=defaults.smtp_delay, help="seconds per message")
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--every", type=int, default=defaults.critical_every, help="a critical every N iterations")
    parser.add_argument(
        "--other-every", type=int, default=defaults.other_every, help="every Mth critical is another problem (0: none)"
    )
    parser.add_argument("--other-problems", type=int, default=defaults.other_problems, choices=range(1, 5))
    parser.add_argument("--grace", type=float, default=defaults.grace, help="seconds for the worker after the run")


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        threads=args.threads,
        duration=args.duration,
        critical_every=args.every,
        other_every=args.other_every,
        other_problems=args.other_problems,
        smtp_delay=args.smtp_delay,
        grace=args.grace,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    scenario_args(parser)
    parser.add_argument("--variants", default=",".join(VARIANT_KEYS), help="comma-separated subset of %(default)s")
    parser.add_argument("--plot", type=Path, help="also draw them into this PNG")
    args = parser.parse_args(argv)
    scenario = scenario_from(args)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    if unknown := set(keys) - set(VARIANT_KEYS):
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    results: list[VariantResult] = []

    def measured() -> list[VariantResult]:
        results.extend(run_variants(scenario, keys, progress=lambda label: cli.progress(f"running {label} ...")))
        return results

    status = cli.run(measured, lambda r: report(r, scenario), lambda r: to_json(r, scenario), args.json)
    if status == 0 and args.plot:
        plot([results], scenario, args.plot)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
