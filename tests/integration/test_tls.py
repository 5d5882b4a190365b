"""SMTP over TLS against a real aiosmtpd server with trustme certificates: verified by default."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import trustme

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_sink(server_context: ssl.SSLContext, request: pytest.FixtureRequest) -> Iterator[MailSink]:
    implicit = getattr(request, "param", "starttls") == "ssl"
    with MailSink(tls_context=server_context, implicit_tls=implicit, users={"alerts": "s3cret-pw"}) as sink:
        yield sink


def _env(sink: MailSink, security: str, **extra: str) -> dict[str, str]:
    return {
        "ALERTING_SMTP_PORT": str(sink.port),
        "ALERTING_SMTP_SECURITY": security,
        "ALERTING_SMTP_USER": "alerts",
        "ALERTING_SMTP_PASSWORD": "s3cret-pw",
        **extra,
    }


@pytest.mark.parametrize("tls_sink", ["starttls", "ssl"], indirect=True)
def test_tls_with_auth_delivers_when_the_certificate_is_trusted(
    tls_sink: MailSink,
    ca_file: str,
    make_handler: Callable[..., AlertHandler],
    start_worker: Callable[..., WorkerProcess],
    request: pytest.FixtureRequest,
) -> None:
    security = request.node.callspec.params["tls_sink"]
    worker = start_worker(_env(tls_sink, security, ALERTING_SMTP_CA_FILE=ca_file))
    log = logging.getLogger(f"test.tls.{security}")
    make_handler(log)

    log.critical("certificate expires tomorrow")

    (mail,) = tls_sink.wait_for(1)
    assert "certificate expires tomorrow" in mail.subject
    assert "s3cret-pw" not in worker.output()


def test_untrusted_certificate_is_refused_and_dead_lettered(
    tls_sink: MailSink,
    make_handler: Callable[..., AlertHandler],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    # No ALERTING_SMTP_CA_FILE: the system CAs do not know trustme's CA, and verification is on by default.
    start_worker(_env(tls_sink, "starttls"))
    log = logging.getLogger("test.tls.untrusted")
    make_handler(log)

    log.critical("should not leave over an unverified connection")

    (raw,) = wait_until(lambda: dead_letters(redis_client))
    record = json.loads(raw)
    assert record["error"] == "tls-verify"
    assert "certificate" in record["reason"].lower()
    assert tls_sink.received == []


def test_wrong_password_is_a_permanent_failure(
    tls_sink: MailSink,
    ca_file: str,
    make_handler: Callable[..., AlertHandler],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    worker = start_worker(_env(tls_sink, "starttls", ALERTING_SMTP_CA_FILE=ca_file, ALERTING_SMTP_PASSWORD="wrong-pw"))
    log = logging.getLogger("test.tls.badauth")
    make_handler(log)

    log.critical("nobody will read this")

    (raw,) = wait_until(lambda: dead_letters(redis_client))
    record = json.loads(raw)
    assert record["error"] == "auth"
    assert record["attempts"] == 1
    assert "wrong-pw" not in raw
    assert "wrong-pw" not in worker.output()
