"""Mail the cluster owes (the outbox): a digest of a window's repeats, or a summary of alerts the rate limit folded.

Typed values and their one JSON form. The memory store and the Redis store keep items in this form, the Lua
scripts ``roll.lua`` (digests) and ``lease.lua`` (summaries) write it, a dead letter of an item holds it as its
``payload`` (so ``alerting dead-letters replay`` can put it back), and the renderer reads the typed value.

The JSON form, an object::

    {"kind": "digest", "fingerprint": str, "seq": int, "count": int, "first": time, "last": time,
     "sample": str (the latest repeat's payload, as JSON), "window_start": time, "window_end": time}
    {"kind": "summary", "since": time | null, "entries": [{"fingerprint": str, "count": int, "subject": str}, ...]}

Times are epoch seconds. Lua hands them over as the strings Redis stored them as (no precision lost to Lua's
number formatting), and cjson writes an empty list as ``{}``: :func:`from_dict` accepts both, :func:`to_dict`
writes numbers and lists. Summary entries are kept sorted by fingerprint (Redis hashes have no order).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DIGEST: Literal["digest"] = "digest"
SUMMARY: Literal["summary"] = "summary"


@dataclass(frozen=True)
class Digest:
    """A window's repeats: ``count`` occurrences between ``first`` and ``last``, the latest as ``sample``."""

    fingerprint: str
    seq: int  # digests sent for this storm so far, this one included
    count: int
    first: float
    last: float
    sample: str
    window_start: float
    window_end: float

    kind: Literal["digest"] = field(default=DIGEST, init=False)


@dataclass(frozen=True)
class SummaryEntry:
    fingerprint: str
    count: int  # alerts of this fingerprint folded
    subject: str  # the latest folded one's subject


@dataclass(frozen=True)
class Summary:
    """Alerts the rate limit folded instead of mailing them, one entry per fingerprint."""

    since: float | None  # when the first of them was folded
    entries: tuple[SummaryEntry, ...]

    kind: Literal["summary"] = field(default=SUMMARY, init=False)


Item = Digest | Summary


def summary_of(entries: Iterable[SummaryEntry], since: float | None) -> Summary:
    """A summary in its one form: entries in fingerprint order, whatever order the store kept them in."""
    return Summary(since=since, entries=tuple(sorted(entries, key=lambda e: e.fingerprint)))


def digest_id(fingerprint: str, n: int) -> str:
    """Item ids: ``digest:<fp>:<n>`` and ``summary:<n>``, ``n`` from one counter per store (roll.lua, lease.lua)."""
    return f"digest:{fingerprint}:{n}"


def summary_id(n: int) -> str:
    return f"summary:{n}"


def is_digest_id(item_id: str) -> bool:
    return item_id.startswith(f"{DIGEST}:")


def to_dict(item: Item) -> dict[str, Any]:
    if isinstance(item, Digest):
        return {
            "kind": DIGEST,
            "fingerprint": item.fingerprint,
            "seq": item.seq,
            "count": item.count,
            "first": item.first,
            "last": item.last,
            "sample": item.sample,
            "window_start": item.window_start,
            "window_end": item.window_end,
        }
    entries = [{"fingerprint": e.fingerprint, "count": e.count, "subject": e.subject} for e in item.entries]
    return {"kind": SUMMARY, "since": item.since, "entries": entries}


def from_dict(body: Mapping[str, Any]) -> Item:
    """The item ``body`` holds; ``ValueError`` (or ``KeyError``/``TypeError``) if it is not one."""
    kind = body.get("kind")
    if kind == DIGEST:
        return Digest(
            fingerprint=str(body["fingerprint"]),
            seq=int(body["seq"]),
            count=int(body["count"]),
            first=float(body["first"]),
            last=float(body["last"]),
            sample=str(body["sample"]),
            window_start=float(body["window_start"]),
            window_end=float(body["window_end"]),
        )
    if kind == SUMMARY:
        raw = body.get("entries") or []  # cjson encodes an empty Lua table as {}
        entries = (
            SummaryEntry(fingerprint=str(e["fingerprint"]), count=int(e["count"]), subject=str(e["subject"]))
            for e in (raw if isinstance(raw, list) else [])
        )
        since = body.get("since")
        return summary_of(entries, float(since) if since is not None else None)
    raise ValueError(f"unknown outbox item kind {kind!r}")


def to_json(item: Item) -> str:
    return json.dumps(to_dict(item), separators=(",", ":"))


def from_json(text: str) -> Item:
    body = json.loads(text)
    if not isinstance(body, dict):
        raise ValueError("an outbox item is a JSON object")
    return from_dict(body)
