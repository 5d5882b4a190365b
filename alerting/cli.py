"""The ``alerting`` command: run a worker, send a test alert, check status, manage dead letters.

Two rules hold for every command. Everything printed goes through :func:`say`, which escapes control characters:
dead letters and worker names carry text from alerts, and an alert must not be able to retitle, clear or
rewrite the operator's terminal. A server that cannot be reached ends the command with one line naming it
(:func:`run`), never a traceback, and never with the password from its URL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from alerting import __version__, ops
from alerting.consumer.settings import SETTINGS, Connections, load, load_connections
from alerting.errors import ConfigError, StoreError

EX_USAGE = 2
EX_UNAVAILABLE = 69  # sysexits.h: a service the command needs is unavailable
EX_CONFIG = 78  # sysexits.h, as the worker itself

# C0 controls except tab and newline, DEL, C1 controls (ESC's 8-bit forms: CSI, OSC...), and the bidirectional
# overrides that make text display in another order than it reads.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

WORKER_HELP = """\
usage: alerting worker [CELERY WORKER OPTIONS]

Run an alert worker: `celery -A alerting.worker worker -Q $ALERTING_QUEUE`, with `--loglevel INFO` unless
options are given (they go to celery, after `--` if you like). It is configured by ALERTING_* environment
variables: ALERTING_MAIL_TO is required; worker/.env.example explains every one. Before starting,
it checks that the broker and the state store answer (exit 69 if not); a bad setting exits 78.
"""


def settings_help() -> str:
    """The worker's variables and their defaults, from the settings registry (the same list the worker reads)."""
    width = max(len(s.name) for s in SETTINGS)
    rows = [f"  {s.name:<{width}}  {s.default or '-'}" for s in SETTINGS]
    title = "Environment variables and their defaults (-: none, derived or required; see worker/.env.example):"
    return "\n".join([title, *rows])


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\u202e``); newlines and tabs kept."""
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def say(text: object = "", *, err: bool = False) -> None:
    """Print one line (or several) for the operator. Every output of this command goes through here."""
    stream: TextIO = sys.stderr if err else sys.stdout
    print(printable(str(text)), file=stream)


def as_json(value: Any) -> str:
    # json.dumps escapes every control character but DEL (it is ASCII); escape it too, as JSON allows.
    return json.dumps(value, indent=2).replace("\x7f", "\\u007f")


def run(command: Callable[[], int], conn: Connections | None = None) -> int:
    """Run a command; map the errors an operator can act on to one line and an exit code."""
    try:
        return command()
    except ConfigError as exc:
        say(f"alerting: configuration error: {exc}", err=True)
        return EX_USAGE
    except ops.Unreachable as exc:
        say(f"alerting: {exc}", err=True)
        return EX_UNAVAILABLE
    except StoreError as exc:
        url = conn.state_url if conn is not None else ""
        say(f"alerting: {ops.Unreachable('the state store', url, exc)}", err=True)
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        say("alerting: interrupted", err=True)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return run(lambda: _worker(argv[1:]))
    parser = argparse.ArgumentParser(prog="alerting", description="celery-alerting: alert emails from logs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")  # needs no ALERTING_*
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
        say(f"configuration error: {exc}", err=True)
        return EX_USAGE
    if args.command == "send-test":
        return run(lambda: _send_test(conn, args.wait, args.service), conn)
    if args.command == "status":
        return run(lambda: _status(conn, as_json_output=args.json), conn)
    return run(lambda: _dead_letters(conn, args), conn)


def _worker(celery_args: list[str]) -> int:
    if celery_args[:1] == ["--"]:
        celery_args = celery_args[1:]
    if any(a in ("-h", "--help") for a in celery_args):
        # Help needs no configuration: celery's own worker help, without importing alerting.worker (which
        # reads the settings at import).
        say(WORKER_HELP)
        say(settings_help())
        say("\nCelery's worker options follow.\n")
        sys.stdout.flush()
        _exec([sys.executable, "-m", "celery", "worker", "--help"])
    try:
        settings = load(os.environ)  # every setting, as the worker will read them: exit 78 before anything else
    except ConfigError as exc:
        say(f"celery-alerting: configuration error: {exc}", err=True)
        return EX_CONFIG
    conn = load_connections(os.environ)
    ops.check_reachable(conn)  # one clean line now, rather than celery's retry loop and tracebacks
    command = [sys.executable, "-m", "celery", "-A", "alerting.worker", "worker", "-Q", settings.queue]
    return _exec([*command, *(celery_args or ["--loglevel", "INFO"])])


def _exec(command: list[str]) -> NoReturn:
    os.execv(command[0], command)  # noqa: S606 - replaces this process


def _send_test(conn: Connections, wait: float, service: str | None) -> int:
    result = ops.send_test(conn, wait=wait, service=service)
    if not result.published:
        say(f"✗ not published: {result.detail}")
        return 1
    say(f"✓ published test alert {result.alert_id} to queue {conn.queue!r}")
    marks = {"sent": "✓", "published": "·", "suppressed": "·", "folded": "·"}
    say(f"{marks.get(result.stage, '✗')} {result.stage}: {result.detail}".rstrip(": "))
    return 0 if result.stage in ("sent", "published") else 1


def _status(conn: Connections, *, as_json_output: bool) -> int:
    s = ops.status(conn)
    if as_json_output:
        say(as_json(ops.as_dict(s)))
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
        say(f"{name:<17}{value}")
    return 0 if s.healthy else 1


def _dead_letters(conn: Connections, args: argparse.Namespace) -> int:
    store = ops.open_store(conn)
    if args.action == "list":
        records = store.dead_letters(args.limit)
        if args.json:
            say(as_json(records))
        for r in [] if args.json else records:
            subject = (r.get("payload") or {}).get("message", "") if isinstance(r.get("payload"), dict) else ""
            say(f"{r.get('failed_at', '?')}  {r.get('kind', '?'):<7} {r.get('id')}  attempts={r.get('attempts')}")
            say(f"    reason: {r.get('reason')}")
            if subject:
                say(f"    message: {str(subject).split(chr(10), 1)[0][:200]}")  # a CR is shown, not obeyed
        if not records and not args.json:
            say("no dead letters")
        return 0
    if args.action == "replay":
        report = ops.replay_dead_letters(conn, limit=args.limit)
        say(f"replayed {report.replayed}; skipped {len(report.skipped)}; failed {len(report.failed)}")
        for line in report.skipped:
            say(f"  skipped {line}")
        for line in report.failed:
            say(f"  failed {line}")
        return 1 if report.failed else 0
    if not args.yes:
        if not sys.stdin.isatty():
            say("refusing to purge without --yes", err=True)
            return EX_USAGE
        if input("Delete every dead letter? [y/N] ").strip().lower() != "y":
            say("nothing deleted")
            return 1
    say(f"purged {store.purge_dead_letters()} dead letters")
    return 0


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
