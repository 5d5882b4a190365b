"""What a worker does with one message: validate, decide, render, send, and settle the outcome.

No Celery and no Redis here: the store, the sender and the clock are passed in, so the whole decision
path runs in unit tests on a fixed clock with the in-memory store. ``alerting.consumer.tasks`` wraps it in tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from alerting.consumer.mime import Email
from alerting.consumer.render import MailConfig, alert_subject, render_alert, render_digest, render_summary
from alerting.consumer.schema import parse
from alerting.errors import DeliveryError, PayloadError, PermanentDeliveryError, StoreError
from alerting.shared.backoff import backoff_delay
from alerting.shared.config import Rate
from alerting.shared.outbox import Digest
from alerting.shared.stores import Occurrence, StateStore
from alerting.shared.throttle import Verdict
from alerting.shared.wire import MAX_PAYLOAD_BYTES

log = logging.getLogger("alerting.delivery")


#: Raw bytes kept in a dead letter for a message that cannot be kept whole (too large, not JSON).
RAW_KEEP_BYTES = 64 * 1024

#: A task message redelivered more often than this has killed the process running it each time (the hard time
#: limit, or a crash): it is dead-lettered rather than redelivered for ever.
MAX_REDELIVERIES = 3

# Exceptions that say the message itself cannot be handled (the same input fails the same way on every try): a
# retry cannot help, so they go to the dead letters at once. Anything else unexpected is retried, then dead-lettered.
_DATA_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError, RecursionError)


class Sender(Protocol):
    def send(self, msg: Email, to: Sequence[str] | None = None) -> Mapping[str, tuple[int, bytes]] | None:
        """Send to ``to`` (default: the configured recipients); returns those the server refused while it accepted
        the message for the others. ``to`` is passed only for a re-send to refused recipients."""
        ...


class Events(Protocol):
    """What metrics need to know; ``alerting.consumer.metrics`` implements it for Prometheus."""

    def received(self) -> None: ...

    def outcome(self, status: str, kind: str) -> None: ...

    def retried(self, kind: str) -> None: ...

    def latency(self, seconds: float) -> None: ...


class NoEvents:
    def received(self) -> None: ...

    def outcome(self, status: str, kind: str) -> None: ...

    def retried(self, kind: str) -> None: ...

    def latency(self, seconds: float) -> None: ...


class _Named(str, Enum):
    """A str whose str() and format() are its value on every Python (enum.StrEnum is 3.11+): logs, metric labels
    and dead-letter JSON read exactly as the plain strings did."""

    def __str__(self) -> str:
        return str(self.value)


class Status(_Named):
    """How a message ended (this attempt). String values: the task's result, log lines and metric labels."""

    SENT = "sent"
    SUPPRESSED = "suppressed"  # counted into its fingerprint's window: the digest reports it
    FOLDED = "folded"  # over the rate limit: listed in the next summary
    DUPLICATE = "duplicate"  # already mailed (a redelivery, or a second copy)
    DEAD = "dead"  # in the dead letters
    RETRY = "retry"  # to be tried again in ``Outcome.retry_in`` seconds


class Kind(_Named):
    """What a message (or a dead letter, its ``kind``) is: metric label and dead-letter field."""

    ALERT = "alert"
    ITEM = "item"  # an outbox item whose kind is not known yet
    DIGEST = "digest"
    SUMMARY = "summary"
    INVALID = "invalid"  # an alert message that is not a valid alert
    MESSAGE = "message"  # a queue message that is not a task we can read


class ErrorKind(_Named):
    """Why a message failed, as the deliverer names it (dead letters' ``error``, metric labels). SMTP failures
    carry the sender's own kind instead (``DeliveryError.kind``: smtp-451, timeout, ...)."""

    KILLED = "killed"  # its process was killed under it again and again
    UNEXPECTED = "unexpected"  # an error of ours, not the SMTP server's
    INVALID = "invalid"
    TOO_LARGE = "too-large"
    RECIPIENTS = "recipients"  # a re-send to recipients this worker does not mail
    RECIPIENTS_REFUSED = "recipients-refused"
    UNREADABLE = "unreadable"
    STORE = "store"  # the state store was unreachable


_VERDICT_STATUS: dict[Verdict, Status] = {
    Verdict.SUPPRESS: Status.SUPPRESSED,
    Verdict.FOLD: Status.FOLDED,
    Verdict.DUPLICATE: Status.DUPLICATE,
}


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff: float
    backoff_max: float


@dataclass(frozen=True)
class Outcome:
    status: Status
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
        claim_lease: float = 60.0,
    ) -> None:
        """``claim_lease``: how long a claim to send an alert is held for, at most (the task's hard time limit: a
        holder still alive by then has been killed by it)."""
        self.store = store
        self.sender = sender
        self.mail = mail
        self.retry = retry
        self.rate = rate
        self.events = events or NoEvents()
        self.clock = clock
        self.rand = rand
        self.claim_lease = claim_lease

    # -- the boundary: whatever happens, a message ends sent, retried, or in the dead letters -------------------
    def guarded(self, task: str, raw: object, *, attempt: int, redelivered: str | None = None) -> Outcome:
        """Run ``deliver`` (``task`` "alert") or ``send_item`` ("item") so that no exception escapes: an error
        that is not ours becomes a (bounded) retry, or a dead letter, never a task that "raised unexpected" and
        was acknowledged with nothing left to show for it.

        ``redelivered`` names a task message that came back unacknowledged (its process was killed under it: hard
        time limit, crash; or the whole worker died). Such a message would come back for ever; after
        MAX_REDELIVERIES it is dead-lettered instead. First deliveries are not counted (no extra round trip)."""
        try:
            if redelivered is not None:
                try:
                    count = self.store.count_start(redelivered)
                except StoreError:
                    count = 0  # cannot count: run it (the store's own failure handling follows)
                if count > MAX_REDELIVERIES:
                    reason = (
                        f"delivered {count + 1} times without finishing: the process running it was killed each "
                        "time (hard time limit or crash)"
                    )
                    return self._dead(
                        kind=_kind_of(task),
                        key=_safe_id(raw),
                        reason=reason,
                        error=ErrorKind.KILLED,
                        attempt=attempt,
                        original=raw,
                    )
            if task == "item":
                return self.send_item(raw if isinstance(raw, str) else str(raw), attempt=attempt)
            return self.deliver(raw, attempt=attempt)
        except Exception as exc:
            log.exception("unexpected error handling %s %s (attempt %d)", task, _safe_id(raw), attempt + 1)
            return self.unexpected(task, raw, exc, attempt=attempt)

    def unexpected(self, task: str, raw: object, exc: BaseException, *, attempt: int) -> Outcome:
        """The end of a message whose handling raised ``exc`` (also a time limit, from the task)."""
        reason = f"unexpected error: {type(exc).__name__}: {exc}"[:1000]
        if attempt < self.retry.max_retries and not isinstance(exc, _DATA_ERRORS):
            return self._retry(attempt, ErrorKind.UNEXPECTED, reason)
        if not isinstance(exc, _DATA_ERRORS):
            reason = f"gave up after {attempt + 1} attempts; {reason}"
        return self._dead(
            kind=_kind_of(task),
            key=_safe_id(raw),
            reason=reason,
            error=ErrorKind.UNEXPECTED,
            attempt=attempt,
            original=raw,
        )

    def malformed(
        self, payload: object, args: tuple[object, ...], kwargs: dict[str, object], *, attempt: int
    ) -> Outcome:
        """An ``alerting.deliver`` message with more than its one argument: dead-lettered as it came."""
        original = {"args": [payload, *args], "kwargs": kwargs}
        reason = f"alerting.deliver takes one argument (the payload); got {1 + len(args)} and {len(kwargs)} keyword(s)"
        return self._dead(
            kind=Kind.INVALID,
            key=_safe_id(payload),
            reason=reason,
            error=ErrorKind.INVALID,
            attempt=attempt,
            original=original,
        )

    def quarantined(self, info: object, *, attempt: int) -> Outcome:
        """A message the broker guard took off the queue because it cannot be run (``alerting.quarantine``)."""
        details = info if isinstance(info, dict) else {"raw": repr(info)[:RAW_KEEP_BYTES]}
        reason = f"unreadable message on queue {details.get('queue', '?')}: {details.get('reason', 'unknown')}"
        record_extra = {k: details[k] for k in ("size", "truncated") if k in details}
        raw = {k: details[k] for k in ("raw", "raw_base64") if k in details}
        return self._dead(
            kind=Kind.MESSAGE,
            key=None,
            reason=reason,
            error=ErrorKind.UNREADABLE,
            attempt=attempt,
            original=raw,
            extra=record_extra,
        )

    # -- alerting.deliver ------------------------------------------------------------------------------------
    def deliver(self, raw: object, *, attempt: int) -> Outcome:
        """Handle one ``alerting.deliver`` message; ``attempt`` counts previous tries (Celery's retries)."""
        if attempt == 0:
            self.events.received()
        sample = _dumps(raw)
        size = len(sample) if sample is not None else 0
        if size > MAX_PAYLOAD_BYTES:
            # The application never publishes more; something else wrote this. Kept, capped, for a person to see.
            reason = f"payload of {size} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit"
            return self._dead(
                kind=Kind.INVALID,
                key=_safe_id(raw),
                reason=reason,
                error=ErrorKind.TOO_LARGE,
                attempt=attempt,
                original=raw,
                size=size,
            )
        try:
            alert = parse(raw)
        except PayloadError as exc:
            # Malformed or from the future: no retry can fix it; keep it where an operator will see it.
            return self._dead(
                kind=Kind.INVALID,
                key=_safe_id(raw),
                reason=f"invalid payload: {exc}",
                error=ErrorKind.INVALID,
                attempt=attempt,
                original=raw,
            )
        mail = self.mail
        if alert.recipients is not None:
            # A re-send to the recipients a server refused: only to addresses this worker mails anyway.
            allowed = tuple(r for r in alert.recipients if r in self.mail.mail_to)
            if not allowed:
                reason = f"none of its recipients {list(alert.recipients)} is in ALERTING_MAIL_TO"
                return self._dead(
                    kind=Kind.INVALID,
                    key=alert.id,
                    reason=reason,
                    error=ErrorKind.RECIPIENTS,
                    attempt=attempt,
                    original=raw,
                )
            mail = replace(self.mail, mail_to=allowed)
            # Not throttled: its alert was admitted and mailed to the others already.
            return self._send_alert(
                render_alert(alert, mail),
                alert_id=alert.id,
                attempt=attempt,
                raw=raw,
                created=alert.created,
                to=allowed,
            )
        occurrence = Occurrence(
            alert_id=alert.id,
            fingerprint=alert.fingerprint,
            count=alert.count,
            first_seen=min(alert.first_created or alert.created, alert.created),
            last_seen=alert.created,
            sample=sample if sample is not None else json.dumps(raw, separators=(",", ":")),
            subject=alert_subject(alert, self.mail.subject_prefix),
        )
        try:
            verdict = self.store.admit(occurrence, now=self.clock())
        except StoreError as exc:
            if attempt < self.retry.max_retries:
                return self._retry(attempt, ErrorKind.STORE, f"state store unavailable: {exc}")
            # Better a mail without throttling than none: the state store has been down for every retry.
            log.warning(
                "state store unavailable after %d attempts; sending alert %s unthrottled",
                attempt + 1,
                alert.id,
            )
            verdict = Verdict.SEND
        if verdict is not Verdict.SEND:
            status = _VERDICT_STATUS[verdict]
            self.events.outcome(status, Kind.ALERT)
            return Outcome(status)
        return self._send_alert(
            render_alert(alert, mail), alert_id=alert.id, attempt=attempt, raw=raw, created=alert.created, to=None
        )

    def _send_alert(
        self, msg: Email, *, alert_id: str, attempt: int, raw: object, created: float, to: tuple[str, ...] | None
    ) -> Outcome:
        """Claim the alert id, send, settle. Two copies of one alert in flight at once (a publish re-sent after a
        timeout, though it had landed) both pass the throttle (a redelivery keeps its verdict); the claim, taken
        before SMTP and atomic across workers, lets one of them send."""
        owner = _owner()
        try:
            claim = self.store.claim(alert_id, owner, lease=self.claim_lease, now=self.clock())
            if claim.status == "busy" and _holder_is_dead(claim.holder):
                # Its holder was a process of this host that died mid-send (its message came back at once, with
                # reject_on_worker_lost): take over rather than wait out the lease.
                claim = self.store.claim(alert_id, owner, lease=self.claim_lease, now=self.clock(), steal=claim.holder)
        except StoreError as exc:
            if attempt < self.retry.max_retries:
                return self._retry(attempt, ErrorKind.STORE, f"state store unavailable: {exc}")
            log.warning("state store unavailable; sending alert %s without a claim", alert_id)
            return self._send(
                msg, key=alert_id, kind=Kind.ALERT, attempt=attempt, original=raw, created=created, to=to, owner=None
            )
        if claim.status == "sent":
            self.events.outcome(Status.DUPLICATE, Kind.ALERT)
            return Outcome(Status.DUPLICATE, reason="already mailed")
        if claim.status == "busy":
            # Another worker is sending it now. Look again when it should have finished (or its lease ran out):
            # if it failed, this copy sends. Each look counts as an attempt (Celery's retries); the lease bounds them.
            delay = min(max(claim.expires_in, 0.1), max(self.claim_lease / 10, 1.0)) + self.rand()
            log.info("alert %s is being sent by %s; looking again in %.1fs", alert_id, claim.holder, delay)
            return Outcome(Status.RETRY, retry_in=delay, reason=f"being sent by {claim.holder}")
        return self._send(
            msg, key=alert_id, kind=Kind.ALERT, attempt=attempt, original=raw, created=created, to=to, owner=owner
        )

    # -- alerting.send_item ----------------------------------------------------------------------------------
    def send_item(self, item_id: str, *, attempt: int) -> Outcome:
        """Send an owed digest or summary leased from the outbox."""
        try:
            item = self.store.load_item(item_id)
            if item is None:
                return Outcome(Status.DUPLICATE, reason="already sent or removed")
            if self.store.is_sent(item_id):
                self.store.complete(item_id)
                return Outcome(Status.DUPLICATE)
        except StoreError as exc:
            return self._retry(attempt, ErrorKind.STORE, f"state store unavailable: {exc}")
        try:
            value = item.value
            if isinstance(value, Digest):
                msg = render_digest(value, parse(json.loads(value.sample)), self.mail)
            else:
                msg = render_summary(value, self.mail, str(self.rate) if self.rate else "none")
        except (PayloadError, KeyError, ValueError, TypeError) as exc:
            outcome = self._dead(
                kind=item.kind or Kind.ITEM,
                key=item_id,
                reason=f"cannot render {item_id}: {exc}",
                error=ErrorKind.INVALID,
                attempt=attempt,
                original=item.body,
            )
            self.store.complete(item_id)
            return outcome
        outcome = self._send(msg, key=item_id, kind=value.kind, attempt=attempt, original=item.body, created=None)
        if outcome.status is Status.DEAD:
            self.store.complete(item_id)  # it lives on in the dead letters, from where it can be replayed
        return outcome

    # -- shared ----------------------------------------------------------------------------------------------
    def _send(
        self,
        msg: Email,
        *,
        key: str,
        kind: str,
        attempt: int,
        original: object,
        created: float | None,
        to: tuple[str, ...] | None = None,
        owner: str | None = None,
    ) -> Outcome:
        try:
            try:
                refused = self.sender.send(msg, to=list(to)) if to else self.sender.send(msg)
            except BaseException:
                # Not sent (a delivery error, or a time limit): the retry, or a replay of the dead letter, must be
                # able to claim it. (A worker that dies here leaves the claim to expire, or to be taken over.)
                if owner is not None:
                    self._release(key, owner)
                raise
        except DeliveryError as exc:
            if isinstance(exc, PermanentDeliveryError):
                reason = f"permanent SMTP failure: {exc}"
                return self._dead(kind=kind, key=key, reason=reason, error=exc.kind, attempt=attempt, original=original)
            if attempt >= self.retry.max_retries:
                reason = f"gave up after {attempt + 1} attempts; last error: {exc}"
                return self._dead(kind=kind, key=key, reason=reason, error=exc.kind, attempt=attempt, original=original)
            return self._retry(attempt, exc.kind, str(exc))
        try:
            if kind == Kind.ALERT:
                self.store.mark_sent(key)
            else:
                self.store.complete(key)
        except StoreError as exc:
            # Sent, but not recorded: a redelivery of this message could mail it again. Say so.
            log.error("sent %s but could not record it (a redelivery may mail it twice): %s", key, exc)
        self.events.outcome(Status.SENT, kind)
        if created is not None:
            self.events.latency(max(self.clock() - created, 0.0))
        if refused:
            self._refused(kind, key, dict(refused), attempt, original)
        return Outcome(Status.SENT)

    def _refused(
        self, kind: str, key: str, refused: dict[str, tuple[int, bytes]], attempt: int, original: object
    ) -> None:
        """The server took the mail for some recipients and refused others: those others get a dead letter of
        their own, which ``alerting dead-letters replay`` sends to them alone."""
        detail = "; ".join(f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in sorted(refused.items()))
        recipients = sorted(refused)
        record_id, payload = key, original
        if kind == Kind.ALERT and isinstance(original, dict):
            # A payload of its own: a new id (the original is marked sent) naming the recipients to send it to.
            digest = hashlib.sha256(",".join(recipients).encode()).hexdigest()[:8]
            record_id = f"{key[:60]}.to-{digest}"
            payload = {**original, "id": record_id, "recipients": recipients}
        reason = f"sent to the others, but the SMTP server refused {len(recipients)} recipient(s): {detail}"
        self._dead(
            kind=kind,
            key=record_id,
            reason=reason,
            error=ErrorKind.RECIPIENTS_REFUSED,
            attempt=attempt,
            original=payload,
            recipients=recipients,
        )

    def _release(self, key: str, owner: str) -> None:
        try:
            self.store.release(key, owner)
        except StoreError as exc:
            log.warning("could not release the claim on %s (it expires by itself): %s", key, exc)

    def _retry(self, attempt: int, kind: str, reason: str) -> Outcome:
        delay = backoff_delay(attempt, self.retry.backoff, self.retry.backoff_max, self.rand)
        log.warning("attempt %d failed (%s); retrying in %.1fs", attempt + 1, reason, delay)
        self.events.retried(kind)
        return Outcome(Status.RETRY, retry_in=delay, reason=reason)

    def _dead(
        self,
        *,
        kind: str,
        key: str | None,
        reason: str,
        error: str,
        attempt: int,
        original: object,
        size: int | None = None,
        recipients: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        record: dict[str, Any] = {
            "kind": kind,
            "id": key,
            "reason": reason,
            "error": error,
            "attempts": attempt + 1,
            "failed_at": datetime.fromtimestamp(self.clock(), tz=timezone.utc).isoformat(timespec="seconds"),
            "worker": socket.gethostname(),
            "payload": original if _jsonable(original) else repr(original)[:2000],
        }
        if size is not None:
            # Too large to keep whole: the beginning of it, and how large it was.
            record["size"] = size
            record["payload"] = _capped(original)
        if recipients is not None:
            record["recipients"] = recipients
        record.update(extra or {})
        try:
            self.store.dead_letter(record)
        except StoreError as exc:
            log.error("could not dead-letter %s (%s); the record was: %s", key, exc, json.dumps(record)[:2000])
        log.error("dead-lettered %s %s: %s", kind, key, reason)
        self.events.outcome(Status.DEAD, error)
        return Outcome(Status.DEAD, reason=reason)


def _kind_of(task: str) -> Kind:
    """The dead-letter kind of a message of ``task`` ("alert" or "item")."""
    return Kind.ITEM if task == "item" else Kind.ALERT


def _owner() -> str:
    """Names this attempt: host, PID namespace and PID (so a holder on this host can be seen to be dead), and a
    token of its own (two attempts in one process are two holders)."""
    return f"{socket.gethostname()}/{_pid_namespace()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def _holder_is_dead(holder: str) -> bool:
    """True only when ``holder`` was a process on this host, in this PID namespace, that no longer exists."""
    parts = holder.split("/")
    if len(parts) != 4 or parts[0] != socket.gethostname() or parts[1] != _pid_namespace():
        return False
    try:
        pid = int(parts[2])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, but not ours to signal
    try:  # a killed pool process stays a zombie until its parent reaps it: dead all the same
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _dumps(raw: object) -> str | None:
    """The payload as JSON (its size on the wire, and the throttle's sample); None if it is not JSON."""
    try:
        return json.dumps(raw, separators=(",", ":"))
    except (TypeError, ValueError):
        return None  # parse() says what is wrong with it


def _capped(raw: object) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"))
    return text[:RAW_KEEP_BYTES]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _safe_id(raw: object) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value[:80] if isinstance(value, str) else None


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
