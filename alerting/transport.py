"""Publishing payloads as ``alerting.deliver`` tasks through Celery. I/O; runs in the publisher thread only.

The handler's own Celery app is configured to fail fast: kombu's Redis transport has no socket timeouts
by default, so a Redis that accepts connections but never answers would block a publish for over 40 s;
with these settings a refused connection fails in ~1 ms and a hung one in ~1 s, and the publisher's own
backoff decides when to try again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from celery import Celery
from kombu import Connection

from alerting.payload import Payload
from alerting.tls import broker_ssl_options, broker_url_without_ssl

TASK_NAME = "alerting.deliver"
DIGEST_TASK_NAME = "alerting.send_digest"

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
    Connection(broker_url_without_ssl(broker_url), ssl=broker_ssl_options(broker_url) or False)


def publisher_app(broker_url: str, *, ca_file: str | None = None, pool_limit: int = 1) -> Celery:
    """A minimal Celery app used only to publish alerts, with fail-fast broker settings.

    One publisher thread needs one connection (``pool_limit``); remote control (``control.ping``) needs two.
    """
    app = Celery("alerting-publisher", broker=broker_url_without_ssl(broker_url), set_as_current=False)
    transport_options: dict[str, Any] = {
        "socket_timeout": FAIL_FAST_TIMEOUT,
        "socket_connect_timeout": FAIL_FAST_TIMEOUT,
        "max_retries": 0,
    }
    app.conf.update(
        broker_connection_timeout=FAIL_FAST_TIMEOUT,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_transport_options=transport_options,
        broker_pool_limit=pool_limit,
        broker_use_ssl=broker_ssl_options(broker_url, ca_file=ca_file),
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
    )
    return app


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
