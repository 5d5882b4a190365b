"""alerting.shared.forks: the one place that hooks fork(), and the per-process values; plus the one private Celery
method the package calls at fork time."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from celery import Celery

from alerting.shared import forks
from alerting.shared.forks import PerProcess


@pytest.fixture
def only_these_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register into empty lists: a test's callbacks run alone, and the package's own are left as they were."""
    monkeypatch.setattr(forks, "_before", [])
    monkeypatch.setattr(forks, "_after_in_parent", [])
    monkeypatch.setattr(forks, "_after_in_child", [])


def test_a_real_fork_runs_the_registered_callbacks_in_order_in_parent_and_child(only_these_callbacks: None) -> None:
    calls: list[str] = []
    forks.on_fork(before=lambda: calls.append("before 1"), after_in_child=lambda: calls.append("child 1"))
    forks.on_fork(
        before=lambda: calls.append("before 2"),
        after_in_parent=lambda: calls.append("parent 2"),
        after_in_child=lambda: calls.append("child 2"),
    )
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what ran, and leave at once (no pytest teardown in a forked copy)
        try:
            os.write(write, ",".join(calls).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_calls = pipe.read().split(",")
    os.waitpid(pid, 0)
    # As the os module orders them: "before" last-registered first, the "after" ones in registration order.
    assert child_calls == ["before 2", "before 1", "child 1", "child 2"]
    assert calls == ["before 2", "before 1", "parent 2"]


def test_a_failing_callback_is_reported_and_the_next_one_still_runs(
    only_these_callbacks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("cannot reset")

    forks.on_fork(after_in_child=broken)
    forks.on_fork(after_in_child=lambda: ran.append("next"))
    forks.run_after_in_child()
    assert ran == ["next"]  # a child whose second component was not reset would lose its alerts silently
    assert [type(r.exc_value) for r in reported] == [RuntimeError]
    assert reported[0].object is broken


def test_the_package_registers_with_os_fork_in_one_place_only() -> None:
    import alerting

    package = os.path.dirname(alerting.__file__)
    callers = []
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as source:
                    if "register_at_fork(" in source.read():
                        callers.append(os.path.relpath(path, package))
    assert callers == [os.path.join("shared", "forks.py")]


class Made:
    def __init__(self, n: int) -> None:
        self.n = n


def test_a_per_process_value_is_built_once_per_process_and_again_in_a_forked_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Made] = []

    def build() -> Made:
        built.append(Made(len(built)))
        return built[-1]

    value = PerProcess(build)
    assert value.get() is value.get()
    assert len(built) == 1
    monkeypatch.setattr(forks, "pid", lambda: os.getpid() + 1)  # play the child of a fork
    child = value.get()
    assert child is built[1]
    assert value.get() is child


def test_take_hands_back_only_a_value_this_process_built(monkeypatch: pytest.MonkeyPatch) -> None:
    value = PerProcess(lambda: Made(0))
    parents = value.get()
    assert value.take() is parents  # ours: the caller closes it
    assert value.take() is None
    value.get()
    monkeypatch.setattr(forks, "pid", lambda: os.getpid() + 1)
    assert value.take() is None  # the parent's: a child must not close its parent's connection


def test_celery_still_has_the_private_after_fork_cleanup_the_handler_calls_after_a_bare_fork() -> None:
    # alerting.producer.handler calls Celery._after_fork() in a child of a bare os.fork() (gunicorn, uWSGI) when
    # it publishes through the application's own Celery app: Celery runs it only for children of its own pool,
    # and without it the child would publish over the parent's broker connections. It is private: this test
    # fails, instead of the call silently becoming a no-op (getattr), the day Celery renames or drops it.
    app: Any = Celery("forks-test", broker="memory://", set_as_current=False)  # Any: private attributes
    _ = app.pool  # the connection pool a child must not share
    assert app._pool is not None
    assert callable(getattr(app, "_after_fork", None))
    app._after_fork()
    assert app._pool is None  # what the handler relies on: the child opens its own connections
