"""The handler's own Redis transport writes exactly the message Celery itself would, and fails fast."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis

from alerting.producer.transport import CeleryTransport, PublishFailed, RedisTransport, publisher_app
from tests.support.servers import HungServer, free_port
from tests.unit.factories import build_payload, make_record

VARYING_HEADERS = {"id", "root_id", "argsrepr", "origin"}  # per message or per process
VARYING_PROPERTIES = {"correlation_id", "reply_to", "delivery_tag"}


def test_redis_transport_writes_the_message_celery_writes(
    redis_url: str, redis_client: redis.Redis, queue: str
) -> None:
    payload = build_payload(make_record("order %s failed", (17,)))
    celery = CeleryTransport(publisher_app(redis_url), f"{queue}-celery", owned=True)
    ours = RedisTransport(redis_url, f"{queue}-ours")
    try:
        celery.publish_many([payload])
        ours.publish_many([payload])
    finally:
        celery.close()
        ours.close()
    theirs = json.loads(str(redis_client.lpop(f"{queue}-celery")))
    mine = json.loads(str(redis_client.lpop(f"{queue}-ours")))

    assert mine.keys() == theirs.keys()
    assert mine["headers"].keys() == theirs["headers"].keys()
    for key in theirs["headers"].keys() - VARYING_HEADERS:
        assert mine["headers"][key] == theirs["headers"][key], key
    assert mine["properties"].keys() == theirs["properties"].keys()
    for key in theirs["properties"].keys() - VARYING_PROPERTIES - {"delivery_info"}:
        assert mine["properties"][key] == theirs["properties"][key], key
    assert theirs["properties"]["delivery_info"] == {"exchange": "", "routing_key": f"{queue}-celery"}
    assert mine["properties"]["delivery_info"] == {"exchange": "", "routing_key": f"{queue}-ours"}
    assert json.loads(base64.b64decode(mine["body"])) == json.loads(base64.b64decode(theirs["body"]))
    for key in ("content-type", "content-encoding"):
        assert mine[key] == theirs[key]


def test_a_batch_lands_in_order_in_one_round_trip(redis_url: str, redis_client: redis.Redis, queue: str) -> None:
    payloads = [build_payload(make_record(f"problem {i}", ())) for i in range(50)]
    transport = RedisTransport(redis_url, queue)
    redis_client.config_resetstat()
    try:
        assert transport.publish_many(payloads) == 50
    finally:
        transport.close()
    assert int(redis_client.info("commandstats")["cmdstat_lpush"]["calls"]) == 1
    consumed = [json.loads(str(redis_client.rpop(queue))) for _ in range(50)]  # the worker's BRPOP end
    bodies = [json.loads(base64.b64decode(m["body"]))[0][0]["message"] for m in consumed]
    assert bodies == [f"problem {i}" for i in range(50)]


def test_refused_and_hung_brokers_fail_fast_without_retrying() -> None:
    payload = build_payload(make_record("x", ()))
    refused = RedisTransport(f"redis://127.0.0.1:{free_port()}/0", "q")
    started = time.perf_counter()
    with pytest.raises(PublishFailed):
        refused.publish_many([payload])
    assert time.perf_counter() - started < 0.5
    with HungServer() as hung:
        transport = RedisTransport(hung.url, "q")
        started = time.perf_counter()
        with pytest.raises(PublishFailed):
            transport.publish_many([payload])
        elapsed = time.perf_counter() - started
    assert 0.5 < elapsed < 3.0  # the 1 s socket timeout, once: no retries with backoff
