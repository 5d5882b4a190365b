"""Request context attached to alerts: a contextvar set by framework middleware, read by the handler.

Framework adapters (``alerting.contrib``) set it around each request (:func:`set_context` /
:func:`reset_context`); application code can use :func:`bind` the same way for jobs or CLI commands.
The handler copies the current context into each alert's payload.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any

_current: ContextVar[Mapping[str, Any] | None] = ContextVar("alerting_context", default=None)


def current() -> Mapping[str, Any] | None:
    """The context of the running request or job, if any."""
    return _current.get()


def set_context(values: Mapping[str, Any] | None) -> Token[Mapping[str, Any] | None]:
    """Replace the current context; pass the returned token to :func:`reset_context` when done."""
    return _current.set(values)


def reset_context(token: Token[Mapping[str, Any] | None]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Add ``values`` to the alert context for the duration of the block (nested blocks merge)."""
    merged = {**(_current.get() or {}), **values}
    token = _current.set(merged)
    try:
        yield
    finally:
        _current.reset(token)
