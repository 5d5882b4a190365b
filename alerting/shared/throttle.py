"""The throttle and outbox policy: every rule a state store applies, written once. Pure.

Time is always an argument (``now``). ``MemoryStore`` is plain state plus calls to these functions; the Redis
store restates them in Lua (``alerting/shared/stores/lua/``) so that they are atomic across any number of workers
in one round trip. ``tests/integration/test_store_contract.py`` runs both stores on the same random histories
and compares every answer, which is what keeps the Lua faithful to this module.

Rules:
- an alert id already mailed is a DUPLICATE; one already decided keeps its verdict (a redelivery is not counted
  twice);
- the first occurrence of a fingerprint opens a window of ``length`` seconds and is mailed at once (SEND);
- occurrences while the window is open are counted and the latest kept as the sample (SUPPRESS);
- at the window's end, if it counted any, a digest is owed and a new window opens at once, so a storm that
  goes on gets one digest per window; a window that counted nothing closes silently; due windows end in
  order of their end, then fingerprint;
- a SEND needs a token of the cluster-wide bucket, beyond those reserved for mail already waiting (outbox items
  ready now, and a pending summary); without one it is folded into the pending summary instead (FOLD): a count
  per fingerprint, the latest subject, the time of the first fold;
- the outbox is leased summary first (new problems), then ready items oldest first (ready time, then id), one
  token each, stopping at the first refusal; a leased item is ready again when its lease runs out;
- a claim to send an alert is taken when nobody holds it, the holder's lease ran out, the caller holds it
  already, or the holder is the one the caller knows to be dead; never once the alert is marked sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from alerting.shared.config import Rate
from alerting.shared.outbox import Digest, Summary, SummaryEntry, summary_of

__all__ = [
    "Bucket",
    "Decision",
    "Digest",
    "LeasePlan",
    "Occurrence",
    "Verdict",
    "Window",
    "admit",
    "decide",
    "due_windows",
    "fold",
    "may_claim",
    "plan_lease",
    "refill",
    "reserved_tokens",
    "roll",
    "seconds_until_token",
    "take_token",
]


class Verdict(str, Enum):
    SEND = "send"  # mail it now
    SUPPRESS = "suppress"  # counted into an open window; the digest will report it
    FOLD = "fold"  # would be sent, but the rate limit is spent: listed in the next summary instead
    DUPLICATE = "duplicate"  # this alert id was already mailed (a redelivery)


@dataclass(frozen=True)
class Occurrence:
    """One message from the alerts queue, as the throttle sees it."""

    alert_id: str
    fingerprint: str
    count: int
    first_seen: float
    last_seen: float
    sample: str  # the payload as JSON, kept as the window's latest sample
    subject: str  # listed in the summary if the rate limit folds it


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
class Bucket:
    tokens: float
    updated: float


# -- the token bucket ------------------------------------------------------------------------------------------
def refill(bucket: Bucket | None, *, now: float, rate: Rate) -> float:
    """Tokens in ``bucket`` at ``now``: ``rate.limit`` at most, refilled at ``rate.per_second``; a bucket never
    seen is full; a clock going backwards mints nothing. Restated in admit.lua and lease.lua in this very order of
    operations (elapsed * limit / period), so that both stores round alike at the edge of a token."""
    if bucket is None:
        return float(rate.limit)
    return min(float(rate.limit), bucket.tokens + max(now - bucket.updated, 0.0) * rate.limit / rate.period)


def take_token(
    bucket: Bucket | None, *, now: float, rate: Rate | None, reserved: int = 0
) -> tuple[bool, Bucket | None]:
    """Token bucket: ``rate.limit`` tokens, refilled at ``rate.per_second``. No rate: always allowed.

    ``reserved`` tokens are left for mail already waiting (owed digests, a pending summary), so that new
    alerts queue behind it instead of starving it while a storm keeps the bucket empty.
    """
    if rate is None:
        return True, bucket
    tokens = refill(bucket, now=now, rate=rate)
    if tokens >= 1.0 + reserved:
        return True, Bucket(tokens=tokens - 1.0, updated=now)
    return False, Bucket(tokens=tokens, updated=now)


def seconds_until_token(bucket: Bucket | None, *, now: float, rate: Rate | None) -> float:
    """How long until ``take_token`` would succeed (0 when it would now)."""
    if rate is None or bucket is None:
        return 0.0
    tokens = refill(bucket, now=now, rate=rate)
    return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate.per_second


def reserved_tokens(*, ready_items: int, summary_pending: bool) -> int:
    """Tokens a new alert must leave in the bucket: one per outbox item ready now, one for a pending summary."""
    return ready_items + (1 if summary_pending else 0)


# -- windows -----------------------------------------------------------------------------------------------
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


def owes_digest(window: Window) -> bool:
    """Whether the window, ended now, would owe a digest (it counted repeats)."""
    return window.repeats > 0 and window.sample is not None


def due_windows(windows: Mapping[str, Window], *, now: float, limit: int) -> list[str]:
    """The fingerprints whose windows end by ``now``, in the order they are rolled: by end, then fingerprint."""
    return [fp for _, fp in sorted((w.end, fp) for fp, w in windows.items() if w.end <= now)[:limit]]


def roll(fingerprint: str, window: Window, *, now: float, length: float) -> tuple[Digest | None, Window | None]:
    """End ``window`` if it is due: the digest owed (if any) and the window that follows (if any)."""
    if window.end > now:
        return None, window
    if not owes_digest(window) or window.sample is None:
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


# -- the pending summary -----------------------------------------------------------------------------------
def fold(pending: Summary | None, *, fingerprint: str, subject: str, now: float) -> Summary:
    """Count one more folded alert of ``fingerprint`` into the pending summary (opened at ``now`` if none)."""
    entries = {e.fingerprint: e for e in pending.entries} if pending is not None else {}
    before = entries.get(fingerprint)
    entries[fingerprint] = SummaryEntry(fingerprint, (before.count if before else 0) + 1, subject)
    return summary_of(entries.values(), pending.since if pending is not None else now)


# -- one admission, every rule -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    window: Window | None  # the fingerprint's window after this message (None: unchanged)
    bucket: Bucket | None
    pending: Summary | None  # the pending summary after this message
    record: bool  # keep the verdict for this alert id (False: it was already known)


def decide(
    occurrence: Occurrence,
    *,
    sent: bool,
    prior: Verdict | None,
    window: Window | None,
    bucket: Bucket | None,
    pending: Summary | None,
    ready_items: int,
    now: float,
    length: float,
    rate: Rate | None,
) -> Decision:
    """The verdict on one message and the state it leaves (admit.lua restates this)."""
    if sent:
        return Decision(Verdict.DUPLICATE, None, bucket, pending, record=False)
    if prior is not None:  # a redelivered message gets the verdict it had, and is not counted twice
        return Decision(prior, None, bucket, pending, record=False)
    verdict, window = admit(
        window,
        now=now,
        length=length,
        count=occurrence.count,
        first_seen=occurrence.first_seen,
        last_seen=occurrence.last_seen,
        sample=occurrence.sample,
    )
    if verdict is Verdict.SEND and rate is not None:
        reserved = reserved_tokens(ready_items=ready_items, summary_pending=pending is not None)
        allowed, bucket = take_token(bucket, now=now, rate=rate, reserved=reserved)
        if not allowed:
            verdict = Verdict.FOLD
            pending = fold(pending, fingerprint=occurrence.fingerprint, subject=occurrence.subject, now=now)
    return Decision(verdict, window, bucket, pending, record=True)


# -- leasing the outbox ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeasePlan:
    summary: bool  # close the pending summary into an item and lease it first
    items: list[str]  # then these ready items, in this order
    bucket: Bucket | None


def plan_lease(
    ready: Iterable[tuple[float, str]],
    *,
    summary_pending: bool,
    bucket: Bucket | None,
    now: float,
    rate: Rate | None,
    limit: int,
) -> LeasePlan:
    """What may be leased at ``now``: ``ready`` holds (ready time, item id) of the items whose time has come.
    At most ``limit`` in all, the summary first, one token each, stopping at the first refusal (lease.lua)."""
    if rate is not None:  # refilled once and written back even when nothing is taken, as lease.lua does
        bucket = Bucket(refill(bucket, now=now, rate=rate), now)
    summary = False
    if summary_pending and limit > 0:
        summary, taken = take_token(bucket, now=now, rate=rate)
        bucket = taken if summary else bucket
    items: list[str] = []
    for _, item_id in sorted(ready)[:limit]:
        if summary + len(items) >= limit:
            break
        allowed, taken = take_token(bucket, now=now, rate=rate)
        if not allowed:
            break
        bucket = taken
        items.append(item_id)
    return LeasePlan(summary, items, bucket)


# -- claims ------------------------------------------------------------------------------------------------
def may_claim(holder: str, expires: float, *, owner: str, steal: str, now: float) -> bool:
    """Whether ``owner`` may take the claim ``holder`` has until ``expires`` (claim.lua)."""
    return not holder or expires <= now or holder == owner or (bool(steal) and holder == steal)
