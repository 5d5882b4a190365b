"""Worker settings: each variable declared once in :data:`SETTINGS` (name, default, parser, range, help, secret);
:func:`load` reads them into one frozen object. Reads the environment, secret files and the host name; no network.

Every problem is a :class:`~alerting.errors.ConfigError` naming the variable, so a worker with a bad value
stops at start with a message that says what to fix. ``python -m alerting.consumer.settings_docs`` writes
worker/.env.example from the registry; tests/unit/test_settings_docs.py checks it and README.md's table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from alerting.consumer import setting_kinds as kinds
from alerting.consumer.deadlines import task_time_limits
from alerting.consumer.setting_kinds import DAY, Range, Setting
from alerting.errors import ConfigError
from alerting.shared.config import DEFAULT_BROKER_URL, DEFAULT_KEY_PREFIX, DEFAULT_QUEUE, REDIS_SCHEMES, Rate

__all__ = ["BY_NAME", "DAY", "PORTS", "SETTINGS", "Connections", "Range", "SMTPSettings", "Setting", "WorkerSettings",
           "check", "check_connections", "load", "load_connections"]  # fmt: skip

_DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}

# -- the registry: the order is worker/.env.example's ---------------------------------------------------------------
PORTS = Range(1, 65535)

SETTINGS: tuple[Setting, ...] = (
    # Redis
    Setting("ALERTING_BROKER_URL", DEFAULT_BROKER_URL, kinds.broker,
            "Broker the applications publish alerts to (redis://, rediss://, amqp://, ...). Sentinel: "
            "sentinel://:password@s1:26379/0;sentinel://:password@s2:26379/0?master_name=mymaster"),
    Setting("ALERTING_STATE_URL", "", kinds.state_store,
            "Redis holding throttle state, digests and dead letters; empty = the broker URL (required if that is not "
            "Redis)."),
    Setting("ALERTING_REDIS_CA_FILE", "", kinds.existing_file,
            "CA bundle for rediss:// connections; empty = the system CAs."),
    Setting("ALERTING_KEY_PREFIX", DEFAULT_KEY_PREFIX, kinds.key_prefix,
            "Prefix of every Redis key the workers use; give each independent deployment sharing a Redis its own."),
    Setting("ALERTING_QUEUE", DEFAULT_QUEUE, kinds.queue_name,
            "Queue the alert tasks travel on; if you change it, change the worker's -Q argument to match."),
    # SMTP
    Setting("ALERTING_SMTP_HOST", "localhost", kinds.host_name, "SMTP server host name or address."),
    Setting("ALERTING_SMTP_PORT", "", kinds.optional_port,
            "SMTP port; empty = 25, 587 or 465 depending on ALERTING_SMTP_SECURITY.", PORTS),
    Setting("ALERTING_SMTP_SECURITY", "none", kinds.security_mode,
            "none | starttls | ssl. Use starttls or ssl for any real server: with none, AUTH is refused unless the "
            "host is local."),
    Setting("ALERTING_SMTP_USER", "", kinds.optional_text,
            "Secrets stay empty here. Set the user and ONE of the password variables (the _FILE form reads a docker "
            "secret, e.g. /run/secrets/smtp_password, so the password is not in the environment)."),
    Setting("ALERTING_SMTP_PASSWORD", "", kinds.optional_text, "", secret=True),
    Setting("ALERTING_SMTP_PASSWORD_FILE", "", kinds.secret_file, "", secret=True),
    Setting("ALERTING_SMTP_TIMEOUT", "10", kinds.seconds,
            "Seconds before a connect, command or send gives up (the attempt is then retried); 0.1 to 600.",
            Range(0.1, 600)),  # under 0.1 s not even a loopback SMTP greeting completes
    Setting("ALERTING_SMTP_CA_FILE", "", kinds.existing_file,
            "CA bundle for the SMTP server's certificate; empty = the system CAs."),
    Setting("ALERTING_SMTP_TLS_VERIFY", "true", kinds.boolean,
            "Verify the server's TLS certificate; turn off only for a local test server. Empty = the default, true."),
    # Mail
    Setting("ALERTING_MAIL_TO", "", kinds.recipients, "Recipients, comma-separated (required)."),
    Setting("ALERTING_MAIL_FROM", "", kinds.sender, "Sender; empty = alerting@<this host's domain name>."),
    Setting("ALERTING_SUBJECT_PREFIX", "", kinds.subject_prefix,
            'Text put in front of every subject, e.g. "[prod] " (at most 40 characters, no control characters).',
            Range(0, 40), strip=False),
    # Throttling and delivery
    Setting("ALERTING_THROTTLE_WINDOW", "300", kinds.seconds,
            "Repeats of an alert within this window are counted and mailed as one digest at its end (0 = off; at "
            "most 7 days).",
            Range(0, 7 * DAY)),  # a digest a week late is no longer an alert
    Setting("ALERTING_RATE_LIMIT", "30/m", kinds.rate_limit,
            'Cluster-wide cap on emails (30/m, 100/h, 5/10s); overflow is folded into a digest. "off" disables it. '
            "The period is 1 second to 1 day, the count at most 100000."),
    Setting("ALERTING_MAX_RETRIES", "5", kinds.integer,
            "Attempts after the first for a transient SMTP failure, before the alert goes to the dead letters "
            "(0 to 100).",
            Range(0, 100)),
    Setting("ALERTING_RETRY_BACKOFF", "2", kinds.seconds,
            "Exponential backoff between attempts (with jitter): base and cap, in seconds (at most 86400, and "
            "below ALERTING_VISIBILITY_TIMEOUT).",
            Range(0, DAY, allow_zero=False)),
    Setting("ALERTING_RETRY_BACKOFF_MAX", "300", kinds.seconds, "", Range(0, DAY)),
    Setting("ALERTING_VISIBILITY_TIMEOUT", "900", kinds.seconds,
            "Seconds before Redis hands an unacknowledged alert (its worker died) to another worker (1 to 86400). "
            "Must exceed ALERTING_RETRY_BACKOFF_MAX and the task's hard time limit, 3 x ALERTING_SMTP_TIMEOUT + 15.",
            Range(1, DAY)),  # an alert whose worker died waits this long before another worker sends it
    Setting("ALERTING_DIGEST_POLL_INTERVAL", "1", kinds.seconds,
            "How often each worker looks for digests that are due (0.05 to 60).",
            Range(0.05, 60)),  # a digest is sent at most this long after its window ends
    Setting("ALERTING_IDEMPOTENCY_TTL", "86400", kinds.seconds,
            "How long a sent alert is remembered, so that a redelivered copy is not mailed twice (60 to 2592000, "
            "30 days).",
            Range(60, 30 * DAY)),  # markers must outlive redeliveries, not fill Redis
    # Operations
    Setting("ALERTING_METRICS_PORT", "", kinds.metrics_port,
            'Port for Prometheus metrics (needs the "metrics" extra: pip install "celery-alerting[metrics]"; the '
            "worker image has it); empty = off.",
            PORTS),
    Setting("ALERTING_READY_FILE", "", kinds.ready_file,
            "File the worker writes its pid to once it is ready (removed on shutdown), for health checks; empty = "
            "none. Its directory must exist. The worker image sets /dev/shm/alerting-worker.ready."),
)  # fmt: skip

BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
#: What the CLI needs to find things (no mail settings required).
CONNECTION_SETTINGS = ("ALERTING_BROKER_URL", "ALERTING_STATE_URL", "ALERTING_REDIS_CA_FILE", "ALERTING_KEY_PREFIX",
                       "ALERTING_QUEUE")  # fmt: skip


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int
    security: str  # none | starttls | ssl
    user: str | None
    password: str | None = field(repr=False)  # never printed: repr() of the settings is safe to log
    timeout: float
    ca_file: str | None
    verify: bool

    @property
    def is_local(self) -> bool:
        return kinds.is_loopback(self.host)


@dataclass(frozen=True)
class WorkerSettings:
    broker_url: str = field(repr=False)  # may hold a password; see broker_display
    state_url: str = field(repr=False)
    queue: str
    smtp: SMTPSettings
    mail_from: str
    mail_to: tuple[str, ...]
    subject_prefix: str
    throttle_window: float
    rate_limit: Rate | None
    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    visibility_timeout: float
    digest_poll_interval: float
    idempotency_ttl: float
    key_prefix: str
    redis_ca_file: str | None
    metrics_port: int | None
    ready_file: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        return load(os.environ if env is None else env)


@dataclass(frozen=True)
class Connections:
    """Where things are: what the worker, the CLI and the status checks all need (no mail settings)."""

    broker_url: str = field(repr=False)  # may hold a password
    state_url: str = field(repr=False)
    queue: str
    key_prefix: str
    redis_ca_file: str | None


def load_connections(env: Mapping[str, str]) -> Connections:
    values = {name: BY_NAME[name].read(env) for name in CONNECTION_SETTINGS}
    check_connections(values)
    return _connections(values)


def load(env: Mapping[str, str]) -> WorkerSettings:
    values = {s.name: s.read(env) for s in SETTINGS}  # each entry parsed on its own, in the registry's order
    check(values)
    conn = _connections(values)
    password = values["ALERTING_SMTP_PASSWORD"] or values["ALERTING_SMTP_PASSWORD_FILE"]
    security = values["ALERTING_SMTP_SECURITY"]
    smtp = SMTPSettings(
        host=values["ALERTING_SMTP_HOST"],
        port=values["ALERTING_SMTP_PORT"] or _DEFAULT_PORTS[security],
        security=security,
        user=values["ALERTING_SMTP_USER"],
        password=password,
        timeout=values["ALERTING_SMTP_TIMEOUT"],
        ca_file=values["ALERTING_SMTP_CA_FILE"],
        verify=values["ALERTING_SMTP_TLS_VERIFY"],
    )
    return WorkerSettings(
        broker_url=conn.broker_url,
        state_url=conn.state_url,
        queue=conn.queue,
        smtp=smtp,
        mail_from=values["ALERTING_MAIL_FROM"],
        mail_to=values["ALERTING_MAIL_TO"],
        subject_prefix=values["ALERTING_SUBJECT_PREFIX"],
        throttle_window=values["ALERTING_THROTTLE_WINDOW"],
        rate_limit=values["ALERTING_RATE_LIMIT"],
        max_retries=values["ALERTING_MAX_RETRIES"],
        retry_backoff=values["ALERTING_RETRY_BACKOFF"],
        retry_backoff_max=values["ALERTING_RETRY_BACKOFF_MAX"],
        visibility_timeout=values["ALERTING_VISIBILITY_TIMEOUT"],
        digest_poll_interval=values["ALERTING_DIGEST_POLL_INTERVAL"],
        idempotency_ttl=values["ALERTING_IDEMPOTENCY_TTL"],
        key_prefix=conn.key_prefix,
        redis_ca_file=conn.redis_ca_file,
        metrics_port=values["ALERTING_METRICS_PORT"],
        ready_file=values["ALERTING_READY_FILE"],
    )


def check_connections(values: Mapping[str, Any]) -> None:
    """The rule between the connection settings (all the CLI needs)."""
    if values["ALERTING_STATE_URL"] is None and urlsplit(values["ALERTING_BROKER_URL"]).scheme not in REDIS_SCHEMES:
        raise ConfigError(
            "ALERTING_STATE_URL",
            "required when the broker is not Redis: throttle state and dead letters live in Redis "
            "(e.g. redis://localhost:6379/1)",
        )


def check(values: Mapping[str, Any]) -> None:
    """The rules between settings, on values each already parsed by its own entry. One place for all of them."""
    check_connections(values)
    user, host = values["ALERTING_SMTP_USER"], values["ALERTING_SMTP_HOST"]
    password, password_file = values["ALERTING_SMTP_PASSWORD"], values["ALERTING_SMTP_PASSWORD_FILE"]
    if password and password_file:
        raise ConfigError("ALERTING_SMTP_PASSWORD_FILE", "set either ALERTING_SMTP_PASSWORD or ..._FILE, not both")
    if (password or password_file) and not user:
        raise ConfigError("ALERTING_SMTP_USER", "required when a password is set")
    if user and not (password or password_file):
        raise ConfigError(
            "ALERTING_SMTP_PASSWORD", "required when ALERTING_SMTP_USER is set (or ALERTING_SMTP_PASSWORD_FILE)"
        )
    if user and values["ALERTING_SMTP_SECURITY"] == "none" and not kinds.is_loopback(host):
        raise ConfigError(
            "ALERTING_SMTP_SECURITY",
            f"is 'none' but AUTH is configured for {host}: the password would cross the network in clear; "
            "use starttls or ssl",
        )

    backoff, backoff_max = values["ALERTING_RETRY_BACKOFF"], values["ALERTING_RETRY_BACKOFF_MAX"]
    visibility = values["ALERTING_VISIBILITY_TIMEOUT"]
    if backoff_max < backoff:
        raise ConfigError("ALERTING_RETRY_BACKOFF_MAX", f"must be >= ALERTING_RETRY_BACKOFF ({backoff:g})")
    # A retry waits in the worker as an ETA message; the Redis transport redelivers anything unacked for longer
    # than the visibility timeout, so a longer wait would be executed twice (and again).
    if backoff_max >= visibility:
        raise ConfigError(
            "ALERTING_VISIBILITY_TIMEOUT",
            f"must be greater than ALERTING_RETRY_BACKOFF_MAX ({backoff_max:g}s): retries wait as ETA "
            "messages, which are delivered again once they have been unacknowledged that long",
        )
    # A task still running when the visibility timeout passes is handed to a second worker while the first may
    # still send it. The hard time limit is the longest a task runs, so the timeout must exceed it.
    hard = task_time_limits(values["ALERTING_SMTP_TIMEOUT"]).hard
    if hard >= visibility:
        raise ConfigError(
            "ALERTING_VISIBILITY_TIMEOUT",
            f"must be greater than the task's hard time limit ({hard:g}s = 3 x ALERTING_SMTP_TIMEOUT + 15): "
            "a task still running then would be delivered to a second worker and could be mailed twice",
        )


def _connections(values: Mapping[str, Any]) -> Connections:
    broker_url: str = values["ALERTING_BROKER_URL"]
    return Connections(
        broker_url=broker_url,
        state_url=values["ALERTING_STATE_URL"] or broker_url,  # checked: the broker is Redis when it is empty
        queue=values["ALERTING_QUEUE"],
        key_prefix=values["ALERTING_KEY_PREFIX"],
        redis_ca_file=values["ALERTING_REDIS_CA_FILE"],
    )
