"""Worker throughput: distinct alerts through one worker process to a fast local SMTP server, next to what plain
smtplib pushes over one reused connection to the same server, in the same run.

Both senders run in a process of their own (the worker's pool process; a spawned process for smtplib) and send to
one ``FastSink`` (aiosmtpd that accepts and timestamps, no parsing) in this process. Trials alternate: smtplib sends
``--alerts`` pre-rendered emails, then ``--alerts`` distinct alerts are pushed onto the worker's queue at once
(one LPUSH) and one worker (prefork, one pool process, prefetch 1, acks_late: the bundled configuration) drains
them. A trial's rate is (n - 1) / (last acceptance - first acceptance); the figures are medians over trials.

The worker runs with a probe (probe_worker.py) that records Celery's own runtime of each task ("succeeded in
Xs"), so the per-alert time splits into the task body and everything Celery does around it (fetching from Redis,
handing the message to the pool process, getting the result back, acknowledging).

    .venv/bin/python benchmarks/throughput.py [--alerts 800] [--trials 3] [--detail] [--json F]
"""

from __future__ import annotations

import multiprocessing
import smtplib
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli
from measure import PROBE_PARTS, duration, median, table
from stack import FastSink, Isolation, alert_worker, broker_url, require_redis

from alerting.consumer.render import MailConfig, render_alert
from alerting.consumer.schema import parse
from alerting.producer.transport import RedisTransport
from tests.unit.factories import build_payload, make_record

MAIL_FROM, MAIL_TO = "alerts@bench.example", "oncall@bench.example"


@dataclass
class Throughput:
    alerts: int  # per trial
    smtplib_rates: list[float]  # emails/s, one per trial
    worker_rates: list[float]
    task_runtimes: list[float] = field(default_factory=list)  # Celery's "succeeded in" of each measured task, s
    parts: dict[str, float] = field(default_factory=dict)  # --detail: mean seconds per task in each part
    worker_args: list[str] = field(default_factory=list)

    @property
    def smtplib_per_s(self) -> float:
        return median(self.smtplib_rates)

    @property
    def worker_per_s(self) -> float:
        return median(self.worker_rates)

    @property
    def ratio(self) -> float:
        return self.worker_per_s / self.smtplib_per_s

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
            ratio=self.ratio,
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


def measure(
    url: str,
    alerts: int = 800,
    trials: int = 3,
    *,
    detail: bool = False,
    worker_args: Sequence[str] = (),
) -> Throughput:
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
        }
        transport = RedisTransport(url, iso.queue)
        try:
            with FastSink() as sink, alert_worker(iso, sink, app="probe_worker", extra_args=worker_args, **env):
                transport.publish_many(_payloads(20, "warm-up"))  # connections, imports, Lua scripts loaded
                sink.wait_for(20)
                warm_tasks = 20
                for _ in range(trials):
                    start = sink.count()
                    sender = spawn.Process(target=_smtplib_sender, args=(sink.port, messages))
                    sender.start()
                    result.smtplib_rates.append(_rate(sink.wait_for(start + alerts, timeout=120)[start:]))
                    sender.join(30)
                    start = sink.count()
                    transport.publish_many(_payloads(alerts, uuid.uuid4().hex[:8]))  # one LPUSH: the queue is full
                    result.worker_rates.append(_rate(sink.wait_for(start + alerts, timeout=300)[start:]))
        finally:
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
        return " ".join(f"{v:,.0f}" for v in values)

    rows: list[list[object]] = [
        ["plain smtplib, one reused connection", f"{t.smtplib_per_s:,.0f} emails/s", "100%", rates(t.smtplib_rates)],
        [
            "one worker process (decide, render, send)",
            f"{t.worker_per_s:,.0f} emails/s",
            f"{100 * t.ratio:.0f}%",
            rates(t.worker_rates),
        ],
    ]
    title = (
        f"Worker throughput: {t.alerts:,} distinct alerts per trial, {len(t.worker_rates)} trials alternating, "
        f"fast local SMTP{' (worker ' + ' '.join(t.worker_args) + ')' if t.worker_args else ''}"
    )
    lines = [table(["sender", "throughput (median)", "of smtplib", "per trial"], rows, title)]
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
        url = broker_url()
        require_redis(url)
        return measure(url, args.alerts, args.trials, detail=args.detail, worker_args=args.worker_arg)

    return cli.run(measured, report, Throughput.to_json, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
