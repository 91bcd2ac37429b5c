"""The cache: bytes under string keys, with TTLs, atomic counters and tags.

Two implementations share one contract: ``MemoryCache`` (in-process, the embedded
default) and ``RedisCache`` (production). Both are only ever a cache: anything in them
may vanish at any time, so callers must be able to recompute it.

Tags index keys by subject or capsule. Erasing a user and invalidating a capsule both
go through ``invalidate_tag``, so its bookkeeping is exact: it deletes every live key
that was *last set* with the tag, and nothing else — a key re-set without the tag, or
deleted and recreated, is not touched, and keys that expired on their own are neither
counted nor an error.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, runtime_checkable

import redis
from cachetools import TLRUCache
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from encaptio_data.errors import InvalidKeyError, SettingsError, StoreUnavailableError
from encaptio_data.settings import Settings, redact_url

# Tag sets live at "{namespace}:tag:{tag}", so a logical key starting with "tag:" would
# collide with one; such keys are refused by both implementations alike.
_RESERVED_PREFIX = "tag:"
# No ':' (namespace "a" would otherwise see "a:b"'s keys) and no glob characters (the
# namespace is part of every SCAN pattern).
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@runtime_checkable
class Cache(Protocol):
    namespace: str

    def get(self, key: str) -> bytes | None:
        """The value, or None if absent or expired."""
        ...

    def set(self, key: str, value: bytes, *, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        """Store ``value``; ``ttl`` in seconds (None = until evicted); replaces the key's tags."""
        ...

    def delete(self, *keys: str) -> int:
        """Delete keys; returns how many existed."""
        ...

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Atomically add ``amount``; a new counter starts at 0 and gets ``ttl``, an existing one keeps its expiry."""
        ...

    def invalidate_tag(self, tag: str) -> int:
        """Delete every live key last set with ``tag``; returns how many."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """Live logical keys (without the namespace) starting with ``prefix``, sorted."""
        ...

    def count(self) -> int:
        """Number of live keys in this namespace."""
        ...

    def clear(self) -> int:
        """Delete everything in this namespace, and only there; returns how many keys."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailableError if the cache cannot be reached."""
        ...


def get_json(cache: Cache, key: str) -> Any:
    """The decoded JSON value, or None when the key is absent (indistinguishable from a stored null)."""
    raw = cache.get(key)
    return None if raw is None else json.loads(raw)


def set_json(cache: Cache, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
    cache.set(key, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(), ttl=ttl, tags=tags)


def open_cache(settings: Settings) -> Cache:
    """Redis when ENCAPTIO_REDIS_URL is set, else an in-process cache."""
    try:
        if settings.redis_url:
            return RedisCache(settings.redis_url, namespace=settings.cache_namespace)
        return MemoryCache(namespace=settings.cache_namespace)
    except InvalidKeyError as exc:
        raise SettingsError(f"ENCAPTIO_CACHE_NAMESPACE: {exc}") from None


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidKeyError(
            f"cache namespace {namespace!r} must be 1-64 letters, digits, '_', '.' or '-'"
        )
    return namespace


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"cache key {key!r} must be a non-empty string")
    if key.startswith(_RESERVED_PREFIX):
        raise InvalidKeyError(f"cache key {key!r} is reserved: keys may not start with {_RESERVED_PREFIX!r}")
    return key


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not tag:
        raise InvalidKeyError(f"cache tag {tag!r} must be a non-empty string")
    return tag


def _check_tags(tags: Iterable[str]) -> frozenset[str]:
    if isinstance(tags, str):  # a bare string would silently become one tag per character
        raise TypeError("tags must be an iterable of strings, not a string")
    return frozenset(map(_check_tag, tags))


def _check_value(value: bytes) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"cache values are bytes, not {type(value).__name__}; use set_json for other values")
    return value


def _check_ttl(ttl: float | None) -> float | None:
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
    return ttl


def _check_amount(amount: int) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"incr amount must be an int, not {type(amount).__name__}")
    return amount


class _Entry(NamedTuple):
    value: bytes
    deadline: float  # on the cache's clock; math.inf when the entry never expires
    tags: frozenset[str]


class _ReportingTLRUCache(TLRUCache):
    """A TLRUCache that reports the entries it drops by itself (expiry, LRU eviction),
    so the tag index never keeps keys the cache no longer has."""

    def __init__(self, maxsize: int, timer: Callable[[], float], on_drop: Callable[[str, _Entry], None]) -> None:
        super().__init__(maxsize, ttu=lambda _key, entry, _now: entry.deadline, timer=timer)
        self._on_drop = on_drop

    def expire(self, time: float | None = None) -> list[tuple[str, _Entry]]:
        expired = super().expire(time)
        for key, entry in expired:
            self._on_drop(key, entry)
        return expired

    def popitem(self) -> tuple[str, _Entry]:
        key, entry = super().popitem()
        self._on_drop(key, entry)
        return key, entry


class MemoryCache:
    """In-process cache, LRU-bounded to ``max_entries``, with per-key deadlines on ``clock``.

    Every operation holds one lock and freezes the TLRUCache timer, so a key cannot
    expire half-way through a read-modify-write (incr) or a set that replaces its tags.
    """

    def __init__(
        self,
        namespace: str = "encaptio",
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.namespace = _check_namespace(namespace)
        self._lock = threading.RLock()
        self._entries = _ReportingTLRUCache(max_entries, clock, self._unindex)
        self._tagged: dict[str, set[str]] = {}

    @contextmanager
    def _frozen(self) -> Iterator[float]:
        with self._lock, self._entries.timer as now:
            yield now

    def _unindex(self, key: str, entry: _Entry) -> None:
        for tag in entry.tags:
            members = self._tagged.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tagged[tag]

    def _remove(self, key: str, entry: _Entry) -> None:
        self._unindex(key, entry)
        del self._entries[key]

    def get(self, key: str) -> bytes | None:
        _check_key(key)
        with self._frozen():
            entry = self._entries.get(key)
        return None if entry is None else entry.value

    def set(self, key: str, value: bytes, *, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        _check_key(key)
        _check_value(value)
        _check_ttl(ttl)
        tags = _check_tags(tags)
        with self._frozen() as now:
            old = self._entries.get(key)
            if old is not None:
                self._unindex(key, old)
            self._entries[key] = _Entry(value, math.inf if ttl is None else now + ttl, tags)
            for tag in tags:
                self._tagged.setdefault(tag, set()).add(key)

    def delete(self, *keys: str) -> int:
        for key in keys:
            _check_key(key)
        deleted = 0
        with self._frozen():
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._remove(key, entry)
                    deleted += 1
        return deleted

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        _check_key(key)
        _check_amount(amount)
        _check_ttl(ttl)
        with self._frozen() as now:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(b"0", math.inf if ttl is None else now + ttl, frozenset())
            try:
                total = int(entry.value) + amount
            except ValueError:
                raise ValueError(f"cache key {key!r} does not hold an integer") from None
            self._entries[key] = entry._replace(value=str(total).encode())
        return total

    def invalidate_tag(self, tag: str) -> int:
        _check_tag(tag)
        deleted = 0
        with self._frozen():
            for key in list(self._tagged.get(tag, ())):
                # Members are exact but may have expired without being purged yet.
                entry = self._entries.get(key)
                if entry is not None:
                    self._remove(key, entry)
                    deleted += 1
            self._tagged.pop(tag, None)
        return deleted

    def keys(self, prefix: str = "") -> list[str]:
        with self._frozen():
            return sorted(key for key in self._entries if key.startswith(prefix))

    def count(self) -> int:
        with self._frozen():
            return len(self._entries)

    def clear(self) -> int:
        with self._frozen():
            cleared = len(self._entries)
            self._entries.clear()
            self._tagged.clear()
        return cleared

    def ping(self) -> None:
        return None


# Each key is a hash: field "v" holds the value (HINCRBY works on it like INCRBY on a
# string) and one field "t:<tag>" per tag it was last set with. Tag sets may keep
# members that were since deleted, expired or re-set without the tag; invalidation
# checks the member's own "t:<tag>" field, which makes it exact without having to
# find and clean every set a key once belonged to.

# KEYS[1] the key, KEYS[2..] its tag sets; ARGV[1] value, ARGV[2] ttl in ms (0 = none),
# ARGV[3..] the tags, in the same order as KEYS[2..].
_SET = """
redis.call('DEL', KEYS[1])
local fields = {'v', ARGV[1]}
for i = 3, #ARGV do
  fields[#fields + 1] = 't:' .. ARGV[i]
  fields[#fields + 1] = ''
end
redis.call('HSET', KEYS[1], unpack(fields))
local px = tonumber(ARGV[2])
if px > 0 then redis.call('PEXPIRE', KEYS[1], px) end
-- A tag set outlives each of its members, so it never vanishes while one is live, yet
-- expires once they all have: stale members cannot pile up under tags nobody invalidates.
for i = 2, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  redis.call('SADD', KEYS[i], KEYS[1])
  if px == 0 then
    redis.call('PERSIST', KEYS[i])
  elseif left == -2 or (left >= 0 and left < px) then
    redis.call('PEXPIRE', KEYS[i], px)
  end
end
"""

# KEYS[1] the tag set; ARGV[1] the field "t:<tag>".
_INVALIDATE = """
local deleted = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HEXISTS', key, ARGV[1]) == 1 then
    deleted = deleted + redis.call('DEL', key)
  end
end
redis.call('DEL', KEYS[1])
return deleted
"""

# KEYS[1] the counter; ARGV[1] amount, ARGV[2] ttl in ms (0 = none). EXPIRE NX would
# also put a TTL on an existing counter that has none; only a new one must get it.
_INCR = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local total = redis.call('HINCRBY', KEYS[1], 'v', ARGV[1])
local px = tonumber(ARGV[2])
if created and px > 0 then redis.call('PEXPIRE', KEYS[1], px) end
return total
"""

_SCAN_BATCH = 1000


def _ttl_ms(ttl: float | None) -> int:
    return 0 if ttl is None else max(1, math.ceil(ttl * 1000))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisCache:
    """Cache in Redis under ``{namespace}:``; several namespaces can share one database."""

    def __init__(self, url: str, namespace: str = "encaptio") -> None:
        self.url = url
        self.namespace = _check_namespace(namespace)
        self._prefix = f"{namespace}:"
        self._tag_prefix = f"{namespace}:{_RESERVED_PREFIX}"
        self._client = redis.Redis.from_url(
            url,
            # A down Redis must fail a request in seconds, not hang it.
            socket_connect_timeout=2,
            socket_timeout=5,
            # One quick retry rides over a pooled connection that Redis closed (restart,
            # idle timeout) without multiplying the wait when Redis is really down.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
        )
        self._set = self._client.register_script(_SET)
        self._invalidate = self._client.register_script(_INVALIDATE)
        self._incr = self._client.register_script(_INCR)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailableError(f"Redis at {redact_url(self.url)} is unavailable: {exc}") from exc

    def _full(self, key: str) -> str:
        return self._prefix + key

    def _tag_set(self, tag: str) -> str:
        return self._tag_prefix + tag

    def _scan(self, prefix: str = "") -> Iterator[bytes]:
        return self._client.scan_iter(match=_glob_escape(self._prefix + prefix) + "*", count=_SCAN_BATCH)

    def _is_tag_set(self, full: bytes) -> bool:
        return full.startswith(self._tag_prefix.encode())

    def close(self) -> None:
        self._client.close()

    def get(self, key: str) -> bytes | None:
        with self._reachable():
            return self._client.hget(self._full(_check_key(key)), "v")

    def set(self, key: str, value: bytes, *, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        _check_key(key)
        _check_value(value)
        tags = sorted(_check_tags(tags))
        px = _ttl_ms(_check_ttl(ttl))
        with self._reachable():
            self._set(keys=[self._full(key), *map(self._tag_set, tags)], args=[value, px, *tags])

    def delete(self, *keys: str) -> int:
        fulls = [self._full(_check_key(key)) for key in keys]
        if not fulls:
            return 0
        with self._reachable():
            return self._client.delete(*fulls)

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        _check_key(key)
        _check_amount(amount)
        px = _ttl_ms(_check_ttl(ttl))
        with self._reachable():
            try:
                return self._incr(keys=[self._full(key)], args=[amount, px])
            except redis.ResponseError as exc:
                raise ValueError(f"cache key {key!r} does not hold an integer: {exc}") from exc

    def invalidate_tag(self, tag: str) -> int:
        _check_tag(tag)
        with self._reachable():
            return self._invalidate(keys=[self._tag_set(tag)], args=[f"t:{tag}"])

    def keys(self, prefix: str = "") -> list[str]:
        with self._reachable():
            found = [full.decode()[len(self._prefix) :] for full in self._scan(prefix) if not self._is_tag_set(full)]
        return sorted(found)

    def count(self) -> int:
        with self._reachable():
            return sum(1 for full in self._scan() if not self._is_tag_set(full))

    def clear(self) -> int:
        cleared = 0
        with self._reachable():
            entries: list[bytes] = []
            tag_sets: list[bytes] = []
            for full in self._scan():
                (tag_sets if self._is_tag_set(full) else entries).append(full)
                if len(entries) + len(tag_sets) >= _SCAN_BATCH:
                    cleared += self._unlink(entries, tag_sets)
            cleared += self._unlink(entries, tag_sets)
        return cleared

    def _unlink(self, entries: list[bytes], tag_sets: list[bytes]) -> int:
        """Unlink both batches and empty them; returns how many entries existed."""
        with self._client.pipeline(transaction=False) as pipe:
            if entries:
                pipe.unlink(*entries)
            if tag_sets:
                pipe.unlink(*tag_sets)
            results = pipe.execute()
        unlinked = results[0] if entries else 0
        entries.clear()
        tag_sets.clear()
        return unlinked

    def ping(self) -> None:
        with self._reachable():
            self._client.ping()
