"""Redis over TLS (``rediss://``) on both sides, against a TLS-only redis-server with trustme certificates.

Verification is on by default: with the CA the alert goes through; without it nothing is published.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import trustme

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.support.certs import CertFiles, issue
from tests.support.servers import RedisServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(ca: trustme.CA, tmp_path: Path) -> CertFiles:
    return issue(ca, tmp_path)


@pytest.fixture
def tls_redis(certs: CertFiles) -> Iterator[RedisServer]:
    with RedisServer(tls_cert=certs.cert, tls_key=certs.key) as server:
        yield server


def _trusting_client(server: RedisServer, certs: CertFiles) -> redis.Redis:
    return redis.Redis.from_url(server.url, ssl_ca_certs=certs.ca, decode_responses=True)


def test_alert_travels_over_verified_rediss_from_handler_to_worker_to_mail(
    tls_redis: RedisServer,
    certs: CertFiles,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    assert tls_redis.url.startswith("rediss://")
    worker = start_worker({"ALERTING_BROKER_URL": tls_redis.url, "ALERTING_REDIS_CA_FILE": certs.ca})
    log = logging.getLogger(f"test.rediss.{uuid.uuid4().hex[:6]}")
    handler = make_handler(log, broker_url=tls_redis.url, ca_file=certs.ca)

    log.critical("alert over TLS")

    (mail,) = mail_sink.wait_for(1)
    assert "alert over TLS" in mail.subject
    assert handler.stats()["published"] == 1
    # The worker's state store went over TLS too: the alert is recorded as sent in the TLS-only Redis.
    client = _trusting_client(tls_redis, certs)
    assert client.exists(f"alerting:sent:{mail.message['X-Alerting-Id']}")
    # The worker's broker connection is TLS too; its transport is the poison-message guard on kombu's Redis
    # transport, registered under a name that keeps the scheme visible.
    assert f"Connected to guarded-rediss://:**@127.0.0.1:{tls_redis.port}" in worker.output()


def test_ca_file_is_used_when_the_rediss_url_also_says_ssl_cert_reqs_required(
    tls_redis: RedisServer,
    certs: CertFiles,
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # The form Celery's documentation asks for with rediss://; the CA given separately must still be trusted.
    url = f"{tls_redis.url}?ssl_cert_reqs=required"
    log = logging.getLogger(f"test.rediss.query.{uuid.uuid4().hex[:6]}")
    handler = make_handler(log, broker_url=url, ca_file=certs.ca, flush_timeout=0.5)

    log.critical("alert over TLS, verification asked for in the URL")

    assert handler.flush(timeout=3), f"not published: {handler.stats()}"
    start_worker({"ALERTING_BROKER_URL": url, "ALERTING_REDIS_CA_FILE": certs.ca})  # its store client too
    (mail,) = mail_sink.wait_for(1)
    assert "verification asked for in the URL" in mail.subject


def test_building_a_rediss_handler_logs_no_insecure_ssl_warning(
    tls_redis: RedisServer,
    certs: CertFiles,
    make_handler: Callable[..., AlertHandler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    log = logging.getLogger(f"test.rediss.quiet.{uuid.uuid4().hex[:6]}")
    handler = make_handler(log, broker_url=tls_redis.url, ca_file=certs.ca)

    log.critical("published over a verified connection")
    assert handler.flush(timeout=3)

    # An application's log saying "insecure SSL" about a verified connection teaches people to ignore real ones.
    assert [r.getMessage() for r in caplog.records if "insecure" in r.getMessage().lower()] == []


def test_handler_refuses_a_rediss_broker_whose_certificate_it_cannot_verify(
    tls_redis: RedisServer,
    certs: CertFiles,
    make_handler: Callable[..., AlertHandler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alerting")
    log = logging.getLogger(f"test.rediss.untrusted.{uuid.uuid4().hex[:6]}")
    # No ca_file: the system CAs do not know trustme's CA, and verification is on by default.
    handler = make_handler(log, broker_url=tls_redis.url, flush_timeout=0.5)

    log.critical("must not be published over an unverified connection")

    assert not handler.flush(timeout=1.5)
    handler.close()
    assert handler.stats()["published"] == 0
    assert handler.stats()["lost"] == 1
    assert "certificate verify failed" in caplog.text
    assert "lost 1 alerts" in caplog.text
    assert _trusting_client(tls_redis, certs).keys("*") == []  # nothing landed on the server
