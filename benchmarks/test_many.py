"""100 keys at once: ``get_many`` against ``MGET``, a batch against a raw pipeline.

``get_many``: kirocache's ``get_many`` of 100 cached keys against redis-py's ``MGET`` plus
100 ``orjson.loads`` (the floor), against the same 100 reads one ``get`` at a time, and
against the peers' own multi-gets. Batch: 50 sets and 50 gets in one ``cache.batch()``
against the same commands in one redis-py pipeline (values encoded with orjson), and
against the same 100 calls one by one. A round is the whole 100-key operation.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import aiocache
import orjson
import pytest
import redis
import redis.asyncio
from _peers import KIROCACHE, MEMORY_URL, RAW, TTL, kirocache_cache
from _workload import VALUES, label
from cashews import Cache as CashewsCache
from dogpile.cache import make_region
from pytest_benchmark.fixture import BenchmarkFixture

from kirocache import Cache

N = 100
HALF = N // 2
KEYS = [f"bench:many:{i}" for i in range(N)]
ONE_BY_ONE = "kirocache one by one"


# ---- get_many -------------------------------------------------------------------------------


def chunks(keys: list[str], size: int = 500) -> list[list[str]]:
    """``keys`` in slices of ``size``."""
    return [keys[at : at + size] for at in range(0, len(keys), size)]


def sync_get_many(
    lib: str, value: Any, url: str, stack: ExitStack, keys: list[str] = KEYS
) -> Callable[[], list[Any]]:
    """A callable reading ``keys`` (stored here first) and returning their values."""
    KEYS = keys  # noqa: N806 - the module's 100 keys unless told otherwise
    if lib in (KIROCACHE, ONE_BY_ONE):
        cache = stack.enter_context(kirocache_cache(url, KIROCACHE))
        for chunk in chunks(KEYS):  # each write within the default deadline, on a busy machine
            cache.set_many(dict.fromkeys(chunk, value), ttl=TTL)
        if lib == KIROCACHE:
            return lambda: list(cache.get_many(KEYS).values())
        return lambda: [cache.get(key) for key in KEYS]
    if lib == RAW:
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        client.mset(dict.fromkeys(KEYS, orjson.dumps(value)))
        return lambda: [orjson.loads(raw) for raw in client.mget(KEYS)]  # type: ignore[union-attr]
    region = make_region().configure(
        "dogpile.cache.redis", expiration_time=TTL, arguments={"url": url}
    )
    region.set_multi(dict.fromkeys(KEYS, value))
    return lambda: region.get_multi(KEYS)  # type: ignore[no-any-return]


def async_get_many(
    lib: str,
    value: Any,
    url: str,
    loop: asyncio.AbstractEventLoop,
    stack: ExitStack,
    keys: list[str] = KEYS,
) -> Callable[[], list[Any]]:
    KEYS = keys  # noqa: N806 - the module's 100 keys unless told otherwise
    run = loop.run_until_complete
    if lib in (KIROCACHE, ONE_BY_ONE):
        cache = kirocache_cache(url, KIROCACHE)
        stack.callback(lambda: run(cache.aclose()))
        for chunk in chunks(KEYS):
            run(cache.aset_many(dict.fromkeys(chunk, value), ttl=TTL))

        async def many() -> list[Any]:
            return list((await cache.aget_many(KEYS)).values())

        async def singly() -> list[Any]:
            return [await cache.aget(key) for key in KEYS]

        return lambda: run(many() if lib == KIROCACHE else singly())
    if lib == RAW:
        client = redis.asyncio.Redis.from_url(url)
        stack.callback(lambda: run(client.aclose()))
        run(client.mset(dict.fromkeys(KEYS, orjson.dumps(value))))

        async def mget() -> list[Any]:
            return [orjson.loads(raw) for raw in await client.mget(KEYS)]

        return lambda: run(mget())
    if lib == "aiocache":
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        aio = aiocache.Cache(aiocache.Cache.REDIS, endpoint=host, port=int(port), namespace="aio")
        stack.callback(lambda: run(aio.close()))
        run(aio.multi_set([(key, value) for key in KEYS], ttl=TTL))
        return lambda: run(aio.multi_get(KEYS))  # type: ignore[no-any-return]
    cashews = CashewsCache()
    cashews.setup(url)
    stack.callback(lambda: run(cashews.close()))
    run(cashews.set_many(dict.fromkeys(KEYS, value), expire=TTL))
    return lambda: list(run(cashews.get_many(*KEYS)))


@pytest.mark.parametrize("size", list(VALUES))
@pytest.mark.parametrize("lib", [KIROCACHE, RAW, ONE_BY_ONE, "dogpile"])
def test_get_many_redis_sync(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    redis_url: str,
    flushed: None,
    lib: str,
    size: str,
) -> None:
    value = VALUES[size]
    read = sync_get_many(lib, value, redis_url, stack)
    assert read() == [value] * N
    label(benchmark, f"get-many-100/redis/sync/{size}", lib)
    benchmark(read)


@pytest.mark.parametrize("size", list(VALUES))
@pytest.mark.parametrize("lib", [KIROCACHE, RAW, ONE_BY_ONE, "aiocache", "cashews"])
def test_get_many_redis_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    flushed: None,
    lib: str,
    size: str,
) -> None:
    value = VALUES[size]
    read = async_get_many(lib, value, redis_url, loop, stack)
    assert read() == [value] * N
    label(benchmark, f"get-many-100/redis/async/{size}", lib)
    benchmark(read)


# ---- get_many by size: the ratio to MGET must not grow with the number of keys ---------------

SIZES = [10, 1_000, 10_000]  # 100: test_get_many_redis_sync above


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("lib", [KIROCACHE, RAW])
def test_get_many_sizes_sync(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    redis_url: str,
    flushed: None,
    lib: str,
    count: int,
) -> None:
    keys = [f"bench:size:{i}" for i in range(count)]
    read = sync_get_many(lib, VALUES["small"], redis_url, stack, keys)
    assert read() == [VALUES["small"]] * count
    label(benchmark, f"get-many-{count}/redis/sync/small", lib, keys=count)
    benchmark(read)


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("lib", [KIROCACHE, RAW])
def test_get_many_sizes_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    flushed: None,
    lib: str,
    count: int,
) -> None:
    keys = [f"bench:size:{i}" for i in range(count)]
    read = async_get_many(lib, VALUES["small"], redis_url, loop, stack, keys)
    assert read() == [VALUES["small"]] * count
    label(benchmark, f"get-many-{count}/redis/async/small", lib, keys=count)
    benchmark(read)


# ---- batch ----------------------------------------------------------------------------------


def kirocache_batch(cache: Cache, value: Any) -> list[Any]:
    batch = cache.batch()
    for key in KEYS[:HALF]:
        batch.set(key, value, ttl=TTL)
    for key in KEYS[:HALF]:
        batch.get(key)
    result = batch.execute()
    return list(result[HALF:])


def kirocache_one_by_one(cache: Cache, value: Any) -> list[Any]:
    for key in KEYS[:HALF]:
        cache.set(key, value, ttl=TTL)
    return [cache.get(key) for key in KEYS[:HALF]]


async def kirocache_abatch(cache: Cache, value: Any) -> list[Any]:
    batch = cache.batch()
    for key in KEYS[:HALF]:
        batch.set(key, value, ttl=TTL)
    for key in KEYS[:HALF]:
        batch.get(key)
    result = await batch.aexecute()
    return list(result[HALF:])


async def kirocache_aone_by_one(cache: Cache, value: Any) -> list[Any]:
    for key in KEYS[:HALF]:
        await cache.aset(key, value, ttl=TTL)
    return [await cache.aget(key) for key in KEYS[:HALF]]


def raw_pipeline(client: redis.Redis, value: Any) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for key in KEYS[:HALF]:
        pipe.set(key, orjson.dumps(value), ex=TTL)
    for key in KEYS[:HALF]:
        pipe.get(key)
    return [orjson.loads(raw) for raw in pipe.execute()[HALF:]]


async def araw_pipeline(client: redis.asyncio.Redis, value: Any) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for key in KEYS[:HALF]:
        pipe.set(key, orjson.dumps(value), ex=TTL)
    for key in KEYS[:HALF]:
        pipe.get(key)
    return [orjson.loads(raw) for raw in (await pipe.execute())[HALF:]]


@pytest.mark.parametrize("size", list(VALUES))
@pytest.mark.parametrize("lib", [KIROCACHE, RAW, ONE_BY_ONE])
def test_batch_redis_sync(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    redis_url: str,
    flushed: None,
    lib: str,
    size: str,
) -> None:
    value = VALUES[size]
    if lib == RAW:
        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        run = functools.partial(raw_pipeline, client, value)
    else:
        cache = stack.enter_context(kirocache_cache(redis_url, KIROCACHE))
        step = kirocache_batch if lib == KIROCACHE else kirocache_one_by_one
        run = functools.partial(step, cache, value)
    assert run() == [value] * HALF
    label(benchmark, f"batch-100/redis/sync/{size}", lib)
    benchmark(run)


@pytest.mark.parametrize("size", list(VALUES))
@pytest.mark.parametrize("lib", [KIROCACHE, RAW, ONE_BY_ONE])
def test_batch_redis_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    flushed: None,
    lib: str,
    size: str,
) -> None:
    value = VALUES[size]
    if lib == RAW:
        client = redis.asyncio.Redis.from_url(redis_url)
        stack.callback(lambda: loop.run_until_complete(client.aclose()))
        send: Callable[[], Awaitable[list[Any]]] = functools.partial(araw_pipeline, client, value)
    else:
        cache = kirocache_cache(redis_url, KIROCACHE)
        stack.callback(lambda: loop.run_until_complete(cache.aclose()))
        step = kirocache_abatch if lib == KIROCACHE else kirocache_aone_by_one
        send = functools.partial(step, cache, value)

    def run() -> list[Any]:
        return loop.run_until_complete(send())

    assert run() == [value] * HALF
    label(benchmark, f"batch-100/redis/async/{size}", lib)
    benchmark(run)


@pytest.mark.parametrize("lib", [KIROCACHE, ONE_BY_ONE])
def test_batch_memory_sync(benchmark: BenchmarkFixture, stack: ExitStack, lib: str) -> None:
    value = VALUES["small"]
    cache = stack.enter_context(kirocache_cache(MEMORY_URL, KIROCACHE))
    step = kirocache_batch if lib == KIROCACHE else kirocache_one_by_one
    assert step(cache, value) == [value] * HALF
    label(benchmark, "batch-100/memory/sync/small", lib)
    benchmark(step, cache, value)


# ---- 1,000 sets: one round trip, not 1,000 ---------------------------------------------------

THOUSAND = {f"bench:thousand:{i}": {"id": i, "name": f"user {i}"} for i in range(1_000)}


def thousand_in_a_batch(cache: Cache) -> None:
    batch = cache.batch()
    for key, value in THOUSAND.items():
        batch.set(key, value, ttl=TTL)
    batch.execute()


def thousand_one_by_one(cache: Cache) -> None:
    for key, value in THOUSAND.items():
        cache.set(key, value, ttl=TTL)


@pytest.mark.parametrize("backend", ["redis", "memory"])
@pytest.mark.parametrize("lib", [KIROCACHE, ONE_BY_ONE])
def test_batch_1000_sets(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    redis_url: str,
    flushed: None,
    backend: str,
    lib: str,
) -> None:
    """A batch of 1,000 sets against the same sets sent one by one (issue: one round trip)."""
    url = redis_url if backend == "redis" else MEMORY_URL
    cache = stack.enter_context(kirocache_cache(url, KIROCACHE))
    run = functools.partial(thousand_in_a_batch if lib == KIROCACHE else thousand_one_by_one, cache)
    run()
    assert cache.get_many(list(THOUSAND)[:3]) == {k: THOUSAND[k] for k in list(THOUSAND)[:3]}
    label(benchmark, f"batch-1000-sets/{backend}/sync", lib)
    benchmark(run)
