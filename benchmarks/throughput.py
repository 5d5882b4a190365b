"""Worker throughput: distinct alerts through one worker process to a fast local SMTP server, next to three
yardsticks measured in the same run: plain smtplib over one reused connection (the ceiling), a naive Celery task
that opens a new SMTP connection per mail (django-celery-email style), and a Celery task that does nothing (the
floor Celery itself sets).

Everything sends to one ``FastSink`` (aiosmtpd that accepts and timestamps, no parsing) in this process, and uses a
private redis-server. Trials alternate: smtplib sends ``--alerts`` pre-rendered emails from a spawned process;
then ``--alerts`` distinct alerts, ``--alerts`` naive-task messages (the same rendered emails) and ``--alerts``
no-op messages are each pushed onto the worker's queue at once (one LPUSH) and drained by one worker (prefork, one
pool process, prefetch 1, acks_late, JSON: the bundled configuration). The naive and no-op tasks are registered on
the same Celery app as ours (probe_worker.py), in the same envelope our publisher writes, so only the task differs.
A trial's rate is (n - 1) / (last acceptance - first acceptance) (the no-op task notes when it ran instead); the
figures are medians over trials, with min..max.

Per message, for each Celery sender: Redis commands (``INFO commandstats`` deltas on the private redis-server,
the meter's own commands subtracted) and CPU seconds of the worker main process, its pool child and
redis-server (``/proc/<pid>/stat`` utime+stime deltas).

The worker runs with a probe (probe_worker.py) that records Celery's own runtime of each ``alerting.deliver`` task
("succeeded in Xs"), so the per-alert time splits into the task body and everything Celery does around it
(fetching from Redis, handing the message to the pool process, getting the result back, acknowledging).

    .venv/bin/python benchmarks/throughput.py [--alerts 800] [--trials 3] [--detail] [--json F]
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import smtplib
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli
import redis
from measure import PROBE_PARTS, duration, median, table
from stack import FastSink, Isolation, alert_worker, private_redis, process_cpu_seconds, redis_calls, redis_pid

from alerting.consumer.render import MailConfig, render_alert
from alerting.consumer.schema import parse
from alerting.producer.transport import RedisTransport
from alerting.testing.workerproc import WorkerProcess
from tests.unit.factories import build_payload, make_record

MAIL_FROM, MAIL_TO = "alerts@bench.example", "oncall@bench.example"


@dataclass
class Costs:
    """Per message over one sender's trials: Redis commands, and CPU seconds by process (``/proc`` deltas)."""

    redis_calls: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # "worker main" | "pool child" | "redis-server" -> s


@dataclass
class Throughput:
    alerts: int  # per trial
    smtplib_rates: list[float]  # emails/s, one per trial
    worker_rates: list[float]
    task_runtimes: list[float] = field(default_factory=list)  # Celery's "succeeded in" of each measured task, s
    parts: dict[str, float] = field(default_factory=dict)  # --detail: mean seconds per task in each part
    worker_args: list[str] = field(default_factory=list)
    naive_rates: list[float] = field(default_factory=list)  # bench.naive_send: a new SMTP connection per mail
    noop_rates: list[float] = field(default_factory=list)  # bench.noop: tasks/s, Celery's floor
    costs: dict[str, Costs] = field(default_factory=dict)  # "ours" | "naive" | "noop" -> per message

    @property
    def smtplib_per_s(self) -> float:
        return median(self.smtplib_rates)

    @property
    def worker_per_s(self) -> float:
        return median(self.worker_rates)

    @property
    def ratio(self) -> float:
        return self.worker_per_s / self.smtplib_per_s

    def ratio_to(self, rates: Sequence[float]) -> float | None:
        return self.worker_per_s / median(rates) if rates else None

    @property
    def body_share(self) -> float | None:
        """The task body's share of the worker's per-alert time (mean runtime x median rate)."""
        if not self.task_runtimes:
            return None
        return sum(self.task_runtimes) / len(self.task_runtimes) * self.worker_per_s

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("task_runtimes")
        runtimes = self.task_runtimes
        out.update(
            smtplib_per_s=self.smtplib_per_s,
            worker_per_s=self.worker_per_s,
            naive_per_s=median(self.naive_rates) if self.naive_rates else None,
            noop_per_s=median(self.noop_rates) if self.noop_rates else None,
            ratio=self.ratio,
            ratio_naive=self.ratio_to(self.naive_rates),
            ratio_noop=self.ratio_to(self.noop_rates),
            body_share=self.body_share,
            task_runtime_median=median(runtimes) if runtimes else None,
            task_runtime_mean=sum(runtimes) / len(runtimes) if runtimes else None,
            tasks_probed=len(runtimes),
        )
        return out


def _payloads(n: int, tag: str) -> list[dict[str, object]]:
    return [build_payload(make_record(f"distinct problem {tag} {i}", ())) for i in range(n)]


def _rate(accepted: Sequence[float]) -> float:
    """Emails per second between the first and the last acceptance: start-up is not throughput."""
    return (len(accepted) - 1) / (accepted[-1] - accepted[0])


def _smtplib_sender(port: int, messages: list[bytes]) -> None:
    """The ceiling, in a process of its own: rendered emails back to back over one connection."""
    conn = smtplib.SMTP("127.0.0.1", port, timeout=10)
    for msg in messages:
        conn.sendmail(MAIL_FROM, [MAIL_TO], msg)
    conn.quit()


def yardstick_messages(transport: RedisTransport, task: str, args: Sequence[object]) -> list[str]:
    """Task messages for ``task`` with one argument each, in the very envelope our publisher writes for
    ``alerting.deliver`` (same properties, same queue): only the task name and the body differ."""
    out = []
    for arg in args:
        envelope = json.loads(transport.message({"v": 1, "id": uuid.uuid4().hex}))
        envelope["headers"]["task"] = task
        envelope["headers"]["argsrepr"] = f"[<{task}>]"
        body = json.dumps([[arg], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
        envelope["body"] = base64.b64encode(body.encode()).decode("ascii")
        out.append(json.dumps(envelope, separators=(",", ":")))
    return out


class _Meter:
    """Redis commands and CPU time of the worker's processes and redis-server, over the trials of one sender."""

    def __init__(self, url: str, worker: WorkerProcess) -> None:
        self.url = url
        self.pids = {"worker main": worker.proc.pid if worker.proc else 0, "redis-server": redis_pid(url)}
        children = worker.children()
        if children:
            self.pids["pool child"] = children[0]
        # The meter's own INFO (plus the commands redis-py sends on connect) counts too: measure it to subtract.
        first = redis_calls(url)
        self.overhead = redis_calls(url) - first
        self.totals: dict[str, Costs] = {}
        self.counts: dict[str, int] = {}

    def snapshot(self) -> tuple[int, dict[str, float]]:
        return redis_calls(self.url), {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}

    def add(self, sender: str, n: int, before: tuple[int, dict[str, float]]) -> None:
        calls, cpu = self.snapshot()
        total = self.totals.setdefault(sender, Costs())
        total.redis_calls += calls - before[0] - self.overhead
        for name, seconds in cpu.items():
            total.cpu[name] = total.cpu.get(name, 0.0) + seconds - before[1][name]
        self.counts[sender] = self.counts.get(sender, 0) + n

    def per_message(self) -> dict[str, Costs]:
        return {
            sender: Costs(t.redis_calls / self.counts[sender], {k: v / self.counts[sender] for k, v in t.cpu.items()})
            for sender, t in self.totals.items()
        }


def _wait_stamps(directory: Path, count: int, timeout: float) -> list[float]:
    """bench.noop's run times, once ``count`` were noted."""
    deadline = time.monotonic() + timeout
    while True:
        stamps = sorted(
            float(line) for path in directory.glob("stamps.*") for line in path.read_text().split("\n") if line
        )
        if len(stamps) >= count:
            return stamps
        if time.monotonic() > deadline:
            raise TimeoutError(f"expected {count} no-op tasks, {len(stamps)} ran within {timeout}s")
        time.sleep(0.02)


def measure(
    url: str,
    alerts: int = 800,
    trials: int = 3,
    *,
    detail: bool = False,
    worker_args: Sequence[str] = (),
) -> Throughput:
    """Trials alternate: smtplib, our worker, the naive task, the no-op task, all through the same worker
    process (ours and the yardsticks are tasks of one Celery app: the same configuration, the same pool)."""
    mail = MailConfig(MAIL_FROM, (MAIL_TO,))
    messages = [render_alert(parse(p), mail).as_bytes() for p in _payloads(alerts, "smtplib")]
    spawn = multiprocessing.get_context("spawn")
    iso = Isolation.fresh(url, "throughput")
    result = Throughput(alerts, [], [], worker_args=list(worker_args))
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        probe = Path(tmp) / "runtimes"
        env = {
            "ALERTING_RATE_LIMIT": "off",
            "ALERTING_THROTTLE_WINDOW": "300",
            "BENCH_PROBE_FILE": str(probe),
            "BENCH_PROBE_DETAIL": "1" if detail else "0",
            "BENCH_STAMP_FILE": str(Path(tmp) / "stamps"),
        }
        transport = RedisTransport(url, iso.queue)
        pusher = redis.Redis.from_url(url)
        naive_bodies = [m.decode() for m in messages]
        try:
            with (
                FastSink() as sink,
                alert_worker(iso, sink, app="probe_worker", extra_args=worker_args, **env) as worker,
            ):
                transport.publish_many(_payloads(20, "warm-up"))  # connections, imports, Lua scripts loaded
                sink.wait_for(20)
                pusher.lpush(iso.queue, *yardstick_messages(transport, "bench.naive_send", naive_bodies[:5]))
                sink.wait_for(25)
                pusher.lpush(iso.queue, *yardstick_messages(transport, "bench.noop", range(5)))
                _wait_stamps(Path(tmp), 5, 30)
                warm_tasks, noops = 20, 5
                meter = _Meter(url, worker)
                for _ in range(trials):
                    start = sink.count()
                    sender = spawn.Process(target=_smtplib_sender, args=(sink.port, messages))
                    sender.start()
                    result.smtplib_rates.append(_rate(sink.wait_for(start + alerts, timeout=120)[start:]))
                    sender.join(30)

                    start = sink.count()
                    before = meter.snapshot()
                    transport.publish_many(_payloads(alerts, uuid.uuid4().hex[:8]))  # one LPUSH: the queue is full
                    result.worker_rates.append(_rate(sink.wait_for(start + alerts, timeout=300)[start:]))
                    meter.add("ours", alerts, before)

                    start = sink.count()
                    bodies = yardstick_messages(transport, "bench.naive_send", naive_bodies)
                    before = meter.snapshot()
                    pusher.lpush(iso.queue, *bodies)
                    result.naive_rates.append(_rate(sink.wait_for(start + alerts, timeout=300)[start:]))
                    meter.add("naive", alerts, before)

                    bodies = yardstick_messages(transport, "bench.noop", range(alerts))
                    before = meter.snapshot()
                    pusher.lpush(iso.queue, *bodies)
                    stamps = _wait_stamps(Path(tmp), noops + alerts, 300)
                    result.noop_rates.append(_rate(stamps[noops:]))
                    meter.add("noop", alerts, before)
                    noops += alerts
                result.costs = meter.per_message()
        finally:
            pusher.close()
            transport.close()
            iso.cleanup()
        rows = [
            [float(v) for v in line.split()]
            for path in Path(tmp).glob("runtimes.*")
            for line in path.read_text(encoding="ascii").splitlines()
        ][warm_tasks:]
    result.task_runtimes = [row[0] for row in rows]
    if detail and rows:
        result.parts = {part: sum(r[i + 1] for r in rows) / len(rows) for i, part in enumerate(PROBE_PARTS)}
    return result


def report(t: Throughput) -> str:
    def rates(values: Sequence[float]) -> str:
        return f"{min(values):,.0f}..{max(values):,.0f}" if values else "-"

    def of(rates_: Sequence[float]) -> str:
        ratio = t.ratio_to(rates_)
        return f"{ratio:.2f}x" if ratio is not None else "-"

    def row(label: str, values: Sequence[float], unit: str = "emails/s") -> list[object]:
        return [label, f"{median(values):,.0f} {unit}" if values else "-", of(values), rates(values)]

    rows: list[list[object]] = [
        row("plain smtplib, one reused connection (ceiling)", t.smtplib_rates),
        row("our worker: alerting.deliver (decide, render, send)", t.worker_rates),
        row("naive task: new SMTP connection per mail (same Celery)", t.naive_rates),
        row("no-op task, same Celery config (floor)", t.noop_rates, "tasks/s"),
    ]
    title = (
        f"Worker throughput: {t.alerts:,} messages per trial and sender, {len(t.worker_rates)} trials alternating, "
        f"fast local SMTP, one worker (prefork, 1 pool process, prefetch 1, acks_late)"
        f"{' (worker ' + ' '.join(t.worker_args) + ')' if t.worker_args else ''}"
    )
    lines = [table(["sender", "throughput (median)", "ours / this", "min..max over trials"], rows, title)]
    if t.costs:
        names = ["worker main", "pool child", "redis-server"]
        cost_rows = []
        for key, label in (("ours", "our worker"), ("naive", "naive task"), ("noop", "no-op task")):
            c = t.costs.get(key)
            if c is None:
                continue
            cpu = [c.cpu.get(n) for n in names]
            total = sum(v for v in cpu if v is not None)
            cost_rows.append([label, f"{c.redis_calls:.1f}", *(duration(v) for v in cpu), duration(total)])
        lines += [
            "",
            table(
                ["per message", "Redis commands", *(f"CPU {n}" for n in names), "CPU total"],
                cost_rows,
                "Redis round trips (INFO commandstats deltas, private redis-server) and CPU (/proc utime+stime deltas)",
            ),
        ]
    share = t.body_share
    if share is not None and t.task_runtimes:
        per_alert = 1 / t.worker_per_s
        body = sum(t.task_runtimes) / len(t.task_runtimes)
        split = [
            ["worker, per alert (1 / median rate)", duration(per_alert), "100%"],
            [
                "  task body (Celery's 'succeeded in', mean; median " + duration(median(t.task_runtimes)) + ")",
                duration(body),
                f"{100 * share:.0f}%",
            ],
        ]
        for part, seconds in t.parts.items():
            split.append([f"    {part}", duration(seconds), f"{100 * seconds / per_alert:.0f}%"])
        if t.parts:
            rest = body - sum(t.parts.values())
            split.append(["    rest of the task body", duration(rest), f"{100 * rest / per_alert:.0f}%"])
        split.append(
            [
                "  Celery around it (fetch, hand to the pool process, result back, ack)",
                duration(per_alert - body),
                f"{100 * (1 - share):.0f}%",
            ]
        )
        lines += ["", table(["where the worker's time goes", "time", "share"], split)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--alerts", type=int, default=800, help="alerts (and smtplib emails) per trial")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--detail", action="store_true", help="also time the task body's parts in the pool process")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra `celery worker` argument for experiments, e.g. --worker-arg=--prefetch-multiplier=4",
    )
    args = parser.parse_args(argv)

    def measured() -> Throughput:
        # A private redis-server: its command counters and CPU time belong to this run alone.
        with private_redis() as url:
            return measure(url, args.alerts, args.trials, detail=args.detail, worker_args=args.worker_arg)

    return cli.run(measured, report, Throughput.to_json, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
