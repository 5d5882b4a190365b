"""The ``alerting`` command: run a worker, send a test alert, check status, manage dead letters."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from alerting import ops
from alerting.errors import ConfigError
from alerting.settings import Connections, load_connections


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        _worker(argv[1:])
    parser = argparse.ArgumentParser(prog="alerting", description="celery-alerting: alert emails from logs.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run an alert worker: celery worker on ALERTING_QUEUE; other options go to celery")

    test = sub.add_parser("send-test", help="send a test alert through the whole path and follow it")
    test.add_argument("--wait", type=float, default=15.0, help="seconds to follow it (0: just publish)")
    test.add_argument("--service", default=None)

    status = sub.add_parser("status", help="broker, queue, workers, throttle windows, dead letters")
    status.add_argument("--json", action="store_true")

    dead = sub.add_parser("dead-letters", help="alerts that could not be delivered")
    dead_sub = dead.add_subparsers(dest="action", required=True)
    listing = dead_sub.add_parser("list", help="show dead letters, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    replay = dead_sub.add_parser("replay", help="send them again (oldest first) and remove them")
    replay.add_argument("--limit", type=int, default=1000)
    purge = dead_sub.add_parser("purge", help="delete them all")
    purge.add_argument("--yes", action="store_true", help="do not ask")

    args = parser.parse_args(argv)
    try:
        conn = load_connections(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "send-test":
        return _send_test(conn, args.wait, args.service)
    if args.command == "status":
        return _status(conn, as_json=args.json)
    return _dead_letters(conn, args)


def _worker(celery_args: list[str]) -> NoReturn:
    try:
        conn = load_connections(os.environ)
    except ConfigError as exc:
        print(f"celery-alerting: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(78) from None  # as the worker itself: EX_CONFIG
    if celery_args[:1] == ["--"]:
        celery_args = celery_args[1:]
    command = [sys.executable, "-m", "celery", "-A", "alerting.worker", "worker", "-Q", conn.queue]
    os.execv(sys.executable, [*command, *(celery_args or ["--loglevel", "INFO"])])  # noqa: S606 - replaces this process


def _send_test(conn: Connections, wait: float, service: str | None) -> int:
    result = ops.send_test(conn, wait=wait, service=service)
    if not result.published:
        print(f"✗ not published: {result.detail}")
        return 1
    print(f"✓ published test alert {result.alert_id} to queue {conn.queue!r}")
    marks = {"sent": "✓", "published": "·", "suppressed": "·", "folded": "·"}
    print(f"{marks.get(result.stage, '✗')} {result.stage}: {result.detail}".rstrip(": "))
    return 0 if result.stage in ("sent", "published") else 1


def _status(conn: Connections, *, as_json: bool) -> int:
    s = ops.status(conn)
    if as_json:
        print(json.dumps(ops.as_dict(s), indent=2))
        return 0 if s.healthy else 1
    rows = [
        ("broker", s.broker),
        ("queue", f"{s.queue}: {s.queue_depth if s.queue_depth is not None else '?'} waiting"),
        ("workers", ", ".join(s.workers) if s.workers else "none answering"),
        ("state store", s.state_store),
        ("throttle windows", _n(s.open_windows)),
        ("owed digests", _n(s.owed_digests)),
        ("rate-limited", f"{_n(s.folded)} alerts waiting for the next summary"),
        ("dead letters", _n(s.dead_letters)),
    ]
    for name, value in rows:
        print(f"{name:<17}{value}")
    return 0 if s.healthy else 1


def _dead_letters(conn: Connections, args: argparse.Namespace) -> int:
    store = ops.open_store(conn)
    if args.action == "list":
        records = store.dead_letters(args.limit)
        if args.json:
            print(json.dumps(records, indent=2))
        for r in [] if args.json else records:
            subject = (r.get("payload") or {}).get("message", "") if isinstance(r.get("payload"), dict) else ""
            print(f"{r.get('failed_at', '?')}  {r.get('kind', '?'):<7} {r.get('id')}  attempts={r.get('attempts')}")
            print(f"    reason: {r.get('reason')}")
            if subject:
                print(f"    message: {str(subject).splitlines()[0][:200]}")
        if not records and not args.json:
            print("no dead letters")
        return 0
    if args.action == "replay":
        report = ops.replay_dead_letters(conn, limit=args.limit)
        print(f"replayed {report.replayed}; skipped {len(report.skipped)}; failed {len(report.failed)}")
        for line in report.skipped:
            print(f"  skipped {line}")
        for line in report.failed:
            print(f"  failed {line}")
        return 1 if report.failed else 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("refusing to purge without --yes", file=sys.stderr)
            return 2
        if input("Delete every dead letter? [y/N] ").strip().lower() != "y":
            print("nothing deleted")
            return 1
    print(f"purged {store.purge_dead_letters()} dead letters")
    return 0


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
