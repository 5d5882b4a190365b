"""Worker settings: read once from the environment into one frozen object. Pure (the environment is passed in).

Every problem is a :class:`~alerting.errors.ConfigError` naming the variable, so a worker with a bad value
stops at start with a message that says what to fix.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from alerting.errors import ConfigError
from alerting.shared.config import (
    BROKER_SCHEMES,
    DEFAULT_BROKER_URL,
    REDIS_SCHEMES,
    Rate,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_int,
    parse_queue,
    parse_rate,
    parse_url,
)

SECURITY_CHOICES = ("none", "starttls", "ssl")
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
# Deliberately strict: an address with CR/LF, spaces or commas in it is a configuration mistake (or an attack).
_ADDRESS = re.compile(r"^[^@\s,;<>\"\x00-\x1f]+@[^@\s,;<>\"\x00-\x1f]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,50}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: Every variable the worker reads, with its default as written in README.md and worker/.env.example ("" when
#: there is none, or it is derived: the state URL from the broker, the SMTP port from the security mode...).
#: tests/unit/test_settings_docs.py checks that both documents list each one with this default.
DEFAULTS: dict[str, str] = {
    "ALERTING_BROKER_URL": DEFAULT_BROKER_URL,
    "ALERTING_STATE_URL": "",
    "ALERTING_REDIS_CA_FILE": "",
    "ALERTING_KEY_PREFIX": "alerting",
    "ALERTING_QUEUE": "alerts",
    "ALERTING_SMTP_HOST": "localhost",
    "ALERTING_SMTP_PORT": "",
    "ALERTING_SMTP_SECURITY": "none",
    "ALERTING_SMTP_USER": "",
    "ALERTING_SMTP_PASSWORD": "",
    "ALERTING_SMTP_PASSWORD_FILE": "",
    "ALERTING_SMTP_TIMEOUT": "10",
    "ALERTING_SMTP_CA_FILE": "",
    "ALERTING_SMTP_TLS_VERIFY": "true",
    "ALERTING_MAIL_TO": "",
    "ALERTING_MAIL_FROM": "",
    "ALERTING_SUBJECT_PREFIX": "",
    "ALERTING_THROTTLE_WINDOW": "300",
    "ALERTING_RATE_LIMIT": "30/m",
    "ALERTING_MAX_RETRIES": "5",
    "ALERTING_RETRY_BACKOFF": "2",
    "ALERTING_RETRY_BACKOFF_MAX": "300",
    "ALERTING_VISIBILITY_TIMEOUT": "900",
    "ALERTING_DIGEST_POLL_INTERVAL": "1",
    "ALERTING_IDEMPOTENCY_TTL": "86400",
    "ALERTING_METRICS_PORT": "",
    "ALERTING_READY_FILE": "",
}

# Ranges. Each value outside them passed a "positive number" check once and then broke at run time: Redis
# refuses expiries that overflow (every decision failed, throttling silently off), a thread wait of 1e300 s
# raises OverflowError, kombu's visibility arithmetic overflows. The upper bounds are far above any useful value.
DAY = 86400.0
MAX_THROTTLE_WINDOW = 7 * DAY  # a digest a week late is no longer an alert
MIN_SMTP_TIMEOUT, MAX_SMTP_TIMEOUT = 0.1, 600.0  # under 0.1 s not even a loopback SMTP greeting completes
MAX_VISIBILITY_TIMEOUT = DAY  # an alert whose worker died waits this long before another worker sends it
MAX_RETRY_BACKOFF = DAY  # and both backoff values must be below the visibility timeout anyway
MIN_POLL_INTERVAL, MAX_POLL_INTERVAL = 0.05, 60.0  # a digest is sent at most this long after its window ends
MIN_IDEMPOTENCY_TTL, MAX_IDEMPOTENCY_TTL = 60.0, 30 * DAY  # markers must outlive redeliveries, not fill Redis
MAX_SUBJECT_PREFIX = 40


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
        return _is_loopback(self.host)


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


def _reader(env: Mapping[str, str]) -> Callable[..., str]:
    def get(name: str, default: str | None = None) -> str:
        # Set-but-empty means "use the default": a blank line in an env file must not, say, turn off TLS checks.
        return env.get(name, "").strip() or (DEFAULTS[name] if default is None else default)

    return get


def load_connections(env: Mapping[str, str]) -> Connections:
    get = _reader(env)

    broker_url = parse_url("ALERTING_BROKER_URL", get("ALERTING_BROKER_URL") or DEFAULT_BROKER_URL, BROKER_SCHEMES)
    state_url = get("ALERTING_STATE_URL")
    if not state_url:
        if urlsplit(broker_url).scheme not in REDIS_SCHEMES:
            raise ConfigError(
                "ALERTING_STATE_URL",
                "required when the broker is not Redis: throttle state and dead letters live in Redis "
                "(e.g. redis://localhost:6379/1)",
            )
        state_url = broker_url
    key_prefix = get("ALERTING_KEY_PREFIX")
    if not _PREFIX.fullmatch(key_prefix):
        raise ConfigError("ALERTING_KEY_PREFIX", f"expected 1-50 characters of [A-Za-z0-9_.:-], got {key_prefix!r}")
    return Connections(
        broker_url=broker_url,
        state_url=parse_url("ALERTING_STATE_URL", state_url, REDIS_SCHEMES),
        queue=parse_queue("ALERTING_QUEUE", get("ALERTING_QUEUE")),
        key_prefix=key_prefix,
        redis_ca_file=_file("ALERTING_REDIS_CA_FILE", get("ALERTING_REDIS_CA_FILE")),
    )


def load(env: Mapping[str, str]) -> WorkerSettings:
    get = _reader(env)
    conn = load_connections(env)
    smtp = _smtp(get)
    mail_to = tuple(a.strip() for a in get("ALERTING_MAIL_TO").split(",") if a.strip())
    if not mail_to:
        raise ConfigError("ALERTING_MAIL_TO", "required: comma-separated recipient addresses")
    for address in mail_to:
        _address("ALERTING_MAIL_TO", address)
    mail_from = _address("ALERTING_MAIL_FROM", get("ALERTING_MAIL_FROM") or f"alerting@{_local_domain()}")

    retry_backoff = parse_duration(
        "ALERTING_RETRY_BACKOFF", get("ALERTING_RETRY_BACKOFF"), allow_zero=False, maximum=MAX_RETRY_BACKOFF
    )
    retry_backoff_max = parse_duration(
        "ALERTING_RETRY_BACKOFF_MAX", get("ALERTING_RETRY_BACKOFF_MAX"), maximum=MAX_RETRY_BACKOFF
    )
    if retry_backoff_max < retry_backoff:
        raise ConfigError("ALERTING_RETRY_BACKOFF_MAX", f"must be >= ALERTING_RETRY_BACKOFF ({retry_backoff:g})")
    visibility = parse_duration(
        "ALERTING_VISIBILITY_TIMEOUT", get("ALERTING_VISIBILITY_TIMEOUT"), minimum=1, maximum=MAX_VISIBILITY_TIMEOUT
    )
    # A retry waits in the worker as an ETA message; the Redis transport redelivers anything unacked for longer
    # than the visibility timeout, so a longer wait would be executed twice (and again).
    if retry_backoff_max >= visibility:
        raise ConfigError(
            "ALERTING_VISIBILITY_TIMEOUT",
            f"must be greater than ALERTING_RETRY_BACKOFF_MAX ({retry_backoff_max:g}s): retries wait as ETA "
            "messages, which are delivered again once they have been unacknowledged that long",
        )
    if smtp.timeout * 2 >= visibility:
        raise ConfigError(
            "ALERTING_VISIBILITY_TIMEOUT",
            f"must be more than twice ALERTING_SMTP_TIMEOUT ({smtp.timeout:g}s)",
        )

    metrics = get("ALERTING_METRICS_PORT")
    if metrics:
        _metrics_extra_installed()
    subject_prefix = env.get("ALERTING_SUBJECT_PREFIX", "")  # not stripped: "[prod] " keeps its space
    if _CONTROL.search(subject_prefix):
        raise ConfigError(
            "ALERTING_SUBJECT_PREFIX", f"must not contain control characters (CR, LF, ESC...), got {subject_prefix!r}"
        )
    if len(subject_prefix) > MAX_SUBJECT_PREFIX:
        raise ConfigError("ALERTING_SUBJECT_PREFIX", f"at most {MAX_SUBJECT_PREFIX} characters, got {subject_prefix!r}")
    return WorkerSettings(
        broker_url=conn.broker_url,
        state_url=conn.state_url,
        queue=conn.queue,
        smtp=smtp,
        mail_from=mail_from,
        mail_to=mail_to,
        subject_prefix=subject_prefix,
        throttle_window=parse_duration(
            "ALERTING_THROTTLE_WINDOW", get("ALERTING_THROTTLE_WINDOW"), maximum=MAX_THROTTLE_WINDOW
        ),
        rate_limit=parse_rate("ALERTING_RATE_LIMIT", get("ALERTING_RATE_LIMIT")),
        max_retries=parse_int("ALERTING_MAX_RETRIES", get("ALERTING_MAX_RETRIES"), minimum=0, maximum=100),
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        visibility_timeout=visibility,
        digest_poll_interval=parse_duration(
            "ALERTING_DIGEST_POLL_INTERVAL",
            get("ALERTING_DIGEST_POLL_INTERVAL"),
            minimum=MIN_POLL_INTERVAL,
            maximum=MAX_POLL_INTERVAL,
        ),
        idempotency_ttl=parse_duration(
            "ALERTING_IDEMPOTENCY_TTL",
            get("ALERTING_IDEMPOTENCY_TTL"),
            minimum=MIN_IDEMPOTENCY_TTL,
            maximum=MAX_IDEMPOTENCY_TTL,
        ),
        key_prefix=conn.key_prefix,
        redis_ca_file=conn.redis_ca_file,
        metrics_port=parse_int("ALERTING_METRICS_PORT", metrics, minimum=1, maximum=65535) if metrics else None,
        ready_file=_ready_file(get("ALERTING_READY_FILE")),
    )


def _ready_file(path: str) -> str | None:
    # Written only once the worker is ready: a missing directory would fail there, after the start check,
    # and leave a worker that consumes but whose health check never passes.
    if not path:
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError("ALERTING_READY_FILE", f"the directory {directory} does not exist")
    if os.path.isdir(path):
        raise ConfigError("ALERTING_READY_FILE", f"{path} is a directory; expected a file name")
    return path


def _metrics_extra_installed() -> None:
    # Checked without importing prometheus_client: it must be imported only after metrics.prepare() has set
    # PROMETHEUS_MULTIPROC_DIR, or the pool processes' counters are never summed.
    try:
        found = importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(
            "ALERTING_METRICS_PORT",
            'is set but prometheus_client is not installed: pip install "celery-alerting[metrics]" '
            "(or leave ALERTING_METRICS_PORT empty)",
        )


def _smtp(read: Callable[..., str]) -> SMTPSettings:
    security = parse_choice("ALERTING_SMTP_SECURITY", read("ALERTING_SMTP_SECURITY"), SECURITY_CHOICES)
    host = read("ALERTING_SMTP_HOST")
    if not host or any(c in host for c in " \r\n\x00/"):
        raise ConfigError("ALERTING_SMTP_HOST", f"expected a host name or address, got {host!r}")
    port_text = read("ALERTING_SMTP_PORT") or str(_DEFAULT_PORTS[security])
    user = read("ALERTING_SMTP_USER") or None
    password = _password(read("ALERTING_SMTP_PASSWORD"), read("ALERTING_SMTP_PASSWORD_FILE"))
    if password and not user:
        raise ConfigError("ALERTING_SMTP_USER", "required when a password is set")
    if user and not password:
        raise ConfigError(
            "ALERTING_SMTP_PASSWORD",
            "required when ALERTING_SMTP_USER is set (or ALERTING_SMTP_PASSWORD_FILE)",
        )
    if user and security == "none" and not _is_loopback(host):
        raise ConfigError(
            "ALERTING_SMTP_SECURITY",
            f"is 'none' but AUTH is configured for {host}: the password would cross the network in clear; "
            "use starttls or ssl",
        )
    return SMTPSettings(
        host=host,
        port=parse_int("ALERTING_SMTP_PORT", port_text, minimum=1, maximum=65535),
        security=security,
        user=user,
        password=password,
        timeout=parse_duration(
            "ALERTING_SMTP_TIMEOUT", read("ALERTING_SMTP_TIMEOUT"), minimum=MIN_SMTP_TIMEOUT, maximum=MAX_SMTP_TIMEOUT
        ),
        ca_file=_file("ALERTING_SMTP_CA_FILE", read("ALERTING_SMTP_CA_FILE")),
        verify=parse_bool("ALERTING_SMTP_TLS_VERIFY", read("ALERTING_SMTP_TLS_VERIFY")),
    )


def _password(value: str, path: str) -> str | None:
    if value and path:
        raise ConfigError("ALERTING_SMTP_PASSWORD_FILE", "set either ALERTING_SMTP_PASSWORD or ..._FILE, not both")
    if path:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("ALERTING_SMTP_PASSWORD_FILE", f"cannot read {path}: {exc.strerror}") from None
        if not secret:
            raise ConfigError("ALERTING_SMTP_PASSWORD_FILE", f"{path} is empty")
        return secret
    return value or None


def _file(setting: str, path: str) -> str | None:
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError(setting, f"no such file: {path}")
    return path


def _address(setting: str, value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ConfigError(setting, f"not a plain email address: {value!r}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_domain() -> str:
    name = socket.getfqdn() or "localhost"
    return name if "." in name else f"{name}.localdomain"
