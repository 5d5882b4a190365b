"""alerting.consumer.settings.load: the worker's environment read once; a bad value stops it naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.consumer.settings import WorkerSettings, load
from alerting.errors import ConfigError
from alerting.shared.config import Rate

# ALERTING_MAIL_FROM is always given: its default asks the resolver for this host's FQDN (not a unit-test thing).
BASE = {"ALERTING_MAIL_TO": "ops@example.com", "ALERTING_MAIL_FROM": "alerts@example.com"}
SMTP_AUTH = {
    "ALERTING_SMTP_HOST": "smtp.example.com",
    "ALERTING_SMTP_SECURITY": "starttls",
    "ALERTING_SMTP_USER": "alerts",
}


def env(**values: str) -> dict[str, str]:
    return {**BASE, **values}


def test_defaults_give_a_working_local_setup() -> None:
    s = load(BASE)
    assert s.broker_url == "redis://localhost:6379/0"
    assert s.state_url == s.broker_url
    assert s.queue == "alerts"
    assert (s.smtp.host, s.smtp.port, s.smtp.security) == ("localhost", 25, "none")
    assert s.smtp.user is None
    assert s.smtp.password is None
    assert s.smtp.timeout == 10.0
    assert s.smtp.verify is True
    assert s.mail_from == "alerts@example.com"
    assert s.mail_to == ("ops@example.com",)
    assert s.throttle_window == 300.0
    assert s.rate_limit == Rate(30, 60.0)
    assert s.max_retries == 5
    assert s.retry_backoff == 2.0
    assert s.retry_backoff_max == 300.0
    assert s.visibility_timeout == 900.0
    assert s.subject_prefix == ""


def test_from_env_reads_the_mapping_it_is_given() -> None:
    assert WorkerSettings.from_env(env(ALERTING_QUEUE="alerts-eu")).queue == "alerts-eu"


@pytest.mark.parametrize(("security", "port"), [("none", 25), ("starttls", 587), ("ssl", 465), ("SSL", 465)])
def test_default_port_follows_the_security_mode(security: str, port: int) -> None:
    s = load(env(ALERTING_SMTP_SECURITY=security))
    assert s.smtp.port == port
    assert s.smtp.security == security.lower()


def test_values_from_the_environment_are_used() -> None:
    s = load(
        env(
            ALERTING_BROKER_URL="redis://redis.internal:6379/2",
            ALERTING_STATE_URL="redis://state.internal:6379/3",
            ALERTING_SMTP_HOST="mail.example.com",
            ALERTING_SMTP_PORT="2525",
            ALERTING_MAIL_TO=" ops@example.com , oncall@example.com ,",
            ALERTING_RATE_LIMIT="off",
            ALERTING_MAX_RETRIES="0",
            ALERTING_SUBJECT_PREFIX="[prod] ",
        )
    )
    assert s.broker_url == "redis://redis.internal:6379/2"
    assert s.state_url == "redis://state.internal:6379/3"
    assert (s.smtp.host, s.smtp.port) == ("mail.example.com", 2525)
    assert s.mail_to == ("ops@example.com", "oncall@example.com")
    assert s.rate_limit is None
    assert s.max_retries == 0
    assert s.subject_prefix == "[prod] "


def test_fractional_durations_are_accepted() -> None:
    s = load(
        env(
            ALERTING_THROTTLE_WINDOW="0.5",
            ALERTING_RETRY_BACKOFF="0.25",
            ALERTING_RETRY_BACKOFF_MAX="1.5",
            ALERTING_SMTP_TIMEOUT="2.5",
            ALERTING_VISIBILITY_TIMEOUT="30.5",
        )
    )
    assert s.throttle_window == 0.5
    assert s.retry_backoff == 0.25
    assert s.retry_backoff_max == 1.5
    assert s.smtp.timeout == 2.5
    assert s.visibility_timeout == 30.5


def test_rabbitmq_broker_with_a_redis_state_url_is_accepted() -> None:
    s = load(env(ALERTING_BROKER_URL="amqp://guest:guest@rabbit:5672//", ALERTING_STATE_URL="redis://r:6379/1"))
    assert s.broker_url.startswith("amqp://")
    assert s.state_url == "redis://r:6379/1"


def test_auth_without_tls_is_allowed_to_a_local_relay() -> None:
    s = load(env(ALERTING_SMTP_HOST="127.0.0.1", ALERTING_SMTP_USER="u", ALERTING_SMTP_PASSWORD="p"))
    assert s.smtp.user == "u"
    assert s.smtp.is_local


def test_password_is_read_from_the_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-from-file\n", encoding="utf-8")
    s = load(env(**SMTP_AUTH, ALERTING_SMTP_PASSWORD_FILE=str(secret)))
    assert s.smtp.password == "s3cret-from-file"


def _bad(tmp_path: Path, case: str) -> dict[str, str]:
    empty = tmp_path / "empty"
    empty.write_text("  \n", encoding="utf-8")
    pwfile = tmp_path / "pw"
    pwfile.write_text("pw", encoding="utf-8")
    cases = {
        "port-abc": env(ALERTING_SMTP_PORT="abc"),
        "port-0": env(ALERTING_SMTP_PORT="0"),
        "port-70000": env(ALERTING_SMTP_PORT="70000"),
        "security-tls": env(ALERTING_SMTP_SECURITY="tls"),
        "mail-to-empty": env(ALERTING_MAIL_TO=""),
        "mail-to-missing": {"ALERTING_MAIL_FROM": "alerts@example.com"},
        "mail-to-bad": env(ALERTING_MAIL_TO="a@b, bad"),
        "mail-to-crlf": env(ALERTING_MAIL_TO="ops@example.com\r\nBcc: evil@x"),
        "mail-from-bad": env(ALERTING_MAIL_FROM="not an address"),
        "throttle-negative": env(ALERTING_THROTTLE_WINDOW="-1"),
        "rate-lots": env(ALERTING_RATE_LIMIT="lots"),
        "retries-x": env(ALERTING_MAX_RETRIES="x"),
        "backoff-zero": env(ALERTING_RETRY_BACKOFF="0"),
        "backoff-max-below-backoff": env(ALERTING_RETRY_BACKOFF="10", ALERTING_RETRY_BACKOFF_MAX="5"),
        "visibility-equal-backoff-max": env(ALERTING_RETRY_BACKOFF_MAX="300", ALERTING_VISIBILITY_TIMEOUT="300"),
        "visibility-below-backoff-max": env(ALERTING_VISIBILITY_TIMEOUT="100"),
        "timeout-zero": env(ALERTING_SMTP_TIMEOUT="0"),
        "broker-http": env(ALERTING_BROKER_URL="http://x"),
        "rabbit-without-state": env(ALERTING_BROKER_URL="amqp://guest:guest@rabbit//"),
        "state-not-redis": env(ALERTING_STATE_URL="amqp://rabbit//"),
        "auth-in-clear": env(
            ALERTING_SMTP_HOST="smtp.example.com",
            ALERTING_SMTP_SECURITY="none",
            ALERTING_SMTP_USER="u",
            ALERTING_SMTP_PASSWORD="p",
        ),
        "password-without-user": env(ALERTING_SMTP_PASSWORD="p"),
        "user-without-password": env(**SMTP_AUTH),
        "password-file-missing": env(**SMTP_AUTH, ALERTING_SMTP_PASSWORD_FILE=str(tmp_path / "nope")),
        "password-file-empty": env(**SMTP_AUTH, ALERTING_SMTP_PASSWORD_FILE=str(empty)),
        "password-and-file": env(**SMTP_AUTH, ALERTING_SMTP_PASSWORD="p", ALERTING_SMTP_PASSWORD_FILE=str(pwfile)),
        "tls-verify-maybe": env(ALERTING_SMTP_TLS_VERIFY="maybe"),
        "ca-file-missing": env(ALERTING_SMTP_CA_FILE=str(tmp_path / "no-ca.pem")),
        "host-with-space": env(ALERTING_SMTP_HOST="mail example.com"),
        "prefix-crlf": env(ALERTING_SUBJECT_PREFIX="[prod]\r\nBcc: evil@x"),
        "queue-bad": env(ALERTING_QUEUE="bad name"),
        "key-prefix-bad": env(ALERTING_KEY_PREFIX="alerting/*"),
        "metrics-port-bad": env(ALERTING_METRICS_PORT="99999"),
    }
    return cases[case]


@pytest.mark.parametrize(
    ("case", "variable"),
    [
        ("port-abc", "ALERTING_SMTP_PORT"),
        ("port-0", "ALERTING_SMTP_PORT"),
        ("port-70000", "ALERTING_SMTP_PORT"),
        ("security-tls", "ALERTING_SMTP_SECURITY"),
        ("mail-to-empty", "ALERTING_MAIL_TO"),
        ("mail-to-missing", "ALERTING_MAIL_TO"),
        ("mail-to-bad", "ALERTING_MAIL_TO"),
        ("mail-to-crlf", "ALERTING_MAIL_TO"),
        ("mail-from-bad", "ALERTING_MAIL_FROM"),
        ("throttle-negative", "ALERTING_THROTTLE_WINDOW"),
        ("rate-lots", "ALERTING_RATE_LIMIT"),
        ("retries-x", "ALERTING_MAX_RETRIES"),
        ("backoff-zero", "ALERTING_RETRY_BACKOFF"),
        ("backoff-max-below-backoff", "ALERTING_RETRY_BACKOFF_MAX"),
        ("visibility-equal-backoff-max", "ALERTING_VISIBILITY_TIMEOUT"),
        ("visibility-below-backoff-max", "ALERTING_VISIBILITY_TIMEOUT"),
        ("timeout-zero", "ALERTING_SMTP_TIMEOUT"),
        ("broker-http", "ALERTING_BROKER_URL"),
        ("rabbit-without-state", "ALERTING_STATE_URL"),
        ("state-not-redis", "ALERTING_STATE_URL"),
        ("auth-in-clear", "ALERTING_SMTP_SECURITY"),
        ("password-without-user", "ALERTING_SMTP_USER"),
        ("user-without-password", "ALERTING_SMTP_PASSWORD"),
        ("password-file-missing", "ALERTING_SMTP_PASSWORD_FILE"),
        ("password-file-empty", "ALERTING_SMTP_PASSWORD_FILE"),
        ("password-and-file", "ALERTING_SMTP_PASSWORD_FILE"),
        ("tls-verify-maybe", "ALERTING_SMTP_TLS_VERIFY"),
        ("ca-file-missing", "ALERTING_SMTP_CA_FILE"),
        ("host-with-space", "ALERTING_SMTP_HOST"),
        ("prefix-crlf", "ALERTING_SUBJECT_PREFIX"),
        ("queue-bad", "ALERTING_QUEUE"),
        ("key-prefix-bad", "ALERTING_KEY_PREFIX"),
        ("metrics-port-bad", "ALERTING_METRICS_PORT"),
    ],
)
def test_a_bad_value_raises_config_error_naming_the_variable(tmp_path: Path, case: str, variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(_bad(tmp_path, case))
    assert str(info.value).startswith(f"{variable}: ")
    assert info.value.setting == variable
    assert isinstance(info.value, ValueError)  # callers that catch ValueError see it too


def test_repr_of_the_settings_shows_no_password() -> None:
    s = load(
        env(
            **SMTP_AUTH,
            ALERTING_SMTP_PASSWORD="smtp-hunter2",
            ALERTING_BROKER_URL="redis://:broker-hunter2@redis.internal:6379/0",
            ALERTING_STATE_URL="redis://:state-hunter2@redis.internal:6379/1",
        )
    )
    for text in (repr(s), str(s), repr(s.smtp)):
        assert "smtp-hunter2" not in text
        assert "broker-hunter2" not in text
        assert "state-hunter2" not in text
    assert s.smtp.password == "smtp-hunter2"  # the value itself is still there for the sender


def test_repr_of_settings_read_from_a_password_file_shows_no_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-hunter2", encoding="utf-8")
    s = load(env(**SMTP_AUTH, ALERTING_SMTP_PASSWORD_FILE=str(secret)))
    assert "file-hunter2" not in repr(s)


# Values that once passed the start check and broke at run time (issue "Hardening", fault 8): each is refused
# at start, naming the variable. The comment says what the value did before.
OUT_OF_RANGE = [
    ("ALERTING_IDEMPOTENCY_TTL", "1e20"),  # every decision failed in Redis: throttling silently off
    ("ALERTING_IDEMPOTENCY_TTL", "59"),
    ("ALERTING_DIGEST_POLL_INTERVAL", "1e300"),  # the poller thread died of OverflowError: no digest ever
    ("ALERTING_DIGEST_POLL_INTERVAL", "61"),
    ("ALERTING_THROTTLE_WINDOW", "1e300"),
    ("ALERTING_THROTTLE_WINDOW", "inf"),
    ("ALERTING_VISIBILITY_TIMEOUT", "1e300"),
    ("ALERTING_SMTP_TIMEOUT", "1e-9"),  # every connection timed out
    ("ALERTING_SMTP_TIMEOUT", "601"),
    ("ALERTING_RATE_LIMIT", "1/0.0000001s"),
    ("ALERTING_RATE_LIMIT", "5/2d"),
    ("ALERTING_RATE_LIMIT", "1000000/s"),
    ("ALERTING_RETRY_BACKOFF", "1e300"),
    ("ALERTING_BROKER_URL", "redis://localhost:99999/0"),
    ("ALERTING_BROKER_URL", "redis://:secret@localhost:abc/0"),
    ("ALERTING_BROKER_URL", "redis://localhost:0/0"),
    ("ALERTING_STATE_URL", "redis://localhost:99999/1"),
    ("ALERTING_BROKER_URL", "sentinel://s1:26379/0;sentinel://s2:99999/0?master_name=m"),
    ("ALERTING_SUBJECT_PREFIX", "\x1b]2;pwned\x07[prod] "),  # would retitle terminals and mail clients
    ("ALERTING_SUBJECT_PREFIX", "[prod]\t"),
    ("ALERTING_SUBJECT_PREFIX", "[prod]\x85"),
    ("ALERTING_SUBJECT_PREFIX", "x" * 41),  # was cut silently
    ("ALERTING_READY_FILE", "/nonexistent-dir/alerting.ready"),  # failed only once ready: health check never passed
]


@pytest.mark.parametrize(("variable", "value"), OUT_OF_RANGE)
def test_a_value_out_of_its_range_is_refused_at_start_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env(**{variable: value}))
    assert info.value.setting == variable
    assert "secret" not in str(info.value)  # a URL's password is not repeated in the message


def test_a_ready_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^ALERTING_READY_FILE: "):
        load(env(ALERTING_READY_FILE=str(tmp_path)))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALERTING_IDEMPOTENCY_TTL", "60"),
        ("ALERTING_IDEMPOTENCY_TTL", "2592000"),
        ("ALERTING_DIGEST_POLL_INTERVAL", "0.05"),
        ("ALERTING_DIGEST_POLL_INTERVAL", "60"),
        ("ALERTING_THROTTLE_WINDOW", "0"),
        ("ALERTING_THROTTLE_WINDOW", "604800"),
        ("ALERTING_SMTP_TIMEOUT", "0.1"),
        ("ALERTING_RATE_LIMIT", "1/d"),
        ("ALERTING_RATE_LIMIT", "100000/s"),
        ("ALERTING_RATE_LIMIT", "3/4s"),
        ("ALERTING_BROKER_URL", "redis://:p@localhost:65535/0"),
        ("ALERTING_SUBJECT_PREFIX", "[prod] "),
        ("ALERTING_SUBJECT_PREFIX", "x" * 40),
    ],
)
def test_the_ends_of_each_range_are_accepted(variable: str, value: str) -> None:
    load(env(**{variable: value}))


def test_a_ready_file_in_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    assert load(env(ALERTING_READY_FILE=str(tmp_path / "ready"))).ready_file == str(tmp_path / "ready")


def test_visibility_timeout_of_a_day_is_the_most_accepted() -> None:
    assert load(env(ALERTING_VISIBILITY_TIMEOUT="86400")).visibility_timeout == 86400.0
    with pytest.raises(ConfigError, match=r"^ALERTING_VISIBILITY_TIMEOUT: "):
        load(env(ALERTING_VISIBILITY_TIMEOUT="86401"))


# -- the visibility timeout against the task's hard time limit ---------------------------------------------------
# A task still running when the visibility timeout passes is handed to a second worker, which may mail it again.
# The hard time limit (3 x ALERTING_SMTP_TIMEOUT + 15 s) is the longest a task runs: the timeout must exceed it.
@pytest.mark.parametrize(("smtp_timeout", "hard"), [("10", 45.0), ("0.1", 15.3), ("600", 1815.0)])
def test_a_visibility_timeout_not_above_the_tasks_hard_time_limit_is_refused(smtp_timeout: str, hard: float) -> None:
    for visibility in (hard, hard - 0.1):
        with pytest.raises(ConfigError) as info:
            load(env(ALERTING_SMTP_TIMEOUT=smtp_timeout, ALERTING_VISIBILITY_TIMEOUT=f"{visibility:g}",
                     ALERTING_RETRY_BACKOFF_MAX="2"))  # fmt: skip
        assert info.value.setting == "ALERTING_VISIBILITY_TIMEOUT"
        assert f"hard time limit ({hard:g}s" in str(info.value)
    accepted = load(env(ALERTING_SMTP_TIMEOUT=smtp_timeout, ALERTING_VISIBILITY_TIMEOUT=f"{hard + 0.1:g}",
                        ALERTING_RETRY_BACKOFF_MAX="2"))  # fmt: skip
    assert accepted.visibility_timeout == pytest.approx(hard + 0.1)


def test_the_settings_check_and_the_celery_config_use_one_hard_time_limit() -> None:
    from alerting.consumer.celery_config import time_limits, worker_config

    s = load(env(ALERTING_SMTP_TIMEOUT="7", ALERTING_VISIBILITY_TIMEOUT="36.5", ALERTING_RETRY_BACKOFF_MAX="2"))
    limits = time_limits(s)
    assert limits.hard == 7 * 3 + 15 == worker_config(s)["task_time_limit"]
    assert limits.hard < s.visibility_timeout == worker_config(s)["broker_transport_options"]["visibility_timeout"]
    with pytest.raises(ConfigError, match=r"^ALERTING_VISIBILITY_TIMEOUT: .*hard time limit \(36s"):
        load(env(ALERTING_SMTP_TIMEOUT="7", ALERTING_VISIBILITY_TIMEOUT="36", ALERTING_RETRY_BACKOFF_MAX="2"))
