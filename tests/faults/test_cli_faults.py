"""The ``alerting`` command when things are wrong: Redis refused or hung, alert text that carries terminal
escapes, a worker without the alerting tasks on the alerts queue. Run as a subprocess, as an operator runs it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until
from tests.support.servers import HungServer, free_port

ALERTING = Path(sys.executable).with_name("alerting")
PASSWORD = "hunter2-not-for-terminals"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(redis_url: str, queue: str) -> Run:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTING_")}
        full_env = {
            **clean, "ALERTING_BROKER_URL": redis_url, "ALERTING_QUEUE": queue,
            "ALERTING_MAIL_TO": "ops@example.com", "ALERTING_MAIL_FROM": "alerts@example.com", **(env or {}),
        }  # fmt: skip
        return subprocess.run(
            [str(ALERTING), *args], env=full_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    return run


@pytest.fixture
def hung_redis() -> Iterator[HungServer]:
    with HungServer() as server:
        yield server


COMMANDS = [
    (("send-test", "--wait", "1"), "the broker"),
    (("dead-letters", "list"), "the state store"),
    (("dead-letters", "replay"), "the state store"),
    (("dead-letters", "purge", "--yes"), "the state store"),
    (("worker",), "the broker"),
]


def _one_clean_line(result: subprocess.CompletedProcess[str], what: str, port: int) -> str:
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert PASSWORD not in output, output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert f"{what} at redis://:***@127.0.0.1:{port}/0" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "what"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_with_redis_refusing_every_command_prints_one_line_naming_it_and_exits_non_zero(
    cli: Run, args: tuple[str, ...], what: str
) -> None:
    port = free_port()  # nothing listens there
    result = cli(*args, env={"ALERTING_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"})
    assert "connection refused" in _one_clean_line(result, what, port)


@pytest.mark.parametrize(
    ("args", "what"), [c for c in COMMANDS if c[0][-1] in ("1", "list", "worker")], ids=["send-test", "list", "worker"]
)
def test_with_redis_hung_the_command_gives_up_with_one_line_naming_it(
    cli: Run, hung_redis: HungServer, args: tuple[str, ...], what: str
) -> None:
    result = cli(*args, env={"ALERTING_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{hung_redis.port}/0"})
    assert "no answer" in _one_clean_line(result, what, hung_redis.port)


def test_status_with_redis_refusing_names_both_in_its_table_without_traceback_or_password(cli: Run) -> None:
    port = free_port()
    result = cli("status", env={"ALERTING_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"})
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert f"cannot reach the broker at redis://:***@127.0.0.1:{port}/0: connection refused" in result.stdout
    assert f"cannot reach the state store at redis://:***@127.0.0.1:{port}/0: connection refused" in result.stdout


HOSTILE = "disk full\x1b]2;owned\x07\x1b[2J\x1b[1;1HFAKE: all clear\r\x9b31m\x08\u202etxt.exe"


def test_dead_letters_list_shows_alert_text_with_control_characters_escaped(
    cli: Run,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    start_worker()
    mail_sink.reject_all("550 5.7.1 Relaying denied")
    log = logging.getLogger(f"test.cli.hostile.{uuid.uuid4().hex[:6]}")
    make_handler(log)
    log.critical(HOSTILE)
    wait_until(lambda: dead_letters(redis_client))

    listed = cli("dead-letters", "list")

    assert listed.returncode == 0, listed.stderr
    for char in "\x1b\x07\r\x9b\x08\u202e":
        assert char not in listed.stdout, repr(listed.stdout)
    shown = r"message: disk full\x1b]2;owned\x07\x1b[2J\x1b[1;1HFAKE: all clear\x0d\x9b31m\x08\u202etxt.exe"
    assert shown in listed.stdout, listed.stdout  # every character is there, visibly, none is obeyed
    as_json = cli("dead-letters", "list", "--json")
    for char in "\x1b\x07\r\x9b\x08\u202e\x7f":
        assert char not in as_json.stdout
    (record,) = json.loads(as_json.stdout)
    assert record["payload"]["message"].startswith("disk full\x1b]2;owned")  # the data itself is intact


def test_send_test_names_a_worker_without_the_alerting_tasks_that_discarded_the_alert(
    cli: Run, worker_env: dict[str, str], queue: str, mail_sink: MailSink
) -> None:
    plain = WorkerProcess(worker_env, queue=queue, app="tests.support.plain_celery").start()
    try:
        started = time.monotonic()
        result = cli("send-test")  # the default --wait 15
        elapsed = time.monotonic() - started
        wait_until(lambda: "alerting.deliver" in plain.output())
    finally:
        plain.stop()

    assert result.returncode == 1
    assert "unregistered task" in plain.output().lower()  # what happened, from that worker's side
    assert f"{plain.name}@" in result.stdout, result.stdout
    assert "without the alerting tasks" in result.stdout
    assert "celery -A alerting.worker worker" in result.stdout
    assert elapsed < 10  # it says so as soon as it knows, not after the whole --wait
    assert mail_sink.received == []
