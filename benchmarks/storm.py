"""A storm: 100,000 identical criticals from one thread, as fast as it can log them. How many broker messages and
emails they become, what each call costs the app, and what the worker's throttle decision costs in Redis commands.

Runs against a private redis-server it starts itself (so Redis's command counters see only this run), with one
real worker whose throttle window is ``--window`` seconds: the storm fits in one window, which should bring one
email at once and one digest when the window ends.

    .venv/bin/python benchmarks/storm.py [--criticals 100000] [--window 8] [--decisions 500] [--json F]
"""

from __future__ import annotations

import logging
import math
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.servers: the private redis-server

import cli
from measure import Summary, duration, table
from stack import Isolation, alert_worker

from alerting import AlertHandler
from alerting.producer.transport import CeleryTransport, publisher_app
from alerting.testing.mailsink import MailSink
from tests.support.servers import RedisServer


@dataclass
class StormResult:
    criticals: int
    storm_seconds: float
    call: Summary | None
    broker_messages: int
    coalesced: int
    immediate_mails: int
    digests: int
    digest_occurrences: int
    emails_total: int
    window: float

    @property
    def windows(self) -> int:
        """Throttle windows the storm spanned (it starts a window with its first critical)."""
        return max(1, math.ceil(self.storm_seconds / self.window))

    @property
    def emails_per_window(self) -> float:
        return self.emails_total / self.windows


@dataclass
class DecisionCost:
    alerts: int
    evalsha_per_alert: float
    state_writes_per_alert: float  # SETs: the decision (in the Lua script) and the "sent" marker
    redis_commands_per_alert: float  # everything, kombu's queue handling included
    seconds: float


def storm(server: RedisServer, criticals: int, window: float) -> StormResult:
    iso = Isolation.fresh(server.url, "storm")
    with MailSink() as sink, alert_worker(iso, sink, ALERTING_THROTTLE_WINDOW=str(window)):
        handler = AlertHandler(broker_url=server.url, queue=iso.queue)
        log = logging.getLogger("bench.storm")
        log.addHandler(handler)
        log.propagate = False
        samples = array("q")
        perf = time.perf_counter_ns
        started = time.perf_counter()
        for i in range(criticals):
            t0 = perf()
            log.critical("payment provider timed out", extra={"attempt": i})
            samples.append(perf() - t0)
        storm_seconds = time.perf_counter() - started
        handler.flush(timeout=10)
        stats = handler.stats()
        log.removeHandler(handler)
        handler.close()
        sink.wait_for(1, timeout=20)
        time.sleep(window + 2)  # the window ends, the poller sends the digest
        mails = sink.settle(quiet=2.0)
    counts = [int(m.message["X-Alerting-Digest-Count"]) for m in mails if m.message["X-Alerting-Digest-Count"]]
    return StormResult(
        criticals=criticals,
        storm_seconds=storm_seconds,
        call=Summary.of_ns(samples),
        broker_messages=stats["published"],
        coalesced=stats["coalesced"],
        immediate_mails=len(mails) - len(counts),
        digests=len(counts),
        digest_occurrences=sum(counts),
        emails_total=len(mails),
        window=window,
    )


def decision_cost(server: RedisServer, alerts: int) -> DecisionCost:
    """Distinct alerts published first, then one worker drains them while Redis counts its commands."""
    iso = Isolation.fresh(server.url, "decide")
    client = server.client()
    transport = CeleryTransport(publisher_app(server.url), iso.queue, owned=True)
    from tests.unit.factories import build_payload, make_record

    transport.publish_many([build_payload(make_record(f"distinct problem {i}")) for i in range(alerts)])
    transport.close()
    with MailSink() as sink:
        client.config_resetstat()
        started = time.perf_counter()
        with alert_worker(iso, sink, ALERTING_RATE_LIMIT="off"):
            sink.wait_for(alerts, timeout=120)
            seconds = time.perf_counter() - started
            stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    client.close()
    return DecisionCost(
        alerts=alerts,
        evalsha_per_alert=calls.get("evalsha", 0) / alerts,
        state_writes_per_alert=calls.get("set", 0) / alerts,
        redis_commands_per_alert=sum(v for k, v in calls.items() if k not in ("config", "info")) / alerts,
        seconds=seconds,
    )


def report(s: StormResult, d: DecisionCost) -> str:
    rows = [
        ["criticals logged (one thread, identical)", f"{s.criticals:,} in {s.storm_seconds:.2f} s"],
        ["critical() per call p50 / p99", f"{duration(s.call.p50)} / {duration(s.call.p99)}" if s.call else "-"],
        ["broker messages", f"{s.broker_messages:,} ({s.coalesced:,} occurrences coalesced in the app)"],
        [
            f"emails ({s.windows} window{'s' if s.windows > 1 else ''} of {s.window:g} s)",
            f"{s.emails_total} ({s.immediate_mails} at once + {s.digests} digest)",
        ],
        ["occurrences reported", f"{s.immediate_mails + s.digest_occurrences:,} of {s.criticals:,}"],
        ["worker: throttle decisions (EVALSHA) per alert", f"{d.evalsha_per_alert:.2f}"],
        ["worker: state writes (SET: decision, sent marker) per alert", f"{d.state_writes_per_alert:.2f}"],
        ["worker: all Redis commands per alert (kombu incl.)", f"{d.redis_commands_per_alert:.1f}"],
    ]
    return table(["storm", "figure"], rows, f"Storm of identical criticals, throttle window {s.window:g} s")


def run(criticals: int = 100_000, window: float = 8.0, decisions: int = 500) -> tuple[StormResult, DecisionCost]:
    with RedisServer() as server:
        return storm(server, criticals, window), decision_cost(server, decisions)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--criticals", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--decisions", type=int, default=500, help="distinct alerts for the round-trip count")
    args = parser.parse_args(argv)
    return cli.run(
        lambda: run(args.criticals, args.window, args.decisions),
        lambda result: report(*result),
        lambda result: {"storm": asdict(result[0]), "decision": asdict(result[1])},
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
