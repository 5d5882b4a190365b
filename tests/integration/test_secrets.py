"""Secrets never leave the application in an alert, and never appear in the worker's or the handler's logs.

Checked where they would leak to: the mail as the SMTP server received it (raw bytes and every decoded part),
everything celery-alerting stores in Redis (throttle samples, dead letters), and the log output of both sides.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import trustme

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until
from tests.support.certs import issue, server_context
from tests.support.servers import RedisServer
from tests.support.wire import everything_in

# Every value here is a secret that must not reach a mail, Redis or a log line.
EXTRA_SECRETS = ["xp-hunter2", "xt-abc123", "xk-999", "xa-bearer", "xc-cookie", "xs-session"]
NESTED_SECRETS = ["xn-basic", "xn-apikey", "xn-dbpw"]
MESSAGE_SECRETS = ["mp-hunter2", "mt-abc", "mb-xyz", "mu-pw", "ma-arg"]
TRACEBACK_SECRETS = ["ep-hunter2", "eu-pw", "et-tok"]
ALL_SECRETS = EXTRA_SECRETS + NESTED_SECRETS + MESSAGE_SECRETS + TRACEBACK_SECRETS


def _connect_db() -> None:
    raise ConnectionError("auth failed password=ep-hunter2 url=redis://:eu-pw@db.internal:6379/0 token: et-tok")


def _log_with_secrets(log: logging.Logger, **extra: object) -> None:
    try:
        _connect_db()
    except ConnectionError:
        log.critical(
            "login failed for ann password=mp-hunter2 token: mt-abc Authorization: Bearer mb-xyz "
            "via redis://:mu-pw@cache.internal:6379/0 api_key=%s",
            "ma-arg",
            exc_info=True,
            extra={
                "password": "xp-hunter2",
                "token": "xt-abc123",
                "api_key": "xk-999",
                "Authorization": "Bearer xa-bearer",
                "cookie": "sessionid=xc-cookie",
                "session": "xs-session",
                "request": {
                    "headers": {"Authorization": "Basic xn-basic", "X-Api-Key": "xn-apikey"},
                    "db": {"password": "xn-dbpw", "host": "db.internal"},
                },
                "order": "o-1234",
                **extra,
            },
        )


def _redis_dump(client: redis.Redis) -> str:
    """Every key and value in the test's Redis database, as text."""
    out: list[str] = []
    for key in client.scan_iter():
        kind = client.type(key)
        value: object
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        out.append(f"{key} = {value!r}")
    return "\n".join(out)


def _leaked(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def test_secrets_in_extras_message_and_traceback_never_reach_the_mail_or_redis(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    worker = start_worker()
    log = logging.getLogger(f"test.secrets.{uuid.uuid4().hex[:6]}")
    make_handler(log)

    for _ in range(2):  # the repeat is throttled: its payload is kept in Redis as the window's digest sample
        _log_with_secrets(log)
    (mail,) = mail_sink.wait_for(1)
    samples = wait_until(
        lambda: [s for k in redis_client.scan_iter("alerting:win:*") if (s := redis_client.hget(k, "sample"))]
    )
    mail_sink.reject_all("550 5.7.1 Relaying denied")
    _log_with_secrets(log, alert_key="dead-letter-me")  # a different fingerprint: mailed at once, refused, kept
    (dead,) = wait_until(lambda: dead_letters(redis_client))

    everything = everything_in(mail)
    assert "login failed for ann" in everything  # what is not secret is all there
    assert "cache.internal" in everything
    assert "order: o-1234" in mail.text()
    assert "ConnectionError: auth failed" in mail.text()
    assert "[redacted]" in mail.text()
    assert _leaked(everything, ALL_SECRETS) == []

    assert "login failed for ann" in samples[0]
    assert "login failed for ann" in dead
    stored = _redis_dump(redis_client)
    assert "alerting:dead" in stored
    assert "alerting:win:" in stored
    assert _leaked(stored, ALL_SECRETS) == []
    assert json.loads(dead)["payload"]["extra"]["password"] == "[redacted]"
    assert _leaked(worker.output(), ALL_SECRETS) == []


def test_custom_secret_keys_are_redacted_in_extras_and_text(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = logging.getLogger(f"test.secrets.pin.{uuid.uuid4().hex[:6]}")
    make_handler(log, secret_keys=("pin",))

    log.critical(
        "card declined, pin=9876 for order o-77",
        extra={"pin": "4711", "card": {"last4": "4242", "card_pin": "0815"}, "order": "o-77"},
    )

    (mail,) = mail_sink.wait_for(1)
    everything = everything_in(mail)
    assert _leaked(everything, ["9876", "4711", "0815"]) == []
    text = mail.text()
    assert "pin=[redacted] for order o-77" in text
    assert "pin: [redacted]" in text
    assert "'card_pin': '[redacted]'" in text
    assert "'last4': '4242'" in text


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_worker_logs_never_show_the_smtp_or_broker_password_on_retry_and_dead_letter_paths(
    ca: trustme.CA,
    tmp_path: Path,
    make_handler: Callable[..., AlertHandler],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    smtp_password = "smtp-pw-7Hq2x"
    broker_password = "broker-pw-Kd93z"
    certs = issue(ca, tmp_path)
    password_file = tmp_path / "smtp-password"
    password_file.write_text(smtp_password + "\n")
    with (
        RedisServer(password=broker_password) as broker,
        MailSink(tls_context=server_context(ca), users={"alerts": smtp_password}) as sink,
    ):
        worker = start_worker(
            {
                "ALERTING_BROKER_URL": broker.url,
                "ALERTING_SMTP_PORT": str(sink.port),
                "ALERTING_SMTP_SECURITY": "starttls",
                "ALERTING_SMTP_CA_FILE": certs.ca,
                "ALERTING_SMTP_USER": "alerts",
                "ALERTING_SMTP_PASSWORD_FILE": str(password_file),
            },
            loglevel="DEBUG",
        )
        log = logging.getLogger(f"test.secrets.worker.{uuid.uuid4().hex[:6]}")
        make_handler(log, broker_url=broker.url)

        sink.fail_next("451 4.3.0 Try again later")
        log.critical("first: retried once, then delivered")
        sink.wait_for(1)
        sink.reject_all("550 5.7.1 Relaying denied")
        log.critical("second: refused for good")
        wait_until(lambda: broker.client().llen("alerting:dead"))
        output = worker.output()

    assert "retrying in" in output  # the paths that log were taken
    assert "dead-lettered alert" in output
    assert f"redis://:**@127.0.0.1:{broker.port}" in output  # the broker URL is logged, masked
    assert sink.attempts == 3
    assert smtp_password not in output
    assert broker_password not in output


def test_handler_logs_never_show_the_broker_password_during_an_outage(
    make_handler: Callable[..., AlertHandler], caplog: pytest.LogCaptureFixture
) -> None:
    password = "broker-pw-Zx81q"
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger(f"test.secrets.outage.{uuid.uuid4().hex[:6]}")
    with RedisServer(password=password) as broker:
        handler = make_handler(log, broker_url=broker.url, flush_timeout=0.5)
        log.critical("published while the broker is up")
        assert handler.flush(timeout=5)
        assert broker.client().llen(handler.queue) == 1
    log.critical("published while the broker is down")  # the server is gone: the publisher logs the outage

    wait_until(lambda: "cannot publish alerts" in caplog.text)
    handler.close()

    assert handler.stats()["lost"] == 1
    assert "lost 1 alerts" in caplog.text
    assert password not in caplog.text
    assert password not in repr(handler)
    assert all(password not in str(r.args) for r in caplog.records)
