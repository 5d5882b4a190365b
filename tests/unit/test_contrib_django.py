"""alerting.contrib.django with Django's test Client and capture_alerts: what the alert context holds (and never
holds), how a view exception becomes exactly one alert, and what the system checks report. No network."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import django
import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings

if not settings.configured:  # settings can be configured once per process; this module brings its own
    settings.configure(
        DEBUG=False,
        SECRET_KEY="unit-tests",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["alerting.contrib.django.AlertingConfig"],
        MIDDLEWARE=["alerting.contrib.django.AlertingMiddleware"],
        ROOT_URLCONF=__name__,
        DATABASES={},
        LOGGING_CONFIG=None,  # dictConfig would close every handler in the test session
        USE_TZ=True,
    )
    django.setup()

from django.core import checks
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.views.decorators.debug import sensitive_post_parameters

from alerting import AlertHandler
from alerting.contrib.django import AlertingMiddleware, check_setup, read_options
from alerting.errors import ConfigError
from alerting.producer.context import current
from alerting.testing import CapturedAlerts, capture_alerts

log = logging.getLogger("shop.views")


# -- the test project ------------------------------------------------------------------------------------------
def checkout(request: HttpRequest) -> HttpResponse:
    log.critical("checkout failed")
    return HttpResponse("sorry", status=500)


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the payment provider did not answer")


@sensitive_post_parameters("card")
def pay(request: HttpRequest) -> HttpResponse:
    raise ValueError("card declined")


def missing(request: HttpRequest) -> HttpResponse:
    raise Http404("no such order")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


async def async_checkout(request: HttpRequest) -> HttpResponse:
    log.critical("async checkout failed")
    return HttpResponse("sorry", status=500)


async def async_boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("async payment provider did not answer")


def peek(request: HttpRequest) -> HttpResponse:
    return HttpResponse(json.dumps(dict(current() or {})), content_type="application/json")


urlpatterns = [
    path("checkout/", checkout),
    path("boom/", boom),
    path("pay/", pay),
    path("missing/", missing),
    path("forbidden/", forbidden),
    path("async/", async_checkout),
    path("async-boom/", async_boom),
    path("peek/", peek),
]


class FakeUser:
    pk = 42
    is_authenticated = True


class FakeAuthMiddleware:
    """Stands in for AuthenticationMiddleware (which needs a database); placed after ours, as usual."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user = FakeUser()
        response: HttpResponse = self.get_response(request)
        return response


WITH_FAKE_AUTH = ["alerting.contrib.django.AlertingMiddleware", f"{__name__}.FakeAuthMiddleware"]


# -- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def project() -> Iterator[None]:
    """This module's project, whoever configured Django in this process first."""
    with override_settings(
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["alerting.contrib.django.AlertingMiddleware"],
        ALERTING={},
    ):
        yield


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlertHandler]:
    """An AlertHandler on the view logger and on the unhandled-exception logger; nothing is ever published."""
    monkeypatch.delenv("ALERTING_BROKER_URL", raising=False)
    alert_handler = AlertHandler(broker_url="redis://127.0.0.1:1/0", service="shop")
    loggers = [logging.getLogger(name) for name in ("shop.views", "request.unhandled")]
    for logger in loggers:
        logger.addHandler(alert_handler)
    yield alert_handler
    for logger in loggers:
        logger.removeHandler(alert_handler)
    alert_handler.close()
    assert alert_handler.stats()["published"] == 0


@pytest.fixture
def alerts(handler: AlertHandler) -> Iterator[CapturedAlerts]:
    with capture_alerts() as captured:
        yield captured


def client() -> Client:
    return Client(raise_request_exception=False)


# -- the request context ---------------------------------------------------------------------------------------
def test_alert_context_has_method_path_and_query_with_secrets_hidden(alerts: CapturedAlerts) -> None:
    response = client().get("/checkout/", {"page": "2", "api_key": "k-123", "sig": "s", "passcode": "p-456"})

    assert response.status_code == 500
    context = alerts.only()["context"]
    # api_key: the handler's secret names; passcode: Django's exception reporter filter (PASS).
    assert context == {
        "method": "GET",
        "path": "/checkout/",
        "query_string": "page=2&api_key=[redacted]&sig=s&passcode=[redacted]",
    }
    assert "k-123" not in json.dumps(alerts)
    assert "p-456" not in json.dumps(alerts)


def test_no_user_id_or_client_address_without_send_pii() -> None:
    with override_settings(MIDDLEWARE=WITH_FAKE_AUTH):
        context = client().get("/peek/", REMOTE_ADDR="203.0.113.9").json()
    assert context == {"method": "GET", "path": "/peek/"}


def test_send_pii_adds_user_id_and_client_address() -> None:
    with override_settings(MIDDLEWARE=WITH_FAKE_AUTH, ALERTING={"SEND_PII": True}):
        context = client().get("/peek/", REMOTE_ADDR="203.0.113.9").json()
    assert context == {"method": "GET", "path": "/peek/", "remote_addr": "203.0.113.9", "user_id": "42"}


def test_context_is_reset_after_the_request() -> None:
    assert client().get("/peek/").json()["path"] == "/peek/"
    assert current() is None


def test_async_requests_get_the_context_too(alerts: CapturedAlerts) -> None:
    assert iscoroutinefunction(AlertingMiddleware(_async_get_response))

    response = asyncio.run(AsyncClient().get("/async/", {"q": "shoes"}))

    assert response.status_code == 500
    assert alerts.only()["context"] == {"method": "GET", "path": "/async/", "query_string": "q=shoes"}
    assert current() is None


def test_async_view_exception_becomes_one_alert_with_the_context(alerts: CapturedAlerts) -> None:
    response = asyncio.run(AsyncClient(raise_request_exception=False).get("/async-boom/"))

    assert response.status_code == 500
    alert = alerts.only()
    assert alert["message"] == "Unhandled RuntimeError on GET /async-boom/: async payment provider did not answer"
    assert alert["func"] == "async_boom"
    assert alert["context"] == {"method": "GET", "path": "/async-boom/"}


async def _async_get_response(request: HttpRequest) -> HttpResponse:
    return HttpResponse()


# -- view exceptions -------------------------------------------------------------------------------------------
def test_view_exception_becomes_one_critical_alert_located_in_the_view(alerts: CapturedAlerts) -> None:
    response = client().get("/boom/", {"order": "17"})

    assert response.status_code == 500
    alert = alerts.only()
    assert alert["level"] == "CRITICAL"
    assert alert["logger"] == "request.unhandled"
    assert alert["message"] == "Unhandled RuntimeError on GET /boom/: the payment provider did not answer"
    assert alert["exc_type"] == "RuntimeError"
    assert "the payment provider did not answer" in alert["traceback"]
    assert (alert["pathname"], alert["func"]) == (__file__, "boom")
    assert alert["context"] == {"method": "GET", "path": "/boom/", "query_string": "order=17"}


def test_same_failure_on_different_urls_groups_under_one_fingerprint(alerts: CapturedAlerts) -> None:
    client().get("/boom/", {"order": "1"})
    client().get("/boom/", {"order": "2"})
    client().get("/pay/")
    first, second, other = alerts.fingerprints
    assert first == second
    assert other != first


@pytest.mark.parametrize("url", ["/missing/", "/forbidden/"])
def test_client_errors_are_not_alerted(alerts: CapturedAlerts, url: str) -> None:
    assert client().get(url).status_code in (403, 404)
    assert alerts == []


def test_form_fields_are_not_in_alerts_without_send_pii(alerts: CapturedAlerts) -> None:
    client().post("/pay/", {"card": "4111111111111111", "password": "hunter2", "item": "socks"})
    alert = alerts.only()
    assert "post" not in alert["context"]
    text = json.dumps(alert)
    assert "4111111111111111" not in text
    assert "hunter2" not in text


def test_form_fields_with_send_pii_are_cleansed_by_djangos_filter(alerts: CapturedAlerts) -> None:
    with override_settings(ALERTING={"SEND_PII": True}):
        client().post("/pay/", {"card": "4111111111111111", "password": "hunter2", "item": "socks"})
    post = alerts.only()["context"]["post"]
    # card: @sensitive_post_parameters; password: a secret-looking name.
    assert post == {"card": "[redacted]", "password": "[redacted]", "item": "socks"}


# -- settings and checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "setting"),
    [
        ("yes", "ALERTING"),
        ({"SEND_PII": "maybe"}, "ALERTING['SEND_PII']"),
        ({"SEND_PII": 1}, "ALERTING['SEND_PII']"),
        ({"SEND_PI": True}, "ALERTING['SEND_PI']"),
        ({"LOGGER": ""}, "ALERTING['LOGGER']"),
        ({"LOGGER": "celery.app"}, "ALERTING['LOGGER']"),  # a logger the handler ignores
    ],
)
def test_malformed_alerting_setting_is_named(raw: object, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_options(raw)
    assert caught.value.setting == setting


def test_alerting_setting_accepts_booleans_and_env_style_strings() -> None:
    assert read_options(None).send_pii is False
    assert read_options({"SEND_PII": True, "LOGGER": "shop.errors"}).logger == "shop.errors"
    assert read_options({"SEND_PII": "true"}).send_pii is True


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages]


def test_checks_pass_when_middleware_and_handler_are_in_place(handler: AlertHandler) -> None:
    assert check_setup() == []


def test_check_reports_a_malformed_alerting_setting_as_an_error(handler: AlertHandler) -> None:
    with override_settings(ALERTING={"SEND_PII": "sometimes"}):
        (error,) = check_setup()
    assert error.id == "alerting.E001"
    assert error.level == checks.ERROR
    assert "SEND_PII" in error.msg
    assert "sometimes" in error.msg


def test_check_warns_when_no_alert_handler_receives_unhandled_exceptions() -> None:
    with override_settings(ALERTING={"LOGGER": f"nowhere.{uuid.uuid4().hex[:8]}"}):
        assert ids(check_setup()) == ["alerting.W002"]


def test_check_warns_when_the_middleware_is_missing(handler: AlertHandler) -> None:
    with override_settings(MIDDLEWARE=["django.middleware.common.CommonMiddleware"]):
        assert ids(check_setup()) == ["alerting.W001"]


def test_check_warns_about_double_alerts_from_an_error_level_handler_on_django_request(handler: AlertHandler) -> None:
    noisy = AlertHandler(broker_url="redis://127.0.0.1:1/0", level="ERROR")
    logging.getLogger("django.request").addHandler(noisy)
    try:
        assert ids(check_setup()) == ["alerting.W003"]
    finally:
        logging.getLogger("django.request").removeHandler(noisy)
        noisy.close()


def test_checks_are_registered_by_the_app_config() -> None:
    apps = ["alerting.contrib.django.AlertingConfig"]
    with override_settings(INSTALLED_APPS=apps, ALERTING=["not", "a", "dict"]):
        messages = checks.run_checks(tags=["alerting"])
    assert "alerting.E001" in ids(messages)
