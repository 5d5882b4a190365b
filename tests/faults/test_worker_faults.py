"""The worker under hostile input and slow servers: whatever is on its queue and however the SMTP server behaves,
every message ends mailed, retried or in the dead letters; never a dead worker, a duplicate, or nothing at all."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from alerting.producer.transport import CeleryTransport, publisher_app
from alerting.shared.wire import Payload
from alerting.testing.mailsink import MailSink, Tarpit
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until, wait_until_settled
from tests.unit.factories import make_payload


def _publish(redis_url: str, queue: str, payloads: Sequence[Payload]) -> None:
    transport = CeleryTransport(publisher_app(redis_url), queue, owned=True)
    try:
        transport.publish_many(list(payloads))
    finally:
        transport.close()


def _letters(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(r) for r in dead_letters(client)]


def _envelope(task_args: Any, *, body: str | None = None) -> str:
    """A task message as kombu writes it to the Redis list; ``body`` replaces the encoded body."""
    task_id = str(uuid.uuid4())
    encoded = base64.b64encode(json.dumps(task_args).encode()).decode()
    return json.dumps(
        {
            "body": encoded if body is None else body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "py", "task": "alerting.deliver", "id": task_id, "retries": 0, "root_id": task_id},
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "alerts"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


# -- Fault 2: one poison message killed the worker ---------------------------------------------------------
def test_unreadable_messages_are_dead_lettered_once_and_the_worker_goes_on_to_mail_the_alert_behind_them(
    redis_url: str,
    queue: str,
    client: redis.Redis,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    poison = [
        b"this is not JSON \xff\xfe",  # not even UTF-8
        _envelope(None, body="!!! not base64 !!!").encode(),
        _envelope(None, body=base64.b64encode(b"{not json").decode()).encode(),
        _envelope({"wrong": "shape"}).encode(),  # JSON, but not [args, kwargs, options]
        _envelope([[make_payload()], {"surprise": 1}, {}]).encode(),  # a call alerting.deliver cannot take
    ]
    for raw in poison:
        client.rpush(queue, raw)  # the worker pops from the right: these come first
    real = make_payload(message="disk full on db-1")
    _publish(redis_url, queue, [real])
    worker = start_worker()

    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert "disk full on db-1" in mail.subject
    assert worker.proc is not None
    assert worker.proc.poll() is None
    letters = wait_until(lambda: (ls := _letters(client)) and len(ls) >= len(poison) and ls)
    wait_until_settled(client, queue)  # every message handled: no further mail or letter can come
    assert len(mail_sink.received) == 1
    assert len(_letters(client)) == len(poison)  # each dead-lettered once
    first = next(r for r in letters if "raw_base64" in r["payload"])
    assert base64.b64decode(first["payload"]["raw_base64"]) == poison[0]  # the bytes, kept
    assert all(r["error"] in ("unreadable", "invalid") for r in letters)
    assert client.llen(queue) == 0


# -- item 6: the 64 KiB cap was enforced only in the application ----------------------------------------------
def test_oversized_payloads_pushed_onto_the_queue_are_dead_lettered_with_their_size_not_mailed(
    redis_url: str,
    queue: str,
    client: redis.Redis,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    huge = make_payload(message="x" * 10_000_000, fingerprint="fp-huge")  # 10 MB: decoded by nobody
    large = make_payload(message="y" * 100_000, fingerprint="fp-large")  # over the payload cap, under the message cap
    for payload in (huge, large):
        client.rpush(queue, _envelope([[payload], {}, {}]))
    _publish(redis_url, queue, [make_payload(message="the real one", fingerprint="fp-real")])
    start_worker()

    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert "the real one" in mail.subject
    letters = wait_until(lambda: (ls := _letters(client)) and len(ls) == 2 and ls)
    wait_until_settled(client, queue)
    assert len(mail_sink.received) == 1
    sizes = sorted(r["size"] for r in letters)
    assert sizes[0] > 100_000
    assert sizes[1] > 10_000_000
    for record in letters:
        assert "over the" in record["reason"]
        assert len(json.dumps(record["payload"])) <= 70 * 1024  # the raw message, capped


# -- Fault 3: two copies of one alert in flight at once were both mailed ---------------------------------------
def test_two_copies_of_one_alert_in_flight_at_once_are_mailed_once(
    redis_url: str, queue: str, client: redis.Redis, mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    mail_sink.delay = 1.0  # both copies reach the SMTP stage while the other is still sending
    start_worker(concurrency=2)
    payload = make_payload(message="replica lag 300s")
    _publish(redis_url, queue, [payload, payload])  # a publish that timed out but had landed, re-sent

    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert mail.message["X-Alerting-Id"] == payload["id"]
    wait_until_settled(client, queue)  # both copies handled (the second may wait for the first's claim)
    assert len(mail_sink.received) == 1
    assert mail_sink.attempts == 1  # the second copy never started a send


# -- Fault 4: an alert vanished on a slow SMTP server ------------------------------------------------------------
def test_an_smtp_server_that_answers_one_byte_at_a_time_ends_in_a_dead_letter_not_nothing(
    redis_url: str, queue: str, client: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    with Tarpit(interval=0.3) as tarpit:  # every read gets a byte within 0.3 s: no per-read timeout fires
        env = {
            "ALERTING_SMTP_PORT": str(tarpit.port),
            "ALERTING_SMTP_TIMEOUT": "1",
            "ALERTING_VISIBILITY_TIMEOUT": "19",  # above the hard time limit, 3 x 1 + 15 s (a start check)
            "ALERTING_MAX_RETRIES": "1",
        }
        start_worker(env)
        payload = make_payload(message="queue backlog growing")
        started = time.monotonic()
        _publish(redis_url, queue, [payload])

        (letter,) = wait_until(lambda: _letters(client), timeout=30)
        elapsed = time.monotonic() - started
        assert letter["id"] == payload["id"]
        assert letter["error"] == "timeout"
        assert letter["attempts"] == 2
        assert "did not complete the transaction within 3s" in letter["reason"]
        assert f"127.0.0.1:{tarpit.port}" in letter["reason"]
        assert tarpit.connections == 2
        assert elapsed < 15  # two attempts of one 3 s deadline each, not the hard time limit twice


# -- Fault 5: an exception the task did not expect left nothing -----------------------------------------------
def test_payloads_that_pass_parsing_but_break_deciding_or_rendering_are_dead_lettered_not_dropped(
    redis_url: str,
    queue: str,
    client: redis.Redis,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # A lone surrogate (Redis cannot encode it), and a time no date can show; each its own problem (fingerprint).
    surrogate = make_payload(message="bad byte \udc80 in the log line", fingerprint="fp-surrogate")
    far_future = make_payload(message="clock went wrong", created=1e20, fingerprint="fp-future")
    _publish(redis_url, queue, [surrogate, far_future, make_payload(message="after them", fingerprint="fp-after")])
    start_worker()

    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert "after them" in mail.subject
    letters = wait_until(lambda: (ls := _letters(client)) and len(ls) == 2 and ls)
    assert {r["id"] for r in letters} == {surrogate["id"], far_future["id"]}
    wait_until_settled(client, queue)
    assert len(mail_sink.received) == 1


# -- a message that kills the process running it, again and again ------------------------------------------------
def test_a_message_whose_process_is_killed_under_it_again_and_again_ends_in_the_dead_letters_not_a_loop(
    redis_url: str,
    queue: str,
    client: redis.Redis,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    import os
    import signal

    mail_sink.delay = 0.5  # each send is in progress long enough to be killed (as a hard time limit kills it)
    worker = start_worker()
    payload = make_payload(message="kills its worker")
    _publish(redis_url, queue, [payload])

    for kills in range(1, 5):  # requeued at once each time (reject_on_worker_lost), marked redelivered
        wait_until(lambda: mail_sink.attempts == kills, timeout=15)  # noqa: B023 -- called within this iteration
        (child,) = wait_until(worker.children)
        os.kill(child, signal.SIGKILL)

    (letter,) = wait_until(lambda: _letters(client), timeout=15)
    assert letter["id"] == payload["id"]
    assert letter["error"] == "killed"
    assert "delivered 5 times without finishing" in letter["reason"]
    assert mail_sink.attempts == 4
    assert mail_sink.received == []


# -- found by `docker compose up --scale worker=3`: the poison guard swallowed Celery's own control replies ------
def test_workers_started_as_users_start_them_meet_each_other_and_none_of_their_replies_is_quarantined(
    redis_url: str,
    queue: str,
    client: redis.Redis,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # With mingle on (celery's default), a starting worker asks the running ones for their state and pops the
    # replies from a "<id>.reply.celery.pidbox" list: a guard that treated them as task messages crashed it.
    first = start_worker(cluster_chatter=True)
    second = start_worker(cluster_chatter=True)
    _publish(redis_url, queue, [make_payload(message="both workers are up")])

    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert "both workers are up" in mail.subject
    for worker in (first, second):
        assert worker.proc is not None
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert "quarantined" not in worker.output()
    assert "mingle: sync with 1 nodes" in second.output()
    assert _letters(client) == []
