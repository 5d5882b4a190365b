"""Publishing payloads as ``alerting.deliver`` tasks through Celery. I/O; runs in the publisher thread only.

The handler's own Celery app is configured to fail fast: kombu's Redis transport has no socket timeouts
by default, so a Redis that accepts connections but never answers would block a publish for over 40 s;
with these settings a refused connection fails in ~1 ms and a hung one in ~1 s, and the publisher's own
backoff decides when to try again.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
from celery import Celery
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from alerting.producer.ids import new_id
from alerting.shared.sentinel import kombu_broker
from alerting.shared.tls import broker_ssl_options, broker_url_without_ssl
from alerting.shared.wire import BODY_TAIL, TASK_NAME, Payload, envelope_template

FAIL_FAST_TIMEOUT = 1.0  # seconds: connect and read timeouts of the handler's own broker connection
# A publish that fails is not retried by kombu: the publisher thread backs off and retries itself.
_NO_RETRY = {"max_retries": 0}


class PublishFailed(Exception):
    """Publishing a batch stopped early; ``published`` messages went out before the failure."""

    def __init__(self, published: int, cause: BaseException) -> None:
        super().__init__(f"published {published} before {type(cause).__name__}: {cause}")
        self.published = published
        self.cause = cause


class Transport(Protocol):
    def publish_many(self, payloads: Sequence[Payload]) -> int: ...

    def close(self) -> None: ...


def preload(broker_url: str) -> None:
    """Import the broker's transport (kombu's, and redis-py or py-amqp) now, without connecting.

    The publisher imports it lazily on its first publish, and that can be during interpreter exit, exactly when
    the last alerts must go out; by then an import that registers an exit hook (redis-py's does, via
    concurrent.futures) fails with "can't register atexit after shutdown".
    """
    # Resolves the transport class; connecting is lazy. The TLS options only spare a (false) warning about rediss
    # "defaulting to insecure SSL": this connection object is never used.
    broker = kombu_broker(broker_url)
    Connection(broker.url, ssl=broker.use_ssl or False, transport_options=broker.transport_options)


def publisher_app(broker_url: str, *, ca_file: str | None = None, pool_limit: int = 1) -> Celery:
    """A minimal Celery app used only to publish alerts, with fail-fast broker settings.

    One publisher thread needs one connection (``pool_limit``); remote control (``control.ping``) needs two.
    """
    broker = kombu_broker(broker_url, ca_file=ca_file)
    app = Celery("alerting-publisher", broker=broker.url, set_as_current=False)
    transport_options: dict[str, Any] = {
        "socket_timeout": FAIL_FAST_TIMEOUT,
        "socket_connect_timeout": FAIL_FAST_TIMEOUT,
        "max_retries": 0,
        **broker.transport_options,
    }
    app.conf.update(
        broker_connection_timeout=FAIL_FAST_TIMEOUT,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_transport_options=transport_options,
        broker_pool_limit=pool_limit,
        broker_use_ssl=broker.use_ssl,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
    )
    return app


class RedisTransport:
    """Publishes straight into the Redis list that kombu's Redis transport reads: a whole batch in one LPUSH.

    Building a task message with ``send_task`` costs ~0.4 ms of Python per alert, all of it holding the GIL
    that the application's threads need; this writes the same Celery message (protocol 2, JSON body, the
    envelope kombu's Redis transport stores) for a few microseconds, and one round trip per batch.
    ``tests/integration/test_transport_contract.py`` compares it, field by field, with what Celery produces.
    Used for ``redis://`` and ``rediss://`` brokers when the handler publishes through its own connection.
    """

    def __init__(self, broker_url: str, queue: str, *, ca_file: str | None = None) -> None:
        self.queue = queue
        self.client = redis.Redis.from_url(
            broker_url_without_ssl(broker_url),
            socket_timeout=FAIL_FAST_TIMEOUT,
            socket_connect_timeout=FAIL_FAST_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # the publisher thread backs off itself
            **_redis_tls_kwargs(broker_url, ca_file),
        )
        self._template = envelope_template(queue, f"gen{os.getpid()}@{socket.gethostname()}")

    def publish_many(self, payloads: Sequence[Payload]) -> int:
        if not payloads:
            return 0
        messages = []
        for payload in payloads:
            messages.append(self.message(payload))
            # Hand the GIL over between messages: an application thread that wants it waits microseconds, not
            # the interpreter's 5 ms switch interval, while this thread serialises a batch.
            time.sleep(0)
        try:
            # One LPUSH of many values is atomic and keeps their order: the worker's BRPOP takes them oldest first.
            self.client.lpush(self.queue, *messages)
        except redis.RedisError as exc:
            raise PublishFailed(0, exc) from exc
        return len(messages)

    def message(self, payload: Payload) -> str:
        task_id = new_id()
        body = b"[[" + json.dumps(payload, separators=(",", ":")).encode() + BODY_TAIL
        values = {
            "@BODY@": base64.b64encode(body).decode("ascii"),
            "@TASK@": task_id,
            "@TAG@": new_id(),
            "@ALERT@": json.dumps(str(payload.get("id")))[1:-1],
        }
        # The envelope is the same JSON for every message but for these four strings: fill them into the
        # template (made once, with json.dumps) instead of serialising the whole envelope again.
        return "".join(values.get(part, part) for part in self._template)

    def close(self) -> None:
        self.client.close()


def _redis_tls_kwargs(url: str, ca_file: str | None) -> dict[str, Any]:
    options = broker_ssl_options(url, ca_file=ca_file)
    return dict(options) if options and urlsplit(url).scheme == "rediss" else {}


def uses_redis_list(broker_url: str) -> bool:
    """Whether :class:`RedisTransport` can publish to this broker (a plain Redis, not Sentinel or a socket)."""
    return urlsplit(broker_url).scheme in ("redis", "rediss")


class CeleryTransport:
    """Publishes through a Celery app: the handler's own, or the application's (``celery_app=``)."""

    def __init__(self, app: Celery, queue: str, *, owned: bool) -> None:
        self.app = app
        self.queue = queue
        self._owned = owned

    def publish_many(self, payloads: Sequence[Payload]) -> int:
        done = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for payload in payloads:
                    self.app.send_task(
                        TASK_NAME,
                        args=[payload],
                        queue=self.queue,
                        producer=producer,
                        serializer="json",
                        retry=True,
                        retry_policy=_NO_RETRY,
                        ignore_result=True,
                    )
                    done += 1
        except Exception as exc:  # kombu, redis-py, amqp and socket errors all mean "not published"
            raise PublishFailed(done, exc) from exc
        return done

    def close(self) -> None:
        if self._owned:
            self.app.close()
