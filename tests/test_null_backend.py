"""NullBackend: caching switched off; every read a miss, every write accepted and gone."""

from __future__ import annotations

import pytest

from kirocache import Cache, Namespace, cached
from kirocache.backends import Backend, NullBackend, Op
from kirocache.exceptions import ConfigurationError
from kirocache.sessions import SessionStore, SessionStoreError


def test_it_satisfies_both_protocol_halves() -> None:
    from kirocache.backends import AsyncBackend

    assert isinstance(NullBackend(), Backend)
    assert isinstance(NullBackend(), AsyncBackend)


def test_a_cache_over_it_stores_nothing_and_never_fails() -> None:
    cache = Cache(NullBackend(), on_error="raise", key_prefix="app:")  # nothing is an error
    assert cache.set("k", {"a": 1}, ttl=60, tags=["t"]) is True
    assert cache.get("k") is None
    assert cache.get_many(["k", "j"]) == {}
    assert cache.exists("k") is False
    assert cache.ttl("k") is None
    assert cache.incr("n") == 1
    assert cache.incr("n") == 1  # forgotten
    assert cache.delete("k") is False
    assert cache.invalidate_tags("t") == 0
    assert cache.delete_pattern("*") == 0
    assert cache.bump(Namespace("ns:", bumpable=True)) >= 0
    assert cache.batch().set("a", 1).get("a").execute()[:] == [True, None]
    assert cache.prune_indexes()["errors"] == 0
    assert cache.stats().keys == 0


def test_every_decorated_call_runs_the_function() -> None:
    cache = Cache(NullBackend())
    calls: list[int] = []

    @cached(prefix="square", cache=cache)
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    assert [square(3), square(3), square(3)] == [9, 9, 9]
    assert calls == [3, 3, 3]


async def test_async_paths_too() -> None:
    cache = Cache(NullBackend())
    calls: list[int] = []

    @cached(prefix="cube", cache=cache)
    async def cube(n: int) -> int:
        calls.append(n)
        return n**3

    assert [await cube(2), await cube(2)] == [8, 8]
    assert calls == [2, 2]
    assert await cache.aset("k", 1) is True
    assert await cache.aget("k") is None
    assert [key async for key in NullBackend().ascan("*")] == []
    assert await NullBackend().aping() == 0.0


def test_sessions_over_it_fail_closed() -> None:
    # A session store needs to keep something: no session is handed out, none validates.
    store = SessionStore(Cache(NullBackend()), ttl=60)
    with pytest.raises(SessionStoreError):
        store.create("ada", {"role": "admin"})
    assert store.get("0" * 43) is None


def test_from_url() -> None:
    assert isinstance(Cache.from_url("null://").backend, NullBackend)
    with pytest.raises(ConfigurationError, match="no host"):
        Cache.from_url("null://somewhere:6379")
    with pytest.raises(ConfigurationError, match="unknown option"):
        Cache.from_url("null://", max_entries=3)


def test_an_unknown_op_kind_is_refused_before_anything() -> None:
    with pytest.raises(ConfigurationError, match="unknown op kind"):
        NullBackend().execute([Op("get", "k"), Op("frobnicate", "k")])  # type: ignore[arg-type]
