"""Fork handling in one place: the only ``os.register_at_fork`` of the package, and the pid check. No I/O.

A thread does not survive ``fork()``, and a connection (socket, SQLite, SMTP) must not be used by two processes.
Components that hold either register callbacks here instead of each calling ``os.register_at_fork``:

- ``on_fork(before=..., after_in_parent=..., after_in_child=...)``: run by every ``os.fork()`` made from Python
  (gunicorn, uWSGI, multiprocessing, Celery's prefork pool via billiard). As the os module does, ``before``
  callbacks run in reverse order of registration and the ``after_*`` ones in order: a component registered
  later (one built on an earlier one) prepares first and resets last.
- ``PerProcess(factory)``: a value built lazily once per process. It checks the pid instead of relying on a
  callback, so it is right even after a fork made outside Python (a C library calling ``fork()``), where no
  callback runs.

One failing callback must not keep the others from running (a child whose publisher was not reset would drop
its alerts silently): each is run on its own, and a failure goes to ``sys.unraisablehook``, as the os module
would report it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

Callback = Callable[[], None]

_before: list[Callback] = []
_after_in_parent: list[Callback] = []
_after_in_child: list[Callback] = []


def on_fork(
    *,
    before: Callback | None = None,
    after_in_parent: Callback | None = None,
    after_in_child: Callback | None = None,
) -> None:
    """Run these around every fork of this process from now on (callbacks are kept for the process's life)."""
    if before is not None:
        _before.append(before)
    if after_in_parent is not None:
        _after_in_parent.append(after_in_parent)
    if after_in_child is not None:
        _after_in_child.append(after_in_child)


def pid() -> int:
    """This process's id: the one place components ask, so that unit tests can play a fork by replacing it."""
    return os.getpid()


def _run(callbacks: list[Callback]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:  # report it and go on: the next component must still be reset
            sys.unraisablehook(cast(Any, _Unraisable(exc, callback)))


def run_before() -> None:
    _run(list(reversed(_before)))


def run_after_in_parent() -> None:
    _run(list(_after_in_parent))


def run_after_in_child() -> None:
    _run(list(_after_in_child))


class _Unraisable:
    """The argument ``sys.unraisablehook`` expects (the os module reports a failing at-fork callback the same way)."""

    def __init__(self, exc: Exception, callback: Callback) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored in an alerting fork callback"
        self.object = callback


class PerProcess(Generic[T]):
    """A value built on first use in each process: a forked child builds its own instead of using its parent's.

    ``get()`` costs one ``getpid()`` and a comparison when the value exists (it is on the alert path).
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid = -1
        # Kept for the life of the process: meant for module-level values, made once.
        on_fork(after_in_child=self._after_fork_in_child)

    def get(self) -> T:
        value, owner = self._value, self._pid
        current = pid()
        if value is not None and owner == current:
            return value
        with self._lock:
            if self._value is None or self._pid != current:
                self._value = self._factory()
                self._pid = current
            return self._value

    def take(self) -> T | None:
        """Forget the value; returns it when this process built it (for the caller to close), else None."""
        with self._lock:
            value, owner = self._value, self._pid
            self._value, self._pid = None, -1
        return value if owner == pid() else None

    def _after_fork_in_child(self) -> None:
        """A lock held by another thread at fork time would stay held in the child forever: replace it."""
        self._lock = threading.Lock()


os.register_at_fork(before=run_before, after_in_parent=run_after_in_parent, after_in_child=run_after_in_child)
