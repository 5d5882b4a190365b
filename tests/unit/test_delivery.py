"""alerting.consumer.delivery.Deliverer with the in-memory store, a recording fake sender and a fixed clock: every
message ends sent, suppressed, retried with growing backoff, or visible in the dead letters."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import pytest

from alerting.consumer.delivery import Deliverer, ErrorKind, Kind, Outcome, RetryPolicy, Status
from alerting.consumer.mime import Email
from alerting.consumer.render import MailConfig
from alerting.consumer.smtp import classify
from alerting.errors import StoreError
from alerting.shared.config import Rate
from alerting.shared.stores import OutboxItem, StoreConfig
from alerting.shared.stores.memory import MemoryStore
from alerting.testing import received
from tests.unit.factories import FakeClock, make_payload

MAIL = MailConfig(mail_from="alerts@example.com", mail_to=("ops@example.com",))
WINDOW = 300.0


class RecordingSender:
    """Records every message it is asked to send; fails with the scripted errors first, in order."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.attempts = 0
        self.sent: list[EmailMessage] = []

    def send(self, msg: Email, to: Sequence[str] | None = None) -> None:  # never refuses a recipient: returns None
        self.attempts += 1
        if self.failures:
            # As SMTPSender does: smtplib's exceptions reach the deliverer already classified.
            raise classify(self.failures.pop(0))
        self.sent.append(received(msg))  # as the recipient's mail client reads it

    @property
    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.sent]


class Setup:
    def __init__(
        self,
        sender: RecordingSender,
        *,
        window: float = WINDOW,
        max_retries: int = 3,
        rate: Rate | None = None,
    ) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        self.sender = sender
        self.store = MemoryStore(StoreConfig(window=window, rate=rate, lease=60.0, ttl=86_400.0))
        self.deliverer = Deliverer(
            store=self.store,
            sender=sender,
            mail=MAIL,
            retry=RetryPolicy(max_retries=max_retries, backoff=2.0, backoff_max=300.0),
            rate=rate,
            clock=self.clock,
            rand=lambda: 0.5,
        )

    def deliver(self, raw: object, attempt: int = 0) -> Outcome:
        return self.deliverer.deliver(raw, attempt=attempt)

    def dead(self) -> list[dict[str, Any]]:
        return self.store.dead_letters()


def payload(**overrides: Any) -> dict[str, Any]:
    overrides.setdefault("created", 1_700_000_000.0)
    return make_payload(**overrides)


# -- sending and retrying ----------------------------------------------------------------------------------
def test_an_alert_is_rendered_and_sent_once() -> None:
    s = Setup(RecordingSender())
    outcome = s.deliver(payload(message="card declined"))
    assert outcome.status == "sent"
    assert s.sender.subjects == ["[CRITICAL] app.payments: card declined"]
    assert s.dead() == []


def test_a_transient_451_is_retried_with_growing_backoff_then_sent_once() -> None:
    sender = RecordingSender(
        smtplib.SMTPDataError(451, b"4.3.0 try again later"),
        smtplib.SMTPDataError(451, b"4.3.0 try again later"),
    )
    s = Setup(sender)
    raw = payload()

    first = s.deliver(raw, attempt=0)
    second = s.deliver(raw, attempt=1)
    third = s.deliver(raw, attempt=2)

    assert [first.status, second.status, third.status] == ["retry", "retry", "sent"]
    assert first.retry_in is not None
    assert second.retry_in is not None
    assert 0 < first.retry_in < second.retry_in
    assert "451" in first.reason
    assert sender.attempts == 3
    assert len(sender.sent) == 1
    assert s.dead() == []


def test_a_permanent_error_goes_to_the_dead_letters_after_one_attempt() -> None:
    sender = RecordingSender(smtplib.SMTPDataError(550, b"5.7.1 message rejected as spam"))
    s = Setup(sender)
    raw = payload()
    outcome = s.deliver(raw)
    assert outcome.status == "dead"
    assert sender.attempts == 1
    assert sender.sent == []
    (letter,) = s.dead()
    assert letter["id"] == raw["id"]
    assert letter["attempts"] == 1
    assert letter["error"] == "smtp-550"
    assert "550" in letter["reason"]
    assert "rejected as spam" in letter["reason"]
    assert letter["payload"] == raw  # kept whole, so it can be replayed


def test_a_transient_error_that_outlasts_max_retries_is_dead_lettered_saying_how_many_attempts() -> None:
    sender = RecordingSender(*[smtplib.SMTPServerDisconnected("Connection unexpectedly closed")] * 10)
    s = Setup(sender, max_retries=2)
    raw = payload()
    outcomes = [s.deliver(raw, attempt=n).status for n in range(3)]
    assert outcomes == ["retry", "retry", "dead"]
    assert sender.sent == []
    (letter,) = s.dead()
    assert letter["attempts"] == 3
    assert "3 attempts" in letter["reason"]
    assert letter["error"] == "disconnected"


@pytest.mark.parametrize(
    "raw",
    [
        payload(v=99),
        {"hello": "world"},
        "not a dict",
        ["a", "list"],
        payload(id="../../etc/passwd"),
        payload(levelno="CRITICAL"),
    ],
    ids=["unknown-version", "no-version", "string", "list", "unsafe-id", "bad-levelno"],
)
def test_an_invalid_payload_is_dead_lettered_without_sending(raw: object) -> None:
    s = Setup(RecordingSender())
    outcome = s.deliver(raw)
    assert outcome.status == "dead"
    assert s.sender.attempts == 0
    (letter,) = s.dead()
    assert letter["kind"] == "invalid"
    assert letter["error"] == "invalid"
    assert "invalid payload" in letter["reason"]
    assert letter["payload"] == raw


def test_an_unknown_version_is_named_in_the_dead_letter() -> None:
    s = Setup(RecordingSender())
    s.deliver(payload(v=2))
    assert "unsupported payload version 2" in s.dead()[0]["reason"]


def test_a_payload_that_is_not_json_is_kept_as_its_repr() -> None:
    s = Setup(RecordingSender())
    s.deliver({"v": 1, "id": object()})
    (letter,) = s.dead()
    assert isinstance(letter["payload"], str)
    assert "object" in letter["payload"]


# -- idempotency -------------------------------------------------------------------------------------------
def test_a_redelivered_alert_is_not_mailed_twice() -> None:
    s = Setup(RecordingSender())
    raw = payload()
    assert s.deliver(raw).status == "sent"
    assert s.deliver(dict(raw)).status == "duplicate"
    assert len(s.sender.sent) == 1


def test_a_redelivery_with_throttling_off_is_still_not_mailed_twice() -> None:
    s = Setup(RecordingSender(), window=0)
    raw = payload()
    assert s.deliver(raw).status == "sent"
    assert s.deliver(raw).status == "duplicate"
    assert len(s.sender.sent) == 1


# -- throttling and digests --------------------------------------------------------------------------------
def test_a_second_occurrence_inside_the_window_is_suppressed() -> None:
    s = Setup(RecordingSender())
    assert s.deliver(payload(message="card declined for order 1")).status == "sent"
    s.clock.advance(10)
    assert s.deliver(payload(message="card declined for order 2", created=s.clock.now)).status == "suppressed"
    assert len(s.sender.sent) == 1


def test_a_different_fingerprint_is_not_suppressed() -> None:
    s = Setup(RecordingSender())
    assert s.deliver(payload(fingerprint="fp-one")).status == "sent"
    assert s.deliver(payload(fingerprint="fp-two")).status == "sent"
    assert len(s.sender.sent) == 2


def test_suppressed_repeats_are_mailed_as_one_digest_at_the_window_end() -> None:
    s = Setup(RecordingSender())
    s.deliver(payload(message="card declined for order 1"))
    for n in (2, 3, 4):
        s.clock.advance(30)
        assert s.deliver(payload(message=f"card declined for order {n}", created=s.clock.now)).status == "suppressed"

    s.clock.now = 1_700_000_000.0 + WINDOW
    assert s.store.roll_due(now=s.clock.now) == 1
    (item,) = s.store.lease_outbox(now=s.clock.now)
    outcome = s.deliverer.send_item(item.item_id, attempt=0)

    assert outcome.status == "sent"
    assert len(s.sender.sent) == 2
    digest = s.sender.sent[1]
    assert "(3 more in 5 min)" in str(digest["Subject"])
    body = digest.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "3 more occurrences" in text
    assert "card declined for order 4" in text  # the latest sample in full
    assert s.store.load_item(item.item_id) is None  # completed
    assert s.deliverer.send_item(item.item_id, attempt=0).status == "duplicate"
    assert len(s.sender.sent) == 2


def test_a_digest_that_fails_transiently_is_retried_and_not_lost() -> None:
    sender = RecordingSender()
    s = Setup(sender)
    s.deliver(payload())
    s.clock.advance(5)
    s.deliver(payload(created=s.clock.now))
    s.clock.advance(WINDOW)
    s.store.roll_due(now=s.clock.now)
    (item,) = s.store.lease_outbox(now=s.clock.now)
    sender.failures.append(smtplib.SMTPDataError(451, b"later"))
    assert s.deliverer.send_item(item.item_id, attempt=0).status == "retry"
    assert s.store.load_item(item.item_id) is not None
    assert s.deliverer.send_item(item.item_id, attempt=1).status == "sent"
    assert len(sender.sent) == 2


def test_an_alert_over_the_rate_limit_is_folded_into_a_summary() -> None:
    s = Setup(RecordingSender(), rate=Rate(1, 60.0))
    assert s.deliver(payload(fingerprint="fp-one", message="first problem")).status == "sent"
    assert s.deliver(payload(fingerprint="fp-two", message="second problem")).status == "folded"
    assert len(s.sender.sent) == 1

    s.clock.advance(60)
    (item,) = s.store.lease_outbox(now=s.clock.now)
    assert s.deliverer.send_item(item.item_id, attempt=0).status == "sent"
    summary = s.sender.sent[1]
    assert "1 alert held back by the rate limit (1/m)" in str(summary["Subject"])
    body = summary.get_body(("plain",))
    assert body is not None
    assert "[CRITICAL] app.payments: second problem" in body.get_content()


def test_an_unexpected_sender_error_ends_in_the_dead_letters_when_retries_run_out() -> None:
    s = Setup(RecordingSender(RuntimeError("bug in a plugin")), max_retries=0)
    assert s.deliver(payload()).status == "dead"
    (letter,) = s.dead()
    assert letter["error"] == "unexpected"
    assert "bug in a plugin" in letter["reason"]


# -- the state store unreachable -----------------------------------------------------------------------------
class UnreachableStore(MemoryStore):
    """A store whose Redis is down: every decision fails (dead letters still work, to see what happens)."""

    def admit(self, occurrence: Any, *, now: float) -> Any:
        raise StoreError("ConnectionError: Error 111 connecting to redis:6379")


def test_with_the_state_store_down_an_alert_is_retried_then_mailed_unthrottled_rather_than_lost() -> None:
    s = Setup(RecordingSender(), max_retries=2)
    s.deliverer.store = UnreachableStore(s.store.config)
    raw = payload(message="disk full")

    first = s.deliver(raw, attempt=0)
    second = s.deliver(raw, attempt=1)
    last = s.deliver(raw, attempt=2)

    assert (first.status, second.status) == ("retry", "retry")
    assert "state store unavailable" in first.reason
    assert last.status == "sent"
    assert s.sender.subjects == ["[CRITICAL] app.payments: disk full"]


# -- hardening: claims, the boundary, size, refused recipients ------------------------------------------------
class RefusingSender(RecordingSender):
    """Accepts every message, but the server refused ``refused`` among its recipients."""

    def __init__(self, refused: dict[str, tuple[int, bytes]]) -> None:
        super().__init__()
        self.refused = refused
        self.recipients: list[list[str] | None] = []

    def send(self, msg: Email, to: list[str] | None = None) -> dict[str, tuple[int, bytes]]:  # type: ignore[override]
        super().send(msg)
        self.recipients.append(to)
        return {} if to else self.refused


def test_an_alert_claimed_by_another_live_sender_is_retried_later_not_mailed_twice() -> None:
    s = Setup(RecordingSender())
    raw = payload()
    other = "elsewhere.example/1/4242/abcdef"  # another host: its holder cannot be seen to be dead
    assert s.store.claim(raw["id"], other, lease=60.0, now=s.clock()).status == "claimed"

    outcome = s.deliver(raw)

    assert outcome.status == "retry"
    assert outcome.retry_in is not None
    assert 0 < outcome.retry_in <= 60.0 / 10 + 1
    assert "being sent by" in outcome.reason
    assert s.sender.attempts == 0
    s.store.mark_sent(raw["id"])  # the other sender succeeded
    assert s.deliver(raw, attempt=1).status == "duplicate"
    assert s.sender.attempts == 0


def test_a_claim_left_by_a_process_of_this_host_that_died_is_taken_over_at_once() -> None:
    import os
    import socket
    import subprocess
    import sys

    from alerting.consumer.delivery import _pid_namespace

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a PID that no longer exists
    dead = f"{socket.gethostname()}/{_pid_namespace()}/{child.pid}/deadbeef"
    assert child.pid != os.getpid()
    s = Setup(RecordingSender())
    raw = payload()
    s.store.claim(raw["id"], dead, lease=60.0, now=s.clock())

    assert s.deliver(raw).status == "sent"
    assert len(s.sender.sent) == 1


def test_a_transient_failure_releases_the_claim_so_the_retry_can_send() -> None:
    s = Setup(RecordingSender(smtplib.SMTPDataError(451, b"4.3.0 try again later")))
    raw = payload()
    assert s.deliver(raw, attempt=0).status == "retry"
    assert s.deliver(raw, attempt=1).status == "sent"
    assert len(s.sender.sent) == 1


def test_a_recipient_refused_while_others_got_the_mail_gets_a_dead_letter_naming_only_them() -> None:
    sender = RefusingSender({"oncall@example.com": (550, b"5.1.1 no such mailbox")})
    s = Setup(sender)
    s.deliverer.mail = MailConfig("alerts@example.com", ("ops@example.com", "oncall@example.com"))
    raw = payload(message="db down")

    assert s.deliver(raw).status == "sent"

    (letter,) = s.dead()
    assert letter["error"] == "recipients-refused"
    assert letter["recipients"] == ["oncall@example.com"]
    assert "oncall@example.com: 550 5.1.1 no such mailbox" in letter["reason"]
    resend = letter["payload"]
    assert resend["recipients"] == ["oncall@example.com"]
    assert resend["id"] != raw["id"]
    # Replayed, it goes to that recipient alone, even inside the throttle window of its fingerprint.
    assert s.deliver(resend).status == "sent"
    assert sender.recipients[-1] == ["oncall@example.com"]
    assert str(sender.sent[-1]["To"]) == "oncall@example.com"


def test_a_resend_to_an_address_this_worker_does_not_mail_is_refused() -> None:
    s = Setup(RecordingSender())
    outcome = s.deliver(payload(recipients=["attacker@evil.example"]))
    assert outcome.status == "dead"
    assert s.sender.attempts == 0
    assert "ALERTING_MAIL_TO" in s.dead()[0]["reason"]


def test_a_payload_over_the_size_limit_is_dead_lettered_with_its_size_and_a_capped_copy() -> None:
    s = Setup(RecordingSender())
    raw = payload(message="z" * 200_000)
    outcome = s.deliver(raw)
    assert outcome.status == "dead"
    assert s.sender.attempts == 0
    (letter,) = s.dead()
    assert letter["error"] == "too-large"
    assert letter["size"] > 200_000
    assert isinstance(letter["payload"], str)
    assert len(letter["payload"]) == 64 * 1024


class BrokenStore(MemoryStore):
    def admit(self, occurrence: Any, *, now: float) -> Any:
        raise RuntimeError("a bug in the store")


def test_the_boundary_turns_an_unexpected_error_into_a_bounded_retry_then_a_dead_letter() -> None:
    s = Setup(RecordingSender(), max_retries=1)
    s.deliverer.store = BrokenStore(s.store.config)
    raw = payload()
    assert s.deliverer.guarded("alert", raw, attempt=0).status == "retry"
    assert s.deliverer.guarded("alert", raw, attempt=1).status == "dead"
    (letter,) = s.deliverer.store.dead_letters()
    assert "RuntimeError: a bug in the store" in letter["reason"]
    assert letter["payload"] == raw


def test_the_boundary_dead_letters_a_payload_that_breaks_at_once() -> None:
    s = Setup(RecordingSender(), max_retries=5)
    raw = payload(message="lone surrogate \udc80")
    s.deliverer.store = BrokenStore(s.store.config)

    def explode(*_: Any, **__: Any) -> Any:
        raise UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed")

    s.deliverer.store.admit = explode  # type: ignore[method-assign]
    assert s.deliverer.guarded("alert", raw, attempt=0).status == "dead"
    assert "UnicodeEncodeError" in s.deliverer.store.dead_letters()[0]["reason"]


@pytest.mark.parametrize("created", [1e20, float("nan"), float("inf"), -1.0])
def test_a_time_no_date_can_show_is_an_invalid_payload(created: float) -> None:
    s = Setup(RecordingSender())
    assert s.deliver(payload(created=created)).status == "dead"
    assert "'created'" in s.dead()[0]["reason"]


def test_a_message_whose_process_is_killed_under_it_again_and_again_ends_in_the_dead_letters() -> None:
    s = Setup(RecordingSender())
    raw = payload()
    # A hard time limit (or a crash) leaves the message unacknowledged: it comes back, marked redelivered.
    for _ in range(3):
        s.store.count_start("task-1:0")
    outcome = s.deliverer.guarded("alert", raw, attempt=0, redelivered="task-1:0")
    assert outcome.status == "dead"
    assert s.sender.attempts == 0
    (letter,) = s.dead()
    assert letter["error"] == "killed"
    assert "delivered 5 times" in letter["reason"]
    assert letter["payload"] == raw


def test_a_redelivered_message_is_still_sent_the_first_few_times() -> None:
    s = Setup(RecordingSender())
    assert s.deliverer.guarded("alert", payload(), attempt=0, redelivered="task-2:0").status == "sent"


# -- statuses and kinds are enums that read as the strings they replaced ---------------------------------------
class RecordingEvents:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def received(self) -> None: ...

    def outcome(self, status: str, kind: str) -> None:
        self.lines.append(f"{status} {kind}")  # as a log line or a metric label would show them

    def retried(self, kind: str) -> None:
        self.lines.append(f"retried {kind}")

    def latency(self, seconds: float) -> None: ...


def test_statuses_and_kinds_read_as_plain_strings_in_dead_letters_logs_and_metric_labels() -> None:
    s = Setup(RecordingSender(), max_retries=0)
    events = RecordingEvents()
    s.deliverer.events = events
    outcome = s.deliver({"v": 1, "id": "broken"})  # not a valid payload: dead-lettered at once
    assert outcome.status is Status.DEAD
    logged = "%s" % outcome.status  # noqa: UP031 -- as logging formats it
    assert (str(outcome.status), f"{outcome.status}", logged) == ("dead", "dead", "dead")
    assert events.lines == ["dead invalid"]
    (letter,) = s.dead()
    # The record as the Redis store keeps it (JSON, sorted keys) is what it was with plain strings.
    assert '"error": "invalid"' in json.dumps(letter, sort_keys=True)
    assert json.dumps({"error": ErrorKind.TOO_LARGE, "kind": Kind.DIGEST}) == '{"error": "too-large", "kind": "digest"}'


def test_an_outbox_item_that_is_not_a_digest_or_summary_ends_in_the_dead_letters_not_in_a_loop() -> None:
    s = Setup(RecordingSender())
    s.store.restore_item(OutboxItem("digest:odd:1", {"kind": "newsletter"}), now=s.clock.now)
    outcome = s.deliverer.send_item("digest:odd:1", attempt=0)
    assert outcome.status == "dead"
    (letter,) = s.dead()
    assert letter["kind"] == "newsletter"
    assert "unknown outbox item kind 'newsletter'" in letter["reason"]
    assert letter["payload"] == {"kind": "newsletter"}  # kept as it was, for a person to look at
    assert s.store.lease_outbox(now=s.clock.now + 1_000) == []  # completed: not leased again
    assert s.sender.sent == []
