"""alerting.shared.config: each kind of setting parsed one way, failing with a message that names the setting."""

from __future__ import annotations

import inspect

import pytest

from alerting import AlertHandler
from alerting.errors import ConfigError
from alerting.shared.config import (
    DEFAULT_BROKER_URL,
    Rate,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_int,
    parse_level,
    parse_queue,
    parse_rate,
    parse_url,
    resolve_broker_url,
)


# -- parse_rate --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30/m", Rate(30, 60.0)),
        ("100/h", Rate(100, 3600.0)),
        ("5/10s", Rate(5, 10.0)),
        ("1/s", Rate(1, 1.0)),
        ("500/d", Rate(500, 86400.0)),
        ("30/min", Rate(30, 60.0)),
        (" 30 / M ", Rate(30, 60.0)),
        ("2/1.5h", Rate(2, 5400.0)),
        ("10/hour", Rate(10, 3600.0)),
    ],
)
def test_parse_rate_reads_count_per_period(text: str, expected: Rate) -> None:
    assert parse_rate("ALERTING_RATE_LIMIT", text) == expected


@pytest.mark.parametrize("text", ["off", "OFF", "none", "", "  ", "0"])
def test_parse_rate_off_disables_the_limit(text: str) -> None:
    assert parse_rate("ALERTING_RATE_LIMIT", text) is None


@pytest.mark.parametrize(
    "text", ["lots", "30", "/m", "30/", "30/x", "30/week", "-1/m", "0/m", "30/0s", "3.5/m", "30/m/s"]
)
def test_parse_rate_rejects_garbage_naming_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_RATE_LIMIT: ") as info:
        parse_rate("ALERTING_RATE_LIMIT", text)
    assert info.value.setting == "ALERTING_RATE_LIMIT"


@pytest.mark.parametrize(("text", "shown"), [("30/m", "30/m"), ("100/h", "100/h"), ("5/10s", "5/10s"), ("2/d", "2/d")])
def test_rate_prints_as_it_was_written(text: str, shown: str) -> None:
    rate = parse_rate("X", text)
    assert rate is not None
    assert str(rate) == shown


def test_rate_per_second_is_limit_over_period() -> None:
    assert Rate(30, 60.0).per_second == 0.5


# -- parse_duration ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "seconds"), [("2", 2.0), ("0.5", 0.5), (" 1.5 ", 1.5), (3, 3.0), (0.25, 0.25), ("0", 0.0)]
)
def test_parse_duration_accepts_fractional_seconds(value: object, seconds: float) -> None:
    assert parse_duration("ALERTING_THROTTLE_WINDOW", value) == seconds


@pytest.mark.parametrize("value", ["abc", "", "-1", "nan", "inf", "-inf", None, [1], "5s"])
def test_parse_duration_rejects_what_is_not_a_non_negative_number(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_THROTTLE_WINDOW: "):
        parse_duration("ALERTING_THROTTLE_WINDOW", value)


def test_parse_duration_enforces_minimum_and_non_zero() -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_SMTP_TIMEOUT: "):
        parse_duration("ALERTING_SMTP_TIMEOUT", "0", allow_zero=False)
    with pytest.raises(ConfigError, match=r"^ALERTING_VISIBILITY_TIMEOUT: "):
        parse_duration("ALERTING_VISIBILITY_TIMEOUT", "0.5", minimum=1)
    assert parse_duration("ALERTING_VISIBILITY_TIMEOUT", "1", minimum=1) == 1.0


# -- parse_int ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "number"), [("5", 5), (" 7 ", 7), (5, 5), (5.0, 5), ("0", 0), ("100", 100)])
def test_parse_int_accepts_whole_numbers(value: object, number: int) -> None:
    assert parse_int("ALERTING_MAX_RETRIES", value, minimum=0, maximum=100) == number


@pytest.mark.parametrize("value", ["x", "", "5.5", 5.5, True, False, None, [5], "-1", -1, "101", "1e3"])
def test_parse_int_rejects_non_integers_and_out_of_range(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_MAX_RETRIES: "):
        parse_int("ALERTING_MAX_RETRIES", value, minimum=0, maximum=100)


# -- small parsers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [("true", True), ("YES", True), ("1", True), ("off", False), ("", False)])
def test_parse_bool_reads_the_usual_spellings(text: str, value: bool) -> None:
    assert parse_bool("ALERTING_SMTP_TLS_VERIFY", text) is value


def test_parse_bool_rejects_anything_else() -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_SMTP_TLS_VERIFY: "):
        parse_bool("ALERTING_SMTP_TLS_VERIFY", "maybe")


def test_parse_choice_is_case_insensitive_and_names_the_setting() -> None:
    assert parse_choice("ALERTING_SMTP_SECURITY", " StartTLS ", ("none", "starttls", "ssl")) == "starttls"
    with pytest.raises(ConfigError, match=r"^ALERTING_SMTP_SECURITY: .*none, starttls, ssl"):
        parse_choice("ALERTING_SMTP_SECURITY", "tls", ("none", "starttls", "ssl"))


@pytest.mark.parametrize("name", ["alerts", "alerts.high-priority", "team:ops_1"])
def test_parse_queue_accepts_plain_names(name: str) -> None:
    assert parse_queue("queue", name) == name


@pytest.mark.parametrize("name", ["", "bad name", "alerts\n", "a/b", "*", 5])
def test_parse_queue_rejects_odd_names(name: object) -> None:
    with pytest.raises(ConfigError, match=r"^queue: "):
        parse_queue("queue", name)


# -- resolve_broker_url ------------------------------------------------------------------------------------
def test_resolve_broker_url_prefers_the_argument() -> None:
    env = {"ALERTING_BROKER_URL": "redis://env-host:6379/0"}
    assert resolve_broker_url("redis://arg-host:6379/1", env) == "redis://arg-host:6379/1"


def test_resolve_broker_url_falls_back_to_the_environment_then_local_redis() -> None:
    assert resolve_broker_url(None, {"ALERTING_BROKER_URL": "rediss://r:6380/0"}) == "rediss://r:6380/0"
    assert resolve_broker_url(None, {}) == DEFAULT_BROKER_URL == "redis://localhost:6379/0"
    assert resolve_broker_url(None, {"ALERTING_BROKER_URL": ""}) == DEFAULT_BROKER_URL


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw@host:6379/0",
        "amqp://guest:guest@rabbit:5672//",
        "sentinel://s1:26379/0?master_name=mymaster",
        "memory://",
    ],
)
def test_resolve_broker_url_accepts_celery_broker_schemes(url: str) -> None:
    assert resolve_broker_url(url, {}) == url


def test_resolve_broker_url_names_the_argument_or_the_variable_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^broker_url: unsupported scheme 'http'"):
        resolve_broker_url("http://x", {})
    with pytest.raises(ConfigError, match=r"^ALERTING_BROKER_URL: unsupported scheme 'http'"):
        resolve_broker_url(None, {"ALERTING_BROKER_URL": "http://x"})
    with pytest.raises(ConfigError, match=r"^broker_url: "):
        resolve_broker_url("", {})


@pytest.mark.parametrize(("value", "level"), [("CRITICAL", 50), ("error", 40), (" warning ", 30), (25, 25)])
def test_parse_level_reads_names_in_any_case_and_numbers(value: object, level: int) -> None:
    assert parse_level("level", value) == level


@pytest.mark.parametrize("value", ["CRITICALL", "", -1, True, None, 1.5])
def test_parse_level_rejects_what_is_not_a_level_naming_the_setting(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^level: ") as info:
        parse_level("level", value)
    assert info.value.setting == "level"


def test_alert_handler_with_a_misspelt_level_raises_config_error_naming_level() -> None:
    with pytest.raises(ConfigError, match=r"^level: .*'CRITICALL'") as info:
        AlertHandler(level="CRITICALL")  # logging's own check raised a bare ValueError
    assert info.value.setting == "level"


def test_parse_url_refuses_a_port_that_is_not_a_port_without_repeating_the_password() -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_BROKER_URL: ") as info:
        parse_url("ALERTING_BROKER_URL", "redis://:hunter2@localhost:99999/0", ("redis",))
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


# -- one default queue and one key prefix ------------------------------------------------------------------------
def test_the_handler_the_worker_settings_and_the_store_share_one_default_queue_and_key_prefix() -> None:
    from alerting.consumer.settings import BY_NAME, load
    from alerting.shared.config import DEFAULT_KEY_PREFIX, DEFAULT_QUEUE
    from alerting.shared.stores import StoreConfig
    from alerting.testing.workerproc import WorkerProcess

    settings = load({"ALERTING_MAIL_TO": "ops@example.com", "ALERTING_MAIL_FROM": "a@example.com"})
    handler = AlertHandler(broker_url=DEFAULT_BROKER_URL)
    try:
        assert handler.queue == settings.queue == BY_NAME["ALERTING_QUEUE"].default == DEFAULT_QUEUE == "alerts"
    finally:
        handler.close()
    assert inspect.signature(WorkerProcess).parameters["queue"].default == DEFAULT_QUEUE
    prefix = StoreConfig(window=0, rate=None, lease=1, ttl=60).prefix
    assert prefix == settings.key_prefix == BY_NAME["ALERTING_KEY_PREFIX"].default == DEFAULT_KEY_PREFIX == "alerting"
