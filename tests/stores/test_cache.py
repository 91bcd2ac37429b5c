"""One contract for both caches, run against MemoryCache and a real Redis."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from uuid import uuid4

import pytest
import redis

from encaptio_data.errors import InvalidKeyError, SettingsError, StoreUnavailableError
from encaptio_data.settings import get_settings
from encaptio_data.stores.cache import Cache, MemoryCache, RedisCache, get_json, open_cache, set_json


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    cache: Cache
    # Lets `seconds` pass for the cache, then asserts `condition` holds: instantly on the
    # fake clock, by polling a real Redis (which expires keys on its own schedule).
    wait: Callable[[float, Callable[[], bool]], None]


def _fake_wait(clock: FakeClock) -> Callable[[float, Callable[[], bool]], None]:
    def wait(seconds: float, condition: Callable[[], bool]) -> None:
        clock.advance(seconds)
        assert condition()

    return wait


def _poll(seconds: float, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds + 3
    while not condition():
        assert time.monotonic() < deadline, "condition still false 3s after the TTL"
        time.sleep(0.05)


def _unique_namespace() -> str:
    return f"t{uuid4().hex}"


@pytest.fixture
def fresh_redis_cache(redis_url: str) -> Iterator[Callable[..., RedisCache]]:
    """Makes RedisCaches on the test database, each cleared and closed afterwards."""
    made: list[RedisCache] = []

    def make(namespace: str | None = None) -> RedisCache:
        made.append(RedisCache(redis_url, namespace=namespace or _unique_namespace()))
        return made[-1]

    yield make
    for cache in made:
        cache.clear()
        cache.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        clock = FakeClock()
        return Backend(MemoryCache(namespace="test", clock=clock), _fake_wait(clock))
    return Backend(request.getfixturevalue("fresh_redis_cache")(), _poll)


@pytest.fixture
def cache(backend: Backend) -> Cache:
    return backend.cache


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the contract ---------------------------------------------------------------------


def test_implements_the_protocol(cache: Cache) -> None:
    assert isinstance(cache, Cache)
    cache.ping()


def test_get_set_delete(cache: Cache) -> None:
    assert cache.get("missing") is None
    cache.set("a", b"1")
    cache.set("b", b"\x00\xffbinary")
    cache.set("a", b"2")
    assert cache.get("a") == b"2"
    assert cache.get("b") == b"\x00\xffbinary"
    assert cache.delete("a", "missing") == 1
    assert cache.get("a") is None
    assert cache.delete() == 0
    cache.set("empty", b"")
    assert cache.get("empty") == b""


def test_keys_and_count(cache: Cache) -> None:
    assert cache.keys() == [] and cache.count() == 0
    for key in ("user:1", "user:2", "capsule:9", "weird*[key]?"):
        cache.set(key, b"x", tags=["t"])
    assert cache.keys() == ["capsule:9", "user:1", "user:2", "weird*[key]?"]
    assert cache.keys("user:") == ["user:1", "user:2"]
    assert cache.keys("weird*") == ["weird*[key]?"]
    assert cache.keys("u*") == []
    assert cache.count() == 4


def test_ttl_expiry(backend: Backend) -> None:
    cache = backend.cache
    cache.set("short", b"v", ttl=1)
    cache.set("long", b"v", ttl=3600)
    cache.set("forever", b"v")
    assert cache.get("short") == b"v"
    backend.wait(1.0, lambda: cache.get("short") is None)
    assert cache.keys() == ["forever", "long"]
    assert cache.count() == 2


def test_set_without_ttl_clears_a_previous_ttl(backend: Backend) -> None:
    cache = backend.cache
    cache.set("k", b"old", ttl=1)
    cache.set("k", b"new")
    cache.set("marker", b"v", ttl=1)
    backend.wait(1.0, lambda: cache.get("marker") is None)
    assert cache.get("k") == b"new"


def test_invalid_arguments(cache: Cache) -> None:
    for value in ("text", 1, None, bytearray(b"x")):
        with pytest.raises(TypeError):
            cache.set("k", value)  # type: ignore[arg-type]
    for key in ("", "tag:x"):
        with pytest.raises(InvalidKeyError):
            cache.set(key, b"v")
        with pytest.raises(InvalidKeyError):
            cache.get(key)
    with pytest.raises(InvalidKeyError):
        cache.set("k", b"v", tags=[""])
    with pytest.raises(TypeError):
        cache.set("k", b"v", tags="one-tag")
    for ttl in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            cache.set("k", b"v", ttl=ttl)
    with pytest.raises(TypeError):
        cache.incr("n", 1.5)  # type: ignore[arg-type]
    assert cache.count() == 0


def test_incr(cache: Cache) -> None:
    assert cache.incr("n") == 1
    assert cache.incr("n", 5) == 6
    assert cache.incr("n", -10) == -4
    assert cache.get("n") == b"-4"
    cache.set("m", b"41")
    assert cache.incr("m") == 42
    cache.set("text", b"abc")
    with pytest.raises(ValueError, match="text"):
        cache.incr("text")


def test_incr_ttl_is_set_only_when_the_counter_is_created(backend: Backend) -> None:
    cache = backend.cache
    assert cache.incr("window", ttl=1) == 1
    assert cache.incr("window", ttl=3600) == 2
    cache.set("plain", b"7")
    assert cache.incr("plain", ttl=1) == 8
    backend.wait(1.0, lambda: cache.get("window") is None)
    assert cache.get("plain") == b"8"
    assert cache.incr("window", ttl=1) == 1


def test_incr_is_atomic_across_threads(cache: Cache) -> None:
    threads, rounds = 8, 500
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                cache.incr("hits", ttl=3600)
        except BaseException as exc:  # surfaced by the assertion below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert cache.get("hits") == str(threads * rounds).encode()


def test_invalidate_tag(cache: Cache) -> None:
    cache.set("view:1", b"v", tags=["user:1", "capsule:9"])
    cache.set("view:2", b"v", tags=["user:2", "capsule:9"])
    cache.set("other", b"v")
    assert cache.invalidate_tag("user:1") == 1
    assert cache.get("view:1") is None
    assert cache.invalidate_tag("capsule:9") == 1
    assert cache.keys() == ["other"]
    assert cache.invalidate_tag("user:2") == 0
    assert cache.invalidate_tag("never-used") == 0


def test_a_key_keeps_only_the_tags_it_was_last_set_with(cache: Cache) -> None:
    cache.set("view", b"v1", tags=["old"])
    cache.set("view", b"v2", tags=["new"])
    assert cache.invalidate_tag("old") == 0
    assert cache.get("view") == b"v2"

    cache.set("gone", b"v", tags=["t"])
    cache.delete("gone")
    cache.set("gone", b"recreated")
    assert cache.invalidate_tag("t") == 0
    assert cache.get("gone") == b"recreated"

    assert cache.invalidate_tag("new") == 1
    cache.set("view", b"v3", tags=["new"])
    assert cache.invalidate_tag("new") == 1, "a tag is usable again after invalidation"


def test_incr_keeps_the_tags_of_the_key(cache: Cache) -> None:
    cache.set("count", b"1", tags=["user:1"])
    assert cache.incr("count") == 2
    assert cache.invalidate_tag("user:1") == 1
    assert cache.get("count") is None


def test_invalidate_tag_skips_expired_keys(backend: Backend) -> None:
    cache = backend.cache
    cache.set("brief", b"v", ttl=1, tags=["user:1"])
    cache.set("lasting", b"v", ttl=3600, tags=["user:1"])
    backend.wait(1.0, lambda: cache.get("brief") is None)
    assert cache.invalidate_tag("user:1") == 1
    assert cache.count() == 0


def test_clear(cache: Cache) -> None:
    cache.set("a", b"v", tags=["t"])
    cache.incr("n")
    assert cache.clear() == 2
    assert cache.count() == 0 and cache.keys() == []
    assert cache.invalidate_tag("t") == 0
    assert cache.clear() == 0


def test_json_helpers(cache: Cache) -> None:
    set_json(cache, "doc", {"name": "Zoë", "n": [1, 2]}, tags=["t"])
    assert cache.get("doc") == '{"name":"Zoë","n":[1,2]}'.encode()
    assert get_json(cache, "doc") == {"name": "Zoë", "n": [1, 2]}
    assert get_json(cache, "missing") is None
    assert cache.invalidate_tag("t") == 1


# --- MemoryCache only ----------------------------------------------------------------


def test_memory_evicts_the_least_recently_used_entry() -> None:
    cache = MemoryCache(max_entries=3)
    cache.set("a", b"1", tags=["t"])
    cache.set("b", b"2", tags=["t"])
    cache.set("c", b"3")
    assert cache.get("a") == b"1"
    cache.set("d", b"4")
    assert cache.keys() == ["a", "c", "d"]
    assert cache.count() == 3
    assert cache.invalidate_tag("t") == 1


def test_memory_rejects_an_empty_capacity() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


# --- RedisCache only -----------------------------------------------------------------


def test_redis_namespaces_are_isolated(fresh_redis_cache: Callable[..., RedisCache]) -> None:
    base = _unique_namespace()
    first = fresh_redis_cache(base)
    # Shares the first namespace as a string prefix: only the ':' boundary separates them.
    second = fresh_redis_cache(base + "x")
    first.set("k", b"first", tags=["t"])
    second.set("k", b"second", tags=["t"])
    second.set("only-second", b"v")
    assert first.get("k") == b"first" and second.get("k") == b"second"
    assert first.keys() == ["k"] and first.count() == 1
    assert first.invalidate_tag("t") == 1
    assert second.get("k") == b"second"
    assert first.clear() == 0
    second.set("k2", b"v")
    assert first.clear() == 0
    assert second.keys() == ["k", "k2", "only-second"]


def test_redis_clear_removes_the_whole_namespace_and_nothing_else(
    redis_url: str, fresh_redis_cache: Callable[..., RedisCache]
) -> None:
    cache = fresh_redis_cache()
    raw = redis.Redis.from_url(redis_url)
    bystander = f"{_unique_namespace()}:k"
    raw.set(bystander, b"untouched")
    try:
        for i in range(2500):  # more than one SCAN/UNLINK batch
            cache.set(f"k{i}", b"v", tags=[f"tag{i % 3}"])
        assert cache.count() == 2500
        assert cache.clear() == 2500
        assert list(raw.scan_iter(match=f"{cache.namespace}:*")) == []
        assert raw.get(bystander) == b"untouched"
    finally:
        raw.delete(bystander)
        raw.close()


def test_redis_tag_sets_live_as_long_as_their_longest_lived_member(
    redis_url: str, fresh_redis_cache: Callable[..., RedisCache]
) -> None:
    cache = fresh_redis_cache()
    raw = redis.Redis.from_url(redis_url)
    tag_set = f"{cache.namespace}:tag:t"
    try:
        cache.set("a", b"v", ttl=60, tags=["t"])
        assert 0 < raw.pttl(tag_set) <= 60_000
        cache.set("b", b"v", ttl=600, tags=["t"])
        assert 60_000 < raw.pttl(tag_set) <= 600_000
        cache.set("c", b"v", ttl=1, tags=["t"])
        assert raw.pttl(tag_set) > 60_000
        cache.set("d", b"v", tags=["t"])
        assert raw.pttl(tag_set) == -1
        cache.set("e", b"v", ttl=1, tags=["t"])
        assert raw.pttl(tag_set) == -1
    finally:
        raw.close()


def test_redis_unreachable_is_a_one_line_store_error() -> None:
    url = f"redis://:s3cret@127.0.0.1:{_free_port()}/0"
    cache = RedisCache(url, namespace="encaptio")
    for operation in (cache.ping, lambda: cache.get("k"), lambda: cache.set("k", b"v"), cache.keys):
        with pytest.raises(StoreUnavailableError) as caught:
            operation()
        message = str(caught.value)
        assert url.replace("s3cret", "***") in message
        assert "s3cret" not in message and "\n" not in message
    cache.close()


# --- open_cache ----------------------------------------------------------------------


def test_open_cache_defaults_to_memory() -> None:
    cache = open_cache(get_settings(cache_namespace="tenant-a"))
    assert isinstance(cache, MemoryCache)
    assert cache.namespace == "tenant-a"


def test_open_cache_uses_redis_when_configured(redis_url: str) -> None:
    cache = open_cache(get_settings(redis_url=redis_url, cache_namespace=_unique_namespace()))
    assert isinstance(cache, RedisCache)
    try:
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
    finally:
        cache.clear()
        cache.close()


@pytest.mark.parametrize("namespace", ["", "a:b", "a*", "x" * 65])
def test_open_cache_rejects_a_bad_namespace(namespace: str) -> None:
    with pytest.raises(SettingsError, match="ENCAPTIO_CACHE_NAMESPACE"):
        open_cache(get_settings(cache_namespace=namespace))
