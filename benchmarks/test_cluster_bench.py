"""1,000 keys on a 3-primary Redis Cluster: ``get_many`` and a batch, against the floor.

``get_many`` of 1,000 cached keys through ``RedisClusterBackend`` against redis-py's own
``RedisCluster.mget_nonatomic`` plus 1,000 ``orjson.loads`` (the floor: one ``MGET`` per
slot, pipelined per node), and against the same ``get_many`` on a single redis-server.
A batch of 500 sets and 500 gets in one ``cache.batch()`` (non-transactional) against the
same on the single node, and against a raw ``RedisCluster`` pipeline of those commands.
A round is the whole 1,000-key operation. The cluster is started here (six
redis-servers and ``redis-cli --cluster create``) and stopped by pid.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from _peers import KIROCACHE, RAW, TTL
from _workload import label
from pytest_benchmark.fixture import BenchmarkFixture
from redis.cluster import RedisCluster

from kirocache import Cache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cluster_server import LocalCluster, find_redis_cli
from redis_server import find_redis_server

N = 1000
KEYS = [f"bench:cluster:{i}" for i in range(N)]
VALUE = {"id": 1, "name": "a small record", "tags": ["x", "y"]}
SINGLE = "kirocache single node"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    server, cli = find_redis_server(), find_redis_cli()
    if server is None or cli is None:
        pytest.skip("redis-server or redis-cli not found")
    made = LocalCluster(server, cli)
    try:
        yield made.start()
    finally:
        made.close()


def _raw_cluster(cluster: LocalCluster, stack: ExitStack) -> RedisCluster:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    stack.callback(client.close)
    return client


def get_many_round(
    lib: str, url: str, cluster: LocalCluster, stack: ExitStack
) -> Callable[[], Any]:
    """A callable reading the 1,000 keys (stored here first) and returning their values."""
    if lib == RAW:
        client = _raw_cluster(cluster, stack)
        client.mset_nonatomic(dict.fromkeys(KEYS, orjson.dumps(VALUE)))
        return lambda: [orjson.loads(raw) for raw in client.mget_nonatomic(KEYS)]
    cache = Cache.from_url(url, timeout=5)
    stack.callback(cache.backend.close)
    cache.set_many(dict.fromkeys(KEYS, VALUE), ttl=TTL)
    return lambda: list(cache.get_many(KEYS).values())


def batch_round(lib: str, url: str, cluster: LocalCluster, stack: ExitStack) -> Callable[[], Any]:
    """A callable running 500 sets and 500 gets in one batch (one pipeline for the raw one)."""
    half = N // 2
    if lib == RAW:
        client = _raw_cluster(cluster, stack)
        data = orjson.dumps(VALUE)

        def raw() -> list[Any]:
            pipe = client.pipeline()
            for key in KEYS[:half]:
                pipe.set(key, data, ex=TTL)
            for key in KEYS[half:]:
                pipe.get(key)
            return pipe.execute()

        return raw
    cache = Cache.from_url(url, timeout=5)
    stack.callback(cache.backend.close)

    def batch() -> Any:
        ops = cache.batch()
        for key in KEYS[:half]:
            ops.set(key, VALUE, ttl=TTL)
        for key in KEYS[half:]:
            ops.get(key)
        return ops.execute()

    return batch


@pytest.mark.parametrize("lib", [KIROCACHE, RAW, SINGLE])
def test_get_many_1000_cluster(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    cluster: LocalCluster,
    redis_url: str,
    flushed: None,
    lib: str,
) -> None:
    url = redis_url if lib == SINGLE else cluster.url
    read = get_many_round(lib, url, cluster, stack)
    assert read() == [VALUE] * N
    label(benchmark, "get-many-1000/cluster/sync", lib, keys=N)
    benchmark(read)


@pytest.mark.parametrize("lib", [KIROCACHE, RAW, SINGLE])
def test_batch_1000_cluster(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    cluster: LocalCluster,
    redis_url: str,
    flushed: None,
    lib: str,
) -> None:
    url = redis_url if lib == SINGLE else cluster.url
    run = batch_round(lib, url, cluster, stack)
    run()
    label(benchmark, "batch-1000/cluster/sync", lib, ops=N)
    benchmark(run)
    with redis.Redis(port=cluster.ports[0]) as probe:
        assert probe.ping()
