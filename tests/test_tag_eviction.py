"""Tag invalidation that eviction cannot defeat: tagged entries carry their tags' stamps.

An evicted tag index used to hide its entries from ``invalidate_tags``, which then removed
nothing and reported success while the entries stayed hot. Now a tagged entry is valid
only while each of its tags' stamps holds what it was written with: an invalidation
replaces the stamp, an eviction removes it, and either way every read path misses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import redis

from kirocache import Cache, cached
from kirocache.backends import FullBackend, Op
from kirocache.testing import FaultyBackend
from redis_server import RedisServer

TAGS = [f"course:{n}" for n in range(10)]
PER_TAG = 10


def _index(cache: Cache, tag: str) -> str:
    return cache.keyspace.tag_key(tag)


def _stamp(cache: Cache, tag: str) -> str:
    return cache.keyspace.stamp_key(tag)


def _evict(backend: FullBackend, key: str) -> None:
    """What an eviction does to one key: it is gone, without the cache being told."""
    [answer] = backend.execute([Op("delete", key)])
    assert answer is True


def _every_read(cache: Cache, key: str) -> list[object]:
    """What each read path serves for ``key``; a stale entry must be a miss on all."""
    batch = cache.batch().get(key).get_many([key]).exists(key).execute()
    return [
        cache.get(key),
        cache.get_many([key]).get(key),
        batch[0],
        batch[1].get(key),
        batch[2] or None,
        cache.exists(key) or None,
        cache.ttl(key),
    ]


def test_an_entry_whose_tag_index_was_evicted_is_still_invalidated(
    cache: Cache, backend: FullBackend
) -> None:
    cache.set("lesson:1", {"title": "old"}, ttl=3600, tags=["course:1", "course:2"])
    cache.set("lesson:2", {"title": "kept"}, ttl=3600, tags=["course:2"])
    assert _every_read(cache, "lesson:1")[:2] == [{"title": "old"}] * 2
    _evict(backend, _index(cache, "course:1"))  # the index is idle: LRU takes it first

    assert cache.invalidate_tags("course:1") == 0  # nothing found to delete...
    assert _every_read(cache, "lesson:1") == [None] * 7  # ...and still never served
    assert cache.get("lesson:2") == {"title": "kept"}  # another tag's entry is untouched


async def test_an_entry_whose_tag_index_was_evicted_is_still_invalidated_async(
    cache: Cache, backend: FullBackend
) -> None:
    await cache.aset("lesson:1", "old", ttl=3600, tags=["course:1"])
    _evict(backend, _index(cache, "course:1"))
    await cache.ainvalidate_tags("course:1")
    assert await cache.aget("lesson:1") is None
    assert await cache.aget_many(["lesson:1"]) == {}
    assert (await cache.batch().get("lesson:1").exists("lesson:1").aexecute())[:] == [None, False]
    assert await cache.aexists("lesson:1") is False


def test_an_entry_whose_stamp_was_evicted_is_a_miss(cache: Cache, backend: FullBackend) -> None:
    cache.set("lesson:1", "v", ttl=3600, tags=["course:1"])
    assert cache.get("lesson:1") == "v"
    _evict(backend, _stamp(cache, "course:1"))
    # Without its stamp the entry cannot be told from one a lost invalidation missed.
    assert _every_read(cache, "lesson:1") == [None] * 7
    cache.set("lesson:1", "new", ttl=3600, tags=["course:1"])  # a write makes a new stamp
    assert cache.get("lesson:1") == "new"


def test_a_write_after_the_invalidation_is_served(cache: Cache) -> None:
    cache.set("lesson:1", "old", ttl=3600, tags=["course:1"])
    cache.invalidate_tags("course:1")
    assert cache.get("lesson:1") is None
    assert cache.set("lesson:1", "new", ttl=3600, tags=["course:1"]) is True
    assert _every_read(cache, "lesson:1")[:4] == ["new"] * 4


def test_untagged_entries_are_stored_as_before(cache: Cache, backend: FullBackend) -> None:
    cache.set("plain", "v", ttl=60)
    [raw] = backend.get_many([cache.full_key("plain")])
    assert raw is not None
    assert raw[:1] == b"\xc5"  # a bare frame: no envelope, no stamp to read


def test_decorated_functions_check_their_tags_stamps(cache: Cache, backend: FullBackend) -> None:
    calls: list[int] = []

    @cached(prefix="lesson", ttl=3600, tags=["course:{course_id}"], cache=cache)
    def lesson(course_id: int) -> dict[str, int]:
        calls.append(course_id)
        return {"course": course_id, "version": len(calls)}

    assert lesson(1) == {"course": 1, "version": 1}
    assert lesson(1) == {"course": 1, "version": 1}  # a hit
    _evict(backend, _index(cache, "course:1"))
    cache.invalidate_tags("course:1")
    assert lesson(1) == {"course": 1, "version": 2}  # recomputed, not the stale entry
    assert lesson(1) == {"course": 1, "version": 2}
    _evict(backend, _stamp(cache, "course:1"))
    assert lesson(1) == {"course": 1, "version": 3}


async def test_decorated_async_functions_check_their_tags_stamps(
    cache: Cache, backend: FullBackend
) -> None:
    calls: list[int] = []

    @cached(prefix="lesson", ttl=3600, tags=["course:{course_id}"], cache=cache)
    async def lesson(course_id: int) -> int:
        calls.append(course_id)
        return len(calls)

    assert await lesson(1) == 1
    assert await lesson(1) == 1
    _evict(backend, _index(cache, "course:1"))
    await cache.ainvalidate_tags("course:1")
    assert await lesson(1) == 2


def test_a_load_that_saw_no_stamp_is_not_stored_after_an_invalidation(cache: Cache) -> None:
    # The read before the computation found no stamp for the tag (new, or evicted); an
    # invalidation then wrote one. The write would create a stamp of its own with SET NX,
    # which fails, and so does the guard on it: the value loaded before is not stored.
    _, seen = cache._lookup("lesson:1", None, None, ["course:1"])
    read_at = time.perf_counter()
    assert dict(seen[2]) == {_stamp(cache, "course:1"): None}
    cache.invalidate_tags("course:1")
    stored = cache._store(
        "lesson:1", "old", 3600, namespace=None, seen=seen, read_at=read_at, tags=["course:1"]
    )
    assert stored is False
    assert cache.get("lesson:1") is None


def test_two_first_writers_of_a_tag_never_leave_an_entry_with_a_foreign_stamp(
    cache: Cache,
) -> None:
    # Both read before the tag had a stamp; the first creates it, the second's SET NX
    # fails and so does its guarded write: it never stores an entry carrying a stamp the
    # tag does not hold (which would read as stale for its whole TTL).
    _, seen_a = cache._lookup("a", None, None, ["course:1"])
    _, seen_b = cache._lookup("b", None, None, ["course:1"])
    now = time.perf_counter()
    store = cache._store
    assert store("a", 1, 60, namespace=None, seen=seen_a, read_at=now, tags=["course:1"])
    assert not store("b", 2, 60, namespace=None, seen=seen_b, read_at=now, tags=["course:1"])
    assert (cache.get("a"), cache.get("b")) == (1, None)
    cache.invalidate_tags("course:1")
    assert (cache.get("a"), cache.get("b")) == (None, None)


def test_a_corrupt_envelope_is_a_miss_and_is_dropped(cache: Cache, backend: FullBackend) -> None:
    full = cache.full_key("k")
    backend.set(full, b"\xc6\x03\x00")  # claims three tags, holds none
    assert cache.get("k") is None
    assert cache.get_many(["k"]) == {}
    assert backend.get(full) is None  # the read dropped it, as any corrupt entry


class _StampReadsFail(FaultyBackend):
    """Reads of one key work; reads of many (the stamps) fail while ``failing``."""

    def _count(self, name: str) -> None:
        if self.failing and name in ("get_many", "aget_many"):
            raise self.error


def test_the_stamp_check_fails_closed_when_the_stamps_cannot_be_read(backend: FullBackend) -> None:
    faulty = _StampReadsFail(backend)
    cache = Cache(faulty, breaker=None)
    cache.set("lesson:1", "v", ttl=60, tags=["course:1"])
    assert cache.get("lesson:1") == "v"
    faulty.failing = True  # the entry is read; the read of its stamps fails
    assert cache.get("lesson:1") is None  # not served unchecked
    faulty.failing = False
    assert cache.get("lesson:1") == "v"


# -- a real server under maxmemory ------------------------------------------------------------

FILLER = b"x" * 1024


def _fill(raw: redis.Redis, start: int, count: int) -> int:
    """Write ``count`` 1 KiB filler keys (with a TTL, so volatile-lru may take them)."""
    pipe = raw.pipeline(transaction=False)
    for n in range(start, start + count):
        pipe.set(f"filler:{n}", FILLER, ex=3600)
    return sum(isinstance(r, redis.ResponseError) for r in pipe.execute(raise_on_error=False))


def _served(cache: Cache, keys: list[str], old: str) -> int:
    """How many of ``keys`` any read path serves with the ``old`` value."""
    served = sum(cache.get(key) == old for key in keys)
    served += sum(value == old for value in cache.get_many(keys).values())
    return served


def _pressure(raw: redis.Redis, cache: Cache, keys: list[str], written: int, seconds: float) -> int:
    """Write filler for ``seconds`` while reading ``keys`` (hot); the filler count after.

    About 1 MB a second against 4 MB: Redis keeps LRU time in whole seconds, so memory
    must turn over slower than that for LRU to tell a key read a moment ago from an idle
    one (the tag indexes, never read by a hit).
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _fill(raw, written, 100)
        written += 100
        cache.get_many(keys)
        time.sleep(0.08)
    return written


@pytest.mark.slow
@pytest.mark.real_redis
@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "noeviction"])
def test_tag_invalidation_under_eviction_on_a_real_server(
    make_redis_server: Callable[..., RedisServer], policy: str
) -> None:
    # 100 entries under 10 tags, read all the time (hot), while filler many times
    # maxmemory pushes the idle keys out (under noeviction: fills memory until writes are
    # refused). Every tag is then invalidated, and under more pressure not one read of any
    # path serves an invalidated value.
    from kirocache.backends.redis import RedisBackend

    server = make_redis_server(maxmemory="4mb", extra_args=["--maxmemory-policy", policy])
    with redis.Redis.from_url(server.url) as raw, Cache(RedisBackend(server.url)) as cache:
        keys = [f"lesson:{t}:{n}" for t in range(len(TAGS)) for n in range(PER_TAG)]
        for key in keys:
            tag = TAGS[int(key.split(":")[1])]
            assert cache.set(key, "old", ttl=3600, tags=[tag]) is True
        if policy == "noeviction":
            written = 0
            while _fill(raw, written, 200) == 0:
                written += 200
        else:
            written = _pressure(raw, cache, keys, 0, 4.0)
            # A loaded machine writes slower: go on until the server has evicted (bounded).
            bound = time.monotonic() + 30.0
            while int(raw.info("stats")["evicted_keys"]) == 0 and time.monotonic() < bound:
                written = _pressure(raw, cache, keys, written, 0.5)
            assert int(raw.info("stats")["evicted_keys"]) > 0
        evicted_indexes = sum(not raw.exists(_index(cache, tag)) for tag in TAGS)
        hot = _served(cache, keys, "old")
        cache.invalidate_tags(*TAGS)
        served = 0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            if policy != "noeviction":
                written = _pressure(raw, cache, keys, written, 0.1)
            served += _served(cache, keys, "old")
        assert served == 0
        # The figures the docs quote (docs/invalidation.md).
        logging.getLogger(__name__).info(
            "%s: %d of %d tag indexes evicted; %d of %d entries served before the "
            "invalidation, 0 after; pending %s; %d keys evicted",
            policy,
            evicted_indexes,
            len(TAGS),
            hot,
            2 * len(keys),
            cache.pending_invalidations(),
            int(raw.info("stats")["evicted_keys"]),
        )


def test_cleanup_prunes_the_stamps_of_tags_with_no_entries_left(
    cache: Cache, backend: FullBackend
) -> None:
    cache.set("a", 1, ttl=60, tags=["gone", "kept"])
    cache.set("b", 2, ttl=60, tags=["kept"])
    cache.set("c", 3, ttl=60, tags=["invalidated"])
    cache.invalidate_tags("invalidated")
    _evict(backend, _index(cache, "gone"))  # as if its entries had all expired
    pruned = cache.prune_indexes()
    assert pruned["stamps"] == 1
    assert backend.get(_stamp(cache, "gone")) is None
    # the invalidation's stamp stays: it must outlive the loads it defeats
    assert backend.get(_stamp(cache, "invalidated")) is not None
    assert cache.get("b") == 2
    assert cache.get("a") is None  # it carried the pruned stamp: a miss, never stale


# -- namespace generations under eviction ---------------------------------------------------


def test_an_evicted_generation_never_brings_old_entries_back(
    cache: Cache, backend: FullBackend
) -> None:
    from kirocache import Namespace

    recs = Namespace("recs:", ttl=3600, bumpable=True)
    cache.register(recs)
    cache.set("1", "generation A", namespace=recs)
    first = cache.keyspace.generations["recs:"]
    cache.bump(recs)
    cache.set("1", "generation B", namespace=recs)
    assert cache.get("1", namespace=recs) == "generation B"
    _evict(backend, cache.keyspace.generation_key(recs))  # LRU took the generation key
    other = Cache(backend, key_prefix=cache.keyspace.key_prefix, namespaces=[recs])
    # Neither process serves an older generation: the namespace starts at a fresh one.
    assert other.get("1", namespace=recs) is None
    assert cache.get("1", namespace=recs) is None
    assert cache.get_many(["1"], namespace=recs) == {}
    fresh = cache.keyspace.generations["recs:"]
    assert fresh not in (first, first + 1)
    assert cache.bump(recs) == fresh + 1  # and bumps go on from there
    assert cache.get("1", namespace=recs) is None


def test_a_decorated_function_in_an_evicted_generation_recomputes(
    cache: Cache, backend: FullBackend
) -> None:
    from kirocache import Namespace

    recs = Namespace("recs:", ttl=3600, bumpable=True)
    calls: list[int] = []

    @cached(prefix=recs, cache=cache)
    def recommend(user: int) -> list[int]:
        calls.append(user)
        return [user, len(calls)]

    assert recommend(1) == [1, 1]
    recommend.invalidate_all()  # a bump
    assert recommend(1) == [1, 2]
    _evict(backend, cache.keyspace.generation_key(recs))
    assert recommend(1) == [1, 3]  # not [1, 1], the pre-bump entry still alive
    assert recommend(1) == [1, 3]
