"""The same decorated function through kirocache and through each peer.

Each ``*_participant`` returns ``profile(user_id)``, which returns ``value`` from the cache
or, on a miss, computes it (counting the call), stores it and returns it. Each peer is set
up as its documentation shows, with its default serializer: lru_cache, cachetools, the
memory backends of dogpile.cache, aiocache and cashews keep references; dogpile.cache on
Redis pickles, aiocache JSON-encodes, cashews pickles. The raw redis-py participant is the
floor of a Redis-backed call: ``GET`` plus ``orjson.loads``, and ``SET`` on a miss.
Cleanups go on the caller's ``ExitStack``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import aiocache
import cachetools
import orjson
import redis
import redis.asyncio
from cashews import Cache as CashewsCache
from dogpile.cache import make_region

from kirocache import Cache, cached
from kirocache.serializers import CompressedSerializer

KIROCACHE = "kirocache"
ZLIB = "kirocache+zlib"
TAGGED = "kirocache+tag"
KIROCACHE_LIBS = (KIROCACHE, ZLIB, TAGGED)
RAW = "redis-py"
PREFIX = "bench:"
TTL = 60
# Room for every key a bounded miss-and-store run writes, so no participant evicts.
MEMORY_URL = "memory://?max_entries=1000000&max_bytes=4000000000"


class Calls:
    """How many times the cached function itself ran."""

    def __init__(self) -> None:
        self.count = 0


def kirocache_cache(url: str, lib: str) -> Cache:
    """A default cache (metrics on) over ``url``; zlib-compressed for ``kirocache+zlib``."""
    serializer = CompressedSerializer() if lib == ZLIB else None
    return Cache.from_url(url, serializer=serializer)


def sync_participant(
    lib: str,
    value: dict[str, Any],
    url: str,
    stack: ExitStack,
    calls: Calls | None = None,
    compute: Callable[[], None] | None = None,
) -> Callable[[int], Any]:
    """The sync ``profile`` of ``lib`` over ``url`` (``memory://...`` or Redis)."""
    calls = calls or Calls()

    def compute_value() -> dict[str, Any]:
        calls.count += 1
        if compute is not None:
            compute()
        return value

    if lib in KIROCACHE_LIBS:
        cache = stack.enter_context(kirocache_cache(url, lib))
        tags = ["user:{user_id}"] if lib == TAGGED else []

        @cached(prefix=PREFIX, ttl=TTL, cache=cache, tags=tags)
        def profile(user_id: int) -> dict[str, Any]:
            return compute_value()

        return profile
    if lib == "lru_cache":

        @functools.lru_cache(maxsize=1_000_000)
        def profile_lru(user_id: int) -> dict[str, Any]:
            return compute_value()

        return profile_lru
    if lib == "cachetools":

        @cachetools.cached(cachetools.TTLCache(maxsize=1_000_000, ttl=TTL))
        def profile_ct(user_id: int) -> dict[str, Any]:
            return compute_value()

        return profile_ct
    if lib == RAW:
        client = redis.Redis.from_url(url)
        stack.callback(client.close)

        def profile_raw(user_id: int) -> Any:
            key = f"raw:{user_id}"
            data = client.get(key)
            if data is not None:
                return orjson.loads(data)  # type: ignore[arg-type]
            fresh = compute_value()
            client.set(key, orjson.dumps(fresh), ex=TTL)
            return fresh

        return profile_raw
    if lib == "dogpile":
        backend = "dogpile.cache.memory" if url.startswith("memory") else "dogpile.cache.redis"
        arguments = {} if url.startswith("memory") else {"url": url}
        region = make_region().configure(backend, expiration_time=TTL, arguments=arguments)

        @region.cache_on_arguments()
        def profile_dp(user_id: int) -> dict[str, Any]:
            return compute_value()

        return profile_dp  # type: ignore[no-any-return]
    msg = f"no sync participant {lib!r}"
    raise ValueError(msg)


def async_participant(
    lib: str,
    value: dict[str, Any],
    url: str,
    loop: asyncio.AbstractEventLoop,
    stack: ExitStack,
    calls: Calls | None = None,
    compute: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[int], Awaitable[Any]]:
    """The async ``profile`` of ``lib`` over ``url``; clients are closed on ``loop``."""
    calls = calls or Calls()
    memory = url.startswith("memory")

    async def compute_value() -> dict[str, Any]:
        calls.count += 1
        if compute is not None:
            await compute()
        return value

    if lib in KIROCACHE_LIBS:
        cache = kirocache_cache(url, lib)
        stack.callback(lambda: loop.run_until_complete(cache.aclose()))
        tags = ["user:{user_id}"] if lib == TAGGED else []

        @cached(prefix=PREFIX, ttl=TTL, cache=cache, tags=tags)
        async def profile(user_id: int) -> dict[str, Any]:
            return await compute_value()

        return profile
    if lib == RAW:
        client = redis.asyncio.Redis.from_url(url)
        stack.callback(lambda: loop.run_until_complete(client.aclose()))

        async def profile_raw(user_id: int) -> Any:
            key = f"raw:{user_id}"
            data = await client.get(key)
            if data is not None:
                return orjson.loads(data)
            fresh = await compute_value()
            await client.set(key, orjson.dumps(fresh), ex=TTL)
            return fresh

        return profile_raw
    if lib == "aiocache":
        where: dict[str, Any] = {}
        if not memory:
            host_port = url.split("//", 1)[1].split("/", 1)[0]
            host, port = host_port.rsplit(":", 1)
            where = {"cache": aiocache.Cache.REDIS, "endpoint": host, "port": int(port)}

        @aiocache.cached(ttl=TTL, namespace="aio", **where)
        async def profile_aio(user_id: int) -> dict[str, Any]:
            return await compute_value()

        stack.callback(lambda: loop.run_until_complete(profile_aio.cache.close()))
        return profile_aio  # type: ignore[no-any-return]
    if lib == "cashews":
        cashews = CashewsCache()
        cashews.setup("mem://" if memory else url)
        stack.callback(lambda: loop.run_until_complete(cashews.close()))

        @cashews(ttl=TTL)
        async def profile_cw(user_id: int) -> dict[str, Any]:
            return await compute_value()

        return profile_cw
    msg = f"no async participant {lib!r}"
    raise ValueError(msg)
