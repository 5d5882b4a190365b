"""The throttle policy: what happens to an occurrence of a fingerprint, and when a window ends. Pure.

Time is always an argument (``now``). The in-memory store applies these functions under a lock; the Redis
store runs the same rules inside Lua scripts (``alerting/shared/stores/lua/``) so that they are atomic across any number
of workers in one round trip. The contract tests in ``tests/unit/test_store_contract.py`` run the same cases
against both, which is what keeps the two faithful to each other.

Rules:
- the first occurrence of a fingerprint opens a window of ``length`` seconds and is mailed at once (SEND);
- occurrences while the window is open are counted and the latest kept as the sample (SUPPRESS);
- at the window's end, if it counted any, a digest is owed and a new window opens at once, so a storm that
  goes on gets one digest per window; a window that counted nothing closes silently;
- a SEND over the cluster-wide rate limit is folded into the pending summary instead (FOLD).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from alerting.shared.config import Rate


class Verdict(str, Enum):
    SEND = "send"  # mail it now
    SUPPRESS = "suppress"  # counted into an open window; the digest will report it
    FOLD = "fold"  # would be sent, but the rate limit is spent: listed in the next summary instead
    DUPLICATE = "duplicate"  # this alert id was already mailed (a redelivery)


@dataclass(frozen=True)
class Window:
    opened: float
    end: float
    repeats: int = 0
    first: float | None = None  # when the earliest counted repeat was logged
    last: float | None = None  # when the latest counted repeat was logged
    sample: str | None = None  # the latest counted repeat's payload, as JSON
    seq: int = 0  # digests sent for this storm so far


@dataclass(frozen=True)
class Digest:
    fingerprint: str
    seq: int
    count: int
    first: float
    last: float
    sample: str
    window_start: float
    window_end: float


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated: float


def admit(
    window: Window | None,
    *,
    now: float,
    length: float,
    count: int,
    first_seen: float,
    last_seen: float,
    sample: str,
) -> tuple[Verdict, Window | None]:
    """Decide one message standing for ``count`` occurrences (``count`` > 1 after client coalescing)."""
    if length <= 0:  # throttling disabled: every message is mailed
        return Verdict.SEND, None
    if window is None:
        opened = Window(opened=now, end=now + length)
        if count > 1:  # the message is the first occurrence plus count-1 repeats
            opened = replace(opened, repeats=count - 1, first=first_seen, last=last_seen, sample=sample)
        return Verdict.SEND, opened
    counted = replace(
        window,
        repeats=window.repeats + count,
        first=first_seen if window.first is None else min(window.first, first_seen),
        last=last_seen if window.last is None else max(window.last, last_seen),
        sample=sample if window.last is None or last_seen >= window.last else window.sample,
    )
    return Verdict.SUPPRESS, counted


def roll(fingerprint: str, window: Window, *, now: float, length: float) -> tuple[Digest | None, Window | None]:
    """End ``window`` if it is due: the digest owed (if any) and the window that follows (if any)."""
    if window.end > now:
        return None, window
    if window.repeats == 0 or window.sample is None:
        return None, None
    digest = Digest(
        fingerprint=fingerprint,
        seq=window.seq + 1,
        count=window.repeats,
        first=window.first if window.first is not None else window.opened,
        last=window.last if window.last is not None else window.end,
        sample=window.sample,
        window_start=window.opened,
        window_end=window.end,
    )
    return digest, Window(opened=now, end=now + length, seq=window.seq + 1)


def take_token(
    bucket: Bucket | None, *, now: float, rate: Rate | None, reserved: int = 0
) -> tuple[bool, Bucket | None]:
    """Token bucket: ``rate.limit`` tokens, refilled at ``rate.per_second``. No rate: always allowed.

    ``reserved`` tokens are left for mail already waiting (owed digests, a pending summary), so that new
    alerts queue behind it instead of starving it while a storm keeps the bucket empty.
    """
    if rate is None:
        return True, bucket
    if bucket is None:
        bucket = Bucket(tokens=float(rate.limit), updated=now)
    tokens = min(float(rate.limit), bucket.tokens + max(now - bucket.updated, 0.0) * rate.per_second)
    if tokens >= 1.0 + reserved:
        return True, Bucket(tokens=tokens - 1.0, updated=now)
    return False, Bucket(tokens=tokens, updated=now)


def seconds_until_token(bucket: Bucket | None, *, now: float, rate: Rate | None) -> float:
    """How long until ``take_token`` would succeed (0 when it would now)."""
    if rate is None or bucket is None:
        return 0.0
    tokens = min(float(rate.limit), bucket.tokens + max(now - bucket.updated, 0.0) * rate.per_second)
    return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate.per_second
