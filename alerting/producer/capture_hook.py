"""Where ``alerting.testing.capture_alerts()`` asks every AlertHandler to record payloads instead of publishing. Pure.

A module of its own, apart from the handler, so that importing ``alerting.testing`` does not import the handler's
transport (Celery, kombu, redis).
"""

from __future__ import annotations

from alerting.shared.wire import Payload

#: The capture list while ``capture_alerts()`` is active, else None. Read by ``AlertHandler.emit`` per record.
target: list[Payload] | None = None


def set_capture(new: list[Payload] | None) -> list[Payload] | None:
    """Install (or, with None, remove) the capture list; returns the previous one."""
    global target
    previous, target = target, new
    return previous
