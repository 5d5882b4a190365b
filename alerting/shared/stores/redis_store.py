"""Redis state store, shared by every worker: each decision is one Lua script, atomic, one round trip.

Keys (``<p>`` is the prefix): ``<p>:win:<fp>`` window hash, ``<p>:due`` window ends, ``<p>:dec:<id>`` and
``<p>:sent:<id>`` idempotency markers, ``<p>:claim:<id>`` who is sending an alert now, ``<p>:starts:<task>``
how often a task message was started, ``<p>:bucket`` the rate limiter, ``<p>:summary*`` folded alerts,
``<p>:outbox`` + ``<p>:item:<id>`` mail owed (in ``alerting.shared.outbox``'s JSON form), ``<p>:dead`` dead
letters. Scripts address keys built from the
prefix, so Redis Cluster is not supported (a single Redis, with replicas or Sentinel, is).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.sentinel import Sentinel

from alerting.errors import StoreError
from alerting.shared import outbox
from alerting.shared.sentinel import is_sentinel, parse_sentinel
from alerting.shared.stores import Claim, Occurrence, OutboxItem, StoreConfig, StoreStatus, scripts
from alerting.shared.throttle import Verdict
from alerting.shared.tls import redis_client_ssl_kwargs

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
        self._admit = client.register_script(scripts.source("admit.lua"))
        self._roll = client.register_script(scripts.source("roll.lua"))
        self._lease = client.register_script(scripts.source("lease.lua"))
        self._claim = client.register_script(scripts.source("claim.lua"))
        self._release = client.register_script(scripts.RELEASE)

    def _run(self, script: Any, call: scripts.ScriptCall) -> Any:
        return script(keys=call.keys, args=call.args)

    @_mapped
    def admit(self, occurrence: Occurrence, *, now: float) -> Verdict:
        c = self.config
        call = scripts.admit(prefix=self._p, occurrence=occurrence, now=now, length=c.window, rate=c.rate, ttl=c.ttl)
        return Verdict(self._run(self._admit, call))

    @_mapped
    def mark_sent(self, key: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(f"{self._p}:sent:{key}", "1", ex=max(int(self.config.ttl), 1))
        pipe.delete(f"{self._p}:claim:{key}")
        pipe.execute()

    @_mapped
    def claim(self, key: str, owner: str, *, lease: float, now: float, steal: str = "") -> Claim:
        # Redis keeps the lease on its own clock (PX); ``now`` is for the memory store's.
        call = scripts.claim(prefix=self._p, key=key, owner=owner, lease=lease, steal=steal)
        status, holder, ms_left = self._run(self._claim, call)
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
        self._run(self._release, scripts.release(prefix=self._p, key=key, owner=owner))

    @_mapped
    def is_sent(self, key: str) -> bool:
        return bool(self.client.exists(f"{self._p}:sent:{key}"))

    @_mapped
    def decision(self, alert_id: str) -> str | None:
        value = self.client.get(f"{self._p}:dec:{alert_id}")
        return _text(value) if value is not None else None

    @_mapped
    def roll_due(self, *, now: float, limit: int = 100) -> int:
        return int(self._run(self._roll, scripts.roll(prefix=self._p, now=now, length=self.config.window, limit=limit)))

    @_mapped
    def lease_outbox(self, *, now: float, limit: int = 10) -> list[OutboxItem]:
        call = scripts.lease(prefix=self._p, now=now, lease=self.config.lease, limit=limit, rate=self.config.rate)
        flat = self._run(self._lease, call)
        return [_item(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat), 2)]

    @_mapped
    def load_item(self, item_id: str) -> OutboxItem | None:
        body = self.client.get(f"{self._p}:item:{item_id}")
        return _item(item_id, _text(body)) if body is not None else None

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
        items = [_text(i) for i in self.client.zrange(f"{self._p}:outbox", 0, -1)]
        return StoreStatus(
            open_windows=len(fps),
            owed_digests=sum(1 for r in repeats if r and int(r) > 0) + sum(1 for i in items if outbox.is_digest_id(i)),
            outbox=len(items),
            folded=int(self.client.hlen(f"{self._p}:summary")),
            dead_letters=int(self.client.llen(f"{self._p}:dead")),
        )

    @_mapped
    def ping(self) -> None:
        self.client.ping()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _item(item_id: str, body: str) -> OutboxItem:
    """An item as Lua wrote it, in the one JSON form (times as numbers, entries as a list). A body that is not an
    item (written by something else) is handed on as it is: the sender dead-letters what it cannot render."""
    try:
        return OutboxItem.of(item_id, outbox.from_json(body))
    except (ValueError, KeyError, TypeError):
        raw = json.loads(body)
        return OutboxItem(item_id, raw if isinstance(raw, dict) else {"raw": raw})
