"""Failover under load: a primary SIGKILLed in a real cluster, a Sentinel master killed.

8 threads and 100 asyncio tasks read (and, for Sentinel, write) through one ``Cache``
while the test kills a node by pid. Callers must see no exception (the cache fails open),
and reads must come back as hits once the replica is promoted; no read may return a value
invalidated before the kill. The measured times are printed (``-s``) for docs/cluster.md;
nothing asserts on them.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import redis

from kirocache import Cache
from kirocache.exceptions import BackendError

if TYPE_CHECKING:
    from cluster_server import LocalCluster, LocalSentinel

pytest_plugins = ["cluster_server"]
pytestmark = [pytest.mark.slow, pytest.mark.real_redis]

THREADS = 8
TASKS = 100
_GIVE_UP = 60.0


@dataclass
class Load:
    """What the readers saw: exceptions, and when each kind of read last happened."""

    cache: Cache
    keys: list[str]
    watched: set[str]
    stale: str
    errors: list[BaseException] = field(default_factory=list)
    reads: int = 0
    stale_reads: int = 0
    watched_hit_at: list[float] = field(default_factory=list)
    watched_miss_at: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, key: str, value: object) -> None:
        with self.lock:
            self.reads += 1
            if key == self.stale and value is not None:
                self.stale_reads += 1
            if key in self.watched:
                hit = value == f"v:{key}"
                (self.watched_hit_at if hit else self.watched_miss_at).append(time.monotonic())

    def thread(self, offset: int) -> None:
        at = offset
        while not self.stop.is_set():
            key = self.keys[at % len(self.keys)]
            at += 1
            try:
                self.saw(key, self.cache.get(key))
            except Exception as exc:
                with self.lock:
                    self.errors.append(exc)
            time.sleep(0.001)

    async def task(self, offset: int) -> None:
        at = offset
        while not self.stop.is_set():
            key = self.keys[at % len(self.keys)]
            at += 1
            try:
                self.saw(key, await self.cache.aget(key))
            except Exception as exc:
                with self.lock:
                    self.errors.append(exc)
            await asyncio.sleep(0.005)

    def run_tasks(self) -> None:
        async def all_tasks() -> None:
            await asyncio.gather(*(self.task(n) for n in range(TASKS)))
            await self.cache.backend.aclose()

        asyncio.run(all_tasks())

    def start(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self.thread, args=(n,)) for n in range(THREADS)]
        workers.append(threading.Thread(target=self.run_tasks))
        for worker in workers:
            worker.start()
        return workers

    def hits_after(self, moment: float) -> bool:
        with self.lock:
            return any(at > moment for at in self.watched_hit_at)

    def outage(self, since: float) -> tuple[float, float] | None:
        """The first miss of a watched key after ``since`` and the first hit after it."""
        with self.lock:
            down = min((at for at in self.watched_miss_at if at > since), default=None)
            if down is None:
                return None
            up = min((at for at in self.watched_hit_at if at > down), default=None)
            return None if up is None else (down, up)


def _until(check: Callable[[], object]) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > _GIVE_UP:
            msg = "gave up waiting"
            raise AssertionError(msg)
        time.sleep(0.02)
    return time.monotonic() - start


def _run_failover(load: Load, kill: Callable[[], None]) -> float:
    workers = load.start()
    try:
        time.sleep(1.0)
        assert load.hits_after(0), "no hit before the kill"
        killed_at = time.monotonic()
        kill()
        _until(lambda: load.outage(killed_at))
        time.sleep(0.5)
    finally:
        load.stop.set()
        for worker in workers:
            worker.join()
    window = load.outage(killed_at)
    assert window is not None
    return window[1] - killed_at


def test_a_primary_killed_under_load(fresh_cluster: LocalCluster) -> None:
    cache = Cache.from_url(fresh_cluster.url, key_prefix="failover:")
    keys = [f"k{n}" for n in range(60)]
    for key in keys:
        cache.set(key, f"v:{key}")
    stale = "invalidated"
    cache.set(stale, "old")
    cache.delete(stale)  # a tombstone, acknowledged before the kill
    victim = fresh_cluster.primary_of(f"failover:{stale}")
    with redis.Redis(port=victim.port) as primary:
        # the writes reached the replica: Redis replicates asynchronously (docs/cluster.md)
        assert primary.wait(1, 5000) >= 1
    watched = {k for k in keys if fresh_cluster.primary_of(f"failover:{k}") is victim}
    assert watched
    load = Load(cache, [*keys, stale], watched, stale)

    resumed = _run_failover(load, lambda: fresh_cluster.kill(victim))

    print(
        f"\ncluster: {load.reads} reads, hits on the killed primary's keys back "
        f"{resumed:.2f} s after SIGKILL"
    )
    assert load.errors == [], "".join(traceback.format_exception(load.errors[0]))
    assert load.stale_reads == 0
    assert cache.get(stale) is None
    # every key of the killed primary is served again (a call may still meet the breaker)
    _until(lambda: all(cache.get(k) == f"v:{k}" for k in watched))
    cache.backend.close()


def test_a_sentinel_master_killed_under_load(fresh_sentinel: LocalSentinel) -> None:
    cache = Cache.from_url(fresh_sentinel.url, key_prefix="failover:")
    keys = [f"k{n}" for n in range(30)]
    for key in keys:
        cache.set(key, f"v:{key}")
    stale = "invalidated"
    cache.set(stale, "old")
    cache.delete(stale)
    with redis.Redis(port=fresh_sentinel.master.port) as master:
        assert master.wait(1, 5000) >= 1
    old_master = fresh_sentinel.master.port
    load = Load(cache, [*keys, stale], set(keys), stale)

    def kill() -> None:
        process = fresh_sentinel.master._process
        assert process is not None
        process.kill()
        process.wait()

    resumed = _run_failover(load, kill)
    promoted = _until(lambda: fresh_sentinel.master_port() != old_master)

    print(f"\nsentinel: {load.reads} reads, hits back {resumed:.2f} s after SIGKILL")
    assert promoted >= 0
    assert load.errors == [], "".join(traceback.format_exception(load.errors[0]))
    assert load.stale_reads == 0
    # Reads resume first; a write may still meet the promoted replica before it takes
    # writes (READONLY) or the breaker's probe reopening: writes work again within the bound.
    assert _until(lambda: cache.set("after", 1)) >= 0
    assert cache.get("after") == 1
    assert cache.get(stale) is None
    cache.backend.close()


def test_a_cluster_down_is_an_outage_the_cache_fails_open_on(fresh_cluster: LocalCluster) -> None:
    # A primary and its replica gone: the cluster's state turns to fail and the nodes
    # left answer CLUSTERDOWN, for every key.
    cache = Cache.from_url(fresh_cluster.url, key_prefix="down:")
    cache.set("k", 1)
    victim = fresh_cluster.primary_of("down:k")
    for node in [*fresh_cluster.replicas_of(victim), victim]:
        fresh_cluster.kill(node)
    survivor = fresh_cluster.primaries()[0]

    def down() -> bool:
        with redis.Redis(port=survivor.port) as client:
            return client.cluster("INFO").get("cluster_state") == "fail"

    _until(down)
    served = next(
        f"down:{n}" for n in range(1000) if fresh_cluster.primary_of(f"down:{n}") is survivor
    )
    # redis-py retries CLUSTERDOWN, re-reading the slot map in between: within the
    # deadline that ends as CLUSTERDOWN or as "cannot be connected", an outage either way
    with pytest.raises(BackendError) as caught:
        cache.backend.get(served)
    assert caught.value.outage is True
    assert cache.get("k") is None
    assert cache.set("k", 2) is False
    cache.backend.close()
