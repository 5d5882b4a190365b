"""alerting.consumer.signals.AlertWorkerLifecycle: what a worker does at start, in each pool process and at
shutdown. Celery's signals are sent by the test (no worker runs); the poller, store and runtime are fakes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from celery import Celery, signals

from alerting.consumer import resources
from alerting.consumer import signals as lifecycle_module
from alerting.consumer.signals import AlertWorkerLifecycle
from alerting.shared.wire import DIGEST_TASK_NAME


class FakePoller:
    def __init__(self, store: Any, publish: Callable[[str], None], *, interval: float) -> None:
        self.store, self.publish, self.interval = store, publish, interval
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


class FakeConsumer:
    """What worker_ready sends: the worker's consumer, with its app (hashable, as Celery's signal cache needs)."""

    def __init__(self, app: Celery) -> None:
        self.app = app


class Calls:
    def __init__(self) -> None:
        self.resets = 0
        self.sent: list[tuple[str, list[str], str]] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()

    def reset() -> None:
        recorded.resets += 1

    monkeypatch.setattr(resources, "reset", reset)
    monkeypatch.setattr(resources, "open_store", lambda settings: "the store")
    monkeypatch.setattr(resources, "_settings", None)  # activate() sets it; the monkeypatch puts it back
    monkeypatch.setattr(lifecycle_module, "OutboxPoller", FakePoller)
    return recorded


@pytest.fixture
def app(calls: Calls) -> Celery:
    app = Celery("lifecycle-test", broker="memory://", set_as_current=False)

    def send_task(name: str, args: list[str], queue: str) -> None:
        calls.sent.append((name, args, queue))

    cast(Any, app).send_task = send_task
    return app


def settings(tmp_path: Path) -> Any:
    return SimpleNamespace(
        metrics_port=None,
        ready_file=str(tmp_path / "ready"),
        digest_poll_interval=0.5,
        smtp=SimpleNamespace(host="mail.example", port=25, security="none"),
        throttle_window=60.0,
        rate_limit=None,
    )


@pytest.fixture
def lifecycle(app: Celery) -> Iterator[AlertWorkerLifecycle]:
    lifecycle = AlertWorkerLifecycle(app, lambda consumer: "alerts-q")
    lifecycle.connect()
    yield lifecycle
    uid = f"alerting.consumer.signals:{id(app)}"
    signals.worker_process_init.disconnect(dispatch_uid=f"{uid}:process")
    signals.worker_ready.disconnect(dispatch_uid=f"{uid}:ready")
    signals.worker_process_shutdown.disconnect(dispatch_uid=f"{uid}:exited")
    signals.worker_shutdown.disconnect(dispatch_uid=f"{uid}:shutdown")


def test_a_ready_worker_starts_the_poller_publishing_digests_to_its_queue_and_writes_the_ready_file(
    app: Celery, lifecycle: AlertWorkerLifecycle, calls: Calls, tmp_path: Path
) -> None:
    lifecycle.activate(settings(tmp_path))
    signals.worker_ready.send(sender=FakeConsumer(app))
    poller: Any = lifecycle.poller
    assert isinstance(poller, FakePoller)
    assert poller.running
    assert poller.store == "the store"
    assert poller.interval == 0.5
    poller.publish("item-1")
    assert calls.sent == [(DIGEST_TASK_NAME, ["item-1"], "alerts-q")]
    assert (tmp_path / "ready").read_text() == str(os.getpid())


def test_shutdown_stops_the_poller_closes_the_runtime_and_removes_the_ready_file(
    app: Celery, lifecycle: AlertWorkerLifecycle, calls: Calls, tmp_path: Path
) -> None:
    lifecycle.activate(settings(tmp_path))
    signals.worker_ready.send(sender=FakeConsumer(app))
    signals.worker_shutdown.send(sender=None)
    poller: Any = lifecycle.poller
    assert poller is not None
    assert not poller.running
    assert calls.resets == 1
    assert not (tmp_path / "ready").exists()  # a supervisor's health check sees it gone


def test_each_pool_process_gets_a_fresh_runtime(lifecycle: AlertWorkerLifecycle, calls: Calls, tmp_path: Path) -> None:
    lifecycle.activate(settings(tmp_path))
    signals.worker_process_init.send(sender=None)
    assert calls.resets == 1  # its own SMTP connection and Redis client, not its parent's


def test_a_worker_that_does_not_deliver_alerts_does_nothing_at_any_signal(
    app: Celery, lifecycle: AlertWorkerLifecycle, calls: Calls, tmp_path: Path
) -> None:
    # Not activated: a worker of the application's own app that does not consume the alerts queue.
    signals.worker_process_init.send(sender=None)
    signals.worker_ready.send(sender=FakeConsumer(app))
    signals.worker_shutdown.send(sender=None)
    assert lifecycle.poller is None
    assert calls.resets == 0


def test_the_ready_signal_of_another_apps_worker_is_ignored(
    lifecycle: AlertWorkerLifecycle, calls: Calls, tmp_path: Path
) -> None:
    lifecycle.activate(settings(tmp_path))
    other = Celery("other", broker="memory://", set_as_current=False)
    signals.worker_ready.send(sender=FakeConsumer(other))
    assert lifecycle.poller is None
    assert not (tmp_path / "ready").exists()


def test_connecting_twice_runs_each_handler_once(
    app: Celery, lifecycle: AlertWorkerLifecycle, calls: Calls, tmp_path: Path
) -> None:
    lifecycle.connect()  # configure(app) called twice, or the module imported twice
    lifecycle.activate(settings(tmp_path))
    signals.worker_process_init.send(sender=None)
    assert calls.resets == 1
