"""Type-checked only (mypy --strict), never run: the public API keeps its types."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from kirocache import MISSING, Cache, CircuitBreaker, Missing, Namespace, configure, get_cache
from kirocache.backends import BackendStats, MemoryBackend
from kirocache.keys import code_hash, make_key


async def check_async(cache: Cache) -> None:
    assert_type(await cache.aset("k", 1), bool)
    assert_type(await cache.adelete("k"), bool)
    assert_type(await cache.aget_many(["k"]), dict[str, Any])
    assert_type(await cache.aincr("n"), int | None)
    assert_type(await cache.attl("k"), float | None)
    assert_type(await cache.aget_or_set("k", lambda: 3), int)
    assert_type(await cache.astats(), BackendStats)
    assert_type(await cache.aping(), float)
    assert_type(await cache.aprune_indexes(), dict[str, int])


def check_sync() -> None:
    cache = Cache(MemoryBackend(), breaker=CircuitBreaker(failure_threshold=2))
    assert_type(Cache.from_url("memory://"), Cache)
    assert_type(configure("memory://"), Cache)
    assert_type(get_cache(), Cache)
    assert_type(cache.set("k", {"a": 1}, ttl=60), bool)
    assert_type(cache.exists("k"), bool)
    assert_type(cache.delete_many(["k"]), int)
    assert_type(cache.incr("n", 2), int | None)
    assert_type(cache.get_or_set("k", lambda: "v"), str)
    assert_type(cache.delete_pattern("user:*"), int)
    assert_type(cache.prune_indexes(), dict[str, int])
    # the attributes kept by the collaborators keep their types
    assert_type(cache.breaker, CircuitBreaker | None)
    assert_type(cache.key_prefix, str)
    assert_type(cache.errors_total, int)
    assert_type(cache.tombstone_ttl, float | None)
    cache.errors_total = "many"  # type: ignore[assignment]
    miss = MISSING
    assert_type(miss, Missing)
    ns = Namespace("user:profile:", ttl=3600)
    assert_type(ns.key(42), str)
    assert_type(ns.ttl, float | None)
    assert_type(make_key("a", 1), str)
    assert_type(code_hash("x", "python"), str)
    cache.set(1, "v")  # type: ignore[arg-type]
    cache.incr("n", "2")  # type: ignore[arg-type]
    cache.set("k", 1, ttl="60")  # type: ignore[arg-type]
