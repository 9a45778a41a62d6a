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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import redis

from kirocache import Cache
from kirocache.exceptions import BackendError

if TYPE_CHECKING:
    from cluster_server import LocalCluster, LocalSentinel
    from redis_server import RedisServer

pytest_plugins = ["cluster_server"]
pytestmark = [pytest.mark.slow, pytest.mark.real_redis]

THREADS = 8
TASKS = 100
_GIVE_UP = 60.0
_STATES = ("closed", "open", "half_open")


@dataclass
class Load:
    """What the readers saw: exceptions, and when each kind of read last happened."""

    cache: Cache
    keys: list[str]
    watched: set[str]
    stale: str
    healthy: set[str] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)
    reads: int = 0
    stale_reads: int = 0
    killed_at: float = 0.0
    watched_hit_at: list[float] = field(default_factory=list)
    watched_miss_at: list[float] = field(default_factory=list)
    healthy_hit_at: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, key: str, value: object) -> None:
        with self.lock:
            self.reads += 1
            if key == self.stale and value is not None:
                self.stale_reads += 1
            hit = value == f"v:{key}"
            if key in self.watched:
                (self.watched_hit_at if hit else self.watched_miss_at).append(time.monotonic())
            elif key in self.healthy and hit:
                self.healthy_hit_at.append(time.monotonic())

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

    def start(self, *, tasks: bool = True) -> list[threading.Thread]:
        workers = [threading.Thread(target=self.thread, args=(n,)) for n in range(THREADS)]
        if tasks:
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


def _stored(cache: Cache, keys: list[str], stale: str | None = None) -> None:
    """Write ``keys`` (and a tombstone at ``stale``) until the cache says they landed.

    On a loaded machine a first write may fail open (the slot map not read within the
    deadline); a test's setup must not start with missing keys or a pending invalidation.
    """
    for key in keys:
        _until(lambda key=key: cache.set(key, f"v:{key}"))  # type: ignore[misc]
    if stale is not None:
        _until(lambda: cache.set(stale, "old"))
        cache.delete(stale)  # a tombstone, acknowledged before the kill
        _until(
            lambda: (
                cache.get(stale) is None
                and cache.pending_invalidations()["invalidations_pending"] == 0
            )
        )


def _run_failover(load: Load, kill: Callable[[], None], *, tasks: bool = True) -> float:
    workers = load.start(tasks=tasks)
    try:
        time.sleep(1.0)
        assert load.hits_after(0), "no hit before the kill"
        load.killed_at = killed_at = time.monotonic()
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
    stale = "invalidated"
    _stored(cache, keys, stale)
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
    stale = "invalidated"
    _stored(cache, keys, stale)
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


# ---- one breaker per node: a dead primary costs only its own slots ---------------------------


def _name(node: RedisServer) -> str:
    return f"127.0.0.1:{node.port}"


def _states(cache: Cache) -> dict[str, dict[str, object]]:
    states: dict[str, dict[str, object]] = cache.backend.node_states()
    return states


def test_a_dead_primary_costs_only_its_own_keys_until_its_replica_takes_over(
    fresh_cluster: LocalCluster,
) -> None:
    _serve_what_is_covered(fresh_cluster)
    cache = Cache.from_url(fresh_cluster.url, key_prefix="partial:")
    keys = [f"k{n}" for n in range(60)]
    _stored(cache, keys)
    victim = fresh_cluster.primary_of(f"partial:{keys[0]}")
    with redis.Redis(port=victim.port) as primary:
        assert primary.wait(1, 5000) >= 1
    watched = {k for k in keys if fresh_cluster.primary_of(f"partial:{k}") is victim}
    healthy = set(keys) - watched
    assert watched
    assert healthy
    breaker = cache.breaker
    assert breaker is not None
    opened = breaker.times_opened  # a loaded machine may have failed the setup's first calls
    load = Load(cache, keys, watched, stale="", healthy=healthy)
    # what operators would have seen of the victim's breaker during the outage
    seen: set[object] = set()
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):
            seen.add(_states(cache).get(_name(victim), {}).get("state"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        # threads only: redis-py's asyncio cluster client re-reads the slot map for every
        # task after a node fails, and calls that wait for it out of their deadline cannot
        # say which node they were stuck on (docs/faults.md)
        resumed = _run_failover(load, lambda: fresh_cluster.kill(victim), tasks=False)
    finally:
        sampling.set()
        sampler.join()

    window = load.outage(load.killed_at)
    assert window is not None
    down, up = window
    served = [at for at in load.healthy_hit_at if down < at < up]
    print(
        f"\ncluster, per-node breakers: {load.reads} reads; the killed primary's keys missed "
        f"for {up - down:.2f} s (back {resumed:.2f} s after SIGKILL); {len(served)} hits on "
        f"the other primaries' keys meanwhile; victim's breaker seen {sorted(map(str, seen))}"
    )
    assert load.errors == [], "".join(traceback.format_exception(load.errors[0]))
    assert served, "the healthy primaries' keys stopped being served"
    assert "open" in seen or "half_open" in seen, "the dead primary's breaker never opened"
    assert breaker.times_opened == opened, "a partial outage opened the cache's breaker"
    _until(lambda: all(cache.get(k) == f"v:{k}" for k in watched))
    # the killed node serves no slots now: its record is gone, the promoted replica's closed
    states = _states(cache)
    assert _name(victim) not in states
    assert all(state["state"] == "closed" for state in states.values())
    cache.backend.close()


def test_every_primary_unreachable_opens_the_cache_breaker(fresh_cluster: LocalCluster) -> None:
    cache = Cache.from_url(fresh_cluster.url, key_prefix="all:")
    keys = [f"k{n}" for n in range(30)]
    _stored(cache, keys)
    breaker = cache.breaker
    assert breaker is not None
    for node in list(fresh_cluster.nodes):
        fresh_cluster.kill(node)
    reads = iter(range(10**9))

    def opened() -> bool:
        key = keys[next(reads) % len(keys)]
        assert cache.get(key) is None  # fails open, never raises
        return breaker.times_opened > 0

    _until(opened)
    assert breaker.state in ("open", "half_open")
    with pytest.raises(BackendError) as caught:
        cache.backend.get(keys[0])
    assert caught.value.outage is True
    cache.backend.close()


def _serve_what_is_covered(cluster: LocalCluster) -> None:
    """``cluster-require-full-coverage no`` on every node.

    With Redis's default (``yes``), every node answers CLUSTERDOWN for every key from
    the moment a dead primary is flagged FAIL until its replica is promoted (about a
    second here): the cluster itself stops serving the healthy primaries' keys, and no
    client can do better. Without it, they keep serving their slots.
    """
    for node in cluster.nodes:
        if node.running:
            with cluster.client(node.port) as client:
                client.config_set("cluster-require-full-coverage", "no")


def _partial_outage(cluster: LocalCluster, prefix: str) -> tuple[RedisServer, list[str], list[str]]:
    """Kill a primary and its replica, the other primaries keeping their slots served.

    Without ``cluster-require-full-coverage no`` the cluster would refuse every key
    (CLUSTERDOWN) once it sees a slot uncovered; with it, a dead node stays dead, and the
    per-node breaker is what the test sees, however long it looks.
    """
    _serve_what_is_covered(cluster)
    keys = [f"{prefix}{n}" for n in range(40)]
    victim = cluster.primary_of(keys[0])
    lost = [k for k in keys if cluster.primary_of(k) is victim]
    kept = [k for k in keys if k not in lost]
    for node in [*cluster.replicas_of(victim), victim]:
        cluster.kill(node)
    return victim, lost, kept


def test_batches_serve_the_healthy_nodes_and_fail_only_the_dead_ones_part(
    fresh_cluster: LocalCluster,
) -> None:
    from kirocache.backends import Op
    from kirocache.exceptions import NodeUnavailableError
    from kirocache.exporters import PrometheusMetrics
    from kirocache.monitoring import HealthChecker

    exporter = PrometheusMetrics()
    cache = Cache.from_url(fresh_cluster.url, metrics=exporter)
    exporter.watch(cache)
    backend = cache.backend
    for n in range(40):
        _until(lambda n=n: cache.set(f"n{n}", n))  # type: ignore[misc]
    assert cache.breaker is not None
    opened = cache.breaker.times_opened
    victim, lost, kept = _partial_outage(fresh_cluster, "n")
    assert lost
    assert kept

    def refused_fast() -> bool:
        failure = _failure(lambda: backend.get(lost[0]))
        assert failure is not None
        assert failure.outage is False  # the other primaries answer
        return isinstance(failure, NodeUnavailableError)

    _until(refused_fast)
    refusal = _failure(lambda: backend.get(lost[0]))
    assert isinstance(refusal, NodeUnavailableError)
    assert refusal.node == _name(victim)
    assert f"node {_name(victim)} is unavailable" in str(refusal)
    # a batch over every node: the healthy nodes' ops run, the dead node's fail in their slots
    ops = [Op("set", key, b"x") for key in [*lost, *kept]]
    batches: list[list[object]] = []

    def batch() -> bool:
        try:
            batches.append(list(backend.execute(ops)))
        except BackendError:
            return False  # the healthy nodes' pipeline ran out of time on a loaded machine
        return True

    _until(batch)
    results = batches[-1]
    assert all(isinstance(r, NodeUnavailableError) for r in results[: len(lost)])
    served = results[len(lost) :]
    assert True in served
    assert not any(isinstance(r, NodeUnavailableError) for r in served)
    # through the cache: hits on healthy keys, misses on the dead node's, nothing raised
    assert cache.get(kept[0]) is None  # "x" above is not a cache entry: a miss
    cache.set(kept[0], "fresh")
    assert cache.get(kept[0]) == "fresh"
    assert cache.get(lost[0]) is None
    assert cache.set(lost[0], "lost") is False
    assert cache.breaker is not None
    assert cache.breaker.times_opened == opened
    # a pattern delete cannot reach the dead node's keys: it fails, never half done silently
    with pytest.raises(BackendError):
        list(backend.scan("n*"))
    assert backend.ping() > 0  # the other primaries answer

    async def async_side() -> None:
        # at most one of these is the node's half-open trial; the others fail fast
        failures = [await _afailure(backend.aget(lost[0])) for _ in range(5)]
        assert None not in failures
        refusals = [f for f in failures if isinstance(f, NodeUnavailableError)]
        assert refusals
        assert all(f.outage is False for f in refusals)
        # a healthy node's key is served (a loaded machine may fail a first read open)
        for _ in range(100):
            if await cache.aget(kept[0]) == "fresh":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("a healthy node's key was never served on the event loop")
        await backend.aclose()

    asyncio.run(async_side())

    report = HealthChecker(cache).check()
    assert report.status == "degraded"
    [issue] = [issue for issue in report.issues if issue.kind == "node_unavailable"]
    assert _name(victim) in issue.message
    assert report.nodes[_name(victim)]["state"] in ("open", "half_open")

    found = _samples(exporter)
    victim_labels = {("node", _name(victim)), ("role", "primary")}
    state = "kirocache_node_breaker_state"
    assert found[(state, frozenset({*victim_labels, ("state", "closed")}))] == 0
    assert sum(found[(state, frozenset({*victim_labels, ("state", s)}))] for s in _STATES) == 1
    assert found[("kirocache_node_faults_total", frozenset(victim_labels))] >= 1
    assert found[("kirocache_node_rejected_total", frozenset(victim_labels))] >= 1
    healthy = [
        frozenset({("node", _name(n)), ("role", "primary")}) for n in fresh_cluster.primaries()
    ]
    for labels in healthy:
        assert sum(found[(state, labels | {("state", s)})] for s in _STATES) == 1
    # each healthy primary's figures (a scrape's INFO may time out on a loaded machine:
    # the next scrape, a reading later, reads them again)
    _until(lambda: all(("kirocache_node_keys", labels) in _samples(exporter) for labels in healthy))
    backend.close()


def _failure(call: Callable[[], object]) -> BackendError | None:
    try:
        call()
    except BackendError as exc:
        return exc
    return None


async def _afailure(call: Awaitable[object]) -> BackendError | None:
    try:
        await call
    except BackendError as exc:
        return exc
    return None


def _samples(exporter: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(exporter.registry).decode()  # type: ignore[attr-defined]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
