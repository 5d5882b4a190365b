"""What survives the process: the SQLite spool, exit within flush_timeout, crashes, and forks."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from alerting import AlertHandler
from alerting.producer.spool import Spool
from alerting.shared.wire import PAYLOAD_VERSION
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.support.servers import HungServer, RedisServer


def run_app(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.support.app_process", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).parents[2],
    )


def subjects(mails: list) -> list[str]:  # type: ignore[type-arg]
    return [m.subject.split(": ", 1)[1] for m in mails]


def test_a_process_that_logs_while_redis_is_down_then_exits_loses_nothing(
    private_redis: RedisServer,
    tmp_path: Path,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    spool = str(tmp_path / "alerts.sqlite")
    private_redis.stop()
    down = run_app("--broker", private_redis.url, "--queue", queue, "--spool", spool, "--count", "5")
    assert down.returncode == 0, down.stderr
    assert Spool(spool).count() == 5

    private_redis.start()
    start_worker({"ALERTING_BROKER_URL": private_redis.url})
    # The next process that opens the spool publishes what it holds, oldest first, without logging anything itself.
    nxt = run_app("--broker", private_redis.url, "--queue", queue, "--spool", spool, "--linger", "2")
    assert nxt.returncode == 0, nxt.stderr
    mails = mail_sink.wait_for(5)
    assert subjects(mails) == [f"app alert {i}" for i in range(5)]
    assert Spool(spool).count() == 0


def test_spooled_alerts_survive_a_crash_of_the_process(
    private_redis: RedisServer,
    tmp_path: Path,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    spool = str(tmp_path / "alerts.sqlite")
    private_redis.stop()
    crashed = run_app(
        "--broker",
        private_redis.url,
        "--queue",
        queue,
        "--spool",
        spool,
        "--count",
        "4",
        "--exit",
        "kill-after-spooled",
    )
    assert crashed.returncode == -9  # SIGKILL: no atexit, no flush
    assert "spooled 4" in crashed.stdout

    private_redis.start()
    start_worker({"ALERTING_BROKER_URL": private_redis.url})
    run_app("--broker", private_redis.url, "--queue", queue, "--spool", spool, "--linger", "2")
    assert sorted(subjects(mail_sink.wait_for(4))) == [f"app alert {i}" for i in range(4)]


def test_the_same_process_replays_its_spool_when_redis_returns(
    private_redis: RedisServer,
    tmp_path: Path,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    spool = str(tmp_path / "alerts.sqlite")
    private_redis.stop()
    handler = AlertHandler(broker_url=private_redis.url, queue=queue, spool_path=spool)
    log = logging.getLogger("test.spool.same")
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(3):
            log.critical("queued while down %d", i, extra={"alert_key": str(i)})
        deadline = time.monotonic() + 5
        while handler.stats()["spooled"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert handler.stats()["spooled"] == 3
        private_redis.start()
        start_worker({"ALERTING_BROKER_URL": private_redis.url})
        assert sorted(subjects(mail_sink.wait_for(3, timeout=30))) == [f"queued while down {i}" for i in range(3)]
        assert Spool(spool).count() == 0
    finally:
        log.removeHandler(handler)
        handler.close()


def test_a_spool_that_cannot_be_used_is_flagged_in_stats_and_alerts_wait_in_memory(
    private_redis: RedisServer, tmp_path: Path, queue: str
) -> None:
    spool = str(tmp_path / "not-mounted" / "alerts.sqlite")  # e.g. a volume that was never mounted
    private_redis.stop()
    handler = AlertHandler(broker_url=private_redis.url, queue=queue, spool_path=spool)
    log = logging.getLogger("test.spool.unusable")
    log.addHandler(handler)
    log.propagate = False
    try:
        assert handler.stats()["spool_unusable"] == 1
        for i in range(5):
            log.critical("kept in memory %d", i, extra={"alert_key": str(i)})
        private_redis.start()
        client = private_redis.client()
        assert handler.flush(timeout=15)
        assert client.llen(queue) == 5
        stats = handler.stats()
        assert (stats["lost"], stats["spooled"], stats["published"]) == (0, 0, 5)
    finally:
        log.removeHandler(handler)
        handler.close()


def test_processes_sharing_one_spool_publish_each_alert_exactly_once(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, queue: str
) -> None:
    path = str(tmp_path / "shared.sqlite")
    Spool(path).add([{"v": PAYLOAD_VERSION, "id": f"id{i:04d}", "fingerprint": f"fp{i}"} for i in range(300)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.app_process", "--broker", redis_url, "--queue", queue,
             "--spool", path, "--linger", "3"],
            cwd=Path(__file__).parents[2],
        )
        for _ in range(3)
    ]  # fmt: skip
    for p in procs:
        assert p.wait(30) == 0
    ids = []
    for raw in redis_client.lrange(queue, 0, -1):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.append(body[0][0]["id"])
    assert len(ids) == 300
    assert len(set(ids)) == 300
    assert Spool(path).count() == 0


def test_exit_publishes_alerts_logged_just_before_it(
    redis_url: str, queue: str, mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    done = run_app("--broker", redis_url, "--queue", queue, "--count", "3")
    assert done.returncode == 0
    assert sorted(subjects(mail_sink.wait_for(3))) == [f"app alert {i}" for i in range(3)]


def test_exit_never_waits_longer_than_flush_timeout_even_with_redis_hung(queue: str, tmp_path: Path) -> None:
    with HungServer() as hung:
        started = time.perf_counter()
        run_app("--broker", hung.url, "--queue", queue)  # same start-up, nothing to flush
        baseline_s = time.perf_counter() - started
        started = time.perf_counter()
        lost = run_app("--broker", hung.url, "--queue", queue, "--count", "3", "--flush-timeout", "1.0")
        hung_s = time.perf_counter() - started
        spool = str(tmp_path / "alerts.sqlite")
        spooled = run_app(
            "--broker", hung.url, "--queue", queue, "--count", "3", "--flush-timeout", "1.0", "--spool", spool
        )
    assert lost.returncode == 0
    assert spooled.returncode == 0
    assert hung_s - baseline_s < 1.0 + 0.7  # flush_timeout, plus scheduling noise; never the 40 s of a default client
    assert "lost 3 alerts" in lost.stderr  # not silently: the exit says what could not be published
    assert Spool(spool).count() == 3  # with a spool, nothing is lost


def test_children_of_a_preforking_server_alert_too(
    redis_url: str, queue: str, mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    forked = run_app("--broker", redis_url, "--queue", queue, "--exit", "fork", "--prefix", "gunicorn")
    assert forked.returncode == 0, forked.stderr
    got = sorted(subjects(mail_sink.wait_for(4)))
    assert got == sorted(
        ["gunicorn child 0", "gunicorn child 1", "gunicorn parent before fork", "gunicorn parent after fork"]
    )


def test_prefork_children_of_an_applications_own_celery_worker_alert(
    redis_url: str, queue: str, mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()  # the alerts worker
    user_queue = f"{queue}-app"
    env = {"USERAPP_BROKER_URL": redis_url, "USERAPP_ALERT_QUEUE": queue}
    app_worker = WorkerProcess(env, queue=user_queue, app="tests.support.userapp", concurrency=2)
    app_worker.start()
    try:
        from celery import Celery

        client = Celery(broker=redis_url, set_as_current=False)
        for n in range(3):
            client.send_task("userapp.charge", args=[n], queue=user_queue)
        got = sorted(subjects(mail_sink.wait_for(3)))
        assert got == [f"charge {n} failed in a prefork child" for n in range(3)]
        assert os.getpid() not in {m.message["X-Alerting-Id"] for m in mail_sink.received}
    finally:
        app_worker.stop()
