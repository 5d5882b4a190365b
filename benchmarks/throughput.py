"""Worker throughput: distinct alerts through one worker process to a fast local SMTP server, next to what plain
smtplib pushes over one reused connection to the same kind of server, in the same run.

    .venv/bin/python benchmarks/throughput.py [--alerts 1000]
"""

from __future__ import annotations

import argparse
import json
import smtplib
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measure import table
from stack import Isolation, alert_worker, broker_url, require_redis

from alerting.render import MailConfig, render_alert
from alerting.schema import parse
from alerting.testing.mailsink import MailSink, Received
from alerting.transport import RedisTransport
from tests.unit.factories import build_payload, make_record


@dataclass
class Throughput:
    alerts: int
    smtplib_per_s: float
    worker_per_s: float

    @property
    def ratio(self) -> float:
        return self.worker_per_s / self.smtplib_per_s


def _payloads(n: int) -> list[dict[str, object]]:
    return [build_payload(make_record(f"distinct problem {i}", ())) for i in range(n)]


def plain_smtplib(n: int) -> float:
    """The ceiling: the same rendered emails, sent back to back over one connection."""
    mail = MailConfig("alerts@bench.example", ("oncall@bench.example",))
    messages = [render_alert(parse(p), mail) for p in _payloads(n)]
    with MailSink() as sink:
        conn = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
        for msg in messages:
            conn.sendmail("alerts@bench.example", ["oncall@bench.example"], msg.as_bytes())
        received = sink.wait_for(n, timeout=120)
        conn.quit()
    return _rate(received)


def _rate(received: Sequence[Received]) -> float:
    """Emails per second between the first and the last acceptance: start-up is not throughput."""
    return (len(received) - 1) / (received[-1].at - received[0].at)


def worker(url: str, n: int, concurrency: int = 1) -> float:
    """Alerts queued first, then one worker (one pool process) drains them: decisions, rendering, SMTP."""
    iso = Isolation.fresh(url, "throughput")
    transport = RedisTransport(url, iso.queue)
    transport.publish_many(_payloads(n))
    transport.close()
    try:
        with MailSink() as sink:
            env = {"ALERTING_RATE_LIMIT": "off", "ALERTING_THROTTLE_WINDOW": "300"}
            with alert_worker(iso, sink, **env):
                return _rate(sink.wait_for(n, timeout=300))
    finally:
        iso.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    url = broker_url()
    require_redis(url)
    ceiling = plain_smtplib(args.alerts)
    ours = worker(url, args.alerts)
    result = Throughput(args.alerts, ceiling, ours)
    rows = [
        ["plain smtplib, one reused connection", f"{ceiling:,.0f} emails/s", "100%"],
        ["one worker process (decide, render, send)", f"{ours:,.0f} emails/s", f"{100 * result.ratio:.0f}%"],
    ]
    print(table(["sender", "throughput", "of smtplib"], rows, f"{args.alerts:,} distinct alerts, fast local SMTP"))
    if args.json:
        args.json.write_text(json.dumps({**asdict(result), "ratio": result.ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
