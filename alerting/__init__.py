"""celery-alerting: alert emails from Python logging, sent by Celery workers, without risking the app."""

from alerting.handler import AlertHandler

__all__ = ["AlertHandler", "__version__"]
__version__ = "0.1.0"
