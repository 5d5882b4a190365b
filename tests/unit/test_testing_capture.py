"""alerting.testing.capture_alerts with a real AlertHandler: users see exactly what a worker would receive
(redacted, size-capped), and nothing is published."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from alerting import AlertHandler
from alerting.consumer.schema import parse
from alerting.producer.context import bind
from alerting.shared.wire import MAX_PAYLOAD_BYTES, encoded_size
from alerting.testing import capture_alerts


@pytest.fixture
def logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    monkeypatch.delenv("ALERTING_BROKER_URL", raising=False)
    log = logging.getLogger(f"shop.test.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    # A broker nobody listens on: if capture mode published, the alert would not arrive anywhere.
    handler = AlertHandler(broker_url="redis://127.0.0.1:1/0", service="shop")
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)
    handler.close()
    assert handler.stats()["buffered"] == 0
    assert handler.stats()["published"] == 0


def test_capture_records_the_payload_instead_of_publishing(logger: logging.Logger) -> None:
    handler = logger.handlers[0]
    assert isinstance(handler, AlertHandler)
    with capture_alerts() as alerts:
        logger.critical("order %s failed", 17)
    alert = alerts.only()
    assert alert["message"] == "order 17 failed"
    assert alert["service"] == "shop"
    assert alert["logger"] == logger.name
    parse(alert)  # what a worker would accept
    assert handler.stats() == {
        "buffered": 0,
        "published": 0,
        "coalesced": 0,
        "dropped": 0,
        "spooled": 0,
        "lost": 0,
        "spool_unusable": 0,
        "normalised": 0,
        "skipped": 0,
    }


def test_records_below_the_handler_level_are_not_captured(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        logger.error("only an error")
        logger.warning("a warning")
    assert alerts == []


def test_captured_payloads_are_redacted(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        logger.critical(
            "login failed password=%s via redis://:%s@redis:6379/0",
            "hunter2",
            "hunter3",
            extra={"api_key": "hunter4", "user": "alice", "request": {"headers": {"Authorization": "Bearer hunter5"}}},
        )
    alert = alerts.only()
    text = json.dumps(alert)
    for secret in ("hunter2", "hunter3", "hunter4", "hunter5"):
        assert secret not in text
    assert alert["message"] == "login failed password=[redacted] via redis://:[redacted]@redis:6379/0"
    assert alert["extra"]["api_key"] == "[redacted]"
    assert alert["extra"]["user"] == "alice"


def test_a_secret_in_a_preformatted_message_does_not_leak(logger: logging.Logger) -> None:
    password = "hunter2"
    with capture_alerts() as alerts:
        logger.critical(f"login failed password={password}")  # the common mistake this test guards against
    assert "hunter2" not in json.dumps(alerts.only())


def test_a_secret_in_an_exception_traceback_is_redacted(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        try:
            raise ConnectionError("cannot connect to smtp://alerts:hunter2@mail.example.com")
        except ConnectionError:
            logger.critical("mail relay down", exc_info=True)
    alert = alerts.only()
    assert "hunter2" not in json.dumps(alert)
    assert "ConnectionError" in alert["traceback"]


def test_request_context_is_captured_with_secrets_redacted(logger: logging.Logger) -> None:
    with capture_alerts() as alerts, bind(path="/pay", method="POST", authorization="Bearer hunter2"):
        logger.critical("payment failed")
    assert alerts.only()["context"] == {"path": "/pay", "method": "POST", "authorization": "[redacted]"}


def test_captured_payloads_are_size_capped(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        logger.critical("x" * 5_000_000, extra={f"k{i}": "v" * 10_000 for i in range(100)})
    assert encoded_size(alerts.only()) <= MAX_PAYLOAD_BYTES


def test_a_long_non_ascii_traceback_keeps_the_exception_line(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        try:
            raise ValueError("Ошибка оплаты: " + "данные " * 3_000)
        except ValueError:
            logger.critical("payment failed", exc_info=True)
    alert = alerts.only()
    assert encoded_size(alert) <= MAX_PAYLOAD_BYTES
    assert alert["traceback"].startswith("Traceback (most recent call last)")
    assert "данные данные данные" in alert["traceback"]


def test_only_fails_with_none_or_several_alerts(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        pass
    with pytest.raises(AssertionError, match="expected exactly one alert, got 0"):
        alerts.only()
    with capture_alerts() as alerts:
        logger.critical("first")
        logger.critical("second")
    with pytest.raises(AssertionError, match=r"got 2: \['first', 'second'\]"):
        alerts.only()


def test_helpers_list_messages_fingerprints_and_loggers(logger: logging.Logger) -> None:
    with capture_alerts() as alerts:
        for order in (1, 2):
            logger.critical("order %s failed", order)
        logger.critical("refund failed")
    assert alerts.messages == ["order 1 failed", "order 2 failed", "refund failed"]
    assert alerts.fingerprints[0] == alerts.fingerprints[1] != alerts.fingerprints[2]
    assert len(alerts.by_logger(logger.name)) == 3
    assert alerts.by_logger("someone.else") == []


def test_capture_ends_with_the_block_and_nests(logger: logging.Logger) -> None:
    with capture_alerts() as outer:
        logger.critical("outer 1")
        with capture_alerts() as inner:
            logger.critical("inner")
        logger.critical("outer 2")
    assert outer.messages == ["outer 1", "outer 2"]
    assert inner.messages == ["inner"]
