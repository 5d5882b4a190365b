"""TLS options for brokers and the state store: verification on by default, the CA file never dropped."""

from __future__ import annotations

import ssl

import pytest

from alerting.shared.tls import broker_ssl_options, broker_url_without_ssl, redis_client_ssl_kwargs


def test_rediss_is_verified_by_default() -> None:
    assert broker_ssl_options("rediss://h:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert redis_client_ssl_kwargs("rediss://h:6380/0") == {"ssl_cert_reqs": "required"}


def test_the_ca_file_is_kept_even_when_the_url_has_its_own_ssl_parameters() -> None:
    url = "rediss://:pw@h:6380/0?ssl_cert_reqs=required&foo=1"
    assert broker_ssl_options(url, ca_file="/ca.pem") == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert broker_url_without_ssl(url) == "rediss://:pw@h:6380/0?foo=1"
    assert redis_client_ssl_kwargs(url, ca_file="/ca.pem") == {"ssl_ca_certs": "/ca.pem"}  # redis-py reads the URL


@pytest.mark.parametrize(
    ("value", "expected"), [("none", ssl.CERT_NONE), ("CERT_OPTIONAL", ssl.CERT_OPTIONAL), ("odd", ssl.CERT_REQUIRED)]
)
def test_an_explicit_choice_in_the_url_is_respected_and_anything_unknown_verifies(
    value: str, expected: ssl.VerifyMode
) -> None:
    assert broker_ssl_options(f"rediss://h/0?ssl_cert_reqs={value}") == {"ssl_cert_reqs": expected}


def test_plain_urls_need_no_tls_options() -> None:
    assert broker_ssl_options("redis://h/0") is None
    assert broker_url_without_ssl("redis://h/0?ssl_cert_reqs=none") == "redis://h/0?ssl_cert_reqs=none"
    assert redis_client_ssl_kwargs("redis://h/0") == {}


def test_amqps_is_verified_with_the_ca_file() -> None:
    assert broker_ssl_options("amqps://h//", ca_file="/ca.pem") == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "ca_certs": "/ca.pem",
    }
