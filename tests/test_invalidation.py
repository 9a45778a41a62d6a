"""Invalidation by event, rule, dependency, pattern and namespace bump; the invalidation log.

Every test runs on memory, fakeredis and the real redis-server (the ``backend`` fixture).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from kirocache import Cache, InMemoryMetrics, InvalidationEvent, Namespace, Tag, cached
from kirocache.exceptions import ConfigurationError, InvalidKeyError
from kirocache.invalidation import InvalidationLog, InvalidationRules

if TYPE_CHECKING:
    from kirocache.testing.conformance import FullBackend

PROFILE = Namespace("user:profile:", ttl=60)
RECS = Namespace("rec:", ttl=60, bumpable=True)
SEARCH = Namespace("search:", ttl=60)


def platform_cache(backend: FullBackend) -> Cache:
    cache = Cache(backend, key_prefix="inv:", namespaces=[PROFILE, RECS, SEARCH])
    cache.rules.on(
        "user.profile.updated",
        keys=[PROFILE.key("{entity_id}")],
        tags=["user:{user_id}"],
        patterns=["search:*"],
        namespaces=[RECS],
    ).on("user.*", keys=["user:progress:{entity_id}"], name="any user event")
    return cache


def fill(cache: Cache) -> None:
    cache.set("user:profile:42", {"name": "Ada"})
    cache.set("user:profile:7", {"name": "Bob"})
    cache.set("user:progress:42", 0.5)
    cache.set("user:badges:42", ["gold"], tags=["user:42"])
    cache.set("search:python", [1, 2])
    cache.set("search:go", [3])
    cache.set("rec:42", ["course-1"])
    cache.set("other:1", 1)


def test_an_event_removes_what_its_rules_name(backend: FullBackend) -> None:
    cache = platform_cache(backend)
    fill(cache)
    event = InvalidationEvent("user.profile.updated", entity_id=42, user_id=42)
    record = cache.invalidate(event)
    for gone in ("user:profile:42", "user:progress:42", "user:badges:42", "search:python"):
        assert cache.get(gone) is None, gone
    assert cache.get("search:go") is None
    assert cache.get("rec:42") is None  # the namespace was bumped
    for kept in ("user:profile:7", "other:1"):
        assert cache.get(kept) is not None, kept
    assert record.event == "user.profile.updated"
    assert record.rules == ("user.profile.updated", "any user event")
    assert set(record.keys) >= {"user:profile:42", "user:progress:42", "user:badges:42"}
    assert record.removed == 5  # 3 keys + 2 search entries; the bump removes nothing
    assert record.namespaces == ("rec:",)
    assert record.duration >= 0


async def test_an_event_removes_what_its_rules_name_async(backend: FullBackend) -> None:
    cache = platform_cache(backend)
    fill(cache)
    record = await cache.ainvalidate(InvalidationEvent("user.logged_in", entity_id=42))
    assert record.rules == ("any user event",)
    assert await cache.aget("user:progress:42") is None
    assert await cache.aget("user:profile:42") == {"name": "Ada"}
    assert record.removed == 1


def test_wildcards_and_unmatched_events(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    cache.rules.on("course.*.published", keys=["course:{entity_id}"])
    cache.set("course:9", 1)
    assert cache.invalidate(InvalidationEvent("course.draft.saved", entity_id=9)).removed == 0
    assert cache.get("course:9") == 1
    assert cache.invalidate(InvalidationEvent("course.v2.published", entity_id=9)).removed == 1
    assert cache.get("course:9") is None


def test_templates_read_data_fields_and_name_what_is_missing(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    cache.rules.on("lesson.updated", keys=["lesson:{course_id}:{entity_id}"])
    cache.set("lesson:c1:5", "x")
    event = InvalidationEvent("lesson.updated", entity_id=5, data={"course_id": "c1"})
    assert cache.invalidate(event).keys == ("lesson:c1:5",)
    with pytest.raises(InvalidKeyError, match=r"course_id.*lesson\.updated"):
        cache.invalidate(InvalidationEvent("lesson.updated", entity_id=5))


def test_bad_rules_and_events_are_refused() -> None:
    rules = InvalidationRules()
    with pytest.raises(ConfigurationError, match="removes nothing"):
        rules.on("user.updated")
    with pytest.raises(ConfigurationError, match="single str"):
        rules.on("user.updated", keys="user:{entity_id}")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="malformed"):
        rules.on("user.updated", keys=["user:{entity_id"])
    with pytest.raises(ConfigurationError, match="plain"):
        rules.on("user.updated", keys=["user:{entity_id!r}"])
    with pytest.raises(ConfigurationError, match="Namespace"):
        rules.on("user.updated", namespaces=["rec:"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="non-empty"):
        InvalidationEvent("")
    with pytest.raises(ConfigurationError, match="InvalidationEvent"):
        Cache.from_url("memory://").invalidate("user.updated")  # type: ignore[arg-type]
    assert len(rules) == 0


# -- dependencies ---------------------------------------------------------------------------


def test_dependents_go_transitively_and_cycles_end(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    for key in ("path:1", "rec:1", "dash:1", "unrelated"):
        cache.set(key, key, 60)
    cache.depends("rec:1", on="path:1")
    cache.depends("dash:1", on="rec:1")
    cache.depends("path:1", on="dash:1")  # a cycle
    assert cache.delete("path:1") is True
    assert [cache.get(k) for k in ("path:1", "rec:1", "dash:1")] == [None, None, None]
    assert cache.get("unrelated") == "unrelated"
    record = cache.invalidation_log.why("dash:1")
    assert record is not None
    assert record.source == "delete"
    assert record.removed == 3


def test_tags_can_depend_and_be_depended_on(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    cache.set("board:red", 1, 60, tags=["team:red"])
    cache.set("stats:red", 2, 60)
    cache.set("feed:red", 3, 60)
    cache.depends("stats:red", on=Tag("team:red"))
    cache.depends(Tag("team:red"), on="roster:red")
    cache.depends("feed:red", on="stats:red")
    assert cache.delete("roster:red") is False  # nothing cached there, but dependents go
    assert [cache.get(k) for k in ("board:red", "stats:red", "feed:red")] == [None, None, None]


async def test_dependencies_async(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    await cache.aset("a", 1, 60)
    await cache.aset("b", 2, 60)
    assert await cache.adepends("b", on="a") is True
    assert await cache.ainvalidate_tags("nothing") == 0
    assert await cache.adelete("a") is True
    assert await cache.aget("b") is None
    with pytest.raises(ConfigurationError, match="itself"):
        await cache.adepends("a", on="a")


# -- patterns and namespaces ----------------------------------------------------------------


def test_pattern_invalidation_counts_and_stays_in_the_prefix(backend: FullBackend) -> None:
    mine = Cache(backend, key_prefix="inv:")
    theirs = Cache(backend, key_prefix="theirs:")
    for i in range(1200):  # more than one SCAN/UNLINK batch
        mine.set(f"user:{i}", i, 60)
    theirs.set("user:1", "kept", 60)
    mine.set("course:1", "kept", 60)
    assert mine.invalidate_pattern("user:*") == 1200
    assert theirs.get("user:1") == "kept"
    assert mine.get("course:1") == "kept"
    [record] = mine.invalidation_log.query(source="pattern")
    assert record.removed == 1200
    assert record.mentions("user:77")


def test_bump_hides_a_whole_namespace_at_once(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    other_process = Cache(backend, key_prefix="inv:")
    calls = 0

    @cached(prefix=RECS, cache=cache)
    def recommend(user_id: int) -> list[int]:
        nonlocal calls
        calls += 1
        return [user_id, calls]

    @cached(prefix=RECS, cache=other_process)
    def recommend_elsewhere(user_id: int) -> list[int]:
        return [user_id, -1]

    assert recommend(1) == [1, 1]
    assert recommend_elsewhere(1) == [1, 1]  # shares the entry
    first = cache.keyspace.generations["rec:"]  # a fresh namespace starts at a random one
    assert cache.bump(RECS) == first + 1
    assert recommend(1) == [1, 2]  # recomputed under the next generation
    assert recommend_elsewhere(1) == [1, 2]  # the other cache reads the new generation
    other_process.bump(RECS)
    assert recommend(1) == [1, 3]
    assert cache.full_key("1", RECS).startswith(f"inv:rec:~g{first + 2}:")
    [*_, record] = cache.invalidation_log.query(source="namespace")
    assert record.namespaces == ("rec:",)


async def test_bump_async_and_plain_keys(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:", namespaces=[RECS])
    await cache.aset("rec:9", "old")
    assert await cache.aget("rec:9") == "old"
    await cache.abump(RECS)
    assert await cache.aget("rec:9") is None
    await cache.aset("rec:9", "new")
    assert await cache.aget_many(["rec:9"]) == {"rec:9": "new"}
    assert await cache.adelete("rec:9") is True
    assert await cache.aget("rec:9") is None


def test_a_value_computed_before_a_bump_is_not_seen_after(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    bumped = False

    @cached(prefix=RECS, cache=cache)
    def recommend(user_id: int) -> str:
        nonlocal bumped
        if not bumped:
            bumped = True
            cache.bump(RECS)  # the namespace is invalidated while this call computes
            return "computed before the bump"
        return "fresh"

    assert recommend(5) == "computed before the bump"
    assert recommend(5) == "fresh"


def test_namespaces_that_are_not_bumpable(backend: FullBackend) -> None:
    cache = Cache(backend, key_prefix="inv:")
    cache.set("search:a", 1)
    cache.set("search:b", 2)
    with pytest.raises(ConfigurationError, match="not bumpable"):
        cache.bump(SEARCH)
    assert cache.invalidate_namespace(SEARCH) == 2
    assert cache.get("search:a") is None
    assert cache.invalidate_namespace(RECS) == 0  # a bump


# -- the log --------------------------------------------------------------------------------


def test_the_log_answers_why_a_key_disappeared(backend: FullBackend) -> None:
    cache = platform_cache(backend)
    fill(cache)
    before = time.time()
    cache.invalidate(InvalidationEvent("user.profile.updated", entity_id=42, user_id=42))
    cache.delete("user:profile:7")
    cache.invalidate_tags("user:42")
    why = cache.invalidation_log.why("user:profile:42")
    assert why is not None
    assert why.event == "user.profile.updated"
    assert why.rules[0] == "user.profile.updated"
    assert cache.invalidation_log.why("search:go") is why  # covered by a pattern
    assert [r.source for r in cache.invalidation_log.query(since=before)] == [
        "event",
        "delete",
        "tags",
    ]
    assert len(cache.invalidation_log.query(event="user.*")) == 1
    assert cache.invalidation_log.query(until=before - 1) == []
    assert cache.invalidation_log.why("never:there") is None
    assert why.as_dict()["event"] == "user.profile.updated"
    assert isinstance(cache.metrics, InMemoryMetrics)
    [events] = [s for s in cache.metrics.stats() if s.operation == "invalidate"]
    assert (events.namespace, events.calls, events.deletes) == ("events", 1, 3)  # keys, tags


def test_the_log_is_bounded() -> None:
    cache = Cache.from_url("memory://", invalidation_log_size=3)
    for i in range(10):
        cache.delete(f"k{i}")
    assert [r.keys for r in cache.invalidation_log] == [("k7",), ("k8",), ("k9",)]
    with pytest.raises(ConfigurationError):
        InvalidationLog(0)
    cache.invalidation_log.clear()
    assert len(cache.invalidation_log) == 0
