"""The per-process objects a worker uses (settings, state store, SMTP connection, deliverer). I/O setup.

Built lazily on first use in each process, and again after a fork: a prefork child must not share its
parent's SMTP connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerting.consumer.celery_config import time_limits  # h6
from alerting.consumer.delivery import Deliverer, Events, RetryPolicy
from alerting.consumer.render import MailConfig
from alerting.consumer.settings import Connections, WorkerSettings
from alerting.consumer.smtp import SMTPSender
from alerting.shared.forks import PerProcess, pid
from alerting.shared.stores import StateStore, StoreConfig
from alerting.shared.stores.redis_store import RedisStore, connect


@dataclass
class Runtime:
    settings: WorkerSettings
    store: StateStore
    sender: SMTPSender
    deliverer: Deliverer
    pid: int

    def close(self) -> None:
        self.sender.close()


_events: Events | None = None
_settings: WorkerSettings | None = None  # given by the worker at start; else read from the environment


def store_config(settings: WorkerSettings) -> StoreConfig:
    return StoreConfig(
        window=settings.throttle_window,
        rate=settings.rate_limit,
        lease=settings.visibility_timeout,
        ttl=settings.idempotency_ttl,
        prefix=settings.key_prefix,
    )


def open_store(settings: WorkerSettings | Connections, config: StoreConfig | None = None) -> RedisStore:
    """The shared Redis store; ``config`` defaults to the worker settings' (required with bare Connections)."""
    if config is None:
        if not isinstance(settings, WorkerSettings):
            raise TypeError("open_store(Connections) needs an explicit StoreConfig")
        config = store_config(settings)
    return RedisStore(connect(settings.state_url, ca_file=settings.redis_ca_file), config)


def build(settings: WorkerSettings, events: Events | None = None) -> Runtime:
    store = open_store(settings)
    sender = SMTPSender(settings.smtp, settings.mail_from, settings.mail_to)
    deliverer = Deliverer(
        store=store,
        sender=sender,
        mail=MailConfig(settings.mail_from, settings.mail_to, settings.subject_prefix),
        retry=RetryPolicy(settings.max_retries, settings.retry_backoff, settings.retry_backoff_max),
        rate=settings.rate_limit,
        events=events,
        claim_lease=time_limits(settings).hard,  # h6: a claim outlives any live holder (the task's hard limit)
    )
    return Runtime(settings, store, sender, deliverer, pid())


def use_settings(settings: WorkerSettings | None) -> None:
    """The settings every runtime of this worker is built from (inherited by its pool processes)."""
    global _settings
    _settings = settings


def set_events(events: Events | None) -> None:
    """Metrics hook, installed by the worker before the first task."""
    global _events
    _events = events


def _build_from_settings() -> Runtime:
    return build(_settings or WorkerSettings.from_env(), _events)


# One runtime per process: a prefork child builds its own (see alerting.shared.forks.PerProcess).
_runtime: PerProcess[Runtime] = PerProcess(_build_from_settings)


def get() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    return _runtime.get()


def reset() -> None:
    """Forget this process's runtime (after fork, at shutdown); closes the SMTP connection if it is ours."""
    runtime = _runtime.take()
    if runtime is not None:
        runtime.close()
