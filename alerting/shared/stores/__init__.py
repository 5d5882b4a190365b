"""The state store: the small interface the worker's throttle, outbox, idempotency markers and dead letters
live behind. ``MemoryStore`` (one process, for tests) and ``RedisStore`` (shared by every worker) implement it;
``tests/integration/test_store_contract.py`` runs one suite against both, and compares them on random histories.
The rules themselves are in ``alerting.shared.throttle``; the outbox items' form in ``alerting.shared.outbox``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from alerting.shared import outbox
from alerting.shared.config import DEFAULT_KEY_PREFIX, Rate
from alerting.shared.throttle import Occurrence, Verdict

__all__ = ["Claim", "Occurrence", "OutboxItem", "StateStore", "StoreConfig", "StoreStatus"]


@dataclass(frozen=True)
class StoreConfig:
    window: float  # throttle window, seconds (0 disables throttling)
    rate: Rate | None  # cluster-wide rate limit (None: unlimited)
    lease: float  # how long a leased outbox item is reserved for the task sending it
    ttl: float  # how long idempotency markers (decided, sent) are kept
    prefix: str = DEFAULT_KEY_PREFIX


@dataclass(frozen=True)
class OutboxItem:
    """Mail owed by the cluster: a digest of a window's repeats or a summary of folded alerts.

    ``body`` is the item's JSON form (``alerting.shared.outbox``), as stored and as dead-lettered; ``value``
    the typed item it holds."""

    item_id: str
    body: dict[str, Any]

    @classmethod
    def of(cls, item_id: str, value: outbox.Item) -> OutboxItem:
        return cls(item_id, outbox.to_dict(value))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def value(self) -> outbox.Item:
        """The typed item; ``ValueError`` (``KeyError``, ``TypeError``) if the body is not one."""
        return outbox.from_dict(self.body)


@dataclass(frozen=True)
class Claim:
    """The answer to "may I send this alert now?" (see ``StateStore.claim``)."""

    status: str  # claimed (yours until released, marked sent or expired) | sent (already mailed) | busy
    holder: str = ""  # who holds it, when busy
    expires_in: float = 0.0  # seconds left on the holder's lease, when busy


@dataclass(frozen=True)
class StoreStatus:
    open_windows: int
    owed_digests: int  # windows whose end will owe a digest, plus digests waiting in the outbox
    outbox: int
    folded: int  # distinct alerts waiting in the next summary
    dead_letters: int


class StateStore(Protocol):
    config: StoreConfig

    def admit(self, occurrence: Occurrence, *, now: float) -> Verdict: ...

    def mark_sent(self, key: str) -> None:
        """Record ``key`` as mailed (and drop any claim on it)."""

    def claim(self, key: str, owner: str, *, lease: float, now: float, steal: str = "") -> Claim:
        """Take the sending of ``key`` for ``lease`` seconds, unless it was sent or another owner holds it; may
        take it over from ``steal``, a holder the caller knows to be dead. Atomic across workers."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Give up ``owner``'s claim on ``key`` (a transient failure: the retry must be able to claim it)."""

    def count_start(self, key: str) -> int:
        """Count one more (re)delivery of the task message ``key``; returns how many so far (kept ``ttl``)."""
        ...

    def is_sent(self, key: str) -> bool: ...

    def decision(self, alert_id: str) -> str | None: ...

    def roll_due(self, *, now: float, limit: int = 100) -> int: ...

    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]: ...

    def load_item(self, item_id: str) -> OutboxItem | None: ...

    def complete(self, item_id: str) -> None: ...

    def restore_item(self, item: OutboxItem, *, now: float) -> None: ...

    def dead_letter(self, record: dict[str, Any]) -> None: ...

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]: ...

    def remove_dead_letter(self, record: dict[str, Any]) -> bool: ...

    def purge_dead_letters(self) -> int: ...

    def status(self, *, now: float) -> StoreStatus: ...

    def ping(self) -> None: ...
