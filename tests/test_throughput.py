"""Under 200 concurrent tasks and 8 threads, a healthy Redis serves every call: no fallbacks.

Counts, never times: with the default settings (pool size, admission gate, deadline,
breaker) every call of a burst is served by Redis, none fails open and the breaker never
opens. Each figure comes from the cache's own metrics and breaker.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from kirocache import Cache, cached
from kirocache.backends import Op, RedisBackend
from kirocache.metrics import InMemoryMetrics

# Other workers' CPU use would stretch calls past the default deadline: these run alone.
pytestmark = pytest.mark.alone

TASKS, THREADS, CALLS = 200, 8, 25


def fallbacks(cache: Cache) -> tuple[int, int, int]:
    """(calls that failed open, breaker openings, reads answered: hits and misses) so far."""
    metrics = cache.metrics
    assert isinstance(metrics, InMemoryMetrics)
    stats = metrics.stats()
    breaker = cache.breaker
    assert breaker is not None
    return (
        sum(item.errors for item in stats),
        breaker.times_opened,
        sum(item.hits + item.misses for item in stats),
    )


@pytest.mark.real_redis
async def test_200_tasks_no_fallbacks(redis_url: str) -> None:
    async with Cache.from_url(redis_url) as cache:
        computed: list[int] = []

        @cached(prefix="tp:async:", ttl=60, cache=cache)
        async def profile(user_id: int) -> dict[str, int]:
            computed.append(user_id)
            return {"id": user_id}

        async def task(number: int) -> None:
            for call in range(CALLS):
                user = (number + call) % 10
                assert await profile(user) == {"id": user}

        await asyncio.gather(*(task(n) for n in range(TASKS)))
        await profile.invalidate_all()
        errors, opened, reads = fallbacks(cache)
        assert (errors, opened) == (0, 0)
        # every call was answered by Redis; one computation per user (the stampede lock)
        assert reads >= TASKS * CALLS  # a caller may read again after a flight (never fewer)
        assert sorted(computed) == list(range(10))


@pytest.mark.real_redis
def test_8_threads_no_fallbacks(redis_url: str) -> None:
    with Cache.from_url(redis_url) as cache:
        computed: list[int] = []

        @cached(prefix="tp:sync:", ttl=60, cache=cache)
        def profile(user_id: int) -> dict[str, int]:
            computed.append(user_id)
            return {"id": user_id}

        start = threading.Barrier(THREADS)
        failures: list[BaseException] = []

        def worker(number: int) -> None:
            start.wait()
            try:
                for call in range(CALLS * 10):
                    user = (number + call) % 10
                    assert profile(user) == {"id": user}
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        profile.invalidate_all()
        assert failures == []
        errors, opened, reads = fallbacks(cache)
        assert (errors, opened) == (0, 0)
        assert reads >= THREADS * CALLS * 10
        assert sorted(computed) == list(range(10))


@pytest.mark.real_redis
@pytest.mark.parametrize("size", [1, 2, 4])
def test_hot_reads_never_starve_the_other_calls(redis_url: str, size: int) -> None:
    # The hot reads hold pooled connections; writes from many threads at once must still
    # get one within the pool wait, on a pool as small as one connection.
    backend = RedisBackend(redis_url, max_connections=size, pool_timeout=2.0)
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(number: int) -> None:
        start.wait()
        try:
            for call in range(CALLS):
                key = f"tp:mixed:{number}:{call % 3}"
                backend.set(key, b"v", 60)
                assert backend.get(key) == b"v"
                assert backend.get_many([key, "tp:mixed:absent"]) == [b"v", None]
                backend.delete(key)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        backend.close()
    assert failures == []


@pytest.mark.real_redis
@pytest.mark.parametrize("size", [1, 2])
async def test_async_hot_reads_never_starve_the_other_calls(redis_url: str, size: int) -> None:
    backend = RedisBackend(redis_url, max_connections=size, pool_timeout=2.0)

    async def task(number: int) -> None:
        for call in range(CALLS):
            key = f"tp:amixed:{number}:{call % 3}"
            await backend.aset(key, b"v", 60)
            assert await backend.aget(key) == b"v"
            await backend.aexecute([Op("delete", key)])

    try:
        await asyncio.gather(*(task(n) for n in range(50)))
    finally:
        await backend.aclose()
        backend.close()
