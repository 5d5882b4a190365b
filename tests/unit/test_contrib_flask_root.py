"""alerting.contrib.flask with ALERTING_LOGGER = "root": records logged on any logger alert, not only app.logger's.
No network."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from alerting.contrib.flask import Alerting, AlertingState
from alerting.errors import ConfigError
from alerting.testing import capture_alerts

NOWHERE = "redis://127.0.0.1:1/0"
module_log = logging.getLogger("payments.gateway")  # a module outside the app's package: not under app.logger


def make_app(**config: Any) -> Flask:
    app = Flask("shop")
    app.config.update({"ALERTING_BROKER_URL": NOWHERE, **config})

    @app.get("/module")
    def module() -> str:
        module_log.critical("payment provider down")
        return "sorry"

    @app.get("/app")
    def app_logger() -> str:
        app.logger.critical("checkout failed")
        return "sorry"

    return app


@pytest.fixture
def init(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Flask]]:
    monkeypatch.delenv("ALERTING_BROKER_URL", raising=False)
    made: list[AlertingState] = []

    def build(extension: Alerting | None = None, **config: Any) -> Flask:
        app = make_app(**config)
        (extension or Alerting()).init_app(app)
        made.append(app.extensions["alerting"])
        return app

    yield build
    for state in made:
        assert state.logger is not None
        state.logger.removeHandler(state.handler)
        state.handler.close()


def test_by_default_only_app_logger_alerts_and_a_module_logger_does_not(init: Callable[..., Flask]) -> None:
    app = init()
    with capture_alerts() as alerts:
        app.test_client().get("/module")
        app.test_client().get("/app")
    assert [a["message"] for a in alerts] == ["checkout failed"]


@pytest.mark.parametrize("how", ["config", "argument"])
def test_with_the_root_logger_a_module_loggers_record_alerts_and_app_logger_still_alerts_once(
    init: Callable[..., Flask], how: str
) -> None:
    app = init(ALERTING_LOGGER="root") if how == "config" else init(Alerting(logger="root"))
    assert app.extensions["alerting"].handler in logging.getLogger().handlers
    with capture_alerts() as alerts:
        app.test_client().get("/module")
        app.test_client().get("/app")
    assert [a["message"] for a in alerts] == ["payment provider down", "checkout failed"]
    assert alerts[0]["logger"] == "payments.gateway"


def test_an_unknown_logger_choice_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Alerting(make_app(ALERTING_LOGGER="everything"))
    assert caught.value.setting == "ALERTING_LOGGER"
    with pytest.raises(ConfigError, match=r"^logger: "):
        Alerting(logger="blueprints")
