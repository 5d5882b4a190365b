"""Settings parsing shared by the handler and the worker: one function per kind of value, each failing with
a :class:`~alerting.errors.ConfigError` that names the setting. Pure.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from alerting.errors import ConfigError

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
#: The queue alerts travel on, unless configured: the handler's ``queue``, ALERTING_QUEUE, ``celery worker -Q``.
DEFAULT_QUEUE = "alerts"
#: Prefix of every Redis key the workers write (ALERTING_KEY_PREFIX), unless configured.
DEFAULT_KEY_PREFIX = "alerting"

BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sentinel", "memory")
REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def resolve_broker_url(explicit: str | None, env: Mapping[str, str]) -> str:
    """The handler's broker: the argument, else ``ALERTING_BROKER_URL``, else local Redis."""
    url = explicit if explicit is not None else env.get("ALERTING_BROKER_URL") or DEFAULT_BROKER_URL
    return parse_url("broker_url" if explicit is not None else "ALERTING_BROKER_URL", url, BROKER_SCHEMES)


def parse_url(setting: str, value: str, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(setting, "must be a URL such as redis://localhost:6379/0")
    value = value.strip()
    scheme = urlsplit(value.split(";", 1)[0]).scheme.split("+")[0]
    if scheme not in schemes:
        raise ConfigError(setting, f"unsupported scheme {scheme!r}; expected one of {', '.join(schemes)}")
    for part in value.split(";"):
        _check_address(setting, part)
    if scheme == "sentinel":
        from alerting.shared.sentinel import parse_sentinel

        parse_sentinel(setting, value)  # fail at start, naming the setting, rather than at the first alert
    return value


def _check_address(setting: str, url: str) -> None:
    """The port of a URL must be a number a socket can use: urlsplit accepts ``:99999`` and ``:abc`` and only
    fails when ``.port`` is read, which would be at the first connection, long after the start check."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(setting, f"the port must be a number from 1 to 65535 in {hide_password(url)!r}")


def hide_password(url: str) -> str:
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def parse_duration(
    setting: str, value: object, *, minimum: float = 0.0, allow_zero: bool = True, maximum: float | None = None
) -> float:
    """Seconds, possibly fractional: ``2``, ``0.5``, ``"1.5"``. ``maximum`` keeps values that pass a "positive
    number" check but break at run time (Redis expiry overflows, thread waits that raise OverflowError)."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(setting, f"expected a number of seconds, got {value!r}") from None
    too_big = maximum is not None and seconds > maximum
    if not math.isfinite(seconds) or seconds < minimum or (seconds == 0 and not allow_zero) or too_big:
        bound = f"> {minimum:g}" if not allow_zero else f">= {minimum:g}"
        upper = f" and <= {maximum:g}" if maximum is not None else ""
        raise ConfigError(setting, f"expected a number of seconds {bound}{upper}, got {value!r}")
    return seconds


def parse_int(setting: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(setting, f"expected an integer, got {value!r}")
    if not isinstance(value, (int, float, str)):
        raise ConfigError(setting, f"expected an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(setting, f"expected an integer, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise ConfigError(setting, f"expected an integer, got {value!r}")
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(setting, f"expected an integer >= {minimum}{upper}, got {value!r}")
    return number


def parse_queue(setting: str, value: object) -> str:
    if not isinstance(value, str) or not _QUEUE_NAME.fullmatch(value):
        raise ConfigError(setting, f"expected a queue name of letters, digits and _.:-, got {value!r}")
    return value


@dataclass(frozen=True)
class Rate:
    """``limit`` emails per ``period`` seconds, e.g. ``30/m``."""

    limit: int
    period: float

    @property
    def per_second(self) -> float:
        return self.limit / self.period

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.period)
        return f"{self.limit}/{unit}" if unit else f"{self.limit}/{self.period:g}s"


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|m|min|h|hour|d|day)\s*$", re.IGNORECASE)
_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def parse_rate(setting: str, value: str) -> Rate | None:
    """``30/m``, ``100/h``, ``5/10s``; ``off`` (or empty) disables the limit."""
    if value.strip().lower() in ("", "off", "none", "0"):
        return None
    match = _RATE.fullmatch(value)
    if not match:
        raise ConfigError(setting, f"expected a rate like 30/m, 100/h or 5/10s (or 'off'), got {value!r}")
    limit, multiple, unit = int(match.group(1)), match.group(2), match.group(3).lower()
    period = (float(multiple) if multiple else 1.0) * _UNITS[unit]
    if limit < 1 or period <= 0:
        raise ConfigError(setting, f"expected a positive count and period, got {value!r}")
    # The limiter's bucket refills limit/period tokens a second: a period under a second (1/0.0000001s) is a
    # typo, not a policy, and a count beyond RATE_MAX_COUNT or a period beyond a day is no limit at all.
    if not RATE_MIN_PERIOD <= period <= RATE_MAX_PERIOD or limit > RATE_MAX_COUNT:
        raise ConfigError(
            setting,
            f"expected at most {RATE_MAX_COUNT} per period, and a period from 1 second to 1 day, got {value!r}",
        )
    return Rate(limit, period)


RATE_MIN_PERIOD = 1.0
RATE_MAX_PERIOD = 86400.0
RATE_MAX_COUNT = 100_000


def parse_bool(setting: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(setting, f"expected true or false, got {value!r}")


def parse_level(setting: str, value: object) -> int:
    """A logging level: a non-negative number, or a level name such as ``"ERROR"`` (any case)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        number = logging.getLevelName(value.strip().upper())
        if isinstance(number, int):
            return number
    raise ConfigError(setting, f"expected a logging level such as CRITICAL or ERROR, got {value!r}")


def parse_choice(setting: str, value: str, choices: tuple[str, ...]) -> str:
    lowered = value.strip().lower()
    if lowered not in choices:
        raise ConfigError(setting, f"expected one of {', '.join(choices)}, got {value!r}")
    return lowered
