"""Sentinel URLs: one setting names the sentinels and the master, for both kombu and redis-py."""

from __future__ import annotations

import pytest

from alerting.errors import ConfigError
from alerting.shared.sentinel import SentinelURL, kombu_broker, parse_sentinel


def test_several_sentinels_a_password_a_database_and_the_master_name() -> None:
    url = "sentinel://:s3cret@s1:26379/2;sentinel://:s3cret@s2:26380/2?master_name=alerts-master"
    assert parse_sentinel("X", url) == SentinelURL((("s1", 26379), ("s2", 26380)), "alerts-master", 2, "s3cret")
    broker = kombu_broker(url)
    assert broker.url == "sentinel://:s3cret@s1:26379/2;sentinel://:s3cret@s2:26380/2"
    assert broker.transport_options == {"master_name": "alerts-master", "sentinel_kwargs": {"password": "s3cret"}}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sentinel://s1:26379/0", "master_name"),
        ("sentinel://s1:26379/x?master_name=m", "database"),
        ("sentinel://s1:26379/0;redis://s2/0?master_name=m", "sentinel://host:port"),
    ],
)
def test_a_broken_sentinel_url_is_refused_naming_the_setting(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"^ALERTING_STATE_URL: .*{problem}"):
        parse_sentinel("ALERTING_STATE_URL", url)
