"""The newcomer demo (``make demo``): the same slow mail server, stdlib ``SMTPHandler`` next to ``AlertHandler``.

Needs a Redis (``ALERTING_BROKER_URL``, default redis://127.0.0.1:6379/0; the demo uses a queue and keys of
its own and removes them afterwards). Starts a local SMTP server that takes 1 s per message and a real
``celery worker`` process, then runs the scenario from benchmarks/problem_scenario.py for 3 s with each handler.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from measure import duration, table
from problem_scenario import Scenario, VariantResult, run_variants
from stack import RedisUnavailable, broker_url, require_redis

SCENARIO = Scenario(duration=3.0, grace=8.0)


def _intro(url: str) -> None:
    s = SCENARIO
    print("celery-alerting demo\n")
    print(f"  Redis        {url} answers (the demo uses a queue of its own and cleans up)")
    print(f"  Mail server  a local SMTP server that takes {s.smtp_delay:g} s to accept each message: a slow MTA")
    print(
        f"  Application  {s.threads} threads serve requests for {s.duration:g} s; every {s.critical_every}th "
        "request fails and logs CRITICAL with a traceback\n"
    )


def _comparison(smtp: VariantResult, alert: VariantResult) -> str:
    def row(label: str, value: object, other: object) -> list[object]:
        return [label, value, other]

    def lat(r: VariantResult, which: str) -> str:
        return duration(getattr(r.latency, which)) if r.latency else "-"

    return table(
        ["", "stdlib SMTPHandler", "AlertHandler"],
        [
            row(f"requests served in {SCENARIO.duration:g} s", f"{smtp.iterations:,}", f"{alert.iterations:,}"),
            row("the app's threads finished after", f"{smtp.loop_seconds:.1f} s", f"{alert.loop_seconds:.1f} s"),
            row("criticals logged", smtp.criticals, alert.criticals),
            row("logger.critical() took, median", lat(smtp, "p50"), lat(alert, "p50")),
            row("logger.critical() took, worst", lat(smtp, "max"), lat(alert, "max")),
            row("emails received", smtp.delivered_after, alert.delivered_after),
            row("first alert reached the mail server", duration(smtp.first_alert_e2e), duration(alert.first_alert_e2e)),
        ],
    )


def _emails(smtp: VariantResult, alert: VariantResult) -> str:
    lines = ["Emails received with SMTPHandler (one per critical, each sent inside logger.critical()):"]
    lines += [f"  {n:3d} x {subject}" for subject, n in Counter(smtp.subjects).most_common()]
    lines.append("Emails received with AlertHandler (the first of each problem at once):")
    lines += [f"        {subject}" for subject in alert.subjects]
    repeats = alert.criticals - len(alert.subjects)
    folded_into = alert.handler_stats.get("published", 0) - len(alert.subjects)
    lines.append(
        f"  The other {repeats} criticals repeated these problems: the app folded them into {folded_into} "
        "messages,\n  the worker counted them, and each problem gets one digest mail when its throttle window "
        "ends\n  (ALERTING_THROTTLE_WINDOW, 300 s by default)."
    )
    return "\n".join(lines)


def main() -> int:
    url = broker_url()
    try:
        require_redis(url)
    except RedisUnavailable as exc:
        print(f"celery-alerting demo: {exc}", file=sys.stderr)
        return 1
    _intro(url)
    started = time.monotonic()

    def progress(label: str) -> None:
        name = "the stdlib SMTPHandler" if "SMTP" in label else "AlertHandler and one Celery worker"
        print(f"Running with {name} ...", flush=True)

    smtp, alert = run_variants(SCENARIO, ("smtp", "alert"), url, progress)
    print()
    print(_comparison(smtp, alert))
    print()
    print(_emails(smtp, alert))
    print(f"\nDone in {time.monotonic() - started:.0f} s. Figures on a busy machine vary; the gap does not.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
