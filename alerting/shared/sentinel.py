"""Redis Sentinel URLs: ``sentinel://[:password@]host:26379[;sentinel://host2:26379]/0?master_name=mymaster``.

kombu takes Sentinel brokers as one or more ``sentinel://`` URLs joined by ``;`` plus a ``master_name``
transport option; redis-py needs the sentinel addresses and the master's name. Writing the master's name into
the URL keeps the broker and the state store in one setting each. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from alerting.errors import ConfigError


@dataclass(frozen=True)
class SentinelURL:
    hosts: tuple[tuple[str, int], ...]
    master_name: str
    db: int
    password: str | None

    @property
    def kombu_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.hosts)


def is_sentinel(url: str) -> bool:
    return urlsplit(url.split(";", 1)[0]).scheme == "sentinel"


def parse_sentinel(setting: str, url: str) -> SentinelURL:
    hosts: list[tuple[str, int]] = []
    master = None
    db = 0
    password = None
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ConfigError(setting, f"expected sentinel://host:port parts joined by ';', got {part!r}")
        hosts.append((parts.hostname, parts.port or 26379))
        password = unquote(parts.password) if parts.password else password
        if parts.path.strip("/"):
            try:
                db = int(parts.path.strip("/"))
            except ValueError:
                raise ConfigError(setting, f"the database must be a number, got {parts.path!r}") from None
        master = parse_qs(parts.query).get("master_name", [master])[0]
    if not master:
        raise ConfigError(setting, "a sentinel:// URL needs ?master_name=<name of the monitored master>")
    return SentinelURL(tuple(hosts), master, db, password)


@dataclass(frozen=True)
class KombuBroker:
    """A broker URL from our settings as kombu takes it."""

    url: str
    use_ssl: dict[str, object] | None
    transport_options: dict[str, object]


def kombu_broker(url: str, *, ca_file: str | None = None) -> KombuBroker:
    from alerting.shared.tls import broker_ssl_options, broker_url_without_ssl

    if is_sentinel(url):
        s = parse_sentinel("ALERTING_BROKER_URL", url)
        options: dict[str, object] = {"master_name": s.master_name}
        if s.password:
            options["sentinel_kwargs"] = {"password": s.password}
        return KombuBroker(s.kombu_url, None, options)
    return KombuBroker(broker_url_without_ssl(url), broker_ssl_options(url, ca_file=ca_file), {})
