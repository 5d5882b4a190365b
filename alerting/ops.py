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

import redis
from kombu import Connection
from kombu.exceptions import OperationalError

from alerting.consumer.settings import BY_NAME, Connections
from alerting.errors import AlertingError
from alerting.producer.capture import build, fingerprint
from alerting.producer.finalize import finalize
from alerting.producer.redact import Redactor
from alerting.producer.transport import CeleryTransport, PublishFailed, publisher_app
from alerting.shared.config import hide_password
from alerting.shared.sentinel import kombu_broker
from alerting.shared.stores import OutboxItem, StoreConfig
from alerting.shared.stores.redis_store import RedisStore, connect
from alerting.shared.wire import TASK_NAME

CHECK_TIMEOUT = 3.0
DIAGNOSE_AFTER = 2.0  # seconds send-test waits for a decision before asking the workers what they run


class Unreachable(AlertingError):
    """A server a command needs (the broker, the state store) could not be reached or failed.

    The message is one line an operator can act on: what, where (password hidden) and why."""

    def __init__(self, what: str, url: str, cause: BaseException, *, done: str = "") -> None:
        self.what, self.url, self.reason = what, display_url(url), explain(cause)
        verb = "cannot reach" if is_connection_error(cause) else "failed talking to"
        super().__init__(f"{verb} {what} at {self.url}: {self.reason}{done}")


def display_url(url: str) -> str:
    """A broker or state URL fit for a terminal or a log: no password, no query (it may hold options)."""
    return ";".join(hide_password(part.split("?", 1)[0]) for part in url.split(";"))


def _root(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        nxt = exc.cause if isinstance(exc, PublishFailed) else exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def is_connection_error(exc: BaseException) -> bool:
    """True when the server did not answer (refused, timed out, unknown host), as opposed to answering badly."""
    root, text = _root(exc), str(exc).lower()
    return (
        isinstance(root, (OSError, redis.ConnectionError, redis.TimeoutError, OperationalError))
        or isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OperationalError))
        or "connection refused" in text
        or "timeout" in text
    )


def explain(exc: BaseException) -> str:
    """Why, in a few words: the exception chain's root cause, classified, with any password redacted."""
    root = _root(exc)
    text = f"{exc} {root}".lower()
    if isinstance(root, ConnectionRefusedError) or "connection refused" in text or "error 111" in text:
        return "connection refused (is it running, and is this the right host and port?)"
    if isinstance(root, (TimeoutError, redis.TimeoutError)) or "timeout" in text or "timed out" in text:
        return "no answer before the timeout (the server is hung, or a firewall drops the packets)"
    if isinstance(root, socket.gaierror) or "name or service not known" in text or "name resolution" in text:
        return "unknown host name"
    if isinstance(root, redis.AuthenticationError) or any(w in text for w in ("noauth", "wrongpass", "invalid pass")):
        return "authentication failed (check the password in the URL)"
    first = (str(root).splitlines() or [""])[0]
    return f"{type(root).__name__}: {Redactor().text(first)[:200]}".rstrip(": ")


def open_store(conn: Connections) -> RedisStore:
    # Only the prefix matters for what the operations do; the rest are the worker's defaults, from the registry.
    config = StoreConfig(
        window=BY_NAME["ALERTING_THROTTLE_WINDOW"].default_value,
        rate=BY_NAME["ALERTING_RATE_LIMIT"].default_value,
        lease=BY_NAME["ALERTING_VISIBILITY_TIMEOUT"].default_value,
        ttl=BY_NAME["ALERTING_IDEMPOTENCY_TTL"].default_value,
        prefix=conn.key_prefix,
    )
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
        result.queue_depth = queue_depth(conn)
    except Unreachable as exc:  # every kind of broker failure is reported, not raised
        result.broker = str(exc)
    try:
        store = open_store(conn)
        s = store.status(now=time.time())
        result.state_store = "ok"
        result.open_windows, result.owed_digests = s.open_windows, s.owed_digests
        result.folded, result.dead_letters = s.folded, s.dead_letters
    except Exception as exc:
        result.state_store = str(Unreachable("the state store", conn.state_url, exc))
    if ping_workers and result.broker == "ok":
        result.workers = _ping(conn)
    return result


def queue_depth(conn: Connections) -> int:
    """Messages waiting on the alerts queue; raises :class:`Unreachable` naming the broker."""
    try:
        with _broker(conn) as broker:
            broker.connect()
            channel: Any = broker.default_channel
            _, depth, _ = channel.queue_declare(queue=conn.queue, passive=True)
            return int(depth)
    except Exception as exc:
        if "NOT_FOUND" in str(exc):
            return 0  # RabbitMQ: nobody declared the queue yet
        raise Unreachable("the broker", conn.broker_url, exc) from exc


def check_reachable(conn: Connections) -> None:
    """Raise :class:`Unreachable` unless both the broker and the state store answer (a worker's start check)."""
    queue_depth(conn)
    try:
        open_store(conn).status(now=time.time())
    except Exception as exc:
        raise Unreachable("the state store", conn.state_url, exc) from exc


def queue_consumers(conn: Connections, timeout: float = 1.0) -> dict[str, bool]:
    """The workers consuming the alerts queue, each with whether it has the alerting tasks registered.

    Empty when none answers (remote control is off, or no worker runs)."""
    app = publisher_app(conn.broker_url, ca_file=conn.redis_ca_file, pool_limit=4)
    try:
        inspect = app.control.inspect(timeout=timeout)
        queues = inspect.active_queues() or {}
        consumers = [name for name, qs in queues.items() if any(q.get("name") == conn.queue for q in qs or [])]
        if not consumers:
            return {}
        registered = app.control.inspect(timeout=timeout, destination=consumers).registered() or {}
    except Exception:  # a diagnosis, best effort: the caller says what it could not find out
        return {}
    finally:
        app.close()
    return {name: TASK_NAME in (registered.get(name) or []) for name in consumers}


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
        return TestResult(alert_id, False, "not-published", str(Unreachable("the broker", conn.broker_url, exc)))
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
    started = time.monotonic()
    deadline, diagnosed = started + wait, False
    verdict = None
    while time.monotonic() < deadline:
        if not diagnosed and verdict is None and time.monotonic() - started > DIAGNOSE_AFTER:
            # A worker without the alerting tasks takes the message and drops it at once: no use waiting for
            # the rest of --wait when the only consumers of the queue are such workers.
            diagnosed = True
            consumers = queue_consumers(conn)
            if consumers and not any(consumers.values()):
                return TestResult(alert_id, True, "queued", _nobody_took_it(conn, wait, consumers))
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
        return TestResult(alert_id, True, "queued", _nobody_took_it(conn, wait))
    return TestResult(
        alert_id, True, "taken",
        "a worker took it but the SMTP server has not accepted it yet: it is being retried (see the worker's log)",
    )  # fmt: skip


def _nobody_took_it(conn: Connections, wait: float, consumers: dict[str, bool] | None = None) -> str:
    """Why no decision appeared: nobody consumes the queue, or a worker without the alerting tasks took the
    message and discarded it (Celery logs "Received unregistered task" and drops it)."""
    consumers = queue_consumers(conn) if consumers is None else consumers
    foreign = sorted(name for name, has_tasks in consumers.items() if not has_tasks)
    if foreign:
        return (
            f"no alerting worker took it: {', '.join(foreign)} consumes queue {conn.queue!r} "
            "without the alerting tasks and discarded it; start workers with `celery -A alerting.worker worker "
            f"-Q {conn.queue}` (or call alerting.contrib.celery.configure(app) in yours)"
        )
    try:
        left_queue = queue_depth(conn) == 0
    except Unreachable:
        left_queue = False
    if left_queue and not consumers:
        return (
            f"no worker took it within {wait:g}s, yet it left queue {conn.queue!r}: a worker that does not answer "
            "remote control, or without the alerting tasks, may have taken it (see its log for "
            "'unregistered task'); alert workers run `celery -A alerting.worker worker`"
        )
    return f"no worker took it within {wait:g}s: is a worker consuming queue {conn.queue!r}? (see `alerting status`)"


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
                    if is_connection_error(exc):  # the next ones would fail the same way: stop, say why once
                        done = f" (replayed {report.replayed} before that; the rest are still dead letters)"
                        raise Unreachable("the broker", conn.broker_url, exc, done=done) from exc
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
