"""alerting.shared.throttle: the pure policy, on fixed clocks. First occurrence mailed at once, repeats counted into
one digest per window, a cluster-wide token bucket, folds into a summary, the lease order and claims."""

from __future__ import annotations

from typing import Any

import pytest

from alerting.shared.config import Rate
from alerting.shared.outbox import Summary, SummaryEntry
from alerting.shared.throttle import (
    Bucket,
    Decision,
    Digest,
    Occurrence,
    Verdict,
    Window,
    admit,
    decide,
    due_windows,
    fold,
    may_claim,
    plan_lease,
    refill,
    roll,
    seconds_until_token,
    take_token,
)

T0 = 1_000.0
LENGTH = 300.0


def occur(
    window: Window | None, now: float, sample: str, *, count: int = 1, first: float | None = None
) -> tuple[Verdict, Window | None]:
    return admit(
        window,
        now=now,
        length=LENGTH,
        count=count,
        first_seen=now if first is None else first,
        last_seen=now,
        sample=sample,
    )


# -- admit -------------------------------------------------------------------------------------------------
def test_first_occurrence_is_sent_and_opens_a_window() -> None:
    verdict, window = occur(None, T0, "s1")
    assert verdict is Verdict.SEND
    assert window == Window(opened=T0, end=T0 + LENGTH)


def test_repeats_inside_the_window_are_suppressed_and_counted() -> None:
    _, window = occur(None, T0, "s1")
    verdicts = []
    for i, t in enumerate((T0 + 10, T0 + 20, T0 + 299)):
        verdict, window = occur(window, t, f"repeat-{i}")
        verdicts.append(verdict)
    assert verdicts == [Verdict.SUPPRESS] * 3
    assert window is not None
    assert window.repeats == 3
    assert window.first == T0 + 10
    assert window.last == T0 + 299
    assert window.sample == "repeat-2"
    assert (window.opened, window.end) == (T0, T0 + LENGTH)


def test_a_late_arriving_older_repeat_does_not_replace_the_latest_sample() -> None:
    _, window = occur(None, T0, "s1")
    _, window = occur(window, T0 + 50, "newest")
    verdict, window = admit(
        window, now=T0 + 60, length=LENGTH, count=1, first_seen=T0 + 5, last_seen=T0 + 5, sample="older"
    )
    assert verdict is Verdict.SUPPRESS
    assert window is not None
    assert window.sample == "newest"
    assert window.first == T0 + 5
    assert window.last == T0 + 50
    assert window.repeats == 2


def test_a_coalesced_first_message_is_sent_and_its_extra_occurrences_are_owed_in_the_digest() -> None:
    verdict, window = occur(None, T0, "batch", count=5, first=T0 - 0.9)
    assert verdict is Verdict.SEND
    assert window is not None
    assert window.repeats == 4
    assert window.first == T0 - 0.9
    assert window.last == T0
    assert window.sample == "batch"


def test_a_coalesced_repeat_adds_its_whole_count() -> None:
    _, window = occur(None, T0, "s1")
    _, window = occur(window, T0 + 1, "batch", count=40)
    assert window is not None
    assert window.repeats == 40


@pytest.mark.parametrize("length", [0.0, -1.0])
def test_window_length_zero_disables_throttling(length: float) -> None:
    window = None
    for t in (T0, T0 + 1, T0 + 2):
        verdict, window = admit(window, now=t, length=length, count=1, first_seen=t, last_seen=t, sample="s")
        assert verdict is Verdict.SEND
        assert window is None


# -- roll --------------------------------------------------------------------------------------------------
def test_roll_before_the_window_end_changes_nothing() -> None:
    _, window = occur(None, T0, "s1")
    _, window = occur(window, T0 + 5, "s2")
    assert window is not None
    assert roll("fp", window, now=T0 + LENGTH - 0.001, length=LENGTH) == (None, window)


def test_roll_at_the_window_end_owes_a_digest_and_opens_the_next_window() -> None:
    _, window = occur(None, T0, "first")
    for t, sample in ((T0 + 10, "a"), (T0 + 100, "b"), (T0 + 250, "latest")):
        _, window = occur(window, t, sample)
    assert window is not None
    end = T0 + LENGTH
    digest, following = roll("fp1", window, now=end, length=LENGTH)
    assert digest == Digest(
        fingerprint="fp1",
        seq=1,
        count=3,
        first=T0 + 10,
        last=T0 + 250,
        sample="latest",
        window_start=T0,
        window_end=end,
    )
    assert following == Window(opened=end, end=end + LENGTH, seq=1)


def test_a_storm_that_goes_on_gets_one_digest_per_window() -> None:
    _, window = occur(None, T0, "first")
    digests = []
    now = T0
    for _ in range(3):  # three windows, repeats in each
        for _ in range(4):
            now += 50
            _, window = occur(window, now, f"at-{now}")
        assert window is not None
        now = window.end
        digest, window = roll("fp", window, now=now, length=LENGTH)
        assert digest is not None
        digests.append(digest)
    assert [d.seq for d in digests] == [1, 2, 3]
    assert [d.count for d in digests] == [4, 4, 4]


def test_a_quiet_window_closes_without_a_digest() -> None:
    _, window = occur(None, T0, "only")
    assert window is not None
    assert roll("fp", window, now=T0 + LENGTH, length=LENGTH) == (None, None)


def test_after_a_quiet_window_closes_the_next_occurrence_is_sent_again() -> None:
    _, window = occur(None, T0, "s1")
    assert window is not None
    _, window = roll("fp", window, now=T0 + LENGTH, length=LENGTH)
    verdict, _ = occur(window, T0 + LENGTH + 1, "s2")
    assert verdict is Verdict.SEND


# -- token bucket ------------------------------------------------------------------------------------------
RATE = Rate(3, 60.0)  # 3 per minute: one token every 20 s


def test_bucket_allows_the_limit_then_refuses() -> None:
    bucket = None
    results = []
    for _ in range(4):
        allowed, bucket = take_token(bucket, now=T0, rate=RATE)
        results.append(allowed)
    assert results == [True, True, True, False]


def test_bucket_refills_at_the_rate() -> None:
    bucket: Bucket | None = Bucket(tokens=0.0, updated=T0)
    allowed, bucket = take_token(bucket, now=T0 + 19.9, rate=RATE)
    assert not allowed
    allowed, bucket = take_token(bucket, now=T0 + 20.0, rate=RATE)
    assert allowed
    allowed, _ = take_token(bucket, now=T0 + 20.0, rate=RATE)
    assert not allowed


def test_bucket_never_holds_more_than_the_limit() -> None:
    bucket: Bucket | None = Bucket(tokens=0.0, updated=T0)
    allowed = []
    for _ in range(5):
        ok, bucket = take_token(bucket, now=T0 + 86_400, rate=RATE)
        allowed.append(ok)
    assert allowed == [True, True, True, False, False]


def test_a_clock_going_backwards_does_not_mint_tokens() -> None:
    bucket: Bucket | None = Bucket(tokens=0.0, updated=T0)
    allowed, _ = take_token(bucket, now=T0 - 3_600, rate=RATE)
    assert not allowed


@pytest.mark.parametrize(
    ("tokens", "reserved", "allowed"), [(3.0, 0, True), (3.0, 2, True), (2.0, 2, False), (1.0, 1, False)]
)
def test_reserved_tokens_are_left_for_mail_already_waiting(tokens: float, reserved: int, allowed: bool) -> None:
    ok, bucket = take_token(Bucket(tokens=tokens, updated=T0), now=T0, rate=RATE, reserved=reserved)
    assert ok is allowed
    assert bucket is not None
    assert bucket.tokens == (tokens - 1 if allowed else tokens)


def test_no_rate_always_allows() -> None:
    for _ in range(1_000):
        allowed, bucket = take_token(None, now=T0, rate=None)
        assert allowed
        assert bucket is None


def test_seconds_until_token_says_how_long_until_the_next_send_is_allowed() -> None:
    assert seconds_until_token(None, now=T0, rate=RATE) == 0.0
    assert seconds_until_token(Bucket(0.0, T0), now=T0, rate=None) == 0.0
    assert seconds_until_token(Bucket(0.0, T0), now=T0, rate=RATE) == pytest.approx(20.0)
    assert seconds_until_token(Bucket(0.0, T0), now=T0 + 5, rate=RATE) == pytest.approx(15.0)
    assert seconds_until_token(Bucket(1.5, T0), now=T0, rate=RATE) == 0.0


# -- one admission, every rule (decide) ----------------------------------------------------------------------
def occurrence(fp: str = "fp", *, alert_id: str = "id-1", subject: str = "subject") -> Occurrence:
    return Occurrence(alert_id, fp, 1, T0, T0, "sample", subject)


def decide_at(now: float, occ: Occurrence, **state: Any) -> Decision:
    values: dict[str, Any] = {
        "sent": False,
        "prior": None,
        "window": None,
        "bucket": None,
        "pending": None,
        "ready_items": 0,
        "length": LENGTH,
        "rate": RATE,
    }
    return decide(occ, now=now, **{**values, **state})


def test_an_alert_already_mailed_is_a_duplicate_and_changes_nothing() -> None:
    bucket = Bucket(3.0, T0)
    d = decide_at(T0, occurrence(), sent=True, bucket=bucket)
    assert (d.verdict, d.window, d.bucket, d.pending, d.record) == (Verdict.DUPLICATE, None, bucket, None, False)


def test_a_redelivered_alert_keeps_its_verdict_and_is_not_counted_again() -> None:
    window = Window(opened=T0, end=T0 + LENGTH, repeats=1)
    d = decide_at(T0 + 1, occurrence(), prior=Verdict.SUPPRESS, window=window)
    assert (d.verdict, d.window, d.record) == (Verdict.SUPPRESS, None, False)


def test_a_send_without_a_token_beyond_those_reserved_is_folded_into_the_pending_summary() -> None:
    # Two tokens, two outbox items ready: a new alert must leave both for them.
    d = decide_at(T0, occurrence("fp-x", subject="x happened"), bucket=Bucket(2.0, T0), ready_items=2)
    assert d.verdict is Verdict.FOLD
    assert d.record
    assert d.pending == Summary(since=T0, entries=(SummaryEntry("fp-x", 1, "x happened"),))
    assert d.window is not None  # its window is open all the same: repeats are counted into its digest
    assert d.bucket == Bucket(2.0, T0)


def test_a_pending_summary_reserves_a_token_too() -> None:
    pending = fold(None, fingerprint="fp-x", subject="x", now=T0 - 5)
    assert decide_at(T0, occurrence("fp-y"), bucket=Bucket(1.5, T0), pending=pending).verdict is Verdict.FOLD
    assert decide_at(T0, occurrence("fp-y"), bucket=Bucket(2.0, T0), pending=pending).verdict is Verdict.SEND


def test_folding_counts_per_fingerprint_keeps_the_latest_subject_and_the_first_fold_time() -> None:
    pending = None
    for t, fp, subject in ((T0, "b", "b first"), (T0 + 1, "a", "a first"), (T0 + 2, "b", "b latest")):
        pending = fold(pending, fingerprint=fp, subject=subject, now=t)
    assert pending == Summary(since=T0, entries=(SummaryEntry("a", 1, "a first"), SummaryEntry("b", 2, "b latest")))


def test_one_refill_rule_serves_every_caller() -> None:
    assert refill(None, now=T0, rate=RATE) == 3.0  # a bucket never seen is full
    assert refill(Bucket(0.0, T0), now=T0 + 10, rate=RATE) == pytest.approx(0.5)
    assert refill(Bucket(2.5, T0), now=T0 + 3600, rate=RATE) == 3.0
    assert refill(Bucket(1.0, T0), now=T0 - 60, rate=RATE) == 1.0


# -- roll order, lease order, claims ---------------------------------------------------------------------------
def test_due_windows_end_in_order_of_their_end_then_fingerprint_up_to_the_limit() -> None:
    windows = {
        "c": Window(opened=T0, end=T0 + 10),
        "b": Window(opened=T0, end=T0 + 20),
        "a": Window(opened=T0, end=T0 + 20),
        "z": Window(opened=T0, end=T0 + 99),  # not due
    }
    assert due_windows(windows, now=T0 + 50, limit=10) == ["c", "a", "b"]
    assert due_windows(windows, now=T0 + 50, limit=2) == ["c", "a"]


def test_the_lease_takes_the_summary_first_then_the_oldest_ready_items_one_token_each() -> None:
    ready = [(T0 + 2, "digest:b:2"), (T0 + 1, "digest:a:9"), (T0 + 1, "digest:a:1")]
    plan = plan_lease(ready, summary_pending=True, bucket=Bucket(3.0, T0), now=T0 + 5, rate=RATE, limit=10)
    assert (plan.summary, plan.items) == (True, ["digest:a:1", "digest:a:9"])  # three tokens: the third waits
    assert plan.bucket is not None
    assert plan.bucket.tokens < 1.0


def test_the_lease_stops_at_its_limit_and_without_a_rate_takes_everything_ready() -> None:
    ready = [(T0, f"digest:f:{n}") for n in range(5)]
    assert plan_lease(ready, summary_pending=True, bucket=None, now=T0, rate=None, limit=3).items == [
        "digest:f:0",
        "digest:f:1",
    ]
    nothing = plan_lease(ready, summary_pending=True, bucket=None, now=T0, rate=None, limit=0)
    assert (nothing.summary, nothing.items) == (False, [])


@pytest.mark.parametrize(
    ("holder", "expires", "owner", "steal", "allowed"),
    [
        ("", T0, "me", "", True),  # nobody holds it
        ("other", T0 + 5, "me", "", False),  # held
        ("other", T0, "me", "", True),  # the holder's lease ran out
        ("me", T0 + 5, "me", "", True),  # mine already
        ("dead", T0 + 5, "me", "dead", True),  # its holder is known to be dead
        ("other", T0 + 5, "me", "dead", False),  # another holder than the dead one
    ],
)
def test_may_claim(holder: str, expires: float, owner: str, steal: str, allowed: bool) -> None:
    assert may_claim(holder, expires, owner=owner, steal=steal, now=T0) is allowed
