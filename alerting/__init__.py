"""celery-alerting: alert emails from Python logging, sent by Celery workers, without risking the app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy and IDEs see the real class; at run time it is imported on first use (__getattr__)
    from alerting.producer.handler import AlertHandler

__all__ = ["AlertHandler", "__version__"]
# The one place the version is written: pyproject.toml reads it from here ([tool.setuptools.dynamic]), and
# `alerting --version` prints it. Keep it a plain string literal: setuptools then reads it without importing us.
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that importing any submodule (alerting.shared.throttle, alerting.testing, the worker's modules) does
    # not pay for the handler's imports of Celery, kombu and redis (~260 ms) unless the handler is used.
    if name == "AlertHandler":
        from alerting.producer.handler import AlertHandler

        globals()["AlertHandler"] = AlertHandler  # later lookups skip __getattr__
        return AlertHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
