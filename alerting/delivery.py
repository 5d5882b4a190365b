"""What a worker does with one message: validate, decide, render, send, and settle the outcome.

No Celery and no Redis here: the store, the sender and the clock are passed in, so the whole decision
path runs in unit tests on a fixed clock with the in-memory store. ``alerting.tasks`` wraps it in tasks.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from alerting.backoff import backoff_delay
from alerting.config import Rate
from alerting.errors import DeliveryError, PayloadError, PermanentDeliveryError, StoreError
from alerting.mime import Email
from alerting.render import MailConfig, alert_subject, render_alert, render_digest, render_summary
from alerting.schema import parse
from alerting.stores import Occurrence, StateStore
from alerting.throttle import Verdict

log = logging.getLogger("alerting.delivery")


class Sender(Protocol):
    def send(self, msg: Email) -> None: ...


class Events(Protocol):
    """What metrics need to know; ``alerting.metrics`` implements it for Prometheus."""

    def received(self) -> None: ...

    def outcome(self, status: str, kind: str) -> None: ...

    def retried(self, kind: str) -> None: ...

    def latency(self, seconds: float) -> None: ...


class NoEvents:
    def received(self) -> None: ...

    def outcome(self, status: str, kind: str) -> None: ...

    def retried(self, kind: str) -> None: ...

    def latency(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff: float
    backoff_max: float


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | suppressed | folded | duplicate | dead | retry
    retry_in: float | None = None
    reason: str = ""


class Deliverer:
    def __init__(
        self,
        *,
        store: StateStore,
        sender: Sender,
        mail: MailConfig,
        retry: RetryPolicy,
        rate: Rate | None,
        events: Events | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.mail = mail
        self.retry = retry
        self.rate = rate
        self.events = events or NoEvents()
        self.clock = clock
        self.rand = rand

    # -- alerting.deliver ------------------------------------------------------------------------------------
    def deliver(self, raw: object, *, attempt: int) -> Outcome:
        """Handle one ``alerting.deliver`` message; ``attempt`` counts previous tries (Celery's retries)."""
        if attempt == 0:
            self.events.received()
        try:
            alert = parse(raw)
        except PayloadError as exc:
            # Malformed or from the future: no retry can fix it; keep it where an operator will see it.
            return self._dead("invalid", _safe_id(raw), f"invalid payload: {exc}", "invalid", attempt, raw)
        occurrence = Occurrence(
            alert_id=alert.id,
            fingerprint=alert.fingerprint,
            count=alert.count,
            first_seen=min(alert.first_created or alert.created, alert.created),
            last_seen=alert.created,
            sample=json.dumps(raw, separators=(",", ":")),
            subject=alert_subject(alert, self.mail.subject_prefix),
        )
        try:
            verdict = self.store.admit(occurrence, now=self.clock())
        except StoreError as exc:
            if attempt < self.retry.max_retries:
                return self._retry(attempt, "store", f"state store unavailable: {exc}")
            # Better a mail without throttling than none: the state store has been down for every retry.
            log.warning(
                "state store unavailable after %d attempts; sending alert %s unthrottled",
                attempt + 1,
                alert.id,
            )
            verdict = Verdict.SEND
        if verdict is not Verdict.SEND:
            status = {Verdict.SUPPRESS: "suppressed", Verdict.FOLD: "folded", Verdict.DUPLICATE: "duplicate"}[verdict]
            self.events.outcome(status, "alert")
            return Outcome(status)
        return self._send(render_alert(alert, self.mail), alert.id, "alert", attempt, raw, created=alert.created)

    # -- alerting.send_item ----------------------------------------------------------------------------------
    def send_item(self, item_id: str, *, attempt: int) -> Outcome:
        """Send an owed digest or summary leased from the outbox."""
        try:
            item = self.store.load_item(item_id)
            if item is None:
                return Outcome("duplicate", reason="already sent or removed")
            if self.store.is_sent(item_id):
                self.store.complete(item_id)
                return Outcome("duplicate")
        except StoreError as exc:
            return self._retry(attempt, "store", f"state store unavailable: {exc}")
        try:
            if item.kind == "digest":
                sample = parse(json.loads(item.body["sample"]))
                msg = render_digest(item.body, sample, self.mail)
            elif item.kind == "summary":
                msg = render_summary(item.body, self.mail, str(self.rate) if self.rate else "none")
            else:
                raise PayloadError(f"unknown outbox item kind {item.kind!r}")
        except (PayloadError, KeyError, ValueError, TypeError) as exc:
            outcome = self._dead(
                item.kind or "item", item_id, f"cannot render {item_id}: {exc}", "invalid", attempt, item.body
            )
            self.store.complete(item_id)
            return outcome
        outcome = self._send(msg, item_id, item.kind, attempt, item.body, created=None)
        if outcome.status == "dead":
            self.store.complete(item_id)  # it lives on in the dead letters, from where it can be replayed
        return outcome

    # -- shared ----------------------------------------------------------------------------------------------
    def _send(
        self, msg: Email, key: str, kind: str, attempt: int, original: object, *, created: float | None
    ) -> Outcome:
        try:
            self.sender.send(msg)
        except DeliveryError as exc:
            if isinstance(exc, PermanentDeliveryError):
                return self._dead(kind, key, f"permanent SMTP failure: {exc}", exc.kind, attempt, original)
            if attempt >= self.retry.max_retries:
                reason = f"gave up after {attempt + 1} attempts; last error: {exc}"
                return self._dead(kind, key, reason, exc.kind, attempt, original)
            return self._retry(attempt, exc.kind, str(exc))
        try:
            if kind == "alert":
                self.store.mark_sent(key)
            else:
                self.store.complete(key)
        except StoreError as exc:
            # Sent, but not recorded: a redelivery of this message could mail it again. Say so.
            log.error("sent %s but could not record it (a redelivery may mail it twice): %s", key, exc)
        self.events.outcome("sent", kind)
        if created is not None:
            self.events.latency(max(self.clock() - created, 0.0))
        return Outcome("sent")

    def _retry(self, attempt: int, kind: str, reason: str) -> Outcome:
        delay = backoff_delay(attempt, self.retry.backoff, self.retry.backoff_max, self.rand)
        log.warning("attempt %d failed (%s); retrying in %.1fs", attempt + 1, reason, delay)
        self.events.retried(kind)
        return Outcome("retry", retry_in=delay, reason=reason)

    def _dead(
        self, kind: str, key: str | None, reason: str, error_kind: str, attempt: int, original: object
    ) -> Outcome:
        record: dict[str, Any] = {
            "kind": kind,
            "id": key,
            "reason": reason,
            "error": error_kind,
            "attempts": attempt + 1,
            "failed_at": datetime.fromtimestamp(self.clock(), tz=timezone.utc).isoformat(timespec="seconds"),
            "worker": socket.gethostname(),
            "payload": original if _jsonable(original) else repr(original)[:2000],
        }
        try:
            self.store.dead_letter(record)
        except StoreError as exc:
            log.error("could not dead-letter %s (%s); the record was: %s", key, exc, json.dumps(record)[:2000])
        log.error("dead-lettered %s %s: %s", kind, key, reason)
        self.events.outcome("dead", error_kind)
        return Outcome("dead", reason=reason)


def _safe_id(raw: object) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value[:80] if isinstance(value, str) else None


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
