"""SMTP servers that accept a message for some recipients only: the others are not silently left without it."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis

from alerting.consumer.settings import Connections
from alerting.ops import replay_dead_letters
from alerting.producer.transport import CeleryTransport, publisher_app
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until, wait_until_settled
from tests.unit.factories import make_payload


# -- Fault 9: partial delivery was one WARNING line ---------------------------------------------------------------
def test_a_recipient_the_server_refuses_gets_a_dead_letter_that_replays_to_that_recipient_only(
    redis_url: str,
    queue: str,
    redis_client: redis.Redis,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    mail_sink.refuse_recipient("oncall@example.com", "550 5.1.1 mailbox unavailable")
    worker = start_worker()  # ALERTING_MAIL_TO=ops@example.com,oncall@example.com
    payload = make_payload(message="payment gateway down")
    transport = CeleryTransport(publisher_app(redis_url), queue, owned=True)
    try:
        transport.publish_many([payload])
    finally:
        transport.close()

    (first,) = mail_sink.wait_for(1)
    assert first.rcpt_tos == ("ops@example.com",)
    (raw,) = wait_until(lambda: dead_letters(redis_client))
    letter = json.loads(raw)
    assert letter["recipients"] == ["oncall@example.com"]
    assert letter["error"] == "recipients-refused"
    assert "oncall@example.com: 550 5.1.1 mailbox unavailable" in letter["reason"]
    assert "ERROR" in worker.output()
    assert "refused 1 recipient" in worker.output()

    mail_sink.refuse_recipient("oncall@example.com", "")  # the mailbox is back
    conn = Connections(
        broker_url=redis_url, state_url=redis_url, queue=queue, key_prefix="alerting", redis_ca_file=None
    )
    report = replay_dead_letters(conn, limit=10)

    assert report.replayed == 1
    mails = mail_sink.wait_for(2)
    assert mails[1].rcpt_tos == ("oncall@example.com",)  # to the one who missed it, not to ops again
    assert "payment gateway down" in mails[1].subject
    assert mails[1].message["To"] == "oncall@example.com"
    wait_until_settled(redis_client, queue)  # the replayed message handled: no further mail can come
    assert len(mail_sink.received) == 2
    assert dead_letters(redis_client) == []
