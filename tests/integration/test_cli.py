"""The ``alerting`` console script, run as a subprocess the way an operator runs it, against real services."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from alerting import AlertHandler
from alerting.consumer.settings import SETTINGS
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until
from tests.support.servers import free_port

ALERTING = Path(sys.executable).with_name("alerting")  # the console script installed next to this interpreter


@pytest.fixture
def cli(redis_url: str, queue: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "ALERTING_BROKER_URL": redis_url, "ALERTING_QUEUE": queue, **(env or {})}
        return subprocess.run(
            [str(ALERTING), *args],
            env=full_env,
            stdin=subprocess.DEVNULL,  # not a terminal, as in cron, CI or a pipe
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


STATUS_ROWS = ("broker", "queue", "workers", "state store", "throttle windows", "owed digests", "rate-limited")


def _rows(stdout: str) -> dict[str, str]:
    """``alerting status`` prints one ``name  value`` row per line."""
    rows = {}
    for line in stdout.splitlines():
        name = next((n for n in (*STATUS_ROWS, "dead letters") if line.startswith(n + " ")), None)
        if name is not None:
            rows[name] = line[len(name) :].strip()
    return rows


def _dead_letter_one(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, redis_client: redis.Redis, message: str
) -> None:
    mail_sink.reject_all("550 5.7.1 Relaying denied")
    log = logging.getLogger(f"test.cli.{uuid.uuid4().hex[:6]}")
    make_handler(log)
    log.critical(message)
    wait_until(lambda: dead_letters(redis_client))


def test_status_with_a_worker_running_names_it_and_counts_dead_letters(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    worker = start_worker()
    _dead_letter_one(make_handler, mail_sink, redis_client, "refused by the mail server")

    result = cli("status")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert rows["broker"] == "ok"
    assert rows["queue"] == f"{queue}: 0 waiting"
    assert rows["workers"].startswith(f"{worker.name}@")
    assert rows["state store"] == "ok"
    assert rows["dead letters"] == "1"
    assert set(rows) == {*STATUS_ROWS, "dead letters"}


def test_status_with_the_broker_down_exits_1_quickly_and_says_what_failed(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    started = time.monotonic()
    result = cli("status", env={"ALERTING_BROKER_URL": closed})
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    rows = _rows(result.stdout)
    assert "refused" in rows["broker"].lower(), result.stdout
    assert rows["broker"] != "ok"
    assert rows["state store"] != "ok"
    assert rows["workers"] == "none answering"
    assert elapsed < 5.0  # a refused connection is reported at once, not after kombu's retry loop


def test_send_test_with_a_worker_exits_0_says_sent_and_the_mail_arrives(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()

    result = cli("send-test", "--wait", "15")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "sent: the SMTP server accepted it" in result.stdout
    (mail,) = mail_sink.wait_for(1)
    assert "celery-alerting test alert" in mail.subject
    alert_id = mail.message["X-Alerting-Id"]
    assert f"published test alert {alert_id}" in result.stdout


def test_send_test_without_a_worker_exits_1_and_names_the_queue_nobody_consumes(
    cli: Callable[..., subprocess.CompletedProcess[str]], mail_sink: MailSink, queue: str
) -> None:
    result = cli("send-test", "--wait", "1")

    assert result.returncode == 1
    assert "no worker took it within 1s" in result.stdout
    assert f"queue '{queue}'" in result.stdout
    assert mail_sink.received == []


def test_dead_letters_list_shows_the_reason_and_replay_delivers_and_empties_it(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    start_worker()
    _dead_letter_one(make_handler, mail_sink, redis_client, "invoice run crashed")

    listed = cli("dead-letters", "list")
    assert listed.returncode == 0
    assert "attempts=1" in listed.stdout
    assert "reason: permanent SMTP failure: server replied 550 5.7.1 Relaying denied" in listed.stdout
    assert "message: invoice run crashed" in listed.stdout
    (record,) = json.loads(cli("dead-letters", "list", "--json").stdout)
    assert record["kind"] == "alert"

    mail_sink.reject_all(None)  # the mail server is fixed
    replayed = cli("dead-letters", "replay")

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 1;" in replayed.stdout
    (mail,) = mail_sink.wait_for(1)
    assert "invoice run crashed" in mail.subject
    assert mail.message["X-Alerting-Id"] == record["id"]
    assert cli("dead-letters", "list").stdout.strip() == "no dead letters"
    assert dead_letters(redis_client) == []


def test_dead_letters_purge_needs_yes_when_not_on_a_terminal_and_reports_what_it_deleted(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    start_worker()
    _dead_letter_one(make_handler, mail_sink, redis_client, "first refused alert")
    _dead_letter_one(make_handler, mail_sink, redis_client, "second refused alert")
    wait_until(lambda: len(dead_letters(redis_client)) == 2)

    refused = cli("dead-letters", "purge")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert len(dead_letters(redis_client)) == 2  # nothing deleted without the confirmation

    purged = cli("dead-letters", "purge", "--yes")
    assert purged.returncode == 0
    assert purged.stdout.strip() == "purged 2 dead letters"
    assert dead_letters(redis_client) == []
    assert cli("dead-letters", "purge", "--yes").stdout.strip() == "purged 0 dead letters"


def test_worker_help_prints_the_help_without_any_configuration(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTING_")}
    result = subprocess.run(
        [str(ALERTING), "worker", "--help"], env=clean, cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr  # was: exit 78, "ALERTING_MAIL_TO: required"
    assert "usage: alerting worker" in result.stdout
    assert "ALERTING_MAIL_TO" in result.stdout  # says how it is configured
    assert "--concurrency" in result.stdout  # and celery's own worker options
    assert "configuration error" not in result.stdout + result.stderr


def test_worker_help_lists_every_setting_the_worker_reads_with_its_default(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTING_")}
    result = subprocess.run(
        [str(ALERTING), "worker", "--help"], env=clean, cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=True,
    )  # fmt: skip

    listed = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.startswith("  ALERTING_"))
    assert listed == {s.name: s.default or "-" for s in SETTINGS}
