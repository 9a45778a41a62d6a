"""No stale write after an invalidation: the interleaving forced step by step, sync and async.

Caller A misses and loads the old value; caller B updates the source and invalidates; then
A's result arrives. Without protection A's stale value would be cached for a full TTL. The
interleaving is forced with events (no sleeps), on memory, fakeredis and the real server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from kirocache import MISSING, Cache, Namespace, cached
from kirocache.testing import ManualClock

if TYPE_CHECKING:
    from kirocache.testing.conformance import FullBackend

WAIT = 10.0


class Source:
    """The "database": a value, and a loader that can be held between its read and return."""

    def __init__(self) -> None:
        self.value = "old"
        self.loaded = threading.Event()
        self.release = threading.Event()
        self.hold = True

    def load(self) -> str:
        value = self.value
        if self.hold:
            self.hold = False  # only the first load is held
            self.loaded.set()
            assert self.release.wait(WAIT)
        return value


def race(source: Source, call: Callable[[], str], invalidate: Callable[[], object]) -> str:
    """Run ``call`` on a thread, update and invalidate while it loads; return what it got."""
    results: list[str] = []
    caller = threading.Thread(target=lambda: results.append(call()))
    caller.start()
    assert source.loaded.wait(WAIT)
    source.value = "new"
    invalidate()
    source.release.set()
    caller.join(WAIT)
    assert not caller.is_alive()
    return results[0]


@pytest.mark.parametrize(
    "before",
    ["absent", "invalidated", pytest.param("expired", marks=pytest.mark.slow)],  # real expiry
)
def test_a_value_loaded_before_an_invalidation_is_not_stored(
    backend: FullBackend, before: str
) -> None:
    cache = Cache(backend)
    source = Source()

    @cached(prefix="race:", cache=cache, ttl=60)
    def profile(user_id: int) -> str:
        return source.load()

    if before == "invalidated":  # the key already holds an older tombstone
        cache.set(profile.cache_key(1), "older", 60)
        profile.invalidate(1)
    elif before == "expired":
        cache.set(profile.cache_key(1), "older", 0.05)
        time.sleep(0.1)
    assert race(source, lambda: profile(1), lambda: profile.invalidate(1)) == "old"
    # A's stale "old" was not written: the next call loads the new value
    assert profile.get_cached(1) != "old"
    assert profile(1) == "new"
    assert profile.get_cached(1) == "new"


def test_tag_and_key_invalidations_both_stop_the_stale_write(backend: FullBackend) -> None:
    cache = Cache(backend)
    for invalidate in (
        lambda: cache.invalidate_tags("user:7"),
        lambda: cache.delete("race:tags:7"),
        lambda: cache.delete_many(["race:tags:7", "race:tags:8"]),
    ):
        source = Source()

        @cached(prefix="race:tags:", key="{user_id}", tags=["user:{user_id}"], cache=cache, ttl=60)
        def progress(user_id: int, source: Source = source) -> str:
            return source.load()

        assert race(source, lambda: progress(7), invalidate) == "old"
        assert progress(7) == "new"
        cache.delete("race:tags:7")


def test_without_tombstones_the_race_is_real(backend: FullBackend) -> None:
    """The same interleaving with protection off caches the stale value: the test can fail."""
    cache = Cache(backend, tombstone_ttl=None)
    source = Source()

    @cached(prefix="race:off:", cache=cache, ttl=60)
    def profile(user_id: int) -> str:
        return source.load()

    assert race(source, lambda: profile(1), lambda: profile.invalidate(1)) == "old"
    assert profile(1) == "old"  # the bug every cache has


@pytest.mark.slow  # a tombstone's age is real time: the server expires it
def test_a_load_slower_than_the_tombstone_ttl_is_not_stored(backend: FullBackend) -> None:
    """Once a tombstone may have expired, nothing can tell, so a slow load is not cached."""
    cache = Cache(backend, tombstone_ttl=0.2)
    calls = 0

    @cached(prefix="race:slow:", cache=cache, ttl=60)
    def slow(user_id: int) -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.3)
        return calls

    assert slow(1) == 1
    assert slow(1) == 2  # not stored: it took longer than tombstone_ttl
    assert cache.metrics is not None


def test_a_stale_refresh_loses_to_an_invalidation(backend: FullBackend) -> None:
    """A background refresh of a stale entry that started before an invalidation is dropped."""
    clock = ManualClock()
    cache = Cache(backend, clock=clock)
    source = Source()
    source.hold = False

    @cached(prefix="race:swr:", cache=cache, ttl=0.05, stale_ttl=60)
    def feed(user_id: int) -> str:
        return source.load()

    assert feed(1) == "old"
    clock.advance(0.1)  # now stale: the next call serves it and refreshes in the background
    source.hold = True
    assert feed(1) == "old"
    assert source.loaded.wait(WAIT)
    source.value = "new"
    feed.invalidate(1)
    source.release.set()
    deadline = time.monotonic() + WAIT
    while feed.get_cached(1) == "old" and time.monotonic() < deadline:
        time.sleep(0.01)  # pragma: no cover - only if the refresh wrote
    time.sleep(0.1)  # let the refresh thread finish its (refused) write
    assert feed(1) == "new"


def test_explicit_set_after_invalidation_is_kept(backend: FullBackend) -> None:
    """Tombstones only stop conditional writes: an explicit set or refresh always lands."""
    cache = Cache(backend)
    cache.set("race:plain", 1, 60)
    assert cache.delete("race:plain") is True
    assert cache.get("race:plain") is None
    assert cache.exists("race:plain") is False
    assert cache.ttl("race:plain") is None
    assert cache.delete("race:plain") is False  # a tombstone is not a value
    assert cache.set("race:plain", 2, 60, nx=True) is True  # a tombstone is absent for nx
    assert cache.get("race:plain") == 2
    cache.delete("race:plain")
    assert cache.incr("race:plain", 5) == 5  # a counter starts again after invalidation
    assert cache.get_many(["race:plain", "race:none"]) == {"race:plain": 5}


# -- async ----------------------------------------------------------------------------------


async def test_async_a_value_loaded_before_an_invalidation_is_not_stored(
    backend: FullBackend,
) -> None:
    cache = Cache(backend)
    value = "old"
    loaded, release = asyncio.Event(), asyncio.Event()
    calls = 0

    @cached(prefix="arace:", cache=cache, ttl=60)
    async def profile(user_id: int) -> str:
        nonlocal calls
        calls += 1
        seen = value
        if calls == 1:
            loaded.set()
            await release.wait()
        return seen

    caller = asyncio.create_task(profile(1))
    await asyncio.wait_for(loaded.wait(), WAIT)
    value = "new"
    assert await profile.invalidate(1) is False  # nothing was cached yet
    release.set()
    assert await caller == "old"
    assert await profile(1) == "new"
    assert await profile.get_cached(1) == "new"


async def test_async_tag_invalidation_stops_the_stale_write(backend: FullBackend) -> None:
    cache = Cache(backend)
    value = "old"
    loaded, release = asyncio.Event(), asyncio.Event()
    calls = 0

    @cached(prefix="arace:tags:", tags=["team:{team}"], cache=cache, ttl=60)
    async def board(team: str) -> str:
        nonlocal calls
        calls += 1
        seen = value
        if calls == 1:
            loaded.set()
            await release.wait()
        return seen

    caller = asyncio.create_task(board("red"))
    await asyncio.wait_for(loaded.wait(), WAIT)
    value = "new"
    await cache.ainvalidate_tags("team:red")
    release.set()
    assert await caller == "old"
    assert await board("red") == "new"


def test_batches_treat_tombstones_as_absent(backend: FullBackend) -> None:
    cache = Cache(backend)
    cache.set("race:batch", 1, 60)
    result = cache.batch().delete("race:batch").get("race:batch").exists("race:batch").execute()
    assert list(result) == [True, None, False]
    result = cache.batch().delete("race:batch").get_many(["race:batch"]).execute()
    assert list(result) == [False, {}]


def test_cached_many_does_not_store_ids_invalidated_while_loading(backend: FullBackend) -> None:
    from kirocache import cached_many

    cache = Cache(backend)
    source = Source()
    rows = {1: "old", 2: "old"}

    @cached_many(prefix="race:many:", cache=cache, ttl=60)
    def profiles(user_ids: list[int]) -> dict[int, str]:
        loaded = {user_id: rows[user_id] for user_id in user_ids}
        source.load()
        return loaded

    def update() -> None:
        rows[1] = "new"
        profiles.invalidate([1])

    results: list[dict[int, str]] = []
    caller = threading.Thread(target=lambda: results.append(profiles([1, 2])))
    caller.start()
    assert source.loaded.wait(WAIT)
    update()
    source.release.set()
    caller.join(WAIT)
    assert results == [{1: "old", 2: "old"}]
    # id 1 was invalidated while loading: not stored; id 2 was not touched: stored
    assert cache.get_many(profiles.cache_keys([1, 2])) == {profiles.cache_keys([2])[0]: "old"}
    assert profiles([1, 2]) == {1: "new", 2: "old"}


# -- get_or_set: the same guarded write as @cached -------------------------------------------

RECS = Namespace("race:recs:", ttl=60, bumpable=True)


@pytest.mark.parametrize("update", ["delete", "set", "tags", "bump"])
def test_get_or_set_does_not_store_a_value_loaded_before_an_invalidation(
    backend: FullBackend, update: str
) -> None:
    """A misses, B updates the source and invalidates (or writes), A's factory returns the
    old value: A's store is refused, so the next reader sees B's world, not A's."""
    cache = Cache(backend, namespaces=[RECS])
    source = Source()
    key = "race:recs:1" if update == "bump" else "race:gos:1"
    if update == "tags":
        cache.set(key, "older", 60, tags=["user:1"])  # tagged, then invalidated: a tombstone
        cache.invalidate_tags("user:1")
    invalidate: dict[str, Callable[[], object]] = {
        "delete": lambda: cache.delete(key),
        "set": lambda: cache.set(key, "new", 60),  # B writes the new value itself
        "tags": lambda: cache.delete(key),
        "bump": lambda: cache.bump(RECS),
    }
    assert race(source, lambda: cache.get_or_set(key, source.load, 60), invalidate[update]) == "old"
    assert cache.get(key) != "old"  # for every process: a fresh Cache reads the backend
    assert Cache(backend, namespaces=[RECS]).get(key) != "old"
    assert cache.get_or_set(key, source.load, 60) == "new"
    assert cache.get(key) == "new"


def test_get_or_set_without_tombstones_stores_the_stale_value(backend: FullBackend) -> None:
    """The same interleaving with protection off: the test above can fail."""
    cache = Cache(backend, tombstone_ttl=None)
    source = Source()
    call = lambda: cache.get_or_set("race:gos:off", source.load, 60)  # noqa: E731
    assert race(source, call, lambda: cache.delete("race:gos:off")) == "old"
    assert cache.get("race:gos:off") == "old"


def test_get_or_set_still_stores_when_nothing_happened(backend: FullBackend) -> None:
    cache = Cache(backend, namespaces=[RECS])
    assert cache.get_or_set("race:gos:calm", lambda: 1, 60) == 1
    assert cache.get("race:gos:calm") == 1
    cache.delete("race:gos:calm")  # an older tombstone does not stop a later computation
    assert cache.get_or_set("race:gos:calm", lambda: 2, 60) == 2
    assert cache.get("race:gos:calm") == 2
    assert cache.get_or_set("1", lambda: 3, namespace=RECS) == 3
    assert cache.get("1", namespace=RECS) == 3


async def test_async_get_or_set_does_not_store_a_value_loaded_before_an_invalidation(
    backend: FullBackend,
) -> None:
    cache = Cache(backend, namespaces=[RECS])
    value = "old"
    loaded, release = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        seen = value
        loaded.set()
        await release.wait()
        return seen

    for key, invalidate in (
        ("arace:gos:1", lambda: cache.adelete("arace:gos:1")),
        ("race:recs:2", lambda: cache.abump(RECS)),
    ):
        value = "old"
        loaded.clear()
        release.clear()
        caller = asyncio.create_task(cache.aget_or_set(key, load, 60))
        await asyncio.wait_for(loaded.wait(), WAIT)
        value = "new"
        await invalidate()
        release.set()
        assert await caller == "old"
        assert await cache.aget(key, MISSING) is MISSING
        assert await cache.aget_or_set(key, load, 60) == "new"
        assert await cache.aget(key) == "new"


# -- every other compute-then-store path --------------------------------------------------


def _join_refreshes() -> None:
    """Wait for the background refresh threads the decorators started (by their name)."""
    for thread in threading.enumerate():
        if thread.name.startswith("kirocache-refresh"):
            thread.join(WAIT)
            assert not thread.is_alive()


def test_an_early_refresh_loses_to_an_invalidation(backend: FullBackend) -> None:
    """An early (XFetch) refresh of a fresh entry that started before an invalidation."""
    cache = Cache(backend, clock=ManualClock())
    source = Source()
    source.hold = False

    # a factor so large that every hit with a measured compute time is due early
    @cached(prefix="race:early:", cache=cache, ttl=60, early_refresh=1e12)
    def feed(user_id: int) -> str:
        return source.load()

    assert feed(1) == "old"
    source.hold = True
    assert feed(1) == "old"  # fresh, served, refreshed behind the caller
    assert source.loaded.wait(WAIT)
    source.value = "new"
    feed.invalidate(1)
    source.release.set()
    _join_refreshes()
    assert feed.get_cached(1) is MISSING  # the refresh's "old" was refused
    assert feed(1) == "new"


def test_a_stale_refresh_loses_to_a_tag_invalidation(backend: FullBackend) -> None:
    clock = ManualClock()
    cache = Cache(backend, clock=clock)
    source = Source()
    source.hold = False

    @cached(prefix="race:swrtag:", tags=["user:{user_id}"], cache=cache, ttl=1, stale_ttl=60)
    def feed(user_id: int) -> str:
        return source.load()

    assert feed(1) == "old"
    clock.advance(2)
    source.hold = True
    assert feed(1) == "old"  # stale: served, refreshed behind the caller
    assert source.loaded.wait(WAIT)
    source.value = "new"
    cache.invalidate_tags("user:1")
    source.release.set()
    _join_refreshes()
    assert feed.get_cached(1) is MISSING
    assert feed(1) == "new"


async def _join_async_refreshes() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and "refresh" in t.get_name()]
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)


@pytest.mark.parametrize("mode", ["stale", "early"])
async def test_async_background_refresh_loses_to_an_invalidation(
    backend: FullBackend, mode: str
) -> None:
    clock = ManualClock()
    cache = Cache(backend, clock=clock)
    value = "old"
    loaded, release = asyncio.Event(), asyncio.Event()
    hold = False
    options: dict[str, float] = {"stale_ttl": 60} if mode == "stale" else {"early_refresh": 1e12}

    @cached(prefix=f"arace:{mode}:", cache=cache, ttl=1, **options)
    async def feed(user_id: int) -> str:
        seen = value
        await asyncio.sleep(0)  # a compute time above 0 for the early refresh to weigh
        if hold:
            loaded.set()
            await release.wait()
        return seen

    assert await feed(1) == "old"
    if mode == "stale":
        clock.advance(2)
    hold = True
    assert await feed(1) == "old"  # served; the refresh runs behind the caller
    await asyncio.wait_for(loaded.wait(), WAIT)
    hold = False
    value = "new"
    await feed.invalidate(1)
    release.set()
    await _join_async_refreshes()
    assert await feed.get_cached(1) is MISSING
    assert await feed(1) == "new"


async def test_async_cached_many_does_not_store_ids_invalidated_while_loading(
    backend: FullBackend,
) -> None:
    from kirocache import cached_many

    cache = Cache(backend)
    rows = {1: "old", 2: "old"}
    loaded, release = asyncio.Event(), asyncio.Event()

    @cached_many(prefix="arace:many:", cache=cache, ttl=60)
    async def profiles(user_ids: list[int]) -> dict[int, str]:
        got = {user_id: rows[user_id] for user_id in user_ids}
        if not release.is_set():
            loaded.set()
            await release.wait()
        return got

    caller = asyncio.create_task(profiles([1, 2]))
    await asyncio.wait_for(loaded.wait(), WAIT)
    rows[1] = "new"
    await profiles.invalidate([1])
    release.set()
    assert await caller == {1: "old", 2: "old"}
    stored = await cache.aget_many(profiles.cache_keys([1, 2]))
    assert stored == {profiles.cache_keys([2])[0]: "old"}
    assert await profiles([1, 2]) == {1: "new", 2: "old"}


# warm/awarm stored with an unconditional set_many and refresh() with an unconditional set
# until 04e9912; these failed before it (the stale "old" was cached) and pass since.


def test_warm_does_not_store_a_value_loaded_before_an_invalidation(
    backend: FullBackend,
) -> None:
    from kirocache import warm

    cache = Cache(backend)
    source = Source()

    @cached(prefix="race:warm:", cache=cache, ttl=60)
    def profile(user_id: int) -> str:
        return source.load()

    def warming() -> str:
        warm(profile, [1])  # how many it reports stored is warm's business, not this test's
        return "warmed"

    assert race(source, warming, lambda: profile.invalidate(1)) == "warmed"
    assert profile.get_cached(1) != "old"
    assert profile(1) == "new"


async def test_awarm_does_not_store_a_value_loaded_before_an_invalidation(
    backend: FullBackend,
) -> None:
    from kirocache import awarm

    cache = Cache(backend)
    value = "old"
    loaded, release = asyncio.Event(), asyncio.Event()

    @cached(prefix="arace:warm:", cache=cache, ttl=60)
    async def profile(user_id: int) -> str:
        seen = value
        loaded.set()
        await release.wait()
        return seen

    warming = asyncio.create_task(awarm(profile, [1]))
    await asyncio.wait_for(loaded.wait(), WAIT)
    value = "new"
    await profile.invalidate(1)
    release.set()
    await warming
    assert await profile.get_cached(1) != "old"
    assert await profile(1) == "new"


def test_refresh_does_not_store_a_value_loaded_before_an_invalidation(
    backend: FullBackend,
) -> None:
    cache = Cache(backend)
    source = Source()

    @cached(prefix="race:refresh:", cache=cache, ttl=60)
    def profile(user_id: int) -> str:
        return source.load()

    assert race(source, lambda: profile.refresh(1), lambda: profile.invalidate(1)) == "old"
    assert profile.get_cached(1) != "old"
