"""Pending invalidations: an invalidation the backend refuses is kept, applied locally at
once, and replayed before reads are served from the recovered backend.

Each test first makes the backend refuse the invalidation (a fault, an open breaker, a
write refused while reads work, as OOM under ``noeviction`` does), then asserts the old
value is never read again: not by this process while the invalidation is pending, and not
by another process (a second ``Cache`` over the same store) once it is replayed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from kirocache import Cache, InvalidationEvent, Namespace, cached, invalidates
from kirocache._cache.guard import FAILED
from kirocache.backends import MemoryBackend
from kirocache.backends._glob import glob_to_regex
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import BackendError, InvalidKeyError
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import FaultyBackend, ManualClock
from outage import outage

RETRY = 5.0  # past the longest backoff between two replay tries


@pytest.fixture
def store() -> Iterator[MemoryBackend]:
    backend = MemoryBackend()
    yield backend
    backend.close()


def pending(cache: Cache) -> dict[str, int]:
    return cache.invalidator.pending.figures()


# -- the reproduction of the issue ------------------------------------------------------------


def test_delete_refused_by_the_open_breaker_is_not_lost(store: MemoryBackend) -> None:
    clock = ManualClock()
    backend = FaultyBackend(store)
    cache = Cache(backend, clock=clock)
    cache.set("k", "old", ttl=3600)
    backend.failing = True
    for _ in range(3):
        cache.get("x")  # the breaker opens
    backend.failing = False
    cache.delete("k")  # refused by the breaker: kept pending
    assert pending(cache)["invalidations_pending"] == 1
    clock.advance(1.1)  # the breaker lets a probe through
    assert cache.get("k") is None
    assert pending(cache) == {
        "invalidations_pending": 0,
        "invalidations_replayed": 1,
        "invalidations_overflowed": 0,
    }
    assert Cache(store).get("k") is None  # another process: replayed into the store


async def test_adelete_refused_by_the_open_breaker_is_not_lost(store: MemoryBackend) -> None:
    clock = ManualClock()
    backend = FaultyBackend(store)
    cache = Cache(backend, clock=clock)
    await cache.aset("k", "old", ttl=3600)
    backend.failing = True
    for _ in range(3):
        await cache.aget("x")
    backend.failing = False
    await cache.adelete("k")
    clock.advance(1.1)
    assert await cache.aget("k") is None
    assert pending(cache)["invalidations_replayed"] == 1
    assert await Cache(store).aget("k") is None


# -- every kind of invalidation ------------------------------------------------------------------

USERS = Namespace("user:", bumpable=True)
POSTS = Namespace("post:")


def _populate(cache: Cache) -> None:
    cache.set("a:1", "old", 3600, tags=["t"])
    cache.set("a:2", "old", 3600)
    cache.set("b:1", "kept", 3600)
    cache.set("1", "old", 3600, namespace=USERS)
    cache.set("1", "old", 3600, namespace=POSTS)


def _invalidated_by_decorator(cache: Cache) -> None:
    @invalidates(keys=["a:{n}"], cache=cache)
    def update(n: int) -> None:
        return None

    update(1)


def _event(cache: Cache) -> None:
    cache.rules.on("changed", keys=["a:{entity_id}"], patterns=["a:2*"], namespaces=[USERS])
    cache.invalidate(InvalidationEvent("changed", entity_id=1))


# name -> (invalidate, the reads that held "old" and must never again, a read it spares)
KINDS: dict[str, tuple[Callable[[Cache], object], list[tuple[str, Namespace | None]]]] = {
    "delete": (lambda c: c.delete("a:1"), [("a:1", None)]),
    "delete_many": (lambda c: c.delete_many(["a:1", "a:2"]), [("a:1", None), ("a:2", None)]),
    "invalidates": (_invalidated_by_decorator, [("a:1", None)]),
    "invalidate_tags": (lambda c: c.invalidate_tags("t"), [("a:1", None)]),
    "event": (_event, [("a:1", None), ("a:2", None), ("1", USERS)]),
    "delete_pattern": (lambda c: c.delete_pattern("a:*"), [("a:1", None), ("a:2", None)]),
    "bump": (lambda c: c.bump(USERS), [("1", USERS)]),
    "invalidate_namespace": (lambda c: c.invalidate_namespace(POSTS), [("1", POSTS)]),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_invalidation_kind_is_kept_and_replayed(kind: str, store: MemoryBackend) -> None:
    invalidate, stale = KINDS[kind]
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, key_prefix="app:", breaker=None, clock=clock)
    cache.invalidator.pending.close()  # no retry thread: this test drives the replay
    _populate(cache)
    backend.failing = True  # writes refused, reads served: the old values are readable
    invalidate(cache)
    assert pending(cache)["invalidations_pending"] >= 1
    for key, space in stale:
        assert cache.get(key, namespace=space) is None, (kind, key)
    backend.failing = False
    clock.advance(RETRY)  # the next retry is due
    for key, space in stale:  # the first read replays, then reads the recovered store
        assert cache.get(key, namespace=space) is None, (kind, key)
    assert pending(cache)["invalidations_pending"] == 0
    assert pending(cache)["invalidations_replayed"] >= 1
    other = Cache(store, key_prefix="app:")  # a process that never saw the fault
    for key, space in stale:
        assert other.get(key, namespace=space) is None, (kind, key)
    assert other.get("b:1") == "kept"


@pytest.mark.parametrize("kind", ["delete_pattern", "bump"])
def test_a_pending_pattern_or_bump_blocks_only_what_it_reaches(
    kind: str, store: MemoryBackend
) -> None:
    backend = outage(store)
    cache = Cache(backend, key_prefix="app:", breaker=None)
    cache.invalidator.pending.close()
    _populate(cache)
    backend.failing = True
    KINDS[kind][0](cache)
    assert cache.get("b:1") == "kept"  # a glob or a namespace has a known reach
    assert cache.get("1", namespace=POSTS) == "old"


async def test_async_invalidations_are_kept_and_replayed_by_the_next_calls(
    store: MemoryBackend,
) -> None:
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, key_prefix="app:", breaker=None, clock=clock)
    cache.invalidator.pending.close()
    _populate(cache)
    backend.failing = True
    await cache.adelete("a:1")
    await cache.ainvalidate_tags("t")
    await cache.adelete_pattern("a:2*")
    await cache.abump(USERS)
    assert pending(cache)["invalidations_pending"] == 4
    assert await cache.aget("a:1") is None
    assert await cache.aget_many(["a:1", "a:2", "b:1"]) == {}  # a key's reach is unknown
    backend.failing = False
    clock.advance(RETRY)
    assert await cache.aget_many(["a:1", "a:2", "b:1"]) == {"b:1": "kept"}
    assert pending(cache)["invalidations_pending"] == 0
    other = Cache(store, key_prefix="app:")
    assert await other.aget_many(["a:1", "a:2"]) == {}
    assert await other.aget("1", namespace=USERS) is None


def test_a_failed_slot_keeps_the_invalidation(store: MemoryBackend) -> None:
    class Oom:
        """``execute`` answers, but every write slot is refused (OOM under noeviction)."""

        def __init__(self, inner: MemoryBackend) -> None:
            self.inner, self.full = inner, True

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def execute(self, ops: list[Any], *, transaction: bool = False) -> list[object]:
            if not self.full:
                return list(self.inner.execute(ops, transaction=transaction))
            oom = BackendError("OOM command not allowed when used memory > 'maxmemory'")
            reads = {"get", "tag_members", "exists", "ttl"}
            return [self.inner.execute([op])[0] if op.name in reads else oom for op in ops]

    backend = Oom(store)
    clock = ManualClock()
    cache = Cache(backend, breaker=None, clock=clock)
    backend.full = False
    cache.set("k", "old")
    cache.invalidator.pending.close()
    backend.full = True
    cache.delete("k")
    assert store.get("k") is not None  # still there: the tombstone was refused
    assert cache.get("k") is None
    backend.full = False
    clock.advance(RETRY)
    assert cache.get("k") is None
    assert Cache(store).get("k") is None


# -- what a pending invalidation means locally ---------------------------------------------------


def test_a_value_computed_while_pending_is_not_stored(store: MemoryBackend) -> None:
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, breaker=None, clock=clock)
    cache.invalidator.pending.close()
    calls = []

    @cached(prefix="f:", ttl=60, tags=["t"], cache=cache)
    def f() -> int:
        calls.append(1)
        return len(calls)

    assert f() == 1
    backend.failing = True
    cache.invalidate_tags("t")
    assert f() == 2  # a miss: the tag's invalidation is pending
    assert f() == 3  # and the value computed was not stored over the old one
    backend.failing = False
    clock.advance(RETRY)
    assert f() == 4  # replayed, then computed and stored
    assert f() == 4


def test_reads_serve_the_recovered_backend_only_after_the_replay(store: MemoryBackend) -> None:
    backend = outage(store, writes_only=False)
    cache = Cache(backend, breaker=None)
    cache.invalidator.pending.close()
    cache.set("k", "old")
    cache.set("other", "fine")
    backend.failing = True
    cache.delete("k")
    backend.failing = False
    assert cache.get("other") == "fine"  # this read replayed first
    assert backend.calls["execute"] >= 2  # the set, the refused delete, the replay
    assert Cache(store).get("k") is None


def test_an_invalidation_that_raises_is_kept_too(store: MemoryBackend) -> None:
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, on_error="raise", breaker=None, clock=clock)
    cache.invalidator.pending.close()
    cache.set("k", "old")
    backend.failing = True
    with pytest.raises(BackendError):
        cache.delete("k")
    assert pending(cache)["invalidations_pending"] == 1
    with pytest.raises(BackendError):
        cache.get("k")  # the replay is due, and raises as "raise" asks
    backend.failing = False
    clock.advance(RETRY)
    assert cache.get("k") is None
    assert Cache(store).get("k") is None


def test_a_set_after_a_pending_delete_is_not_undone_by_the_replay(store: MemoryBackend) -> None:
    backend = outage(store)
    cache = Cache(backend, breaker=None)
    cache.invalidator.pending.close()
    cache.set("k", "old")
    cache.set("d", "old")
    cache.depends("d", on="k")
    backend.failing = True
    cache.delete("k")
    backend.failing = False
    backend.writes_only = True
    assert cache.set("k", "new") is True  # this process wrote after the invalidation
    assert cache.get("k") == "new"  # the replay spared it
    assert cache.get("d") is None  # and still followed its dependents


def test_the_replay_spares_a_key_written_since(store: MemoryBackend) -> None:
    backend = outage(store)
    cache = Cache(backend, breaker=None)
    cache.invalidator.pending.close()
    cache.set("k", "old")
    cache.set("d", "old")
    cache.depends("d", on="k")
    backend.failing = True
    cache.delete("k")
    backend.failing = False
    store.set("k", cache.codec.dumps("k", "new"))
    cache.invalidator.written(["k"])  # what a write path reports once its write came back
    assert cache.get("k") == "new"
    assert cache.get("d") is None


# -- bounded memory ------------------------------------------------------------------------------


def test_an_overflow_invalidates_the_whole_cache_until_it_is_cleared(
    store: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, key_prefix="app:", breaker=None, clock=clock)
    neighbour = Cache(store, key_prefix="other:")
    neighbour.set("x", "theirs")
    cache.invalidator.pending.close()
    cache.invalidator.pending.limit = 3
    for n in range(6):
        cache.set(f"k{n}", "old")
    cache.set("z", "untouched by any delete")
    backend.failing = True
    with caplog.at_level(logging.ERROR, logger="kirocache"):
        for n in range(6):
            cache.delete(f"k{n}")
    assert "overflowed" in caplog.text
    figures = pending(cache)
    assert figures["invalidations_overflowed"] == 1
    assert figures["invalidations_pending"] == 6
    assert cache.get("z") is None  # the whole cache reads as invalid
    backend.failing = False
    clock.advance(RETRY)
    assert cache.get("z") is None
    assert pending(cache)["invalidations_pending"] == 0
    assert pending(cache)["invalidations_replayed"] == 6
    other = Cache(store, key_prefix="app:")
    assert other.get_many([f"k{n}" for n in range(6)]) == {}
    assert neighbour.get("x") == "theirs"  # the clear stayed inside the key prefix
    metrics = cache.metrics
    assert isinstance(metrics, InMemoryMetrics)
    assert metrics.invalidations() == {
        "invalidations_pending": 0,
        "invalidations_replayed": 6,
    }


def test_an_overflow_without_a_key_prefix_stays_invalid(
    store: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, breaker=None, clock=clock)
    cache.invalidator.pending.close()
    cache.invalidator.pending.limit = 1
    cache.set("k1", "old")
    cache.set("k2", "old")
    backend.failing = True
    cache.delete("k1")
    cache.delete("k2")
    backend.failing = False
    clock.advance(RETRY)
    with caplog.at_level(logging.ERROR, logger="kirocache"):
        assert cache.get("k1") is None
    assert "no key_prefix" in caplog.text
    assert pending(cache)["invalidations_pending"] == 2


# -- the retry thread --------------------------------------------------------------------------


def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_retry_thread_replays_without_any_call(store: MemoryBackend) -> None:
    backend = outage(store)
    cache = Cache(backend, breaker=None)
    cache.set("k", "old")
    backend.failing = True
    cache.delete("k")
    thread = cache.invalidator.pending.thread
    assert thread is not None
    assert thread.daemon  # never keeps a process alive
    backend.failing = False
    assert _until(lambda: not cache.invalidator.pending.active)
    assert Cache(store).get("k") is None
    assert _until(lambda: not thread.is_alive())  # it ends when nothing is pending


def test_close_stops_the_retry_thread(store: MemoryBackend) -> None:
    backend = outage(store)
    cache = Cache(backend, breaker=None)
    cache.set("k", "old")
    backend.failing = True
    cache.delete("k")
    thread = cache.invalidator.pending.thread
    assert thread is not None
    cache.invalidator.pending.close()
    assert not thread.is_alive()
    assert cache.invalidator.pending.active  # kept: the next calls replay it


# -- concurrency: readers never see the old value once the delete returned -----------------------


def test_concurrent_readers_never_read_a_value_invalidated_during_a_fault(
    store: MemoryBackend,
) -> None:
    backend = outage(store)
    clock = ManualClock()
    cache = Cache(backend, breaker=None, clock=clock)
    cache.invalidator.pending.close()  # the calls replay, when the test moves the clock
    for round_ in range(20):
        cache.set("k", f"old{round_}")
        backend.failing = True
        deleted = threading.Event()
        stale: list[object] = []

        def reader(old: str, deleted: threading.Event, stale: list[object]) -> None:
            for _ in range(200):
                after = deleted.is_set()
                value = cache.get("k")
                if after and value == old:
                    stale.append(value)

        args = (f"old{round_}", deleted, stale)
        threads = [threading.Thread(target=reader, args=args) for _ in range(4)]
        for thread in threads:
            thread.start()
        cache.delete("k")
        deleted.set()
        backend.failing = False
        for thread in threads:
            thread.join()
        assert stale == []
        clock.advance(RETRY)
        assert cache.get("k") is None  # replayed: the next round starts with nothing pending
        assert not cache.invalidator.pending.active


# -- the real server -------------------------------------------------------------------------


def test_delete_while_the_server_is_down_is_replayed_after_restart(
    make_redis_server: Callable[..., Any],
) -> None:
    # an append-only file, so the old values survive the restart as they would in production
    server = make_redis_server(extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    clock = ManualClock()
    cache = Cache(RedisBackend(server.url), key_prefix="app:", clock=clock)
    cache.invalidator.pending.close()
    cache.set("k", "old", 3600)
    cache.set("t1", "old", 3600, tags=["t"])
    server.stop()
    cache.delete("k")
    cache.invalidate_tags("t")
    assert pending(cache)["invalidations_pending"] == 2
    server.start()
    assert Cache(RedisBackend(server.url), key_prefix="app:").get("k") == "old"  # survived
    clock.advance(RETRY)  # past the breaker's recovery time and the replay's backoff
    assert cache.get("k") is None
    assert cache.get("t1") is None
    other = Cache(RedisBackend(server.url), key_prefix="app:")
    assert other.get_many(["k", "t1"]) == {}
    cache.close()
    other.close()


def test_invalidations_refused_by_oom_are_replayed(fault_redis: Any) -> None:
    raw = redis.Redis.from_url(fault_redis.url)
    clock = ManualClock()
    cache = Cache(RedisBackend(fault_redis.url), key_prefix="app:", breaker=None, clock=clock)
    cache.invalidator.pending.close()
    cache.set("k", "old", 3600)
    cache.set("t1", "old", 3600, tags=["t"])
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", max(int(raw.info("memory")["used_memory"]) - 1, 1))
    cache.delete("k")  # the tombstone is refused: OOM
    cache.invalidate_tags("t")
    assert raw.get("app:k") is not None
    assert cache.get("k") is None  # reads still work, and the old value is not served
    assert cache.get("t1") is None
    raw.config_set("maxmemory", 0)
    clock.advance(RETRY)
    assert cache.get("k") is None  # replayed
    other = Cache(RedisBackend(fault_redis.url), key_prefix="app:")
    assert other.get_many(["k", "t1"]) == {}
    raw.close()
    cache.close()
    other.close()


def test_blackholed_server_keeps_the_invalidation(blackhole: Any, store: MemoryBackend) -> None:
    cache = Cache(
        RedisBackend(blackhole.url, socket_timeout=0.1, connect_timeout=0.1),
        breaker=None,
    )
    cache.invalidator.pending.close()
    cache.delete("k")
    assert pending(cache)["invalidations_pending"] == 1
    assert cache.get("k") is None
    cache.close()


async def test_adelete_while_the_server_is_down_is_replayed_after_restart(
    make_redis_server: Callable[..., Any],
) -> None:
    server = make_redis_server(extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    clock = ManualClock()
    cache = Cache(RedisBackend(server.url), key_prefix="app:", clock=clock)
    cache.invalidator.pending.close()
    await cache.aset("k", "old", 3600)
    await cache.aset("t1", "old", 3600, tags=["t"])
    server.stop()
    await cache.adelete("k")
    await cache.ainvalidate_tags("t")
    server.start()
    async with Cache(RedisBackend(server.url), key_prefix="app:") as before:
        assert await before.aget("k") == "old"
    clock.advance(RETRY)
    assert await cache.aget_many(["k", "t1"]) == {}  # replayed first, then read
    assert pending(cache)["invalidations_replayed"] == 2
    async with Cache(RedisBackend(server.url), key_prefix="app:") as other:
        assert await other.aget_many(["k", "t1"]) == {}
    await cache.aclose()


# -- the pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("app:a*", ["app:a", "app:a:1"], ["app:b", "xapp:a"]),
        (r"we\*ird:?", ["we*ird:1"], ["weXird:1", "we*ird:12"]),
        ("k[0-2]", ["k0", "k2"], ["k3", "k"]),
        ("k[^0]", ["k1"], ["k0"]),
        (r"p\[x\]:*", ["p[x]:1"], ["px:1"]),
    ],
)
def test_a_pending_glob_matches_what_redis_would(
    glob: str, matches: list[str], misses: list[str]
) -> None:
    regex = glob_to_regex(glob)
    assert all(regex.match(key) for key in matches)
    assert not any(regex.match(key) for key in misses)


def test_a_cascade_cut_short_keeps_the_level_under_way() -> None:
    cache = Cache(MemoryBackend(), breaker=None)
    cache.invalidator.pending.close()
    steps = cache.invalidator.cascade(cache, "delete", "default", 0.0, ["a", "b"], ["t"])
    next(steps)  # the tags' stamps and members
    with pytest.raises(StopIteration) as done:
        steps.send(FAILED)
    assert done.value.value.complete is False
    assert pending(cache)["invalidations_pending"] == 3  # a, b and the tag t
    assert cache.get("x") is None  # this process reads nothing the cascade may reach


def test_a_cascade_closed_by_the_driver_keeps_its_work() -> None:
    cache = Cache(MemoryBackend(), breaker=None)
    cache.invalidator.pending.close()
    steps = cache.invalidator.cascade(cache, "delete", "default", 0.0, ["a"], [])
    next(steps)
    steps.close()  # what the driver does when it raises under on_error="raise"
    assert pending(cache)["invalidations_pending"] == 1


def test_a_bad_tag_is_refused_before_anything_is_kept_pending() -> None:
    cache = Cache(MemoryBackend())
    cache.set("good", "v")
    with pytest.raises(InvalidKeyError):
        cache.invalidate_tags("team:\udfff")
    assert cache.invalidator.pending.figures()["invalidations_pending"] == 0
    assert cache.get("good") == "v"  # reads are not blocked by a refused invalidation


def test_cache_close_stops_the_retry_thread_and_keeps_what_is_pending(store: MemoryBackend) -> None:
    backend = outage(store)
    cache = Cache(backend, breaker=None)
    cache.set("k", "old")
    backend.failing = True
    cache.delete("k")
    thread = cache.invalidator.pending.thread
    assert thread is not None
    backend.close = store.close  # type: ignore[method-assign] # closing works; writes still fail
    cache.close()
    assert not thread.is_alive()  # stopped although nothing could be replayed
    assert cache.invalidator.pending.active  # kept
    backend.failing = False
    assert cache.get("k") is None  # the next call replays it
    assert not cache.invalidator.pending.active


async def test_cache_aclose_stops_the_retry_thread_without_waiting(store: MemoryBackend) -> None:
    backend = outage(store)
    cache = Cache(backend, breaker=None)
    cache.set("k", "old")
    backend.failing = True
    await cache.adelete("k")
    thread = cache.invalidator.pending.thread
    assert thread is not None
    backend.aclose = store.aclose  # type: ignore[method-assign] # closing works; writes fail
    await cache.aclose()
    assert _until(lambda: not thread.is_alive())  # stopped, with nothing replayed
    assert cache.invalidator.pending.active
    backend.failing = False
    assert await cache.aget("k") is None


def test_exists_ttl_and_expire_treat_a_key_a_pending_invalidation_reaches_as_absent(
    store: MemoryBackend,
) -> None:
    backend = outage(store)  # reads answer, writes are refused, as at maxmemory
    cache = Cache(backend, breaker=None)
    cache.set("k", "old", ttl=3600)
    backend.failing = True
    cache.delete("k")  # refused: kept pending while the old value is still readable
    cache.invalidator.pending.close()  # no replay behind the test's back
    assert cache.exists("k") is False
    assert cache.ttl("k") is None
    assert cache.expire("k", 60) is False
    assert cache.persist("k") is False
