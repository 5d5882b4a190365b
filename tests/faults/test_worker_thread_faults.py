"""A worker thread that dies is a worker that exits, not one that runs half-alive: the outbox poller (digests and
summaries) against a state store that answers garbage, and against one that is merely down for a while."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import wait_until
from tests.support.servers import RedisServer
from tests.support.wrong_redis import WrongAnswerServer


@pytest.fixture
def wrong_redis() -> Iterator[WrongAnswerServer]:
    server = WrongAnswerServer().start()
    yield server
    server.stop()


def test_a_worker_whose_state_store_answers_garbage_exits_70_naming_the_poller_and_the_cause(
    worker_env: dict[str, str], wrong_redis: WrongAnswerServer, queue: str
) -> None:
    # The broker is a real Redis; the state store answers every script with "+OK" where numbers are expected,
    # so the poller's first round fails with an error no retry can fix.
    worker = WorkerProcess({**worker_env, "ALERTING_STATE_URL": wrong_redis.url}, queue=queue)
    with open(worker.log_file, "ab") as log:
        proc = subprocess.Popen(
            worker.args, env=worker.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker.proc = proc
    try:
        code = proc.wait(timeout=30)
    finally:
        worker.kill()
    output = worker.output()
    assert code == 70, output[-3000:]  # EX_SOFTWARE: a supervisor restarts it
    assert "outbox poller died (ValueError" in output, output[-3000:]
    assert "ERROR" in output
    assert "EVALSHA" in wrong_redis.commands  # it did reach the poller's script


def test_a_state_store_that_goes_down_and_comes_back_does_not_stop_the_worker(
    start_worker: Callable[..., WorkerProcess], private_redis: RedisServer
) -> None:
    worker = start_worker({"ALERTING_STATE_URL": private_redis.url})
    private_redis.stop()
    wait_until(lambda: "outbox poller:" in worker.output() and "will keep trying" in worker.output(), timeout=15)
    private_redis.start()
    wait_until(lambda: "state store reachable again" in worker.output(), timeout=15)
    assert worker.proc is not None
    assert worker.proc.poll() is None  # still running, digests resume
