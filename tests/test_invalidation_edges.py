"""Edge cases of invalidation that once let a stale value through, each forced step by step.

Hooks in a ``MemoryBackend`` subclass put another caller's action exactly between two
steps of a read or a write, so each interleaving runs deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from kirocache import Cache, InvalidationEvent, Namespace, cached
from kirocache.backends import Op
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import BackendError, ValueTooLargeError

RECS = Namespace("rec:", ttl=600, bumpable=True)


class Hooked(MemoryBackend):
    """Runs ``after[name]`` once, right after the named method returns."""

    def __init__(self) -> None:
        super().__init__()
        self.after: dict[str, Callable[[], object]] = {}
        self.fail: set[str] = set()

    def _then(self, name: str) -> None:
        hook = self.after.pop(name, None)
        if hook is not None:
            hook()

    def get(self, key: str) -> bytes | None:
        if "get" in self.fail:
            self.fail.discard("get")
            raise BackendError("connection reset")
        found = super().get(key)
        self._then("get")
        return found

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if "get_many" in self.fail:
            self.fail.discard("get_many")
            raise BackendError("connection reset")
        found = super().get_many(keys)
        self._then("get_many")
        return found

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[object]:
        if transaction or len(ops) == 1:
            return super().execute(ops, transaction=transaction)  # type: ignore[return-value]
        results: list[object] = []
        for op in ops:  # one lock hold per op, as a pipeline interleaves on a server
            results += super().execute([op])
            self._then(f"execute:{op.name}")
        return results


def test_a_read_racing_a_bump_never_returns_the_old_generation() -> None:
    backend = Hooked()
    here, there = Cache(backend, namespaces=[RECS]), Cache(backend, namespaces=[RECS])
    here.set("rec:1", "old")
    there.bump(RECS)  # another process bumps; this one has not read since
    inner: list[object] = []
    backend.after["get_many"] = lambda: inner.append(here.get("rec:1"))
    assert here.get("rec:1") is None  # the outer read, overtaken by the inner one
    assert inner == [None]
    assert here.get_many(["rec:1"]) == {}


def test_get_many_racing_a_bump_never_returns_the_old_generation() -> None:
    backend = Hooked()
    here, there = Cache(backend, namespaces=[RECS]), Cache(backend, namespaces=[RECS])
    here.set_many({"rec:1": "old", "rec:2": "old"})
    there.bump(RECS)
    inner: list[object] = []
    backend.after["get_many"] = lambda: inner.append(here.get_many(["rec:1"]))
    assert here.get_many(["rec:1", "rec:2"]) == {}
    assert inner == [{}]


def test_a_tag_invalidation_between_index_and_write_is_not_missed() -> None:
    backend = Hooked()
    cache, other = Cache(backend), Cache(backend)
    db = {"v": "old"}

    @cached(prefix="board:", tags=["team:{team}"], ttl=600, cache=cache)
    def board(team: str) -> str:
        return db["v"]

    def update() -> None:
        db["v"] = "new"
        other.invalidate_tags("team:red")

    backend.after["execute:tag_add"] = update  # between the index entry and the write
    assert board("red") == "old"
    assert board("red") == "new"


def test_a_failed_tagged_read_stores_nothing() -> None:
    backend = Hooked()
    cache, other = Cache(backend, breaker=None), Cache(backend)
    db = {"v": "old"}

    @cached(prefix="board:", tags=["team:{team}"], ttl=600, cache=cache)
    def board(team: str) -> str:
        seen = db["v"]
        db["v"] = "new"
        other.invalidate_tags("team:red")  # lands while the value is computed
        return seen

    backend.fail.add("get_many")
    assert board("red") == "old"
    assert cache.get("board:red") is None


def test_a_corrupt_entry_keeps_a_tombstone_written_after_the_read() -> None:
    backend = Hooked()
    cache, other = Cache(backend), Cache(backend)

    @cached(prefix="p:", ttl=600, cache=cache)
    def profile(user_id: int) -> str:
        return "loaded before the delete"

    backend.set("p:1", b"\xc5\x00not-a-valid-entry")
    backend.after["get"] = lambda: other.delete("p:1")
    assert profile(1) == "loaded before the delete"
    assert cache.get("p:1") is None


def test_a_value_too_large_for_the_backend_is_an_error_not_a_fault() -> None:
    cache = Cache.from_url("memory://?max_bytes=300")

    @cached(prefix="big:", cache=cache, strict=True)  # strict: raised, not returned uncached
    def big(i: int) -> str:
        return "x" * 1000

    for call in (lambda: big(1), lambda: cache.set("big", "x" * 1000, tags=["t"])):
        with pytest.raises(ValueTooLargeError):
            call()
    assert cache.errors_total == 0
    assert cache.breaker is not None
    assert cache.breaker.state == "closed"


def test_event_values_are_literal_in_patterns() -> None:
    cache = Cache.from_url("memory://")
    cache.rules.on("user.renamed", patterns=["search:{user_id}:*"])
    for user in ("alice", "bob"):
        cache.set(f"search:{user}:q", [1])
    record = cache.invalidate(InvalidationEvent("user.renamed", user_id="[a-z]*"))
    assert record.removed == 0
    assert cache.get("search:alice:q") == [1]


def test_a_bad_pattern_fails_before_anything_is_invalidated() -> None:
    cache = Cache.from_url("memory://")
    cache.rules.on("x", keys=["k:{entity_id}"], patterns=["{q}*"])
    cache.set("k:1", 1)
    with pytest.raises(Exception, match="every key"):
        cache.invalidate(InvalidationEvent("x", entity_id=1, data={"q": ""}))
    assert cache.get("k:1") == 1


def test_patterns_never_reach_the_caches_own_keys() -> None:
    cache = Cache.from_url("memory://", key_prefix="app:", namespaces=[RECS])
    cache.set("rec:1", "old")
    cache.bump(RECS)
    cache.set("rec:1", "new")
    assert cache.invalidate_pattern("k*") == 0  # "kirocache:gen:..." is not the caller's
    assert cache.get("rec:1") == "new"
    assert cache.delete_pattern("4*", namespace=Namespace("rec:", bumpable=True)) == 0
    assert cache.invalidate_pattern("rec:1*") == 1  # the current generation's key
    assert cache.get("rec:1") is None


def test_every_method_follows_a_bump_made_elsewhere() -> None:
    backend = MemoryBackend()
    here, there = Cache(backend, namespaces=[RECS]), Cache(backend, namespaces=[RECS])
    here.set("rec:x", "v")
    here.incr("rec:n")
    there.bump(RECS)
    assert here.exists("rec:x") is False
    assert here.ttl("rec:x") is None
    assert here.incr("rec:n", 5) == 5
    assert there.get("rec:n") == 5
    here.delete("rec:x")
    record = here.invalidation_log.why("rec:x")
    assert record is not None
    assert record.keys == ("rec:x",)  # no generation marker


def test_expire_and_persist_see_an_invalidated_key_as_absent() -> None:
    cache = Cache.from_url("memory://")
    cache.set("k", 1, 60)
    cache.delete("k")
    assert cache.expire("k", 3600) is False
    assert cache.persist("k") is False
    assert cache.ttl("k") is None


def test_an_entry_indexed_during_a_tag_invalidation_stays_indexed() -> None:
    backend = Hooked()
    cache, other = Cache(backend), Cache(backend)
    cache.set("item:1", "v1", 600, tags=["team"])
    # after the invalidation read the index, another caller stores a tagged entry
    backend.after["execute:tag_members"] = lambda: other.set("item:2", "v1", 600, tags=["team"])
    assert cache.invalidate_tags("team") == 1
    assert cache.get("item:2") == "v1"
    assert cache.invalidate_tags("team") == 1  # the new entry was still in the index
    assert cache.get("item:2") is None
