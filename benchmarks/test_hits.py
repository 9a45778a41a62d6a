"""A decorated function's cache hit, through kirocache and through its peers.

Memory, sync: kirocache against ``functools.lru_cache`` and cachetools (the in-process
floor: they keep a reference, kirocache keeps serialized bytes) and dogpile.cache.
Memory, async: kirocache against aiocache and cashews. Redis, sync and async: kirocache
against a bare redis-py ``GET`` plus ``orjson.loads`` (the floor of any Redis hit),
dogpile.cache, aiocache and cashews. Metrics stay on in kirocache, as they are by default.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

import pytest
from _peers import KIROCACHE, MEMORY_URL, RAW, ZLIB, Calls, async_participant, sync_participant
from _workload import ASYNC_CALLS, VALUES, label, repeat_async
from pytest_benchmark.fixture import BenchmarkFixture

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
