"""The operator's engine calls: scan_keys, inspect and invalidate_targets, on every backend."""

from __future__ import annotations

import math

import pytest

from kirocache import BackendError, Cache, ConfigurationError, InvalidationEvent, InvalidKeyError
from kirocache._cache.inspect import EntryInfo, KeyPage, format_of
from kirocache.backends import MemoryBackend
from kirocache.keys import Namespace
from kirocache.serializers import CompressedSerializer, RawSerializer
from kirocache.testing import FaultyBackend
from kirocache.testing.conformance import FullBackend

USERS = Namespace("user:", ttl=60)
FEED = Namespace("feed:", bumpable=True)


@pytest.fixture
def app_cache(backend: FullBackend) -> Cache:
    return Cache(backend, key_prefix="app:", namespaces=[USERS, FEED])


def all_keys(cache: Cache, pattern: str = "*", count: int = 7) -> list[str]:
    keys: list[str] = []
    cursor = 0
    while True:
        page = cache.scan_keys(pattern, cursor=cursor, count=count)
        assert len(page.keys) <= count
        keys += page.keys
        cursor = page.cursor
        if cursor == 0:
            return keys


async def aall_keys(cache: Cache, pattern: str = "*", count: int = 7) -> list[str]:
    keys: list[str] = []
    cursor = 0
    while True:
        page = await cache.ascan_keys(pattern, cursor=cursor, count=count)
        keys += page.keys
        cursor = page.cursor
        if cursor == 0:
            return keys


def fill(cache: Cache) -> set[str]:
    names = {f"user:{i}" for i in range(30)} | {"plain", "feed:1"}
    for name in sorted(names):
        cache.set(name, {"name": name}, tags=["team:red"] if name.endswith("1") else ())
    cache.depends("plain", on="user:1")
    # Redis grows its key table as keys arrive and moves buckets over a step per command:
    # while it does, two SCANs may order keys apart and a page resumed by count can skip
    # one (docs/how-to/admin.md says so). Reads finish the move before the listing.
    for _ in range(4):
        cache.get_many(sorted(names))
    for _ in range(200):
        cache.get("plain")
    return names


def test_pages_list_every_key_once_confined_to_the_prefix(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="app:", namespaces=[USERS, FEED])
    other = Cache(backend, key_prefix="other:")
    other.set("user:1", "not ours")
    names = fill(cache)
    listed = all_keys(cache)
    assert sorted(listed) == sorted(names)  # no internal key (tags, deps, generations)
    assert sorted(all_keys(cache, "user:1*", count=3)) == sorted(
        n for n in names if n.startswith("user:1")
    )
    assert cache.scan_keys("user:*", count=1000).cursor == 0


async def test_async_pages_match_the_sync_ones(app_cache: Cache) -> None:
    names = fill(app_cache)
    assert sorted(await aall_keys(app_cache)) == sorted(names)
    page = await app_cache.ascan_keys("*", namespace=USERS, count=100)
    assert isinstance(page, KeyPage)
    assert sorted(page.keys) == sorted(n for n in names if n.startswith("user:"))
    assert page.to_dict()["cursor"] == 0


def test_a_cursor_past_the_end_is_an_empty_last_page(app_cache: Cache) -> None:
    fill(app_cache)
    assert app_cache.scan_keys("*", cursor=10_000) == KeyPage((), 0, "*")


@pytest.mark.parametrize(("cursor", "count"), [(-1, 10), (0, 0), (0, 10_001), (0, True), ("0", 10)])
def test_out_of_range_cursors_and_counts_are_refused(
    app_cache: Cache, cursor: object, count: object
) -> None:
    with pytest.raises(ConfigurationError):
        app_cache.scan_keys("*", cursor=cursor, count=count)  # type: ignore[arg-type]


def test_reserved_patterns_are_refused(app_cache: Cache) -> None:
    with pytest.raises(InvalidKeyError):
        app_cache.scan_keys("kirocache:*")
    with pytest.raises(InvalidKeyError):
        app_cache.inspect("kirocache:tag:x")


def test_listing_a_cache_without_prefix_may_read_everything() -> None:
    cache = Cache.from_url("memory://")
    cache.set("a", 1)
    cache.set("b", 2, tags=["t"])
    assert sorted(cache.scan_keys().keys) == ["a", "b"]


def test_inspect_describes_an_entry_without_decoding_it(app_cache: Cache) -> None:
    app_cache.set("user:1", {"name": "Ada"}, tags=["team:red", "team:blue"])
    app_cache.depends("plain", on="user:1")
    info = app_cache.inspect("user:1")
    assert isinstance(info, EntryInfo)
    assert info.key == "user:1"
    assert info.full_key == "app:user:1"
    assert info.namespace == "user:"
    assert info.ttl is not None
    assert 55 < info.ttl <= 60
    assert info.format == "json"
    assert info.serializer == "OrjsonSerializer"
    assert set(info.tags) == {"team:red", "team:blue"}
    assert info.dependents == 1
    assert info.size > len(b'{"name":"Ada"}')
    assert not info.tombstone
    assert not info.pending
    assert info.to_dict()["tags"] == list(info.tags)


async def test_inspect_sees_counters_tombstones_and_no_expiry(app_cache: Cache) -> None:
    app_cache.incr("hits")
    counter = await app_cache.ainspect("hits")
    assert counter is not None
    assert (counter.format, counter.ttl, counter.size) == ("counter", None, 1)
    app_cache.set("user:2", "x")
    app_cache.delete("user:2")
    gone = app_cache.inspect("user:2")
    assert gone is not None
    assert gone.tombstone
    assert gone.format == "tombstone"
    assert app_cache.inspect("nothing") is None


def test_inspect_reads_the_current_generation_of_a_bumpable_namespace(app_cache: Cache) -> None:
    app_cache.set("feed:1", "old")
    app_cache.bump(FEED)
    assert app_cache.inspect("feed:1") is None
    app_cache.set("feed:1", "new")
    info = app_cache.inspect("feed:1")
    assert info is not None
    assert info.key == "feed:1"
    assert f"~g{app_cache.keyspace.generations[FEED.prefix]}:" in info.full_key


def test_formats_and_flags_of_stored_bytes() -> None:
    raw = Cache(MemoryBackend(), serializer=RawSerializer())
    raw.set("b", b"\x00\x01")
    raw.set("s", "text")
    assert raw.inspect("b").format == "bytes"  # type: ignore[union-attr]
    assert raw.inspect("s").format == "text"  # type: ignore[union-attr]
    zipped = Cache(MemoryBackend(), serializer=CompressedSerializer(threshold=1))
    zipped.set("z", "a" * 500)
    info = zipped.inspect("z")
    assert info is not None
    assert (info.format, info.compressed, info.encrypted) == ("json", True, False)
    assert format_of(b"not a frame") == ("unknown", False, False)
    assert format_of(b"\xc5\x01\x99\x00abcd") == ("format-153", False, False)


def test_a_failing_backend_raises_instead_of_failing_open() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)
    cache.set("a", 1)
    backend.failing = True
    with pytest.raises(BackendError):
        cache.inspect("a")
    with pytest.raises(BackendError):
        cache.scan_keys()


def test_invalidate_targets_is_one_logged_invalidation(app_cache: Cache) -> None:
    fill(app_cache)
    app_cache.rules.on("user.renamed", keys=["user:{entity_id}"])
    record = app_cache.invalidate_targets(
        keys=["user:2"],
        tags=["team:red"],
        patterns=["user:2*"],
        namespaces=["feed:"],
        event=InvalidationEvent("user.renamed", entity_id=3),
        source="http",
    )
    assert record.source == "http"
    assert record.event == "user.renamed"
    assert record.rules == ("user.renamed",)
    assert record.namespaces == ("feed:",)
    assert record.patterns == ("user:2*",)
    assert {"user:2", "user:3", "user:1", "plain"} <= set(record.keys)  # plain: a dependent
    left = set(all_keys(app_cache))
    assert "feed:1" not in left  # a past generation is not listed
    for key in {k for k in left if k.startswith(("user:2", "user:3")) or k.endswith("1")}:
        info = app_cache.inspect(key)  # listed until the tombstone expires, absent to readers
        assert info is not None
        assert info.tombstone, key
        assert app_cache.get(key) is None
    assert list(app_cache.invalidation_log)[-1] == record
    assert record.removed >= 10


async def test_invalidate_targets_can_leave_the_logging_to_the_caller(app_cache: Cache) -> None:
    fill(app_cache)
    before = len(app_cache.invalidation_log)
    record = await app_cache.ainvalidate_targets(keys=["user:5"], source="cli", log=False)
    assert record.keys == ("user:5",)
    assert record.removed == 1
    assert len(app_cache.invalidation_log) == before
    assert await app_cache.aget("user:5") is None


def test_invalidate_targets_checks_everything_before_changing_anything(app_cache: Cache) -> None:
    fill(app_cache)
    with pytest.raises(ConfigurationError, match="not registered"):
        app_cache.invalidate_targets(keys=["user:1"], namespaces=["nope:"])
    with pytest.raises(InvalidKeyError):
        app_cache.invalidate_targets(keys=["user:1"], patterns=["kirocache:*"])
    with pytest.raises(ConfigurationError, match="list of str"):
        app_cache.invalidate_targets(keys="user:1")
    with pytest.raises(ConfigurationError, match="batch_size"):
        app_cache.invalidate_targets(keys=["user:1"], batch_size=0)
    assert app_cache.get("user:1") == {"name": "user:1"}
    bare = Cache(MemoryBackend())
    with pytest.raises(ConfigurationError, match="every key"):
        bare.invalidate_targets(patterns=["*"])


def test_a_refused_invalidation_is_kept_pending_and_reported() -> None:
    backend = FaultyBackend(MemoryBackend(), reads_work=True)
    cache = Cache(backend, breaker=None)
    cache.set("a", 1)
    backend.failing = True
    record = cache.invalidate_targets(keys=["a"], source="http")
    assert record.removed == 0
    assert cache.pending_invalidations()["invalidations_pending"] == 1
    assert cache.get("a") is None
    backend.failing = False
    cache.close()
    assert math.isfinite(record.duration)
