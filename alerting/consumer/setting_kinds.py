"""The kinds of value a worker setting holds: :class:`Setting` (one variable, declared once), its :class:`Range`,
and one parser per kind, each failing with a :class:`~alerting.errors.ConfigError` that names the variable.
Reads secret files and the host name (the sender's default domain); no network.
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
from typing import Any

from alerting.errors import ConfigError
from alerting.shared.config import (
    BROKER_SCHEMES,
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
# Deliberately strict: an address with CR/LF, spaces or commas in it is a configuration mistake (or an attack).
_ADDRESS = re.compile(r"^[^@\s,;<>\"\x00-\x1f]+@[^@\s,;<>\"\x00-\x1f]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,50}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
DAY = 86400.0


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number (or of a text's length). Each upper bound is there because a value beyond it
    passed a "positive number" check once and then broke at run time: Redis refuses expiries that overflow
    (every decision failed, throttling silently off), a thread wait of 1e300 s raises OverflowError, kombu's
    visibility arithmetic overflows. The upper bounds are far above any useful value."""

    minimum: float
    maximum: float
    allow_zero: bool = True  # False: above the minimum (0), not equal to it


@dataclass(frozen=True)
class Setting:
    """One environment variable of the worker, declared once: the loader, the CLI and the docs all use this."""

    name: str
    default: str  # as written in worker/.env.example; "" when there is none or it is derived (see help)
    parse: Callable[[Setting, str], Any] = field(repr=False)  # (this entry, text) -> value, or ConfigError
    help: str  # what it does, as worker/.env.example says it; "" = covered by the entry above
    range: Range | None = None
    secret: bool = False  # never given a value in the example file (SMTPSettings keeps the password out of reprs)
    strip: bool = True  # False for values whose spaces matter ("[prod] ")

    def read(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.name, "")
        # Set-but-empty means "use the default": a blank line in an env file must not, say, turn off TLS checks.
        text = (raw.strip() or self.default) if self.strip else raw
        return self.parse(self, text)

    @property
    def default_value(self) -> Any:
        """The parsed default (for tools that need the worker's defaults without its environment)."""
        return self.parse(self, self.default)


# -- parsers: (setting, text) -> value, or ConfigError naming the setting ------------------------------------------
def bounds(s: Setting) -> Range:
    if s.range is None:
        raise TypeError(f"{s.name} needs a range")  # a registry mistake, caught by the unit tests
    return s.range


def seconds(s: Setting, text: str) -> float:
    r = bounds(s)
    return parse_duration(s.name, text, minimum=r.minimum, maximum=r.maximum, allow_zero=r.allow_zero)


def integer(s: Setting, text: str) -> int:
    r = bounds(s)
    return parse_int(s.name, text, minimum=int(r.minimum), maximum=int(r.maximum))


def optional_port(s: Setting, text: str) -> int | None:
    return integer(s, text) if text else None  # empty: derived (SMTP: from the security mode) or off


def broker(s: Setting, text: str) -> str:
    return parse_url(s.name, text, BROKER_SCHEMES)


def state_store(s: Setting, text: str) -> str | None:
    return parse_url(s.name, text, REDIS_SCHEMES) if text else None  # empty: the broker's, checked in _connections


def queue_name(s: Setting, text: str) -> str:
    return parse_queue(s.name, text)


def key_prefix(s: Setting, text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise ConfigError(s.name, f"expected 1-50 characters of [A-Za-z0-9_.:-], got {text!r}")
    return text


def existing_file(s: Setting, path: str) -> str | None:
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError(s.name, f"no such file: {path}")
    return path


def optional_text(s: Setting, text: str) -> str | None:
    return text or None


def secret_file(s: Setting, path: str) -> str | None:
    if not path:
        return None
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(s.name, f"cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(s.name, f"{path} is empty")
    return secret


def host_name(s: Setting, host: str) -> str:
    if not host or any(c in host for c in " \r\n\x00/"):
        raise ConfigError(s.name, f"expected a host name or address, got {host!r}")
    return host


def security_mode(s: Setting, text: str) -> str:
    return parse_choice(s.name, text, SECURITY_CHOICES)


def boolean(s: Setting, text: str) -> bool:
    return parse_bool(s.name, text)


def address(s: Setting, value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ConfigError(s.name, f"not a plain email address: {value!r}")
    return value


def recipients(s: Setting, text: str) -> tuple[str, ...]:
    mail_to = tuple(address(s, a.strip()) for a in text.split(",") if a.strip())
    if not mail_to:
        raise ConfigError(s.name, "required: comma-separated recipient addresses")
    return mail_to


def sender(s: Setting, text: str) -> str:
    return address(s, text or f"alerting@{_local_domain()}")


def subject_prefix(s: Setting, text: str) -> str:
    if _CONTROL.search(text):
        raise ConfigError(s.name, f"must not contain control characters (CR, LF, ESC...), got {text!r}")
    if len(text) > bounds(s).maximum:
        raise ConfigError(s.name, f"at most {bounds(s).maximum:g} characters, got {text!r}")
    return text


def rate_limit(s: Setting, text: str) -> Rate | None:
    return parse_rate(s.name, text)


def metrics_port(s: Setting, text: str) -> int | None:
    if text:
        _metrics_extra_installed(s.name)
    return optional_port(s, text)


def ready_file(s: Setting, path: str) -> str | None:
    # Written only once the worker is ready: a missing directory would fail there, after the start check,
    # and leave a worker that consumes but whose health check never passes.
    if not path:
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(s.name, f"the directory {directory} does not exist")
    if os.path.isdir(path):
        raise ConfigError(s.name, f"{path} is a directory; expected a file name")
    return path


def _metrics_extra_installed(name: str) -> None:
    # Checked without importing prometheus_client: it must be imported only after metrics.prepare() has set
    # PROMETHEUS_MULTIPROC_DIR, or the pool processes' counters are never summed.
    try:
        found = importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(
            name,
            'is set but prometheus_client is not installed: pip install "celery-alerting[metrics]" '
            f"(or leave {name} empty)",
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_domain() -> str:
    name = socket.getfqdn() or "localhost"
    return name if "." in name else f"{name}.localdomain"
