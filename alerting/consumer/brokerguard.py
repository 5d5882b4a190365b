"""kombu's Redis transport with a guard on what it pops from a queue: see ``alerting.consumer.quarantine``. I/O glue.

Where: kombu pops with BRPOP and decodes the reply in ``Channel._brpop_read`` before Celery sees anything, so
Celery's ``on_decode_error`` and ``on_unknown_message`` hooks come too late for a message that is not JSON (and
kombu's ``Message()`` raises on a bad base64 body, also before Celery). A custom serializer would act on the
body only, never on the envelope. The narrowest hook that sees every popped message first is redis-py's reply
callback for BRPOP on the channel's own client (``Redis.set_response_callback``, a public redis-py API):
``_brpop_read`` gets ``(queue, message)`` from it, and a message that would not decode is swapped there for a
well-formed ``alerting.quarantine`` task message carrying the original bytes. kombu's code path is unchanged, the
swapped message is acknowledged like any other (acks_late), and nothing else in the process is patched.

Used by the bundled worker (``celeryconf.worker_config`` sets ``broker_transport`` to these classes for redis,
rediss and sentinel URLs; kombu takes an explicit transport over the URL's scheme).
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

from alerting.consumer.quarantine import inspect, quarantine_envelope, quarantine_info

log = logging.getLogger("alerting.brokerguard")

_CONTROL_SUFFIX = ".pidbox"


def guard_reply(reply: Any, sep: str) -> Any:
    """The BRPOP reply ``[queue, message]`` with an unreadable message replaced by a quarantine message."""
    if not reply or len(reply) != 2:
        return tuple(reply) if reply else None  # as redis-py's own BRPOP callback
    queue, raw = reply
    name = (queue.decode("utf-8", "replace") if isinstance(queue, bytes) else str(queue)).rsplit(sep, 1)[0]
    if name.endswith(_CONTROL_SUFFIX):
        # Celery's remote-control replies (mingle at start-up, ping, inspect) travel on "<id>.reply.celery.pidbox"
        # lists popped by this same client: they are not task messages and must reach Celery untouched.
        return (queue, raw)
    raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
    problem = inspect(raw_bytes)
    if problem is None:
        return (queue, raw)
    log.error("quarantined a message from queue %s that cannot be run (%s); it goes to the dead letters", name, problem)
    return (queue, quarantine_envelope(quarantine_info(raw_bytes, problem, name), name))


class _Guarded:
    """Mixed into a kombu Redis channel: its client's BRPOP replies go through :func:`guard_reply`."""

    sep: str

    def _create_client(self, asynchronous: bool = False) -> Any:
        client = super()._create_client(asynchronous=asynchronous)  # type: ignore[misc]
        sep = self.sep
        client.set_response_callback("BRPOP", lambda reply, **_: guard_reply(reply, sep))
        return client


class GuardedChannel(_Guarded, kombu_redis.Channel):
    pass


class GuardedSentinelChannel(_Guarded, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = GuardedChannel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = GuardedSentinelChannel


# kombu names a connection after its transport ("Connected to <transport>://..." in the worker's banner and logs).
# Registered as aliases, the guarded transports keep the URL's scheme visible to the operator
# ("guarded-rediss://:**@host:6380/0") instead of a class path. Only new names are added to kombu's table.
_GUARDED = {
    "redis": "alerting.consumer.brokerguard:Transport",
    "rediss": "alerting.consumer.brokerguard:Transport",
    "sentinel": "alerting.consumer.brokerguard:SentinelTransport",
    "sentinels": "alerting.consumer.brokerguard:SentinelTransport",
}
for _scheme, _path in _GUARDED.items():
    TRANSPORT_ALIASES.setdefault(f"guarded-{_scheme}", _path)


def transport_for(broker_url: str) -> str | None:
    """The guarded transport (a kombu alias) for a kombu broker URL, or None for brokers it does not apply to."""
    scheme = broker_url.split("://", 1)[0].lower() if "://" in broker_url else ""
    return f"guarded-{scheme}" if scheme in _GUARDED else None
