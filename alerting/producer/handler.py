"""``AlertHandler``: the logging handler that turns critical records into alert tasks. Runs in app threads.

``emit()`` does three cheap things in the calling thread: skip records that must never become alerts,
build the JSON-safe payload (pure, ``alerting.producer.capture``), and put it into the bounded buffer. It never
touches the network, never blocks on I/O and never raises: the publisher thread does the rest.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from alerting.errors import ConfigError
from alerting.producer import capture_hook
from alerting.producer import context as alert_context
from alerting.producer.capture import capture_record
from alerting.producer.finalize import finalize
from alerting.producer.publisher import Publisher
from alerting.producer.redact import DEFAULT_SECRET_KEYS, Redactor
from alerting.producer.spool import Spool, parse_spool_path
from alerting.producer.transport import (
    CeleryTransport,
    RedisTransport,
    Transport,
    preload,
    publisher_app,
    uses_redis_list,
)
from alerting.shared.config import (
    DEFAULT_QUEUE,
    parse_duration,
    parse_int,
    parse_level,
    parse_queue,
    resolve_broker_url,
)

if TYPE_CHECKING:
    from celery import Celery

# Records from these loggers never become alerts: the publisher itself logs through celery, kombu, redis
# and amqp (py-amqp) while the broker is down, and through "alerting"; alerting on those would loop.
IGNORED_LOGGERS = frozenset({"alerting", "celery", "kombu", "redis", "amqp"})

_ignored_names: dict[str, bool] = {}  # logger name -> ignored? (a handful of names, asked for every record)


class AlertHandler(logging.Handler):
    """Send log records at ``level`` and above as alert emails, via Celery workers.

    All arguments are keyword-only and optional, so ``logging.config.dictConfig`` can build it with
    ``"class": "alerting.AlertHandler"``. Nothing connects to anything until the first alert.
    """

    def __init__(
        self,
        *,
        level: int | str = logging.CRITICAL,
        broker_url: str | None = None,
        queue: str = DEFAULT_QUEUE,
        capacity: int = 1000,
        spool_path: str | os.PathLike[str] | None = None,
        flush_timeout: float = 2.0,
        celery_app: Celery | None = None,
        service: str | None = None,
        secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS,
        coalesce_interval: float = 1.0,
        ca_file: str | None = None,
    ) -> None:
        # Validate before Handler.__init__ registers us with logging: a half-built handler in logging's list
        # would break logging.shutdown() and every later dictConfig().
        if celery_app is not None and broker_url is not None:
            raise ConfigError("broker_url", "give broker_url or celery_app, not both (celery_app has its own)")
        self.broker_url = None if celery_app is not None else resolve_broker_url(broker_url, os.environ)
        self.queue = parse_queue("queue", queue)
        self.capacity = parse_int("capacity", capacity, minimum=1)
        self.flush_timeout = parse_duration("flush_timeout", flush_timeout)
        self.coalesce_interval = parse_duration("coalesce_interval", coalesce_interval)
        if service is not None and not isinstance(service, str):
            raise ConfigError("service", f"expected a string, got {type(service).__name__}")
        self.service = service[:100] if service else None
        self.ca_file = ca_file
        spool_path = parse_spool_path("spool_path", spool_path)
        super().__init__(parse_level("level", level))  # logging's own check raises a bare ValueError
        self._celery_app = celery_app
        self._app_pid: int | None = None
        self._redactor = Redactor(secret_keys)
        self._normalised = 0
        self._normalised_lock = threading.RLock()  # re-entrant: a signal handler may log while emit() holds it
        spool = Spool(spool_path) if spool_path is not None else None
        if spool is not None:
            # A path that cannot work (missing or read-only directory, a directory, not a database) is reported
            # now, in one warning, and alerts then wait in memory as without a spool: raising here would stop an
            # app configured through dictConfig from starting, over a file that only matters during an outage.
            spool.check()
        self._publisher = Publisher(
            transport_factory=self._make_transport,
            capacity=self.capacity,
            coalesce_interval=self.coalesce_interval,
            redactor=self._redactor,
            spool=spool,
        )
        preload(self.broker_url or "" if celery_app is None else str(celery_app.conf.broker_url or ""))
        if spool is not None and os.path.exists(spool.path) and os.path.getsize(spool.path) > 0:
            self._publisher.start()  # a previous process left alerts behind: replay them now

    # -- logging.Handler interface ------------------------------------------------------------------------
    def handle(self, record: logging.LogRecord) -> bool:
        # Unlike Handler.handle, no handler-wide lock around emit(): emit is thread-safe on its own (the
        # buffer has its lock), and the handler lock would only make logging threads queue behind each other.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            levelno = record.levelno
            if not isinstance(levelno, int) or levelno < self.level or self._is_ignored(record):
                return
            # The payload's fingerprint is a coalescing key until the publisher thread hashes it (finalize).
            payload, key, retimed = capture_record(
                record,
                service=self.service,
                is_secret_key=self._redactor.is_secret_key,
                context=alert_context.current(),
            )
            if retimed:  # rare: a created that is not a plausible time (milliseconds, NaN, a string)
                with self._normalised_lock:
                    self._normalised += 1
            captured = capture_hook.target  # set by alerting.testing.capture_alerts()
            if captured is not None:
                captured.append(finalize(payload, self._redactor))
                return
            self._publisher.submit(payload, key, levelno)
        except RecursionError:  # as the stdlib handlers do: a recursion error is the caller's to see
            raise
        except Exception:
            self.handleError(record)

    def flush(self, timeout: float = 0.0) -> bool:  # type: ignore[override]
        """Start publishing everything held now; wait up to ``timeout`` seconds for it to leave.

        ``logging.shutdown()`` calls ``flush()`` then ``close()``: flush only starts the work so that exit
        waits at most ``flush_timeout`` in all, in ``close()``. Returns True when nothing is left.
        """
        return self._publisher.flush(timeout)

    def close(self) -> None:
        """Publish what is buffered within ``flush_timeout``; spool or report the rest. Never waits longer."""
        try:
            self._publisher.close(self.flush_timeout)
        finally:
            super().close()

    # -- our own interface ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters since start: buffered now, published, coalesced, dropped, spooled, lost, and ``normalised``:
        records whose ``created`` was not a plausible time and was replaced by the time of capture."""
        return {**self._publisher.stats(), "normalised": self._normalised}

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        where = "celery_app" if self._celery_app is not None else self._redactor.text(self.broker_url or "")
        return f"<AlertHandler {where} queue={self.queue} ({level})>"

    # -- internals -----------------------------------------------------------------------------------------
    def _is_ignored(self, record: logging.LogRecord) -> bool:
        if record.thread is not None and record.thread == self._publisher.thread_ident:
            return True
        name = record.name
        try:
            return _ignored_names[name]
        except (KeyError, TypeError):
            ignored = isinstance(name, str) and name.partition(".")[0] in IGNORED_LOGGERS
            if isinstance(name, str) and len(_ignored_names) < 10_000:
                _ignored_names[name] = ignored
            return ignored

    def _make_transport(self) -> Transport:
        """Called in the publisher thread when it first needs the broker (again after a fork)."""
        if self._celery_app is None:
            url = self.broker_url or ""
            if uses_redis_list(url):
                return RedisTransport(url, self.queue, ca_file=self.ca_file)
            return CeleryTransport(publisher_app(url, ca_file=self.ca_file), self.queue, owned=True)
        pid = os.getpid()
        if self._app_pid is not None and self._app_pid != pid:
            # A bare os.fork() (gunicorn, uWSGI) does not run Celery's own after-fork cleanup; without it the
            # child would share the parent's broker connections.
            _after_fork: Any = getattr(self._celery_app, "_after_fork", None)
            if callable(_after_fork):
                _after_fork()
        self._app_pid = pid
        return CeleryTransport(self._celery_app, self.queue, owned=False)
