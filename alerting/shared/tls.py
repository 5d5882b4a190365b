"""TLS options for Redis and AMQP connections (``rediss://``, ``amqps://``): verification on by default. Pure."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

# The values kombu and redis-py accept in a URL's ssl_cert_reqs parameter.
_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
}


_SSL_PARAMS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def _url_cert_reqs(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("ssl_cert_reqs")
    return values[0] if values else None


def broker_ssl_options(url: str, *, ca_file: str | None = None) -> dict[str, Any] | None:
    """``broker_use_ssl`` for ``url`` (use with :func:`broker_url_without_ssl`): certificates verified unless
    the URL itself says otherwise; a CA file given in the settings is always used."""
    parts = urlsplit(url)
    if parts.scheme == "rediss":
        query = parse_qs(parts.query)
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        for name in _SSL_PARAMS:
            if name in query:
                value = query[name][0]
                options[name] = _CERT_REQS.get(value.lower(), ssl.CERT_REQUIRED) if name == "ssl_cert_reqs" else value
        if ca_file:
            options["ssl_ca_certs"] = ca_file
        return options
    if parts.scheme == "amqps":
        amqp: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
        if ca_file:
            amqp["ca_certs"] = ca_file
        return amqp
    return None


def broker_url_without_ssl(url: str) -> str:
    """``url`` minus its ``ssl_*`` query parameters, which :func:`broker_ssl_options` carries instead.

    kombu lets a URL's ``ssl_cert_reqs`` replace ``broker_use_ssl`` as a whole, which would drop the CA file.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or not parts.query:
        return url
    kept = [p for p in parts.query.split("&") if p.split("=", 1)[0] not in _SSL_PARAMS]
    return urlunsplit(parts._replace(query="&".join(kept)))


def redis_client_ssl_kwargs(url: str, *, ca_file: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url`` (the state store), verification on by default."""
    if urlsplit(url).scheme != "rediss":
        return {}
    kwargs: dict[str, Any] = {}
    if _url_cert_reqs(url) is None:  # otherwise redis-py reads it from the URL
        kwargs["ssl_cert_reqs"] = "required"
    if ca_file:
        kwargs["ssl_ca_certs"] = ca_file
    return kwargs
