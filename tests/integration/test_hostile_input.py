"""Hostile and odd input, end to end: logged through AlertHandler, delivered by a real worker, read at the SMTP server.

Whatever an application (or an attacker who controls part of a log message) puts in a record, the alert
still arrives, bounded, without injected headers, and nothing on the queue is ever unpickled.
"""

from __future__ import annotations

import datetime
import decimal
import email.header
import json
import logging
import pathlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from alerting import AlertHandler
from alerting.shared.wire import MAX_PAYLOAD_BYTES, encoded_size
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters, wait_until
from tests.support.wire import header_lines, header_values, queued_messages, task_payload


@pytest.fixture
def sender(redis_url: str) -> Iterator[Celery]:
    """A plain Celery client, as anyone with access to the broker could run: it sends whatever it is given."""
    app = Celery("hostile-sender", broker=redis_url, set_as_current=False)
    yield app
    app.close()


def _logger(name: str) -> logging.Logger:
    # A unique name per test run: loggers live for the whole process.
    return logging.getLogger(f"{name}.{uuid.uuid4().hex[:6]}")


def test_cr_lf_nul_in_message_and_logger_name_cannot_inject_headers_or_recipients(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = logging.getLogger(f"evil\r\nBcc: attacker@evil.example\r\nX-Injected: 2\x00.{uuid.uuid4().hex[:6]}")
    make_handler(log)

    log.critical("ok\r\nBcc: attacker@evil.example\r\nX-Injected: 1\x00\nTo: attacker@evil.example")

    (mail,) = mail_sink.wait_for(1)
    assert mail.rcpt_tos == ("ops@example.com", "oncall@example.com")
    fields = header_lines(mail.raw)
    names = [f.split(":", 1)[0].lower() for f in fields]
    assert names.count("subject") == 1
    assert names.count("to") == 1
    assert "bcc" not in names
    assert "x-injected" not in names
    assert not any("attacker" in f for f in fields if not f.lower().startswith("subject:"))
    assert not any(c in mail.subject for c in "\r\n\x00")
    assert mail.subject.startswith("[CRITICAL] evil Bcc: attacker@evil.example X-Injected: 2")
    assert mail.subject.endswith(": ok")
    assert mail.message["To"] == "ops@example.com, oncall@example.com"
    for part in mail.message.walk():  # nor in the MIME parts' own headers
        assert part["Bcc"] is None
        assert part["X-Injected"] is None
    assert "X-Injected: 1" in mail.text()  # the text itself is kept, in the body, where it is harmless


def test_5_mb_message_is_bounded_on_the_wire_and_arrives_with_a_truncation_marker(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    queue: str,
) -> None:
    log = _logger("test.huge")
    handler = make_handler(log)
    huge = "Größe ✓ 日本語 " * (5 * 1024 * 1024 // 16)  # ~5 MB of text, most of it escaped to 6 bytes per char in JSON
    try:
        raise ValueError(huge)
    except ValueError:
        log.critical("upload rejected: %s", huge, exc_info=True, extra={"body": huge, "blob": huge.encode()})
    assert handler.flush(timeout=10)

    (envelope,) = queued_messages(redis_client, queue)  # no worker yet: the message waits in the list
    payload = task_payload(envelope)
    assert encoded_size(payload) <= MAX_PAYLOAD_BYTES
    assert len(envelope) < 2 * MAX_PAYLOAD_BYTES  # the whole envelope too: base64 plus headers, nothing more
    assert "…[truncated" in payload["message"]
    assert payload["message"].startswith("upload rejected: Größe ✓ 日本語")
    assert "…[truncated" in payload["traceback"]
    assert payload["traceback"].rstrip().endswith("日本語")  # the end of a traceback, where the exception is, is kept

    start_worker()
    (mail,) = mail_sink.wait_for(1)
    assert "…[truncated" in mail.text()
    assert "upload rejected: Größe ✓ 日本語" in mail.subject
    assert len(mail.raw) < 4 * MAX_PAYLOAD_BYTES


class _ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")

    def __str__(self) -> str:
        raise RuntimeError("str is broken")


class _Custom:
    def __repr__(self) -> str:
        return "<Custom thing 42>"


def test_unrepresentable_recursive_and_non_json_extras_are_shown_safely(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = _logger("test.extras")
    make_handler(log)
    loop: list[Any] = [1]
    loop.append(loop)
    cycle: dict[str, Any] = {"name": "cycle"}
    cycle["self"] = cycle

    log.critical(
        "odd extras",
        extra={
            "broken": _ReprRaises(),
            "when": datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.timezone.utc),
            "amount": decimal.Decimal("10.25"),
            "thing": _Custom(),
            "tags": {"red"},
            "loop": loop,
            "cycle": cycle,
            "blob": b"\x00\xffraw",
            "nan": float("nan"),
        },
    )

    (mail,) = mail_sink.wait_for(1)
    text = mail.text()
    assert "broken: <unrepresentable _ReprRaises: repr raised RuntimeError>" in text
    assert "when: datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.timezone.utc)" in text
    assert "amount: Decimal('10.25')" in text
    assert "thing: <Custom thing 42>" in text
    assert "tags: ['red']" in text
    assert "loop: [1, '<recursive list>']" in text
    assert "'self': '<recursive dict>'" in text
    assert "blob: b'\\x00\\xffraw'" in text
    assert "nan: nan" in text
    assert "&lt;unrepresentable _ReprRaises" in mail.html()  # and escaped, not interpreted, in the HTML part


def test_bad_format_arguments_still_alert_with_template_and_arguments(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = _logger("test.badformat")
    make_handler(log)

    log.critical("%d items", "x")

    (mail,) = mail_sink.wait_for(1)
    assert "%d items" in mail.subject
    text = mail.text()
    assert "%d items [message formatting failed: TypeError" in text
    assert "args=('x',)" in text


def _load_config() -> None:
    raise ValueError("config file is empty")


def _connect() -> None:
    try:
        _load_config()
    except ValueError:
        settings: dict[str, str] = {}
        settings["db_url"]  # implicit chaining: an error while handling another


def _start() -> None:
    try:
        _connect()
    except KeyError as exc:
        raise RuntimeError("service cannot start") from exc  # explicit chaining


def test_chained_exceptions_show_every_traceback_and_how_they_are_linked(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = _logger("test.chained")
    make_handler(log)

    try:
        _start()
    except RuntimeError:
        log.critical("startup failed", exc_info=True)

    (mail,) = mail_sink.wait_for(1)
    text = mail.text()
    assert "ValueError: config file is empty" in text
    assert "During handling of the above exception, another exception occurred" in text
    assert "KeyError: 'db_url'" in text
    assert "The above exception was the direct cause of the following exception" in text
    assert "RuntimeError: service cannot start" in text
    assert text.index("ValueError: config") < text.index("KeyError: 'db_url'") < text.index("RuntimeError: service")
    for function in ("in _load_config", "in _connect", "in _start"):
        assert function in text


def test_non_ascii_subject_is_rfc2047_encoded_and_decodes_to_the_text(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = _logger("test.unicode")
    make_handler(log)
    text = "Zahlung fehlgeschlagen: Größe ✓ 日本語"

    log.critical(text)

    (mail,) = mail_sink.wait_for(1)
    (raw_subject,) = header_values(mail.raw, "Subject")
    assert raw_subject.isascii()
    assert "=?utf-8?" in raw_subject.lower()
    decoded = str(email.header.make_header(email.header.decode_header(raw_subject)))
    assert decoded == f"[CRITICAL] {log.name}: {text}"
    assert mail.subject == decoded
    assert text in mail.text()


class _TouchOnUnpickle:
    """Unpickling this creates a file: the proof that a worker ran code from the queue."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_message_on_the_alerts_queue_is_refused_and_never_unpickled(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    sender: Celery,
    redis_client: redis.Redis,
    queue: str,
    tmp_path: pathlib.Path,
) -> None:
    worker = start_worker()
    marker = tmp_path / "pwned"

    sender.send_task("alerting.deliver", args=[_TouchOnUnpickle(marker)], queue=queue, serializer="pickle")

    wait_until(lambda: "ContentDisallowed" in worker.output() and not queued_messages(redis_client, queue))
    assert "application/x-python-serialize" in worker.output()
    assert not marker.exists()

    log = _logger("test.afterpickle")
    make_handler(log)
    log.critical("still alerting after a pickle")
    (mail,) = mail_sink.wait_for(1)
    assert "still alerting after a pickle" in mail.subject
    assert not marker.exists()
    assert worker.proc is not None
    assert worker.proc.poll() is None  # the worker is still running


def test_unknown_version_and_malformed_payloads_are_dead_lettered_once_without_retries(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    sender: Celery,
    redis_client: redis.Redis,
    queue: str,
) -> None:
    start_worker()
    future = {"v": 2, "id": "f" * 32, "fingerprint": "abc", "message": "from a newer application"}
    bad: list[object] = [future, "just a string", {"v": 1, "id": "a" * 32, "message": "no fingerprint"}]

    for payload in bad:
        sender.send_task("alerting.deliver", args=[payload], queue=queue)

    records = [
        json.loads(r) for r in wait_until(lambda: len(dead_letters(redis_client)) == 3 and dead_letters(redis_client))
    ]
    # A valid alert sent afterwards on the same queue arrives; had the bad ones been retried, they would still be
    # cycling through the queue and their dead letters would show more than one attempt.
    log = _logger("test.afterbad")
    make_handler(log)
    log.critical("valid after invalid")
    mail_sink.wait_for(1)

    by_payload = {json.dumps(r["payload"], sort_keys=True): r for r in records}
    reasons = {key: by_payload[json.dumps(p, sort_keys=True)]["reason"] for key, p in zip("vsf", bad, strict=True)}
    assert "unsupported payload version 2" in reasons["v"]
    assert "payload must be a JSON object, got str" in reasons["s"]
    assert "'fingerprint'" in reasons["f"]
    assert all(r["attempts"] == 1 for r in records)
    assert all(r["error"] == "invalid" for r in records)
    assert len(dead_letters(redis_client)) == 3
    assert mail_sink.attempts == 1  # only the valid alert ever reached the SMTP server
    assert [m.subject for m in mail_sink.received] == [f"[CRITICAL] {log.name}: valid after invalid"]
