"""Operations behind the ``alerting`` command: status, a test alert through the whole path, dead letters. I/O.

Functions return plain data; ``alerting.cli`` decides how to print it.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kombu import Connection

from alerting.config import Rate
from alerting.errors import AlertingError
from alerting.payload import build, fingerprint
from alerting.publisher import finalize
from alerting.redact import Redactor
from alerting.sentinel import kombu_broker
from alerting.settings import Connections
from alerting.stores import OutboxItem, StoreConfig
from alerting.stores.redis_store import RedisStore, connect
from alerting.transport import CeleryTransport, publisher_app

CHECK_TIMEOUT = 3.0


def open_store(conn: Connections) -> RedisStore:
    # Only the prefix matters for what the operations do; the rest mirrors the worker's defaults.
    config = StoreConfig(window=300.0, rate=Rate(30, 60.0), lease=900.0, ttl=86400.0, prefix=conn.key_prefix)
    return RedisStore(connect(conn.state_url, ca_file=conn.redis_ca_file, timeout=CHECK_TIMEOUT), config)


# -- status ----------------------------------------------------------------------------------------------------
@dataclass
class Status:
    broker: str  # "ok" or the error
    queue: str
    queue_depth: int | None = None
    state_store: str = "unknown"
    workers: list[str] = field(default_factory=list)
    open_windows: int | None = None
    owed_digests: int | None = None
    folded: int | None = None
    dead_letters: int | None = None

    @property
    def healthy(self) -> bool:
        return self.broker == "ok" and self.state_store == "ok" and bool(self.workers)


def status(conn: Connections, *, ping_workers: bool = True) -> Status:
    result = Status(broker="ok", queue=conn.queue)
    try:
        with _broker(conn) as broker:
            broker.connect()
            channel: Any = broker.default_channel
            _, depth, _ = channel.queue_declare(queue=conn.queue, passive=True)
            result.queue_depth = int(depth)
    except Exception as exc:  # every kind of broker failure is reported, not raised
        if result.queue_depth is None and "NOT_FOUND" in str(exc):
            result.queue_depth = 0  # RabbitMQ: nobody declared the queue yet
        else:
            result.broker = _describe(exc)
    try:
        store = open_store(conn)
        s = store.status(now=time.time())
        result.state_store = "ok"
        result.open_windows, result.owed_digests = s.open_windows, s.owed_digests
        result.folded, result.dead_letters = s.folded, s.dead_letters
    except Exception as exc:
        result.state_store = _describe(exc)
    if ping_workers and result.broker == "ok":
        result.workers = _ping(conn)
    return result


def _ping(conn: Connections) -> list[str]:
    app = publisher_app(conn.broker_url, ca_file=conn.redis_ca_file, pool_limit=4)
    try:
        replies = app.control.ping(timeout=1.0) or []
    except Exception:
        return []
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


# -- send-test -------------------------------------------------------------------------------------------------
@dataclass
class TestResult:
    alert_id: str
    published: bool
    stage: str  # published | queued | taken | sent | dead | suppressed | folded | not-published
    detail: str = ""


def send_test(conn: Connections, *, wait: float, service: str | None = None) -> TestResult:
    """Publish a test alert (never throttled: its own alert_key) and follow it to the SMTP server."""
    record = logging.LogRecord(
        "alerting-send-test",
        logging.CRITICAL,
        __file__,
        0,
        "celery-alerting test alert from %s",
        (socket.gethostname(),),
        None,
    )
    record.alert_key = f"send-test:{uuid.uuid4().hex}"
    redactor = Redactor()
    payload = finalize(
        build(record, fingerprint=fingerprint(record), service=service, is_secret_key=redactor.is_secret_key), redactor
    )
    alert_id = payload["id"]
    transport = CeleryTransport(publisher_app(conn.broker_url, ca_file=conn.redis_ca_file), conn.queue, owned=True)
    try:
        transport.publish_many([payload])
    except Exception as exc:
        return TestResult(alert_id, False, "not-published", f"the broker refused it: {_describe(exc)}")
    finally:
        transport.close()
    if wait <= 0:
        return TestResult(alert_id, True, "published")
    return _follow(conn, alert_id, wait)


def _follow(conn: Connections, alert_id: str, wait: float) -> TestResult:
    try:
        store = open_store(conn)
    except AlertingError as exc:
        return TestResult(alert_id, True, "published", f"cannot watch it: state store unavailable ({exc})")
    deadline = time.monotonic() + wait
    verdict = None
    while time.monotonic() < deadline:
        try:
            if store.is_sent(alert_id):
                return TestResult(alert_id, True, "sent", "the SMTP server accepted it")
            verdict = store.decision(alert_id)
            dead = [d for d in store.dead_letters(200) if d.get("id") == alert_id]
        except AlertingError as exc:
            return TestResult(alert_id, True, "published", f"cannot watch it: state store unavailable ({exc})")
        if dead:
            return TestResult(alert_id, True, "dead", str(dead[0].get("reason", "")))
        if verdict in ("suppress", "fold"):
            return TestResult(alert_id, True, "suppressed" if verdict == "suppress" else "folded", f"verdict {verdict}")
        time.sleep(0.2)
    if verdict is None:
        return TestResult(
            alert_id, True, "queued",
            f"no worker took it within {wait:g}s: is a worker consuming queue {conn.queue!r}? (see `alerting status`)",
        )  # fmt: skip
    return TestResult(
        alert_id, True, "taken",
        "a worker took it but the SMTP server has not accepted it yet: it is being retried (see the worker's log)",
    )  # fmt: skip


# -- dead letters ----------------------------------------------------------------------------------------------
@dataclass
class ReplayReport:
    replayed: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def replay_dead_letters(conn: Connections, *, limit: int) -> ReplayReport:
    """Re-send dead letters (oldest first); each is removed once it is back on its way."""
    store = open_store(conn)
    report = ReplayReport()
    records = list(reversed(store.dead_letters(limit)))
    transport = CeleryTransport(publisher_app(conn.broker_url, ca_file=conn.redis_ca_file), conn.queue, owned=True)
    try:
        for record in records:
            kind, key, payload = record.get("kind"), str(record.get("id")), record.get("payload")
            if kind == "alert" and isinstance(payload, dict):
                try:
                    transport.publish_many([payload])
                except Exception as exc:
                    report.failed.append(f"{key}: {_describe(exc)}")
                    continue
            elif kind in ("digest", "summary") and isinstance(payload, dict):
                store.restore_item(OutboxItem(key, payload), now=time.time())
            else:
                report.skipped.append(f"{key}: {kind} ({record.get('reason', '')})")
                continue
            store.remove_dead_letter(record)
            report.replayed += 1
    finally:
        transport.close()
    return report


# -- helpers ---------------------------------------------------------------------------------------------------
def _broker(conn: Connections) -> Connection:
    broker = kombu_broker(conn.broker_url, ca_file=conn.redis_ca_file)
    timeouts = {"socket_timeout": CHECK_TIMEOUT, "socket_connect_timeout": CHECK_TIMEOUT, "max_retries": 0}
    return Connection(
        broker.url,
        connect_timeout=CHECK_TIMEOUT,
        ssl=broker.use_ssl or False,
        transport_options={**timeouts, **broker.transport_options},
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {Redactor().text(str(exc))}"


def as_dict(value: Any) -> dict[str, Any]:
    return dict(value.__dict__)
