"""Helpers for your own test suites: see what your code would alert, without a broker or a worker.

    from alerting.testing import capture_alerts

    def test_payment_failure_alerts(client):
        with capture_alerts() as alerts:
            client.post("/pay", data={...})
        assert alerts.messages == ["payment provider timed out"]

Like Django's locmem outbox for mail: every ``AlertHandler`` in the process records the payload it would
publish (redacted and size-capped, exactly as a worker would receive it) instead of publishing it.
``MailSink`` (``alerting.testing.mailsink``) and ``WorkerProcess`` (``alerting.testing.workerproc``) go
further, for end-to-end tests with a real SMTP server and worker.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

from alerting.consumer.mime import Email
from alerting.producer import capture_hook
from alerting.shared.wire import Payload

__all__ = ["CapturedAlerts", "capture_alerts", "received"]


class CapturedAlerts(list[Payload]):
    """The payloads captured, oldest first, with shortcuts for the usual assertions."""

    @property
    def messages(self) -> list[str]:
        return [str(p.get("message", "")) for p in self]

    @property
    def fingerprints(self) -> list[str]:
        return [str(p.get("fingerprint", "")) for p in self]

    def by_logger(self, name: str) -> list[Payload]:
        return [p for p in self if p.get("logger") == name]

    def only(self) -> dict[str, Any]:
        """The single alert captured; fails with the list when there are none or several."""
        if len(self) != 1:
            raise AssertionError(f"expected exactly one alert, got {len(self)}: {self.messages}")
        return self[0]


@contextlib.contextmanager
def capture_alerts() -> Iterator[CapturedAlerts]:
    captured = CapturedAlerts()
    previous = capture_hook.set_capture(captured)
    try:
        yield captured
    finally:
        capture_hook.set_capture(previous)


def received(msg: Email) -> EmailMessage:
    """A rendered alert email as the recipient's mail client reads it (``get_body``, decoded headers)."""
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    if not isinstance(parsed, EmailMessage):  # pragma: no cover - policy.default always builds EmailMessage
        raise TypeError(type(parsed).__name__)
    return parsed
