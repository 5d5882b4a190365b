"""alerting.AlertHandler: built from dictConfig, validated at construction, and emit() never raises nor
turns the library's own logging into alerts. Capture mode keeps every test here off the network."""

from __future__ import annotations

import gc
import logging
import logging.config
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from alerting import AlertHandler
from alerting.errors import ConfigError
from alerting.testing import capture_alerts
from tests.unit.factories import make_record


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


@pytest.fixture(autouse=True)
def _no_broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERTING_BROKER_URL", raising=False)


class RecordingHandler(AlertHandler):
    """An AlertHandler that records the records emit() had to give up on (stdlib: printed to stderr)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors: list[logging.LogRecord] = []

    def handleError(self, record: logging.LogRecord) -> None:  # the logging.Handler name
        self.errors.append(record)


@pytest.fixture
def handler() -> Iterator[RecordingHandler]:
    h = RecordingHandler(broker_url="redis://127.0.0.1:1/0")
    yield h
    h.close()


# -- configuration -----------------------------------------------------------------------------------------
def test_dictconfig_builds_the_handler_with_the_given_arguments() -> None:
    name = f"shop.dictconfig.{uuid.uuid4().hex[:8]}"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "alerts": {
                    "class": "alerting.AlertHandler",
                    "level": "ERROR",
                    "queue": "alerts-eu",
                    "capacity": 50,
                    "flush_timeout": 0.5,
                    "service": "shop",
                    "broker_url": "redis://redis.internal:6379/0",
                }
            },
            "loggers": {name: {"handlers": ["alerts"], "level": "DEBUG", "propagate": False}},
        }
    )
    log = logging.getLogger(name)
    (h,) = log.handlers
    try:
        assert isinstance(h, AlertHandler)
        assert h.level == logging.ERROR
        assert h.queue == "alerts-eu"
        assert h.capacity == 50
        assert h.flush_timeout == 0.5
        assert h.service == "shop"
        with capture_alerts() as alerts:
            log.warning("not an alert")
            log.error("an alert")
        assert alerts.messages == ["an alert"]
    finally:
        log.removeHandler(h)
        h.close()


def test_defaults_are_critical_alerts_queue_and_local_redis() -> None:
    h = AlertHandler()
    try:
        assert h.level == logging.CRITICAL
        assert h.queue == "alerts"
        assert h.capacity == 1000
        assert h.flush_timeout == 2.0
        assert h.broker_url == "redis://localhost:6379/0"
    finally:
        h.close()


def test_broker_url_comes_from_the_environment_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTING_BROKER_URL", "redis://from-env:6379/4")
    h = AlertHandler()
    try:
        assert h.broker_url == "redis://from-env:6379/4"
    finally:
        h.close()


def test_repr_does_not_show_the_broker_password() -> None:
    h = AlertHandler(broker_url="redis://:hunter2@redis.internal:6379/0")
    try:
        assert "hunter2" not in repr(h)
        assert "redis.internal" in repr(h)
    finally:
        h.close()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": "lots"}, "capacity"),
        ({"flush_timeout": -1}, "flush_timeout"),
        ({"coalesce_interval": -0.5}, "coalesce_interval"),
        ({"queue": "bad name"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"broker_url": "http://x"}, "broker_url"),
        ({"broker_url": "redis://localhost:6379/0", "celery_app": "app"}, "broker_url"),
        ({"service": 42}, "service"),
    ],
    ids=[
        "capacity-0",
        "capacity-str",
        "flush-negative",
        "coalesce-negative",
        "queue-space",
        "queue-empty",
        "broker-http",
        "broker-and-app",
        "service-int",
    ],
)
def test_bad_arguments_raise_config_error_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    if kwargs.get("celery_app") == "app":
        kwargs["celery_app"] = Celery("user-app", set_as_current=False)
    # try/except rather than pytest.raises: the error (and with it the half-built handler) is freed when the
    # block ends, so later dictConfig() calls never meet it (see the logging.shutdown test below for why).
    try:
        AlertHandler(**kwargs)
    except ConfigError as exc:
        setting, message = exc.setting, str(exc)
    else:
        pytest.fail("no ConfigError")
    assert setting == argument
    assert message.startswith(f"{argument}: ")


def test_a_handler_that_failed_validation_does_not_break_logging_shutdown() -> None:
    with pytest.raises(ConfigError) as info:
        AlertHandler(capacity=0)
    assert info.value.setting == "capacity"
    # While the error is kept (an error page, a crash reporter, this test), the half-built handler is alive and
    # registered with logging: logging.shutdown() at exit, and the next dictConfig(), flush and close it.
    registered = logging._handlerList  # type: ignore[attr-defined]  # the weakrefs logging.shutdown() walks
    refs = [ref for ref in registered if isinstance(ref(), AlertHandler)]
    problem = None
    try:
        logging.shutdown(refs)  # as at exit: must not raise (it would also skip the flush of other handlers)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    del info, refs, registered
    gc.collect()  # the failure above must not leak into later tests' dictConfig()
    assert problem is None, problem


def test_a_bad_environment_broker_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTING_BROKER_URL", "http://x")
    with pytest.raises(ConfigError, match=r"^ALERTING_BROKER_URL: "):
        AlertHandler()


def test_a_bad_argument_in_dictconfig_fails_at_configure_time_naming_the_argument() -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"alerts": {"class": "alerting.AlertHandler", "capacity": 0}},
    }
    with pytest.raises(ValueError, match="alerts") as info:
        logging.config.dictConfig(config)
    cause = info.value.__cause__
    assert isinstance(cause, ConfigError)
    assert cause.setting == "capacity"
    del info, cause
    gc.collect()  # let the half-built handler go (see the test above)


def test_a_celery_app_can_be_given_instead_of_a_broker_url() -> None:
    h = AlertHandler(celery_app=Celery("user-app", set_as_current=False))
    try:
        assert h.broker_url is None
        assert "celery_app" in repr(h)
    finally:
        h.close()


# -- emit never raises -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "expected_in_message"),
    [
        (make_record(StrRaises(), ()), "StrRaises"),
        (make_record("%d items failed", ("x",)), "%d items failed"),
        (make_record("%s and %s", ("only one",)), "%s and %s"),
        (make_record("order %s", (StrRaises(),)), "order %s"),
        (make_record({"not": "a string"}, ()), "{'not': 'a string'}"),
        (make_record("no line", (), lineno=None, name=None), "no line"),
        (make_record("bad exc_info", (), exc_info=(ValueError, "not an exception", None)), "bad exc_info"),
    ],
    ids=["str-raises", "bad-format", "too-few-args", "arg-str-raises", "dict-msg", "no-lineno-no-name", "odd-exc"],
)
def test_emit_never_raises_and_still_captures_a_broken_record(
    handler: RecordingHandler, record: logging.LogRecord, expected_in_message: str
) -> None:
    with capture_alerts() as alerts:
        handler.handle(record)
    assert handler.errors == []
    assert expected_in_message in alerts.only()["message"]


def test_logging_a_broken_record_through_a_logger_does_not_raise(handler: RecordingHandler) -> None:
    log = logging.getLogger(f"shop.broken.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.addHandler(handler)
    try:
        with capture_alerts() as alerts:
            log.critical(StrRaises())
            log.critical("%d orders", "many")
        assert len(alerts) == 2
        assert handler.errors == []
    finally:
        log.removeHandler(handler)


# -- ignored loggers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "celery",
        "celery.worker",
        "kombu",
        "kombu.connection",
        "redis",
        "redis.x",
        "amqp",
        "alerting",
        "alerting.publisher",
    ],
)
def test_records_from_the_librarys_own_dependencies_never_become_alerts(handler: RecordingHandler, name: str) -> None:
    with capture_alerts() as alerts:
        handler.handle(make_record("broker down", (), name=name))
    assert alerts == []


@pytest.mark.parametrize("name", ["celeryapp", "shop.celery", "rediscache", "shop.redis", "alerting_app", "myamqp"])
def test_loggers_that_merely_look_similar_still_alert(handler: RecordingHandler, name: str) -> None:
    with capture_alerts() as alerts:
        handler.handle(make_record("real problem", (), name=name))
    assert alerts.messages == ["real problem"]


def test_records_below_the_level_are_ignored(handler: RecordingHandler) -> None:
    with capture_alerts() as alerts:
        handler.handle(make_record("just an error", (), level=logging.ERROR))
    assert alerts == []


def test_an_alert_logged_after_close_is_counted_as_lost_not_held_silently() -> None:
    handler = AlertHandler(broker_url="redis://127.0.0.1:1/0", queue="closed-test", flush_timeout=0)
    handler.close()
    handler.handle(logging.LogRecord("app", logging.CRITICAL, __file__, 1, "too late", (), None))
    assert handler.stats()["lost"] == 1
    assert handler.stats()["buffered"] == 0


# -- records with an implausible created (hardening) ---------------------------------------------------------
@pytest.mark.parametrize("created", ["yesterday", None, object(), float("nan"), 1.7e12], ids=str)
def test_record_with_an_implausible_created_is_alerted_and_counted_not_lost(
    handler: RecordingHandler, created: object
) -> None:
    record = make_record()
    record.created = created  # type: ignore[assignment]
    assert handler.stats()["normalised"] == 0
    with capture_alerts() as alerts:
        handler.handle(record)
    assert handler.errors == []  # no "--- Logging error ---"
    assert alerts.only()["extra"]["created_as_logged"].endswith("the alert shows when it was captured)")
    assert handler.stats()["normalised"] == 1


def test_plain_records_are_not_counted_as_normalised(handler: RecordingHandler) -> None:
    with capture_alerts():
        handler.handle(make_record())
    assert handler.stats()["normalised"] == 0
