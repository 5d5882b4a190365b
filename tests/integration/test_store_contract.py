"""One contract suite for every state store: the in-memory one (the pure policy under a lock) and Redis (the
same rules in Lua). Whatever the memory store does on a fixed clock, Redis must do too."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alerting.shared import outbox
from alerting.shared.config import Rate
from alerting.shared.stores import Occurrence, OutboxItem, StateStore, StoreConfig
from alerting.shared.stores.memory import MemoryStore
from alerting.shared.stores.redis_store import RedisStore, connect
from alerting.shared.throttle import Verdict

T0 = 1_700_000_000.0
WINDOW = 60.0


def config(**overrides: Any) -> StoreConfig:
    values: dict[str, Any] = {"window": WINDOW, "rate": None, "lease": 30.0, "ttl": 3600.0, "prefix": "t"}
    return StoreConfig(**{**values, **overrides})


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Callable[..., StateStore]]:
    clients: list[redis.Redis] = []

    def make(**overrides: Any) -> StateStore:
        if request.param == "memory":
            return MemoryStore(config(**overrides))
        client = connect(redis_url)
        clients.append(client)
        return RedisStore(client, config(**overrides))

    yield make
    for client in clients:
        client.close()


_ids = iter(range(10**9))


def occ(
    fp: str = "fp-a", *, count: int = 1, at: float = T0, alert_id: str | None = None, subject: str = ""
) -> Occurrence:
    sample = json.dumps({"fingerprint": fp, "created": at, "n": next(_ids)})
    return Occurrence(
        alert_id=alert_id or f"id{next(_ids)}",
        fingerprint=fp,
        count=count,
        first_seen=at,
        last_seen=at,
        sample=sample,
        subject=subject or f"[CRITICAL] app: {fp}",
    )


def test_first_occurrence_is_sent_and_repeats_are_suppressed(make_store: Callable[..., StateStore]) -> None:
    store = make_store()
    assert store.admit(occ("fp-a"), now=T0) is Verdict.SEND
    assert store.admit(occ("fp-a", at=T0 + 1), now=T0 + 1) is Verdict.SUPPRESS
    assert store.admit(occ("fp-b", at=T0 + 2), now=T0 + 2) is Verdict.SEND  # another problem is not throttled


def test_a_redelivered_alert_gets_its_first_verdict_and_is_not_counted_twice(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store()
    first = occ(alert_id="first")
    repeat = occ(at=T0 + 1, alert_id="repeat")
    assert store.admit(first, now=T0) is Verdict.SEND
    assert store.admit(repeat, now=T0 + 1) is Verdict.SUPPRESS
    assert store.admit(first, now=T0 + 2) is Verdict.SEND  # redelivery of the first: still "send", not a repeat
    assert store.admit(repeat, now=T0 + 3) is Verdict.SUPPRESS
    store.roll_due(now=T0 + WINDOW)
    (item,) = store.lease_outbox(now=T0 + WINDOW)
    assert item.body["count"] == 1


def test_an_alert_already_sent_is_a_duplicate(make_store: Callable[..., StateStore]) -> None:
    store = make_store()
    alert = occ(alert_id="mailed")
    assert store.admit(alert, now=T0) is Verdict.SEND
    store.mark_sent("mailed")
    assert store.is_sent("mailed")
    assert store.admit(alert, now=T0 + 1) is Verdict.DUPLICATE


def test_window_end_owes_one_digest_with_count_times_and_latest_sample(make_store: Callable[..., StateStore]) -> None:
    store = make_store()
    store.admit(occ(at=T0), now=T0)
    latest = None
    for i in range(1, 6):
        latest = occ(at=T0 + i, count=2)
        store.admit(latest, now=T0 + i)
    assert store.roll_due(now=T0 + WINDOW - 1) == 0  # not yet
    assert store.lease_outbox(now=T0 + WINDOW - 1) == []
    assert store.roll_due(now=T0 + WINDOW) == 1
    (item,) = store.lease_outbox(now=T0 + WINDOW)
    assert item.kind == "digest"
    assert item.body["count"] == 10
    assert item.body["first"] == T0 + 1
    assert item.body["last"] == T0 + 5
    assert latest is not None
    assert item.body["sample"] == latest.sample
    assert item.body["window_start"] == T0
    assert item.body["window_end"] == T0 + WINDOW


def test_a_storm_that_goes_on_gets_one_digest_per_window_and_a_quiet_window_ends_silently(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store()
    assert store.admit(occ(at=T0), now=T0) is Verdict.SEND
    store.admit(occ(at=T0 + 10), now=T0 + 10)
    assert store.roll_due(now=T0 + WINDOW) == 1  # digest 1, next window opens at once
    assert store.admit(occ(at=T0 + WINDOW + 5), now=T0 + WINDOW + 5) is Verdict.SUPPRESS  # not a new "first"
    assert store.roll_due(now=T0 + 2 * WINDOW) == 1  # digest 2
    assert store.roll_due(now=T0 + 3 * WINDOW) == 0  # quiet window: closes, no mail
    assert store.status(now=T0 + 3 * WINDOW).open_windows == 0
    assert store.admit(occ(at=T0 + 3 * WINDOW + 1), now=T0 + 3 * WINDOW + 1) is Verdict.SEND  # a new incident
    items = store.lease_outbox(now=T0 + 3 * WINDOW + 1)
    assert [i.body["count"] for i in items] == [1, 1]


def test_a_coalesced_first_message_opens_the_window_with_its_repeats(make_store: Callable[..., StateStore]) -> None:
    store = make_store()
    assert store.admit(occ(count=5), now=T0) is Verdict.SEND
    store.roll_due(now=T0 + WINDOW)
    (item,) = store.lease_outbox(now=T0 + WINDOW)
    assert item.body["count"] == 4


def test_window_zero_turns_throttling_off(make_store: Callable[..., StateStore]) -> None:
    store = make_store(window=0.0)
    assert [store.admit(occ(at=T0 + i), now=T0 + i) for i in range(3)] == [Verdict.SEND] * 3
    assert store.status(now=T0).open_windows == 0


def test_rate_limit_folds_overflow_into_one_summary_sent_when_a_token_is_back(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store(rate=Rate(2, 60.0))  # one token every 30 s
    verdicts = [store.admit(occ(f"fp-{i}", subject=f"problem {i}"), now=T0) for i in range(5)]
    assert verdicts == [Verdict.SEND, Verdict.SEND, Verdict.FOLD, Verdict.FOLD, Verdict.FOLD]
    assert store.status(now=T0).folded == 3
    assert store.lease_outbox(now=T0 + 1) == []  # no token yet
    # A new alert does not jump the queue: the waiting summary gets the next token.
    assert store.admit(occ("fp-late", subject="late problem"), now=T0 + 31) is Verdict.FOLD
    (summary,) = store.lease_outbox(now=T0 + 31)
    assert summary.kind == "summary"
    listed = {e["subject"]: e["count"] for e in summary.body["entries"]}
    assert listed == {"problem 2": 1, "problem 3": 1, "problem 4": 1, "late problem": 1}
    assert store.status(now=T0 + 31).folded == 0


def test_a_summary_counts_folds_per_fingerprint_with_the_latest_subject_since_the_first_fold(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store(window=0.0, rate=Rate(1, 60.0))  # no windows: every admission needs a token
    assert store.admit(occ("fp-a", subject="a #0"), now=T0) is Verdict.SEND
    folded = [
        store.admit(occ("fp-a", at=T0 + 1, subject="a #1"), now=T0 + 1),
        store.admit(occ("fp-b", at=T0 + 2, subject="b #2"), now=T0 + 2),
        store.admit(occ("fp-a", at=T0 + 3, subject="a #3"), now=T0 + 3),
    ]
    assert folded == [Verdict.FOLD] * 3
    assert store.status(now=T0 + 3).folded == 2
    (item,) = store.lease_outbox(now=T0 + 100)
    assert item.value == outbox.Summary(
        since=T0 + 1, entries=(outbox.SummaryEntry("fp-a", 2, "a #3"), outbox.SummaryEntry("fp-b", 1, "b #2"))
    )


def test_the_outbox_is_leased_summary_first_then_digests_oldest_first_one_token_each(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store(rate=Rate(2, 60.0))  # one token every 30 s
    for fp in ("fp-a", "fp-b"):
        assert store.admit(occ(fp), now=T0) is Verdict.SEND
        assert store.admit(occ(fp, at=T0 + 1), now=T0 + 1) is Verdict.SUPPRESS
    assert store.admit(occ("fp-c", at=T0 + 3), now=T0 + 3) is Verdict.FOLD
    assert store.roll_due(now=T0 + WINDOW, limit=1) == 1  # windows end by end time, then fingerprint: fp-a
    assert store.roll_due(now=T0 + WINDOW + 5) == 1  # fp-b, ready 5 s later
    # A new alert must leave the three tokens this waiting mail needs: the bucket holds two.
    assert store.admit(occ("fp-d", at=T0 + 100), now=T0 + 100) is Verdict.FOLD
    leased = store.lease_outbox(now=T0 + 100)
    assert [i.item_id for i in leased] == ["summary:3", "digest:fp-a:1"]  # two tokens: the third item waits
    assert [i.item_id for i in store.lease_outbox(now=T0 + 140)] == ["digest:fp-b:2"]


def test_a_lease_that_is_not_completed_comes_back_and_a_completed_one_does_not(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store()
    store.admit(occ(at=T0), now=T0)
    store.admit(occ(at=T0 + 1), now=T0 + 1)
    store.roll_due(now=T0 + WINDOW)
    (item,) = store.lease_outbox(now=T0 + WINDOW)
    assert store.lease_outbox(now=T0 + WINDOW + 29) == []  # leased to the first taker
    (again,) = store.lease_outbox(now=T0 + WINDOW + 31)  # the taker died: another worker gets it
    assert again.item_id == item.item_id
    store.complete(item.item_id)
    assert store.is_sent(item.item_id)
    assert store.load_item(item.item_id) is None
    assert store.lease_outbox(now=T0 + WINDOW + 100) == []


def test_a_restored_item_is_leased_again(make_store: Callable[..., StateStore]) -> None:
    store = make_store()
    store.admit(occ(at=T0), now=T0)
    store.admit(occ(at=T0 + 1), now=T0 + 1)
    store.roll_due(now=T0 + WINDOW)
    (item,) = store.lease_outbox(now=T0 + WINDOW)
    store.complete(item.item_id)
    store.restore_item(OutboxItem(item.item_id, item.body), now=T0 + 100)
    (back,) = store.lease_outbox(now=T0 + 100)
    assert back.item_id == item.item_id
    assert back.body["count"] == item.body["count"]


def test_dead_letters_are_kept_newest_first_and_can_be_removed_or_purged(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store()
    for i in range(3):
        store.dead_letter({"id": f"a{i}", "reason": "550"})
    assert [d["id"] for d in store.dead_letters()] == ["a2", "a1", "a0"]
    assert store.remove_dead_letter({"id": "a1", "reason": "550"})
    assert not store.remove_dead_letter({"id": "a1", "reason": "550"})
    assert store.status(now=T0).dead_letters == 2
    assert store.purge_dead_letters() == 2
    assert store.dead_letters() == []


def test_status_counts_windows_owed_digests_and_folded_alerts(make_store: Callable[..., StateStore]) -> None:
    store = make_store(rate=Rate(1, 3600.0))
    store.admit(occ("fp-a"), now=T0)
    store.admit(occ("fp-a", at=T0 + 1), now=T0 + 1)  # owes a digest
    store.admit(occ("fp-b"), now=T0 + 2)  # folded: no token left
    status = store.status(now=T0 + 2)
    assert (status.open_windows, status.owed_digests, status.folded) == (2, 1, 1)


def test_concurrent_admissions_of_one_fingerprint_send_exactly_once(make_store: Callable[..., StateStore]) -> None:
    first = make_store()
    # Redis: four clients on one database, as four workers would have. Memory: one store shared by four threads.
    stores = [first, *(make_store() for _ in range(3))] if isinstance(first, RedisStore) else [first] * 4
    verdicts: list[Verdict] = []
    lock = threading.Lock()

    def worker(store: StateStore, n: int) -> None:
        for i in range(50):
            v = store.admit(occ("storm", at=T0 + i, alert_id=f"w{n}-{i}"), now=T0 + i * 0.01)
            with lock:
                verdicts.append(v)

    threads = [threading.Thread(target=worker, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts.count(Verdict.SEND) == 1
    assert verdicts.count(Verdict.SUPPRESS) == 199
    stores[0].roll_due(now=T0 + WINDOW + 1)
    (digest,) = stores[0].lease_outbox(now=T0 + WINDOW + 1)
    assert digest.body["count"] == 199  # every occurrence is accounted for


# -- the two stores against each other on random histories -----------------------------------------------------
# Every rule of alerting.shared.throttle that the Lua scripts restate is reached by some history here: admit
# (windows, redeliveries keeping their verdict, duplicates of sent alerts), fold into the summary (count per
# fingerprint, latest subject, first fold time), the tokens reserved for waiting mail, roll (order and limit),
# lease order (summary first, then oldest ready, one token each, limit), leases running out, restored items,
# claims (busy, re-claim by the holder, release, steal, sent) and redelivery counts. After every step both stores
# must have answered alike and report the same status. ``pytest --hypothesis-show-statistics`` lists what the
# histories reached.
_index = st.integers(0, 7)  # picks one of the alert ids (or completed items) seen so far
_admit = st.tuples(
    st.just("admit"), st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 3), st.one_of(st.none(), _index)
)
_throttle_op = st.one_of(
    # Admissions three times as likely as any other step: a rate limit is reached by admissions close together.
    *[_admit] * 3,
    st.tuples(st.just("roll"), st.integers(1, 3)),
    st.tuples(st.just("lease"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("restore"), _index),
    st.tuples(st.just("mark_sent"), _index),
)
_step = st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 8.0, 12.0, 45.0])
_owner = st.sampled_from(["w1", "w2", "w3"])
_claim_op = st.one_of(
    st.tuples(st.just("claim"), _index, _owner, st.sampled_from(["", "w1", "w2"])),
    st.tuples(st.just("release"), _index, _owner),
    st.tuples(st.just("mark_sent"), _index),
    st.tuples(st.just("count_start"), st.integers(0, 2)),
)
CLAIM_LEASE = 10_000.0  # Redis times claims on its own clock: longer than any history, so neither store expires one


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(st.tuples(_throttle_op, _step), min_size=30, max_size=60),
    # Window 0 (throttling off) sends every admission to the rate limit: the same fingerprint folds again and again.
    window=st.sampled_from([30.0, 0.0]),
    rate=st.sampled_from([Rate(2, 30.0), Rate(3, 60.0), None]),
)
def test_redis_and_memory_stores_agree_on_any_history(
    redis_url: str, history: list[tuple[Any, float]], window: float, rate: Rate | None
) -> None:
    event(f"window {window:g}, rate {rate}")
    _agree(redis_url, config(window=window, rate=rate, lease=10.0), history)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(st.tuples(st.one_of(_admit, _claim_op), _step), min_size=10, max_size=40))
def test_redis_and_memory_stores_agree_on_claims_and_redelivery_counts(
    redis_url: str, history: list[tuple[Any, float]]
) -> None:
    _agree(redis_url, config(), history)


def _agree(redis_url: str, cfg: StoreConfig, history: list[tuple[Any, float]]) -> None:
    client = connect(redis_url)
    client.flushdb()
    stores: list[StateStore] = [MemoryStore(cfg), RedisStore(client, cfg)]
    now = T0
    seen: list[str] = []  # alert ids admitted so far
    done: list[OutboxItem] = []  # items leased and completed (by the memory store; Redis names them alike)
    try:
        for n, ((op, *args), step) in enumerate(history):
            now += step
            results = [_apply(store, i, op, args, now=now, n=n, seen=seen, done=done) for i, store in enumerate(stores)]
            _note(op, results[0])
            if op == "admit" and args[2] is None:
                seen.append(f"{args[0]}-{n}")
            assert results[0] == results[1], (n, op, args, now)
            assert stores[0].status(now=now) == stores[1].status(now=now), (n, op, args, now)
        for alert_id in seen:
            assert stores[0].decision(alert_id) == stores[1].decision(alert_id)
            assert stores[0].is_sent(alert_id) == stores[1].is_sent(alert_id)
    finally:
        client.close()


def _note(op: str, result: Any) -> None:
    """Which rules a history reached (``pytest --hypothesis-show-statistics`` lists them)."""
    if op == "admit":
        event(f"admit: {result}")
    elif op == "lease":
        for _, value, _ in result:
            if isinstance(value, outbox.Summary):
                top = max(e.count for e in value.entries)
                event(f"lease: summary of {len(value.entries)} fingerprint(s), max count {top}")
        event(f"lease: {len(result)} item(s)")
    elif op == "claim":
        event(f"claim: {result[0]}")
    elif op == "roll":
        event(f"roll: {result} digest(s)")


def _apply(
    store: StateStore, which: int, op: str, args: list[Any], *, now: float, n: int, seen: list[str], done: list[Any]
) -> object:
    """One step of a history on one store; returns what a caller would see."""
    pick = seen[args[0] % len(seen)] if seen and op in ("claim", "release", "mark_sent") else "none"
    if op == "admit":
        fp, count, redeliver = args
        alert_id = seen[redeliver % len(seen)] if redeliver is not None and seen else f"{fp}-{n}"
        sample = json.dumps({"fp": fp, "t": now, "n": n})
        return store.admit(Occurrence(alert_id, fp, count, now, now, sample, f"subject {fp} #{n}"), now=now).value
    if op == "roll":
        return store.roll_due(now=now, limit=args[0])
    if op == "lease":
        limit, complete = args
        items = store.lease_outbox(now=now, limit=limit)
        for item in items if complete else []:
            store.complete(item.item_id)
            if which == 0:
                done.append(item)
        # In lease order (a rule), typed and in the JSON form: Lua must write what outbox.from_dict reads.
        return [(i.item_id, i.value, json.dumps(i.body, sort_keys=True)) for i in items]
    if op == "restore":
        if not done:
            return None
        item = done[args[0] % len(done)]
        back = store.load_item(item.item_id)
        store.restore_item(back or item, now=now)  # as `alerting dead-letters replay` puts an item back
        return back is None
    if op == "claim":
        claim = store.claim(pick, args[1], lease=CLAIM_LEASE, now=now, steal=args[2])
        return claim.status, claim.holder
    if op == "release":
        store.release(pick, args[1])
        return None
    if op == "mark_sent":
        store.mark_sent(pick)
        return store.is_sent(pick)
    return store.count_start(f"task-{args[0]}")


def test_a_claim_is_held_by_one_owner_until_released_sent_or_taken_over_from_a_dead_holder(
    make_store: Callable[..., StateStore],
) -> None:
    store = make_store()
    first = store.claim("id-1", "host/ns/1/a", lease=30.0, now=T0)
    assert first.status == "claimed"
    busy = store.claim("id-1", "host/ns/2/b", lease=30.0, now=T0 + 1)
    assert busy.status == "busy"
    assert busy.holder == "host/ns/1/a"
    assert 0 < busy.expires_in <= 30.0
    assert store.claim("id-1", "host/ns/1/a", lease=30.0, now=T0 + 1).status == "claimed"  # the holder, again
    store.release("id-1", "host/ns/2/b")  # not the holder: no effect
    assert store.claim("id-1", "host/ns/2/b", lease=30.0, now=T0 + 1).status == "busy"
    store.release("id-1", "host/ns/1/a")
    assert store.claim("id-1", "host/ns/2/b", lease=30.0, now=T0 + 2).status == "claimed"
    taken = store.claim("id-1", "host/ns/3/c", lease=30.0, now=T0 + 3, steal="host/ns/2/b")
    assert taken.status == "claimed"
    store.mark_sent("id-1")
    assert store.claim("id-1", "host/ns/4/d", lease=30.0, now=T0 + 4).status == "sent"


def test_redeliveries_of_a_message_are_counted(make_store: Callable[..., StateStore]) -> None:
    store = make_store()
    assert [store.count_start("task:0") for _ in range(3)] == [1, 2, 3]
    assert store.count_start("task:1") == 1
