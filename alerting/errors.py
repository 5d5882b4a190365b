"""The exceptions celery-alerting raises. Pure.

AlertingError
├── ConfigError (also ValueError)          a setting is missing or malformed; names the setting
├── PayloadError (also ValueError)         a message on the alerts queue is not a valid payload
├── StoreError                             the state store (Redis) is unreachable or failed
└── DeliveryError                          the email could not be handed to the SMTP server
    ├── TransientDeliveryError             worth retrying: connection trouble, timeouts, 4xx replies
    └── PermanentDeliveryError             retrying cannot help: 5xx replies, bad credentials, TLS refused
"""

from __future__ import annotations


class AlertingError(Exception):
    """Base class of every error raised by celery-alerting."""


class ConfigError(AlertingError, ValueError):
    """A setting is missing or malformed. The message starts with the setting's name."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class PayloadError(AlertingError, ValueError):
    """A task argument is not a payload this version understands."""


class DeliveryError(AlertingError):
    """The email was not accepted by the SMTP server."""

    #: Short machine-readable cause, e.g. "smtp-451", "timeout", "auth", "tls".
    kind: str = "error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class TransientDeliveryError(DeliveryError):
    """Retrying later may succeed."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help; the alert goes to the dead letters."""


class StoreError(AlertingError):
    """The state store (Redis) could not be reached or answered with an error; worth retrying."""
