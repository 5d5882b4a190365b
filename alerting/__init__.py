"""celery-alerting: alert emails from Python logging, sent by Celery workers, without risking the app."""

from alerting.handler import AlertHandler

__all__ = ["AlertHandler", "__version__"]
# The one place the version is written: pyproject.toml reads it from here ([tool.setuptools.dynamic]), and
# `alerting --version` prints it. Keep it a plain string literal: setuptools then reads it without importing us.
__version__ = "0.1.0"
