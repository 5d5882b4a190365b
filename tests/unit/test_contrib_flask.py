"""alerting.contrib.flask with Flask's test client and capture_alerts: settings from app.config, the alert
context of each request, and one alert per unhandled exception. No network."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, abort, request

from alerting import AlertHandler
from alerting.contrib.flask import Alerting, AlertingState
from alerting.errors import ConfigError
from alerting.producer.context import current
from alerting.testing import capture_alerts

NOWHERE = "redis://127.0.0.1:1/0"  # a broker nobody listens on: were anything published, it would go nowhere


def make_app(name: str = "shop", **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(config)

    @app.get("/checkout")
    def checkout() -> tuple[str, int]:
        app.logger.critical("checkout failed")
        return "sorry", 500

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("the payment provider did not answer")

    @app.post("/pay")
    def pay() -> str:
        raise ValueError(f"card declined for {len(request.form)} fields")

    @app.get("/missing")
    def missing() -> str:
        abort(404)

    @app.get("/peek")
    def peek() -> dict[str, Any]:
        return dict(current() or {})

    return app


@pytest.fixture
def apps(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Flask]]:
    """Build apps with the extension; their handlers are detached and closed at teardown."""
    monkeypatch.delenv("ALERTING_BROKER_URL", raising=False)
    made: list[Flask] = []

    def build(name: str = "shop", extension: Alerting | None = None, **config: Any) -> Flask:
        config.setdefault("ALERTING_BROKER_URL", NOWHERE)
        app = make_app(name, **config)
        (extension or Alerting()).init_app(app)
        made.append(app)
        return app

    yield build
    for app in made:
        handler = state(app).handler
        app.logger.removeHandler(handler)
        handler.close()
        assert handler.stats()["published"] == 0


def state(app: Flask) -> AlertingState:
    value = app.extensions["alerting"]
    assert isinstance(value, AlertingState)
    return value


# -- settings --------------------------------------------------------------------------------------------------
def test_init_app_attaches_one_handler_to_app_logger_with_state_in_extensions(apps: Callable[..., Flask]) -> None:
    app = apps("shop.web")
    handler = state(app).handler
    assert [h for h in app.logger.handlers if isinstance(h, AlertHandler)] == [handler]
    assert handler.service == "shop.web"  # app.name unless configured
    assert handler.level == logging.CRITICAL
    assert handler.queue == "alerts"
    assert handler.broker_url == NOWHERE
    assert state(app).send_pii is False


def test_app_config_overrides_the_extensions_defaults(apps: Callable[..., Flask]) -> None:
    extension = Alerting(queue="from-kwargs", service="from-kwargs", capacity=10)
    app = apps(extension=extension, ALERTING_QUEUE="from-config", ALERTING_LEVEL="error", ALERTING_SEND_PII="true")
    handler = state(app).handler
    assert (handler.queue, handler.service, handler.capacity) == ("from-config", "from-kwargs", 10)
    assert handler.level == logging.ERROR
    assert state(app).send_pii is True


def test_one_extension_serves_several_apps_each_with_its_own_handler(apps: Callable[..., Flask]) -> None:
    extension = Alerting()
    first, second = apps("first", extension), apps("second", extension)
    with capture_alerts() as alerts:
        first.test_client().get("/checkout")
    assert state(first).handler is not state(second).handler
    assert alerts.only()["service"] == "first"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ALERTING_CAPACITY", "lots"),
        ("ALERTING_QUEUE", "no spaces allowed"),
        ("ALERTING_LEVEL", "LOUD"),
        ("ALERTING_SEND_PII", "maybe"),
        ("ALERTING_BROKER_URL", "http://example.com"),
    ],
)
def test_a_bad_config_value_fails_init_app_naming_the_key(key: str, value: object) -> None:
    config: dict[str, Any] = {"ALERTING_BROKER_URL": NOWHERE, key: value}
    app = make_app(**config)
    with pytest.raises(ConfigError) as caught:
        Alerting(app)
    assert caught.value.setting == key
    assert "alerting" not in app.extensions
    assert not [h for h in app.logger.handlers if isinstance(h, AlertHandler)]


def test_unknown_keyword_and_second_init_are_refused(apps: Callable[..., Flask]) -> None:
    with pytest.raises(TypeError, match="queu"):
        Alerting(queu="alerts")
    app = apps()
    with pytest.raises(RuntimeError, match="already"):
        Alerting(app)


# -- the request context ---------------------------------------------------------------------------------------
def test_alert_context_has_method_path_and_query_with_secrets_hidden(apps: Callable[..., Flask]) -> None:
    client = apps().test_client()
    with capture_alerts() as alerts:
        client.get("/checkout?page=2&access_token=t-123&password=p-456", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    alert = alerts.only()
    assert alert["context"] == {
        "method": "GET",
        "path": "/checkout",
        "query_string": "page=2&access_token=[redacted]&password=[redacted]",
    }
    text = json.dumps(alert)
    assert "t-123" not in text
    assert "p-456" not in text
    assert "203.0.113.9" not in text


def test_send_pii_adds_client_address_and_user_id(apps: Callable[..., Flask]) -> None:
    app = apps(extension=Alerting(user_id=lambda: request.headers.get("X-User")), ALERTING_SEND_PII=True)
    context = app.test_client().get("/peek", headers={"X-User": "u-7"}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert context.json == {"method": "GET", "path": "/peek", "remote_addr": "203.0.113.9", "user_id": "u-7"}


def test_a_failing_user_id_callable_does_not_fail_the_request(apps: Callable[..., Flask]) -> None:
    app = apps(extension=Alerting(user_id=lambda: 1 / 0), ALERTING_SEND_PII=True)
    response = app.test_client().get("/peek")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["user_id"] == "(unavailable)"


def test_context_is_reset_after_each_request(apps: Callable[..., Flask]) -> None:
    client = apps().test_client()
    assert client.get("/peek?a=1").json == {"method": "GET", "path": "/peek", "query_string": "a=1"}
    assert client.get("/peek").json == {"method": "GET", "path": "/peek"}
    assert current() is None


# -- unhandled exceptions --------------------------------------------------------------------------------------
def test_unhandled_exception_becomes_one_critical_alert_located_in_the_view(apps: Callable[..., Flask]) -> None:
    client = apps().test_client()
    with capture_alerts() as alerts:
        response = client.get("/boom?order=17")
    assert response.status_code == 500
    alert = alerts.only()
    assert alert["level"] == "CRITICAL"
    assert alert["logger"] == "shop"
    assert alert["message"] == "Unhandled RuntimeError on GET /boom: the payment provider did not answer"
    assert alert["exc_type"] == "RuntimeError"
    assert (alert["pathname"], alert["func"]) == (__file__, "boom")
    assert alert["context"] == {"method": "GET", "path": "/boom", "query_string": "order=17"}


def test_error_level_handler_still_alerts_an_unhandled_exception_once(apps: Callable[..., Flask]) -> None:
    client = apps(ALERTING_LEVEL="ERROR").test_client()
    with capture_alerts() as alerts:
        client.get("/boom")
    assert alerts.only()["level"] == "CRITICAL"  # Flask's own ERROR record of it is filtered out


def test_http_errors_are_not_alerted(apps: Callable[..., Flask]) -> None:
    client = apps().test_client()
    with capture_alerts() as alerts:
        assert client.get("/missing").status_code == 404
        assert client.get("/no-such-route").status_code == 404
    assert alerts == []


def test_request_body_is_never_in_the_alert(apps: Callable[..., Flask]) -> None:
    client = apps(ALERTING_SEND_PII=True).test_client()
    with capture_alerts() as alerts:
        client.post("/pay", data={"card": "4111111111111111", "password": "hunter2"})
    text = json.dumps(alerts.only())
    assert "4111111111111111" not in text
    assert "hunter2" not in text


def test_testing_mode_propagates_the_exception_and_still_alerts(apps: Callable[..., Flask]) -> None:
    client = apps(TESTING=True).test_client()
    with capture_alerts() as alerts, pytest.raises(RuntimeError):
        client.get("/boom")
    assert alerts.only()["exc_type"] == "RuntimeError"
    assert current() is None
