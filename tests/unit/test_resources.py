"""alerting.consumer.resources: one runtime (settings, store, SMTP connection, deliverer) per worker process.

``build`` is replaced by a fake: no Redis, no SMTP. A fork is played by replacing ``alerting.shared.forks.pid``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest

from alerting.consumer import resources
from alerting.consumer.settings import WorkerSettings
from alerting.shared import forks


class FakeRuntime:
    def __init__(self, settings: Any, events: Any) -> None:
        self.settings = settings
        self.events = events
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeRuntime]]:
    made: list[FakeRuntime] = []

    def build(settings: Any, events: Any = None) -> FakeRuntime:
        made.append(FakeRuntime(settings, events))
        return made[-1]

    monkeypatch.setattr(resources, "build", build)
    monkeypatch.setattr(resources, "_settings", None)
    monkeypatch.setattr(resources, "_events", None)
    resources.reset()  # a runtime another test left behind is not this test's
    yield made
    resources.reset()


def test_a_process_builds_its_runtime_once_from_the_settings_the_worker_gave(built: list[FakeRuntime]) -> None:
    settings, events = object(), object()
    resources.use_settings(settings)  # type: ignore[arg-type]
    resources.set_events(events)  # type: ignore[arg-type]
    first = resources.get()
    assert resources.get() is first
    assert len(built) == 1
    assert built[0].settings is settings
    assert built[0].events is events


def test_a_forked_pool_process_builds_its_own_runtime_and_leaves_its_parents_connection_open(
    built: list[FakeRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    resources.use_settings(object())  # type: ignore[arg-type]
    parents = cast(FakeRuntime, resources.get())
    monkeypatch.setattr(forks, "pid", lambda: os.getpid() + 1)  # now "in" a prefork child
    childs = cast(FakeRuntime, resources.get())
    assert childs is not parents  # its own SMTP connection and Redis client
    resources.reset()  # what worker_process_init does in the child...
    assert not parents.closed  # ...never closes the parent's SMTP connection
    assert childs.closed


def test_reset_at_shutdown_closes_this_processs_smtp_connection_and_the_next_use_builds_a_new_one(
    built: list[FakeRuntime],
) -> None:
    resources.use_settings(object())  # type: ignore[arg-type]
    runtime = cast(FakeRuntime, resources.get())
    resources.reset()
    assert runtime.closed
    assert cast(FakeRuntime, resources.get()) is not runtime
    assert len(built) == 2


def test_without_settings_from_the_worker_the_runtime_reads_the_environment(
    built: list[FakeRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = object()
    monkeypatch.setattr(WorkerSettings, "from_env", classmethod(lambda cls: from_env))
    assert resources.get().settings is from_env
