"""Response cache: the `model_cache` table by default, Redis when REDIS_URL is set; TTL, LRU bound, hit counts.

What is cached: a finished, successful generation. Which requests may use it is decided by the pipeline
(deterministic params, or an explicit opt-in); this module only stores and finds responses by key.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from promptyard.db import db
from promptyard.db.models import CacheEntry
from promptyard.errors import NotFound

KEY_VERSION = 2  # bump when the key recipe changes so old entries stop matching (2: the model's options)


@dataclass
class CachedResponse:
    output: str
    finish_reason: str | None = "stop"
    tokens_in: int = 0
    tokens_out: int = 0


def cache_key(
    *,
    plugin: str,
    source: str,
    revision: str | None,
    quantization: str | None,
    options: dict[str, Any],
    rendered_input: str | list[dict[str, Any]],
    params: dict[str, Any],
) -> str:
    """A SHA-256 over what decides the output: backend, weights, the options that change answers (the model a
    server serves, a prompt format, a dtype...; see `output_options`), input and normalised params."""
    material = {
        "v": KEY_VERSION,
        "plugin": plugin,
        "source": source,
        "revision": revision,
        "quantization": quantization,
        "options": options,
        "input": rendered_input,
        "params": params,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def output_options(plugin: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """A model's options but those its plugin declares operational (timeouts, retries...: never the answer).

    An option of a plugin that is not installed, or that its plugin does not declare, is kept: two models may share
    entries only when nothing that could decide the output differs.
    """
    from promptyard.plugins.registry import get_registry

    try:
        factory = get_registry().get(plugin).factory
    except NotFound:
        factory = None
    operational = getattr(factory, "operational_options", frozenset())
    return {name: value for name, value in (options or {}).items() if name not in operational}


class ResponseCache(ABC):
    """Find and store responses by key; counts hits and misses."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries

    @abstractmethod
    def get(self, key: str, *, commit: bool = True) -> CachedResponse | None:
        """The cached response, counting a hit, or None, counting a miss.

        commit=False leaves a database cache's writes (the hit counter) in the caller's session transaction,
        so that the caller commits them together with its own (the pipeline: with the hit's execution record).
        """

    @abstractmethod
    def put(self, key: str, model_name: str, params: dict[str, Any], response: CachedResponse) -> None:
        """Store a response, then evict the least recently used entries beyond max_entries."""

    @abstractmethod
    def clear(self) -> int:
        """Drop every entry and reset the counters; returns how many entries were dropped."""

    @abstractmethod
    def counts(self) -> tuple[int, int, int]:
        """(entries, hits, misses)."""

    def stats(self) -> dict[str, Any]:
        entries, hits, misses = self.counts()
        lookups = hits + misses
        return {"entries": entries, "hits": hits, "misses": misses,
                "hit_rate": round(hits / lookups, 4) if lookups else 0.0}


class DatabaseCache(ResponseCache):
    """The `model_cache` table; each call is its own short transaction (or the session's, for get with commit=False).

    Hit/miss totals are per process.
    """

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(ttl_s, max_entries)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()
        self._table = t = CacheEntry.__table__
        # Built once: constructing a statement costs more than SQLite takes to run it (this is the hit path).
        now = bindparam("hit_at")
        self._hit = (update(t)
                     .where(t.c.key == bindparam("entry_key"), t.c.expires_at.is_(None) | (t.c.expires_at > now))
                     .values(hits=t.c.hits + 1, last_hit_at=now)
                     .returning(t.c.output, t.c.finish_reason, t.c.tokens_in, t.c.tokens_out))

    def get(self, key: str, *, commit: bool = True) -> CachedResponse | None:
        if commit:
            with db.engine.begin() as conn:
                row = self._find(conn, key)
        else:
            row = self._find(db.session.connection(), key)  # Core on the session's connection: no ORM layer
        self._count(row is not None)
        if row is None:
            return None
        return CachedResponse(row["output"], row["finish_reason"], row["tokens_in"], row["tokens_out"])

    def _find(self, connection: Any, key: str) -> Any:
        """The live entry's values, its hit counted in the same statement, on `connection`.

        An expired entry is left for the next put's eviction to delete: a miss writes nothing.
        """
        return connection.execute(self._hit, {"entry_key": key, "hit_at": self.clock()}).mappings().first()

    def put(self, key: str, model_name: str, params: dict[str, Any], response: CachedResponse) -> None:
        t, now = self._table, self.clock()
        expires_at = now + timedelta(seconds=self.ttl_s) if self.ttl_s else None
        values = dict(key=key, model_name=model_name, params=params, hits=0, created_at=now,
                      expires_at=expires_at, **asdict(response))
        try:
            with db.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.key == key))
                conn.execute(t.insert().values(**values))
        except IntegrityError:
            return  # a concurrent request stored the same response first; theirs is as good
        self._evict(now)

    def clear(self) -> int:
        with db.engine.begin() as conn:
            dropped = conn.execute(delete(self._table)).rowcount
        with self._lock:
            self._hits = self._misses = 0
        return dropped

    def counts(self) -> tuple[int, int, int]:
        self._evict(self.clock())
        with db.engine.connect() as conn:
            entries = conn.execute(select(func.count()).select_from(self._table)).scalar_one()
        with self._lock:
            return entries, self._hits, self._misses

    def _evict(self, now: datetime) -> None:
        t = self._table
        with db.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.expires_at.is_not(None), t.c.expires_at <= now))
            excess = conn.execute(select(func.count()).select_from(t)).scalar_one() - self.max_entries
            if excess > 0:
                last_used = func.coalesce(t.c.last_hit_at, t.c.created_at)
                oldest = select(t.c.id).order_by(last_used, t.c.id).limit(excess)
                ids = list(conn.execute(oldest).scalars())
                conn.execute(delete(t).where(t.c.id.in_(ids)))

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1


class RedisCache(ResponseCache):
    """Entries as JSON strings with a TTL; a sorted set by last use bounds the size; counters in Redis."""

    def __init__(self, client: Any, ttl_s: float, max_entries: int, prefix: str = "promptyard:cache:") -> None:
        super().__init__(ttl_s, max_entries)
        self.client = client
        self.prefix = prefix

    def _entry(self, key: str) -> str:
        return f"{self.prefix}entry:{key}"

    def get(self, key: str, *, commit: bool = True) -> CachedResponse | None:
        # Redis applies each command at once: there is no transaction to share with the database.
        raw = self.client.get(self._entry(key))
        pipe = self.client.pipeline()
        if raw is None:
            pipe.zrem(f"{self.prefix}lru", key).incr(f"{self.prefix}misses").execute()
            return None
        pipe.zadd(f"{self.prefix}lru", {key: time.time()}).incr(f"{self.prefix}hits").execute()
        data = json.loads(raw)
        return CachedResponse(data["output"], data["finish_reason"], data["tokens_in"], data["tokens_out"])

    def put(self, key: str, model_name: str, params: dict[str, Any], response: CachedResponse) -> None:
        now = time.time()
        payload = json.dumps({"model_name": model_name, "params": params, **asdict(response)})
        ttl_ms = int(self.ttl_s * 1000) if self.ttl_s else None
        pipe = self.client.pipeline()
        pipe.set(self._entry(key), payload, px=ttl_ms)
        pipe.zadd(f"{self.prefix}lru", {key: now})
        if ttl_ms:
            pipe.zadd(f"{self.prefix}expiry", {key: now + self.ttl_s})
        pipe.execute()
        self._evict()

    def clear(self) -> int:
        keys = [k.decode() if isinstance(k, bytes) else k for k in self.client.zrange(f"{self.prefix}lru", 0, -1)]
        dropped = sum(self.client.exists(self._entry(k)) for k in keys)
        pipe = self.client.pipeline()
        for k in keys:
            pipe.delete(self._entry(k))
        pipe.delete(f"{self.prefix}lru", f"{self.prefix}expiry", f"{self.prefix}hits", f"{self.prefix}misses")
        pipe.execute()
        return dropped

    def counts(self) -> tuple[int, int, int]:
        self._evict()
        entries = self.client.zcard(f"{self.prefix}lru")
        hits, misses = self.client.mget(f"{self.prefix}hits", f"{self.prefix}misses")
        return entries, int(hits or 0), int(misses or 0)

    def _evict(self) -> None:
        lru, expiry = f"{self.prefix}lru", f"{self.prefix}expiry"
        # Redis drops expired entries itself; forget them in the index so counts and the bound stay right.
        gone = self.client.zrangebyscore(expiry, "-inf", time.time())
        if gone:
            self.client.pipeline().zrem(lru, *gone).zrem(expiry, *gone).execute()
        excess = self.client.zcard(lru) - self.max_entries
        if excess > 0:
            oldest = [k for k, _ in self.client.zpopmin(lru, excess)]
            pipe = self.client.pipeline()
            for k in oldest:
                pipe.delete(self._entry(k.decode() if isinstance(k, bytes) else k))
            pipe.zrem(expiry, *oldest)
            pipe.execute()


def create_cache(config: dict[str, Any]) -> ResponseCache:
    """Redis when REDIS_URL is set, else the database table."""
    ttl = float(config.get("PROMPTYARD_CACHE_TTL") or 0)
    max_entries = int(config.get("PROMPTYARD_CACHE_MAX_ENTRIES") or 10000)
    url = config.get("REDIS_URL")
    if url:
        import redis

        prefix = config.get("PROMPTYARD_CACHE_PREFIX") or "promptyard:cache:"
        return RedisCache(redis.Redis.from_url(url), ttl, max_entries, prefix=prefix)
    return DatabaseCache(ttl, max_entries)
