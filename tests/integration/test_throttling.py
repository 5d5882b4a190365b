"""Throttling, digests and the cluster-wide rate limit with several real worker processes sharing one Redis."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink, Received
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import task_outcomes, wait_until, wait_until_settled

WINDOW = {"ALERTING_THROTTLE_WINDOW": "3"}


def _digest_counts(mails: list[Received]) -> list[int]:
    return [int(m.message["X-Alerting-Digest-Count"]) for m in mails if m.message["X-Alerting-Digest-Count"]]


def _storm(log: logging.Logger, threads: int, per_thread: int, message: str = "db connection refused") -> None:
    def run() -> None:
        for i in range(per_thread):
            try:
                raise ConnectionRefusedError(f"attempt {i}")
            except ConnectionRefusedError:
                log.critical(message, exc_info=True)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_300_identical_criticals_from_3_threads_give_one_mail_then_one_digest_of_299(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    for _ in range(2):
        start_worker(WINDOW)
    log = logging.getLogger("test.storm")
    handler = make_handler(log)

    _storm(log, threads=3, per_thread=100)

    (first,) = mail_sink.wait_for(1)
    assert first.subject == "[CRITICAL] test.storm: db connection refused"
    assert first.message["X-Alerting-Digest-Count"] is None
    mails = mail_sink.wait_for(2, timeout=15)
    wait_until_settled(redis_client, queue)  # every message handled, nothing owed: no further mail can come
    assert len(mail_sink.received) == 2
    digest = mails[1]
    assert _digest_counts(mails) == [299]
    assert "(299 more in 3 s)" in digest.subject
    assert "Traceback" in digest.text()  # the latest sample, in full
    assert handler.stats()["coalesced"] > 250  # most repeats never became broker messages


def test_distinct_alerts_are_not_throttled_by_a_storm(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(WINDOW)
    start_worker(WINDOW)
    log = logging.getLogger("test.distinct")
    make_handler(log)

    storm = threading.Thread(target=_storm, args=(log, 2, 200))
    storm.start()
    for name in ("disk full", "cert expired", "queue stuck", "backup failed", "dns down"):
        log.critical("%s on host-%d", name, 1, extra={"alert_key": name})
    storm.join()

    mails = mail_sink.wait_for(6)
    subjects = {m.subject for m in mails}
    for name in ("disk full", "cert expired", "queue stuck", "backup failed", "dns down"):
        assert f"[CRITICAL] test.distinct: {name} on host-1" in subjects
    assert "[CRITICAL] test.distinct: db connection refused" in subjects


def test_rate_limit_folds_the_overflow_into_a_summary_naming_every_folded_alert(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    limit = {"ALERTING_RATE_LIMIT": "3/4s", **WINDOW}  # 3 at once, then one token every 1.3 s
    start_worker(limit)
    start_worker(limit)
    log = logging.getLogger("test.ratelimit")
    make_handler(log)
    problems = [f"problem number {i}" for i in range(8)]

    for p in problems:
        log.critical(p, extra={"alert_key": p})

    mails = mail_sink.wait_for(4, timeout=15)
    singles = [m for m in mails if "held back by the rate limit" not in m.subject]
    summaries = [m for m in mails if "held back by the rate limit" in m.subject]
    assert len(singles) == 3
    assert len(summaries) == 1
    summary = summaries[0].text()
    folded = [p for p in problems if not any(p in m.subject for m in singles)]
    assert len(folded) == 5
    for p in folded:
        assert re.search(rf"1 × \[CRITICAL\] test.ratelimit: {p}\b", summary), p
    assert "5 alerts held back by the rate limit (3/4s)" in summaries[0].subject


def test_an_owed_digest_is_sent_although_the_worker_that_opened_the_window_died(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    opener = start_worker(WINDOW)
    log = logging.getLogger("test.orphan")
    handler = make_handler(log, coalesce_interval=0)  # every occurrence its own message: all seen by the opener
    for i in range(5):
        log.critical("replica lag too high", extra={"lag": i})
    mail_sink.wait_for(1)
    assert handler.flush(timeout=5)
    wait_until(lambda: len(task_outcomes(opener)) == 5)  # the opener has counted the four repeats
    opener.kill()  # SIGKILL, before the window ends: it can never send the digest itself

    successor = start_worker(WINDOW)
    mails = mail_sink.wait_for(2, timeout=15)
    assert _digest_counts(mails) == [4]
    assert successor.proc is not None
    assert successor.proc.poll() is None


def test_counts_add_up_under_concurrency(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    env = {"ALERTING_THROTTLE_WINDOW": "1.5"}
    for _ in range(3):
        start_worker(env)
    handlers = [make_handler(logging.getLogger(f"test.counts.{i}")) for i in range(2)]  # two "processes"

    def app(n: int) -> None:
        log = logging.getLogger(f"test.counts.{n % 2}")
        log.propagate = False
        for i in range(250):
            log.critical("cache stampede", extra={"alert_key": "stampede", "i": i})
            if i % 50 == 0:
                time.sleep(0.3)  # the storm outlives a window or two

    pool = [threading.Thread(target=app, args=(n,)) for n in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for h in handlers:
        assert h.flush(timeout=5)

    def all_counted() -> bool:
        mails = mail_sink.received
        immediate = [m for m in mails if not m.message["X-Alerting-Digest-Count"]]
        return len(immediate) + sum(_digest_counts(mails)) >= 1000

    wait_until(all_counted, timeout=20)
    wait_until_settled(redis_client, queue)  # every message handled, no digest owed: the count is final
    mails = mail_sink.received
    immediate = [m for m in mails if not m.message["X-Alerting-Digest-Count"]]
    assert len(immediate) + sum(_digest_counts(mails)) == 1000  # every occurrence reported exactly once
    assert len(mails) < 12  # ... in a handful of mails, not a thousand
