"""alerting.producer.redact: secrets in text and under sensitive keys never leave the application."""

from __future__ import annotations

import copy
import json
import os

import pytest

from alerting.producer.redact import Redactor
from tests.unit.factories import make_payload

R = "[redacted]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login failed password=hunter2", f"login failed password={R}"),
        ("login failed password: hunter2", f"login failed password: {R}"),
        ("PASSWORD=hunter2 for alice", f"PASSWORD={R} for alice"),
        ('config password="hunter 2 with spaces" loaded', f"config password={R} loaded"),
        ("config password='hunter 2' loaded", f"config password={R} loaded"),
        ("{'api_key': 'hunter2', 'user': 'alice'}", f"{{'api_key': {R}, 'user': 'alice'}}"),
        ('{"password": "hunter2", "user": "alice"}', f'{{"password": {R}, "user": "alice"}}'),
        ("Authorization: Bearer hunter2.jwt.sig", f"Authorization: {R}"),
        ("authorization: Basic aHVudGVyMg==", f"authorization: {R}"),
        ("db_password=hunter2&user=alice", f"db_password={R}&user=alice"),
        ("X-Auth-Token: hunter2", f"X-Auth-Token: {R}"),
        ("csrftoken=hunter2; path=/", f"csrftoken={R}; path=/"),
        ("session_id=hunter2", f"session_id={R}"),
        ("redis://:hunter2@redis.internal:6379/0", f"redis://:{R}@redis.internal:6379/0"),
        ("smtp://alerts:hunter2@mail.example.com:587", f"smtp://alerts:{R}@mail.example.com:587"),
        ("cannot reach amqp://guest:hunter2@rabbit// now", f"cannot reach amqp://guest:{R}@rabbit// now"),
        ("postgresql://app:hunter2@db/app?sslmode=require", f"postgresql://app:{R}@db/app?sslmode=require"),
        ("GET /charge?api_key=hunter2&order=17", f"GET /charge?api_key={R}&order=17"),
        ('{"Authorization": "Bearer hunter2"}', f'{{"Authorization": {R}}}'),
        ("Cookie: sessionid=hunter2; csrftoken=hunter3", f"Cookie: {R}; csrftoken={R}"),
        ("password = hunter2", f"password = {R}"),
    ],
)
def test_secrets_in_text_are_replaced(text: str, expected: str) -> None:
    out = Redactor().text(text)
    assert out == expected
    assert "hunter" not in out


def test_a_dashed_header_name_is_redacted_like_its_underscored_key() -> None:
    # As an extra key "X-Api-Key" is secret (dashes fold to underscores); the same header in text must be too.
    redactor = Redactor()
    assert redactor.is_secret_key("X-Api-Key")
    assert "hunter2" not in redactor.text("upstream said 401 for X-Api-Key: hunter2")


@pytest.mark.parametrize(
    "text",
    [
        "order 17 failed: card declined",
        "retrying in 5s: connection refused",
        "session expired for user 5",
        "GET https://example.com/pay?order=17 returned 502",
        "redis://redis.internal:6379/0 is unreachable",
        "mail to ops@example.com bounced",
        "started at 12:30:45, took 1.5s",
        "key=value and mode: fast",
        "",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert Redactor().text(text) == text


def test_secret_keys_are_configurable() -> None:
    redactor = Redactor(["pin", "X-Customer-Ref"])
    assert redactor.text("card pin=1234") == f"card pin={R}"
    assert redactor.is_secret_key("X_Customer_Ref")
    assert redactor.is_secret_key("x-customer-ref")
    assert not redactor.is_secret_key("customer")
    # the defaults are replaced, not extended
    assert redactor.text("password=hunter2") == "password=hunter2"
    assert not redactor.is_secret_key("password")


def test_url_passwords_are_redacted_even_with_no_secret_keys() -> None:
    redactor = Redactor([])
    assert redactor.text("password=visible") == "password=visible"
    assert redactor.text("redis://:hunter2@host") == f"redis://:{R}@host"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("Password", True),
        ("DB_PASSWORD", True),
        ("api-key", True),
        ("Authorization", True),
        ("Set-Cookie", True),
        ("session_id", True),
        ("order_id", False),
        ("user", False),
        ("path", False),
    ],
)
def test_secret_keys_match_any_case_dash_or_underscore_by_substring(key: str, secret: bool) -> None:
    assert Redactor().is_secret_key(key) is secret


def test_payload_redacts_text_fields_and_structured_fields() -> None:
    payload = make_payload(
        message="login failed password=hunter2",
        traceback="Traceback...\nConnectionError: redis://:hunter2@redis:6379/0",
        stack="  File x.py\n    connect(token=hunter2)",
        extra={"password": "hunter2", "note": "retry with api_key=hunter2", "nested": {"items": ["token: hunter2"]}},
        context={"headers": {"Authorization": "Bearer hunter2"}, "path": "/login"},
    )
    out = Redactor().payload(payload)
    assert "hunter2" not in json.dumps(out)
    assert out["message"] == f"login failed password={R}"
    assert out["extra"]["password"] == R
    assert out["context"]["path"] == "/login"
    assert out["id"] == payload["id"]
    assert out["fingerprint"] == payload["fingerprint"]


def test_payload_redacts_a_secret_in_the_template_of_a_preformatted_message() -> None:
    # log.critical(f"login failed password={pw}"): the template is the formatted text and holds the secret too.
    payload = make_payload(message="login failed password=hunter2", template="login failed password=hunter2")
    assert "hunter2" not in json.dumps(Redactor().payload(payload))


def test_payload_returns_a_copy_and_leaves_the_original_alone() -> None:
    payload = make_payload(message="password=hunter2", extra={"password": "hunter2", "n": {"token": "t"}})
    before = copy.deepcopy(payload)
    Redactor().payload(payload)
    assert payload == before


# -- secrets in (key, value) pairs; text valid UTF-8 (hardening) ------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "headers=[('Authorization', 'Bearer pw-1')]",
        'headers=[("X-Api-Key", "pw-1"), ("Accept", "text/html")]',
        "dict_items([('session', 'pw-1')])",
    ],
    ids=["repr-of-tuple-pair", "double-quoted-pair", "dict-items"],
)
def test_text_redacts_the_value_of_a_secret_pair_as_its_repr_shows_it(text: str) -> None:
    out = Redactor().text(text)
    assert "pw-1" not in out
    assert R in out


def test_text_keeps_pairs_that_hold_no_secret() -> None:
    text = "headers=[('Accept', 'text/html'), ('User-Agent', 'curl')]"
    assert Redactor().text(text) == text


@pytest.mark.parametrize(
    "extra",
    [
        {"headers": [["Authorization", "Bearer pw-2"], ["Accept", "text/html"]]},
        {"calls": [{"Accept": "text/html", "authorization": "pw-2"}]},
        {"deep": [[["token", "pw-2"], ["Accept", "text/html"]]]},
    ],
    ids=["pairs-as-json-lists", "dict-in-list", "pairs-in-nested-list"],
)
def test_payload_redacts_secret_pairs_at_any_depth_of_the_extras(extra: dict[str, object]) -> None:
    out = Redactor().payload(make_payload(extra=extra))
    dumped = json.dumps(out["extra"])
    assert "pw-2" not in dumped
    assert "text/html" in dumped


def test_payload_makes_every_text_valid_utf8_with_the_undecodable_bytes_shown() -> None:
    odd = os.fsdecode(b"/srv/caf\xe9.py")
    payload = make_payload(
        pathname=odd, message=f"cannot read {odd}", func=odd, logger=odd, extra={odd: odd}, context={"file": [odd]}
    )
    out = Redactor().payload(payload)
    json.dumps(out, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    assert out["pathname"] == "/srv/caf\\xe9.py"
    assert out["message"] == "cannot read /srv/caf\\xe9.py"
    assert out["extra"] == {"/srv/caf\\xe9.py": "/srv/caf\\xe9.py"}
    assert out["context"] == {"file": ["/srv/caf\\xe9.py"]}
    assert payload["pathname"] == odd  # a copy: the original payload is left as it was
