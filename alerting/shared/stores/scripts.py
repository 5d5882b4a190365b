"""The Lua scripts of the Redis store and their arguments: one function per script names every ARGV slot, in the
order the script reads them (each script's header lists the same names). Numbers that are times travel as
``repr`` so that Lua's ``tonumber`` gets every digit back.

The rules the scripts restate are ``alerting.shared.throttle``'s; the items they write are in the JSON form
``alerting.shared.outbox`` documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from alerting.shared.config import Rate
from alerting.shared.throttle import Occurrence

Arg = str | int


@dataclass(frozen=True)
class ScriptCall:
    keys: list[str]
    args: list[Arg]


def source(name: str) -> str:
    return (resources.files("alerting.shared.stores") / "lua" / name).read_text(encoding="utf-8")


def _rate(rate: Rate | None) -> list[Arg]:
    """rate_limit (0: none), rate_period."""
    return [rate.limit, repr(rate.period)] if rate is not None else [0, repr(1.0)]


def _seconds(value: float) -> int:
    """A TTL for Redis: whole seconds, at least one."""
    return max(int(value), 1)


def admit(
    *, prefix: str, occurrence: Occurrence, now: float, length: float, rate: Rate | None, ttl: float
) -> ScriptCall:
    """admit.lua: prefix, id, fingerprint, now, length, count, first_seen, last_seen, sample, subject,
    rate_limit, rate_period, ttl."""
    o = occurrence
    return ScriptCall(
        [],
        [
            prefix,
            o.alert_id,
            o.fingerprint,
            repr(now),
            repr(length),
            o.count,
            repr(o.first_seen),
            repr(o.last_seen),
            o.sample,
            o.subject,
            *_rate(rate),
            _seconds(ttl),
        ],
    )


def roll(*, prefix: str, now: float, length: float, limit: int) -> ScriptCall:
    """roll.lua: prefix, now, length, limit."""
    return ScriptCall([], [prefix, repr(now), repr(length), limit])


def lease(*, prefix: str, now: float, lease: float, limit: int, rate: Rate | None) -> ScriptCall:
    """lease.lua: prefix, now, lease, limit, rate_limit, rate_period."""
    return ScriptCall([], [prefix, repr(now), repr(lease), limit, *_rate(rate)])


def claim(*, prefix: str, key: str, owner: str, lease: float, steal: str) -> ScriptCall:
    """claim.lua: prefix, key, owner, lease_ms, steal ('' = none)."""
    return ScriptCall([], [prefix, key, owner, max(int(lease * 1000), 1), steal])


#: Compare-and-delete: only the holder releases its claim (an expired one may already be someone else's).
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def release(*, prefix: str, key: str, owner: str) -> ScriptCall:
    """RELEASE: KEYS claim key; ARGV owner."""
    return ScriptCall([f"{prefix}:claim:{key}"], [owner])
