"""Sessions, the distributed lock and the TieredBackend on a real cluster and on Sentinel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from redis.crc import key_slot

from kirocache import Cache, cached
from kirocache.backends import TOMBSTONE_PREFIX, DistributedLock
from kirocache.backends.cluster import RedisClusterBackend
from kirocache.backends.sentinel import RedisSentinelBackend
from kirocache.backends.tiered import TieredBackend
from kirocache.keys import Namespace
from kirocache.sessions import SessionStore

if TYPE_CHECKING:
    from cluster_server import LocalCluster, LocalSentinel

pytest_plugins = ["cluster_server"]
pytestmark = [pytest.mark.slow, pytest.mark.real_redis]


@pytest.fixture
def cluster_backend(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisClusterBackend]:
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    redis_cluster.flush()
    made = RedisClusterBackend(redis_cluster.url, timeout=2.0)
    try:
        yield made
    finally:
        made.close()


# -- sessions -------------------------------------------------------------------------------


def test_sessions_in_one_hash_tag_work_on_a_cluster(cluster_backend: RedisClusterBackend) -> None:
    # The session store creates a session in one transaction over the record, the user's
    # index and a counter: keys in three slots unless one hash tag holds them.
    sessions = SessionStore(Cache(cluster_backend), namespace=Namespace("{session}:", ttl=3600))
    sid = sessions.create("ada", {"role": "admin"})
    other = sessions.create("ada", {"role": "user"})
    assert sessions.get(sid) == {"role": "admin"}
    assert {info.session_id for info in sessions.user_sessions("ada")} == {sid, other}
    assert sessions.revoke(sid) is True
    assert sessions.get(sid) is None
    sessions.revoke_all("ada")
    assert sessions.get(other) is None


async def test_sessions_in_one_hash_tag_work_on_a_cluster_async(
    cluster_backend: RedisClusterBackend,
) -> None:
    sessions = SessionStore(Cache(cluster_backend), namespace=Namespace("{session}:", ttl=3600))
    sid = await sessions.acreate("ada", {"role": "admin"})
    assert await sessions.aget(sid) == {"role": "admin"}
    assert await sessions.arevoke(sid) is True
    assert await sessions.aget(sid) is None


def test_sessions_spread_over_slots_work_with_the_default_namespace(
    cluster_backend: RedisClusterBackend,
) -> None:
    # Every key of a user and of the user's sessions carries the user's slot tag, so the
    # transactional create stays in one slot while different users spread over the nodes.
    sessions = SessionStore(Cache(cluster_backend))
    users = [f"user{n}" for n in range(24)]
    ids = {user: [sessions.create(user, {"n": n}) for n in range(2)] for user in users}
    slots = {key_slot(sessions._steps._record(sids[0]).encode()) for sids in ids.values()}
    assert len(slots) > 3  # spread, not funnelled into one slot
    assert sessions.get(ids["user0"][0]) == {"n": 0}
    assert sessions.revoke(ids["user0"][0]) is True
    assert sessions.get(ids["user0"][0]) is None
    assert sessions.get(ids["user0"][1]) == {"n": 1}
    sessions.revoke_all("user1")
    assert [sessions.get(sid) for sid in ids["user1"]] == [None, None]
    assert {info.session_id for info in sessions.user_sessions("user2")} == set(ids["user2"])
    assert sessions.stats().live_sessions == 2 * len(users) - 3  # one revoked, two revoked


async def test_sessions_spread_over_slots_work_async(cluster_backend: RedisClusterBackend) -> None:
    sessions = SessionStore(Cache(cluster_backend))
    sid = await sessions.acreate("grace", {"role": "admin"})
    assert await sessions.aget(sid) == {"role": "admin"}
    await sessions.arevoke_all("grace")
    assert await sessions.aget(sid) is None


# -- the distributed lock -------------------------------------------------------------------


def test_distributed_lock_on_a_cluster(cluster_backend: RedisClusterBackend) -> None:
    first = DistributedLock(cluster_backend, "lock:report", timeout=5, wait=0)
    second = DistributedLock(cluster_backend, "lock:report", timeout=5, wait=0)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.extend() is True
    assert second.release() is False
    assert first.release() is True
    assert second.acquire() is True
    assert second.release() is True


async def test_cached_with_a_distributed_lock_on_a_cluster(
    cluster_backend: RedisClusterBackend,
) -> None:
    cache = Cache(cluster_backend, key_prefix="app:")
    calls: list[int] = []

    @cached(prefix="reports:", cache=cache, ttl=60, lock="distributed", tags=["reports"])
    async def report(n: int) -> int:
        calls.append(n)
        return n * 2

    assert await report(21) == 42
    assert await report(21) == 42
    assert calls == [21]
    await cache.ainvalidate_tags("reports")
    assert await report(21) == 42
    assert calls == [21, 21]


# -- the TieredBackend ----------------------------------------------------------------------


def test_tiered_backends_on_sentinel_drop_what_another_invalidates(
    redis_sentinel: LocalSentinel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    one = TieredBackend(RedisSentinelBackend(redis_sentinel.url, timeout=2.0))
    two = TieredBackend(RedisSentinelBackend(redis_sentinel.url, timeout=2.0))
    try:
        first, second = Cache(one, key_prefix="tiered:"), Cache(two, key_prefix="tiered:")
        first.set("k", "old")
        assert second.get("k") == "old"  # now in two's local layer
        first.delete("k")
        deadline = time.monotonic() + 10
        while second.get("k") is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second.get("k") is None
    finally:
        one.close()
        two.close()


# -- the guard window on a cluster ----------------------------------------------------------


def test_a_tag_invalidated_between_the_guard_read_and_the_write_is_never_served(
    cluster_backend: RedisClusterBackend,
    redis_cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The one window a cluster opens: the stamps are read, then the entry is written on
    # its own node. An invalidate_tags exactly there lets the old value land; the entry
    # carries the stamp it was computed under, so it must read as a miss.
    cache = Cache(cluster_backend, key_prefix="window:")
    other = RedisClusterBackend(redis_cluster.url, timeout=2.0)
    invalidator = Cache(other, key_prefix="window:")
    source = {"value": "old"}
    armed: list[bool] = []
    landed: list[bool] = []
    original = cluster_backend._pipe

    def pipe(operation: str, commands: Any, *, transaction: bool, strict: bool) -> list[object]:
        replies = original(operation, commands, transaction=transaction, strict=strict)
        guard_read = all(c[0] == "GET" and "tagstamp" in str(c[1]) for c in commands)
        if armed and guard_read:
            armed.clear()
            source["value"] = "new"
            invalidator.invalidate_tags("t")
            landed.append(True)
        return replies

    monkeypatch.setattr(cluster_backend, "_pipe", pipe)

    @cached(prefix="f:", cache=cache, ttl=60, tags=["t"])
    def read(n: int) -> str:
        return f"{source['value']}:{n}"

    assert read(1) == "old:1"  # creates the tag's stamp; nothing raced
    armed.append(True)
    # a key never written: the invalidation cannot reach it through the tag's index, only
    # the stamp can tell its value is stale
    assert read(2) == "old:2"
    assert landed == [True]
    stored = [cluster_backend.get(k) for k in cluster_backend.scan("window:f:*")]
    live = [v for v in stored if v is not None and not v.startswith(TOMBSTONE_PREFIX)]
    assert live, "the old value was written (the window was really open)"
    assert read(2) == "new:2"  # ...and is never served
    other.close()
