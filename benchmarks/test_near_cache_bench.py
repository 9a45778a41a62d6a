"""The near cache's hit against the memory backend's and a Redis round trip.

Four backends under the same decorated function: ``MemoryBackend`` (the in-process floor),
``RedisBackend`` (a round trip per hit), and ``TieredBackend`` with pub/sub messages and
with Redis's client tracking (``invalidation="tracking"``), whose hits come from the local
layer. The backend's own ``get`` is measured too, without the cache above it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import orjson
import pytest
from _workload import ASYNC_CALLS, SMALL, label, repeat_async
from pytest_benchmark.fixture import BenchmarkFixture

from kirocache import Cache, cached
from kirocache.backends import MemoryBackend, RedisBackend, TieredBackend

BACKENDS = ["memory", "redis", "tiered-pubsub", "tiered-tracking"]
PREFIX = "bench-near:"
USER = 42


def make_backend(kind: str, url: str, stack: ExitStack) -> Any:
    """The backend ``kind`` on ``url``, closed when the test ends."""
    backend: Any
    if kind == "memory":
        backend = MemoryBackend()
    elif kind == "redis":
        backend = RedisBackend(url)
    else:
        tracking = kind == "tiered-tracking"
        backend = TieredBackend.from_url(
            url,
            channel=f"bench-near:{uuid.uuid4().hex}",
            local_ttl=60,
            invalidation="tracking" if tracking else "pubsub",
            # refused without tracking (e927b73)
            **({"tracking_prefixes": [PREFIX]} if tracking else {}),
        )
        assert backend.wait_connected(10)
    stack.callback(backend.close)
    return backend


def warmed(read: Callable[[], object], backend: Any) -> None:
    """Read until the hit comes from the local layer (a tiered backend's own write is
    announced to it too, and a copy read while that message travels is not kept)."""
    if not isinstance(backend, TieredBackend):
        read()
        return
    deadline = time.monotonic() + 10
    hits = backend.stats().extra["local_hits"]
    while backend.stats().extra["local_hits"] == hits:
        assert time.monotonic() < deadline, "the local layer never served a hit"
        read()


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_get(
    benchmark: BenchmarkFixture, stack: ExitStack, redis_url: str, flushed: None, kind: str
) -> None:
    backend = make_backend(kind, redis_url, stack)
    key, value = PREFIX + "raw", orjson.dumps(SMALL)
    backend.set(key, value, 60)
    warmed(lambda: backend.get(key), backend)
    label(benchmark, "near/backend-get/small", kind)
    assert benchmark(backend.get, key) == value


@pytest.mark.parametrize("kind", BACKENDS)
def test_cached_hit_sync(
    benchmark: BenchmarkFixture, stack: ExitStack, redis_url: str, flushed: None, kind: str
) -> None:
    cache = Cache(make_backend(kind, redis_url, stack), key_prefix=PREFIX)

    @cached(prefix="profile:", ttl=60, cache=cache)
    def profile(user_id: int) -> dict[str, Any]:
        return SMALL

    warmed(lambda: profile(USER), cache.backend)
    label(benchmark, "near/hit/sync/small", kind)
    assert benchmark(profile, USER) == SMALL


@pytest.mark.parametrize("kind", BACKENDS)
def test_cached_hit_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    flushed: None,
    kind: str,
) -> None:
    backend = make_backend(kind, redis_url, stack)
    cache = Cache(backend, key_prefix=PREFIX)
    if hasattr(backend, "aclose"):
        stack.callback(lambda: loop.run_until_complete(backend.aclose()))

    @cached(prefix="profile:", ttl=60, cache=cache)
    async def profile(user_id: int) -> dict[str, Any]:
        return SMALL

    warmed(lambda: loop.run_until_complete(profile(USER)), backend)
    label(benchmark, "near/hit/async/small", kind, ops=ASYNC_CALLS)
    benchmark(repeat_async(loop, lambda: profile(USER)))
