"""Redis state store, shared by every worker: each decision is one Lua script, atomic, one round trip.

Keys (``<p>`` is the prefix): ``<p>:win:<fp>`` window hash, ``<p>:due`` window ends, ``<p>:dec:<id>`` and
``<p>:sent:<id>`` idempotency markers, ``<p>:claim:<id>`` who is sending an alert now, ``<p>:starts:<task>``
how often a task message was started, ``<p>:bucket`` the rate limiter, ``<p>:summary*`` folded alerts,
``<p>:outbox`` + ``<p>:item:<id>`` mail owed, ``<p>:dead`` dead letters. Scripts address keys built from the
prefix, so Redis Cluster is not supported (a single Redis, with replicas or Sentinel, is).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import redis
from redis.sentinel import Sentinel

from alerting.errors import StoreError
from alerting.shared.sentinel import is_sentinel, parse_sentinel
from alerting.shared.stores import Claim, Occurrence, OutboxItem, StoreConfig, StoreStatus
from alerting.shared.throttle import Verdict
from alerting.shared.tls import redis_client_ssl_kwargs


def _script(name: str) -> str:
    return (resources.files("alerting.shared.stores") / "lua" / name).read_text(encoding="utf-8")


P = ParamSpec("P")
R = TypeVar("R")


def _mapped(method: Callable[P, R]) -> Callable[P, R]:
    """redis-py's exceptions become :class:`StoreError` here, and nowhere else."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def connect(url: str, *, ca_file: str | None = None, timeout: float = 5.0) -> redis.Redis:
    """A client with timeouts (redis-py has none by default), TLS verification for rediss://, and the current
    master for sentinel:// URLs (followed across failovers)."""
    if is_sentinel(url):
        s = parse_sentinel("ALERTING_STATE_URL", url)
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            list(s.hosts),
            socket_timeout=timeout,
            sentinel_kwargs={"password": s.password, "socket_timeout": timeout} if s.password else None,
        )
        master: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
            s.master_name,
            db=s.db,
            password=s.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        return master
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=True,
        **redis_client_ssl_kwargs(url, ca_file=ca_file),
    )


class RedisStore:
    """Needs a client with ``decode_responses=True`` (as :func:`connect` makes)."""

    def __init__(self, client: redis.Redis, config: StoreConfig) -> None:
        self.client = client
        self.config = config
        self._p = config.prefix
        self._admit = client.register_script(_script("admit.lua"))
        self._roll = client.register_script(_script("roll.lua"))
        self._lease = client.register_script(_script("lease.lua"))
        self._claim = client.register_script(_script("claim.lua"))
        # Compare-and-delete: only the holder releases its claim (an expired one may already be someone else's).
        self._release = client.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
        )

    def _rate_args(self) -> tuple[int, float]:
        rate = self.config.rate
        return (rate.limit, rate.period) if rate is not None else (0, 1.0)

    @_mapped
    def admit(self, occurrence: Occurrence, *, now: float) -> Verdict:
        limit, period = self._rate_args()
        verdict = self._admit(
            args=[
                self._p,
                occurrence.alert_id,
                occurrence.fingerprint,
                repr(now),
                repr(self.config.window),
                occurrence.count,
                repr(occurrence.first_seen),
                repr(occurrence.last_seen),
                occurrence.sample,
                occurrence.subject,
                limit,
                repr(period),
                max(int(self.config.ttl), 1),
            ]
        )
        return Verdict(verdict)

    @_mapped
    def mark_sent(self, key: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(f"{self._p}:sent:{key}", "1", ex=max(int(self.config.ttl), 1))
        pipe.delete(f"{self._p}:claim:{key}")
        pipe.execute()

    @_mapped
    def claim(self, key: str, owner: str, *, lease: float, now: float, steal: str = "") -> Claim:
        # Redis keeps the lease on its own clock (PX); ``now`` is for the memory store's.
        status, holder, ms_left = self._claim(args=[self._p, key, owner, max(int(lease * 1000), 1), steal])
        return Claim(_text(status), _text(holder), max(int(ms_left), 0) / 1000)

    @_mapped
    def count_start(self, key: str) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(f"{self._p}:starts:{key}")
        pipe.expire(f"{self._p}:starts:{key}", max(int(self.config.ttl), 1))
        count, _ = pipe.execute()
        return int(count)

    @_mapped
    def release(self, key: str, owner: str) -> None:
        self._release(keys=[f"{self._p}:claim:{key}"], args=[owner])

    @_mapped
    def is_sent(self, key: str) -> bool:
        return bool(self.client.exists(f"{self._p}:sent:{key}"))

    @_mapped
    def decision(self, alert_id: str) -> str | None:
        value = self.client.get(f"{self._p}:dec:{alert_id}")
        return _text(value) if value is not None else None

    @_mapped
    def roll_due(self, *, now: float, limit: int = 100) -> int:
        return int(self._roll(args=[self._p, repr(now), repr(self.config.window), limit]))

    @_mapped
    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]:
        rate, period = self._rate_args()
        flat = self._lease(args=[self._p, repr(now), repr(self.config.lease), limit, rate, repr(period)])
        return [OutboxItem(flat[i], _decode_item(flat[i + 1])) for i in range(0, len(flat), 2)]

    @_mapped
    def load_item(self, item_id: str) -> OutboxItem | None:
        body = self.client.get(f"{self._p}:item:{item_id}")
        return OutboxItem(item_id, _decode_item(_text(body))) if body is not None else None

    @_mapped
    def complete(self, item_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{self._p}:item:{item_id}")
        pipe.zrem(f"{self._p}:outbox", item_id)
        pipe.set(f"{self._p}:sent:{item_id}", "1", ex=max(int(self.config.ttl), 1))
        pipe.execute()

    @_mapped
    def restore_item(self, item: OutboxItem, *, now: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(f"{self._p}:item:{item.item_id}", json.dumps(item.body))
        pipe.zadd(f"{self._p}:outbox", {item.item_id: now})
        pipe.delete(f"{self._p}:sent:{item.item_id}")
        pipe.execute()

    @_mapped
    def dead_letter(self, record: dict[str, Any]) -> None:
        self.client.lpush(f"{self._p}:dead", json.dumps(record, sort_keys=True))

    @_mapped
    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = self.client.lrange(f"{self._p}:dead", 0, max(limit, 1) - 1)
        return [json.loads(r) for r in raw]

    @_mapped
    def remove_dead_letter(self, record: dict[str, Any]) -> bool:
        return bool(self.client.lrem(f"{self._p}:dead", 1, json.dumps(record, sort_keys=True)))

    @_mapped
    def purge_dead_letters(self) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(f"{self._p}:dead")
        pipe.delete(f"{self._p}:dead")
        n, _ = pipe.execute()
        return int(n)

    @_mapped
    def status(self, *, now: float) -> StoreStatus:
        fps = [_text(f) for f in self.client.zrange(f"{self._p}:due", 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for fp in fps:
            pipe.hget(f"{self._p}:win:{fp}", "repeats")
        repeats = pipe.execute() if fps else []
        outbox = [_text(i) for i in self.client.zrange(f"{self._p}:outbox", 0, -1)]
        return StoreStatus(
            open_windows=len(fps),
            owed_digests=sum(1 for r in repeats if r and int(r) > 0)
            + sum(1 for i in outbox if i.startswith("digest:")),
            outbox=len(outbox),
            folded=int(self.client.hlen(f"{self._p}:summary")),
            dead_letters=int(self.client.llen(f"{self._p}:dead")),
        )

    @_mapped
    def ping(self) -> None:
        self.client.ping()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_item(body: str) -> dict[str, Any]:
    item: dict[str, Any] = json.loads(body)
    # Lua hands times over as the strings Redis stored; the rest of the code wants numbers.
    for key in ("first", "last", "window_start", "window_end", "since"):
        if isinstance(item.get(key), str):
            item[key] = float(item[key])
    if item.get("kind") == "summary" and not isinstance(item.get("entries"), list):
        item["entries"] = []  # cjson encodes an empty Lua table as {}
    return item
