"""Hit throughput under concurrency: 200 asyncio tasks, and 8 threads, on one local Redis.

kirocache runs with its default settings (pool, admission gate, deadline, breaker, metrics
on); the floor is raw redis-py (``GET`` + ``orjson.loads``) at the same concurrency, each
task or thread with a connection of its own. A round is every caller making its calls; the
report divides by the calls, so the figure is time per hit across all callers. Fallbacks
(calls that failed open) and breaker openings go into ``extra_info`` and kirocache's are
asserted to be zero: that is behaviour, not a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio
from _peers import KIROCACHE, PREFIX, RAW, TTL, kirocache_cache
from _workload import SMALL, label
from pytest_benchmark.fixture import BenchmarkFixture

from kirocache import Cache, cached
from kirocache.metrics import InMemoryMetrics

TASKS, TASK_CALLS = 200, 20
THREADS, THREAD_CALLS = 8, 200


def faults(cache: Cache) -> tuple[int, int]:
    """Calls that failed open (errors recorded) and breaker openings so far."""
    metrics = cache.metrics
    assert isinstance(metrics, InMemoryMetrics)
    errors = sum(item.errors for item in metrics.stats())
    breaker = cache.breaker
    return errors, breaker.times_opened if breaker is not None else 0


def check(benchmark: BenchmarkFixture, cache: Cache | None) -> None:
    if cache is None:
        return
    errors, opened = faults(cache)
    benchmark.extra_info.update(fallbacks=errors, breaker_openings=opened)
    assert (errors, opened) == (0, 0)


@pytest.mark.parametrize("lib", [KIROCACHE, RAW])
def test_throughput_async_200_tasks(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    flushed: None,
    lib: str,
) -> None:
    cache: Cache | None = None
    if lib == KIROCACHE:
        cache = kirocache_cache(redis_url, KIROCACHE)
        stack.callback(lambda: loop.run_until_complete(cache.aclose()))

        @cached(prefix=PREFIX, ttl=TTL, cache=cache)
        async def profile(user_id: int) -> dict[str, Any]:
            return SMALL

        call: Callable[[], Awaitable[Any]] = lambda: profile(42)  # noqa: E731
    else:
        client = redis.asyncio.Redis.from_url(redis_url, max_connections=TASKS)
        stack.callback(lambda: loop.run_until_complete(client.aclose()))
        loop.run_until_complete(client.set("raw:42", orjson.dumps(SMALL)))

        async def raw() -> Any:
            return orjson.loads(await client.get("raw:42"))

        call = raw

    async def task() -> None:
        for _ in range(TASK_CALLS):
            assert await call() == SMALL

    async def tasks() -> None:
        await asyncio.gather(*(task() for _ in range(TASKS)))

    def burst() -> None:
        loop.run_until_complete(tasks())

    burst()  # untimed: connections opened, the value cached
    label(benchmark, "throughput/redis/async-200-tasks", lib, ops=TASKS * TASK_CALLS)
    benchmark.pedantic(burst, rounds=5)
    check(benchmark, cache)


@pytest.mark.parametrize("lib", [KIROCACHE, RAW])
def test_throughput_sync_8_threads(
    benchmark: BenchmarkFixture, stack: ExitStack, redis_url: str, flushed: None, lib: str
) -> None:
    cache: Cache | None = None
    if lib == KIROCACHE:
        cache = stack.enter_context(kirocache_cache(redis_url, KIROCACHE))

        @cached(prefix=PREFIX, ttl=TTL, cache=cache)
        def profile(user_id: int) -> dict[str, Any]:
            return SMALL

        call: Callable[[], Any] = lambda: profile(42)  # noqa: E731
    else:
        client = redis.Redis.from_url(redis_url, max_connections=THREADS)
        stack.callback(client.close)
        client.set("raw:42", orjson.dumps(SMALL))
        call = lambda: orjson.loads(client.get("raw:42"))  # type: ignore[arg-type]  # noqa: E731

    def worker() -> None:
        for _ in range(THREAD_CALLS):
            assert call() == SMALL

    def burst() -> None:
        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    burst()
    label(benchmark, "throughput/redis/sync-8-threads", lib, ops=THREADS * THREAD_CALLS)
    benchmark.pedantic(burst, rounds=5)
    check(benchmark, cache)
