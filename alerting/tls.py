"""TLS options for Redis connections (``rediss://``): certificate verification on by default. Pure."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit


def is_tls_url(url: str) -> bool:
    return urlsplit(url).scheme in ("rediss", "amqps")


def broker_ssl_options(url: str, *, ca_file: str | None = None) -> dict[str, Any] | bool | None:
    """``broker_use_ssl`` for ``url``: verification required unless the URL itself says otherwise."""
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        if "ssl_cert_reqs" in parse_qs(urlsplit(url).query):
            return None  # the URL's own parameters rule; kombu reads them
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if ca_file:
            options["ssl_ca_certs"] = ca_file
        return options
    if scheme == "amqps":
        amqp: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
        if ca_file:
            amqp["ca_certs"] = ca_file
        return amqp
    return None


def redis_client_ssl_kwargs(url: str, *, ca_file: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url`` (the state store), verification on by default."""
    if urlsplit(url).scheme != "rediss" or "ssl_cert_reqs" in parse_qs(urlsplit(url).query):
        return {}
    kwargs: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if ca_file:
        kwargs["ssl_ca_certs"] = ca_file
    return kwargs
