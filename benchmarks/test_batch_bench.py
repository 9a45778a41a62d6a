"""1,000 sets in one batch against the same sets sent one by one, on memory and real Redis.

Run with ``pytest benchmarks --benchmark-group-by=param:backend`` to read the ratio; CI
runs it once with ``--benchmark-disable`` to keep it working. Nothing here asserts a time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pytest_benchmark.fixture import BenchmarkFixture

from kirocache import Cache
from kirocache._batch import Batch
from kirocache.backends.memory import MemoryBackend
from kirocache.backends.redis import RedisBackend

# the test suite's throwaway server, reused rather than copied
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, find_redis_server

N = 1_000
ITEMS = {f"bench:{i}": {"id": i, "name": f"user {i}"} for i in range(N)}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of this module's own, on a free loopback port."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server not found on PATH and KIROCACHE_REDIS_SERVER is not set")
    with RedisServer(binary) as server:
        yield server.url


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    """A cache over memory or the real redis-server, empty, without metrics."""
    if request.param == "memory":
        made = Cache(MemoryBackend(), metrics=False)
    else:
        url: str = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as raw:
            raw.flushdb()
        made = Cache(RedisBackend(url), metrics=False)
    with made:
        yield made


def sets_in_one_batch(cache: Cache) -> None:
    b = Batch(cache)
    for key, value in ITEMS.items():
        b.set(key, value, ttl=60)
    result = b.execute()
    assert result.ok


def sets_one_by_one(cache: Cache) -> None:
    for key, value in ITEMS.items():
        assert cache.set(key, value, ttl=60)


def test_1000_sets_in_one_batch(benchmark: BenchmarkFixture, cache: Cache) -> None:
    benchmark(sets_in_one_batch, cache)
    assert cache.get(f"bench:{N - 1}") == ITEMS[f"bench:{N - 1}"]


def test_1000_sets_one_by_one(benchmark: BenchmarkFixture, cache: Cache) -> None:
    benchmark(sets_one_by_one, cache)
    assert cache.get(f"bench:{N - 1}") == ITEMS[f"bench:{N - 1}"]
