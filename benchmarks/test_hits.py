"""A decorated function's cache hit, through kirocache and through its peers.

Memory, sync: kirocache against ``functools.lru_cache`` and cachetools (the in-process
floor: they keep a reference, kirocache keeps serialized bytes) and dogpile.cache.
Memory, async: kirocache against aiocache and cashews. Redis, sync and async: kirocache
against a bare redis-py ``GET`` plus ``orjson.loads`` (the floor of any Redis hit),
dogpile.cache, aiocache and cashews. Metrics stay on in kirocache, as they are by default.
The ``frozen`` cases return an immutable result (a frozen msgspec Struct), which kirocache's
memo of decoded values hands out again while the stored bytes stay the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import pytest
from _peers import (
    KIROCACHE,
    MEMORY_URL,
    PREFIX,
    RAW,
    TTL,
    ZLIB,
    Calls,
    async_participant,
    kirocache_cache,
    sync_participant,
)
from _workload import ASYNC_CALLS, FROZEN, VALUES, FrozenProfile, label, repeat_async
from pytest_benchmark.fixture import BenchmarkFixture

from kirocache import cached

USER = 42


def cases(libs: list[str]) -> list[tuple[str, str]]:
    """Every (lib, size) pair; compression only where it has something to compress."""
    return [(lib, size) for size in VALUES for lib in libs if not (lib == ZLIB and size == "small")]


@pytest.mark.parametrize(
    ("lib", "size"), cases([KIROCACHE, ZLIB, "lru_cache", "cachetools", "dogpile"])
)
def test_hit_memory_sync(
    benchmark: BenchmarkFixture, stack: ExitStack, lib: str, size: str
) -> None:
    value, calls = VALUES[size], Calls()
    profile = sync_participant(lib, value, MEMORY_URL, stack, calls)
    assert profile(USER) == value
    label(benchmark, f"hit/memory/sync/{size}", lib)
    assert benchmark(profile, USER) == value
    assert calls.count == 1


@pytest.mark.parametrize(("lib", "size"), cases([KIROCACHE, ZLIB, "aiocache", "cashews"]))
def test_hit_memory_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    lib: str,
    size: str,
) -> None:
    value, calls = VALUES[size], Calls()
    profile = async_participant(lib, value, MEMORY_URL, loop, stack, calls)
    assert loop.run_until_complete(profile(USER)) == value
    label(benchmark, f"hit/memory/async/{size}", lib, ops=ASYNC_CALLS)
    benchmark(repeat_async(loop, lambda: profile(USER)))
    assert calls.count == 1


@pytest.mark.parametrize(("lib", "size"), cases([KIROCACHE, ZLIB, RAW, "dogpile"]))
def test_hit_redis_sync(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    redis_url: str,
    flushed: None,
    lib: str,
    size: str,
) -> None:
    value, calls = VALUES[size], Calls()
    profile = sync_participant(lib, value, redis_url, stack, calls)
    assert profile(USER) == value
    label(benchmark, f"hit/redis/sync/{size}", lib)
    assert benchmark(profile, USER) == value
    assert calls.count == 1


@pytest.mark.parametrize(("lib", "size"), cases([KIROCACHE, ZLIB, RAW, "aiocache", "cashews"]))
def test_hit_redis_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    flushed: None,
    lib: str,
    size: str,
) -> None:
    value, calls = VALUES[size], Calls()
    profile = async_participant(lib, value, redis_url, loop, stack, calls)
    assert loop.run_until_complete(profile(USER)) == value
    label(benchmark, f"hit/redis/async/{size}", lib, ops=ASYNC_CALLS)
    benchmark(repeat_async(loop, lambda: profile(USER)))
    assert calls.count == 1


# ---- an immutable result: the memo of decoded values serves it --------------------------------


def frozen_sync(lib: str, stack: ExitStack, calls: Calls) -> Callable[[int], Any]:
    """``profile`` returning a frozen msgspec Struct, through kirocache or a peer."""
    if lib != KIROCACHE:
        return sync_participant(lib, FROZEN, MEMORY_URL, stack, calls)  # type: ignore[arg-type]
    cache = stack.enter_context(kirocache_cache(MEMORY_URL, KIROCACHE))

    @cached(prefix=PREFIX, ttl=TTL, cache=cache)
    def profile(user_id: int) -> FrozenProfile:
        calls.count += 1
        return FROZEN

    return profile


@pytest.mark.parametrize("lib", [KIROCACHE, "cachetools", "dogpile"])
def test_hit_memory_sync_frozen(benchmark: BenchmarkFixture, stack: ExitStack, lib: str) -> None:
    calls = Calls()
    profile = frozen_sync(lib, stack, calls)
    assert profile(USER) == FROZEN
    label(benchmark, "hit/memory/sync/frozen", lib)
    assert benchmark(profile, USER) == FROZEN
    assert calls.count == 1


@pytest.mark.parametrize("lib", [KIROCACHE, "aiocache", "cashews"])
def test_hit_memory_async_frozen(
    benchmark: BenchmarkFixture, stack: ExitStack, loop: asyncio.AbstractEventLoop, lib: str
) -> None:
    calls = Calls()
    if lib == KIROCACHE:
        cache = kirocache_cache(MEMORY_URL, KIROCACHE)
        stack.callback(lambda: loop.run_until_complete(cache.aclose()))

        @cached(prefix=PREFIX, ttl=TTL, cache=cache)
        async def profile(user_id: int) -> FrozenProfile:
            calls.count += 1
            return FROZEN

        call: Callable[[int], Awaitable[Any]] = profile
    else:
        call = async_participant(lib, FROZEN, MEMORY_URL, loop, stack, calls)  # type: ignore[arg-type]
    assert loop.run_until_complete(call(USER)) == FROZEN
    label(benchmark, "hit/memory/async/frozen", lib, ops=ASYNC_CALLS)
    benchmark(repeat_async(loop, lambda: call(USER)))
    assert calls.count == 1
