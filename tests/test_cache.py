"""The Cache facade on every backend, sync and async side by side."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import uuid
from typing import Any

import pytest

from kirocache import (
    MISSING,
    NEVER,
    Cache,
    ConfigurationError,
    InvalidKeyError,
    InvalidTTLError,
    Namespace,
    SerializationError,
    ValueTooLargeError,
    cached,
)
from kirocache.backends import MemoryBackend
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import FaultyBackend

PROFILES = Namespace("user:profile:", ttl=3600)
SEARCH = Namespace("search:", ttl=dt.timedelta(minutes=10))


@dataclasses.dataclass
class Profile:
    id: int
    name: str
    joined: dt.date
    token: uuid.UUID


def metrics_of(cache: Cache) -> InMemoryMetrics:
    assert isinstance(cache.metrics, InMemoryMetrics)
    return cache.metrics


# -- round trips ---------------------------------------------------------------------------


def test_set_get_round_trip(cache: Cache) -> None:
    value = {"name": "Ada", "langs": ["python", "rust"], "score": 9.5, "active": True}
    assert cache.set("user:profile:1", value)
    assert cache.get("user:profile:1") == value


async def test_aset_aget_round_trip(cache: Cache) -> None:
    value = {"name": "Ada", "langs": ["python", "rust"], "score": 9.5, "active": True}
    assert await cache.aset("user:profile:1", value)
    assert await cache.aget("user:profile:1") == value


def test_typed_get_returns_the_type(cache: Cache) -> None:
    profile = Profile(1, "Ada", dt.date(2024, 5, 1), uuid.uuid4())
    cache.set("p:1", profile)
    got = cache.get("p:1", type=Profile)
    assert type(got) is Profile
    assert got == profile
    assert cache.get("p:1") == {
        "id": 1,
        "name": "Ada",
        "joined": "2024-05-01",
        "token": str(profile.token),
    }


async def test_typed_aget_returns_the_type(cache: Cache) -> None:
    profile = Profile(1, "Ada", dt.date(2024, 5, 1), uuid.uuid4())
    await cache.aset("p:1", profile)
    got = await cache.aget("p:1", type=Profile)
    assert type(got) is Profile
    assert got == profile


def test_miss_default_and_cached_none(cache: Cache) -> None:
    assert cache.get("absent") is None
    assert cache.get("absent", "fallback") == "fallback"
    assert cache.get("absent", MISSING) is MISSING
    cache.set("none", None)
    assert cache.get("none", MISSING) is None


async def test_amiss_default_and_cached_none(cache: Cache) -> None:
    assert await cache.aget("absent", MISSING) is MISSING
    await cache.aset("none", None)
    assert await cache.aget("none", MISSING) is None


# -- TTLs and namespaces -------------------------------------------------------------------


def test_namespace_key_and_default_ttl(cache: Cache) -> None:
    cache.set("42", {"n": 1}, namespace=PROFILES)
    assert cache.get("user:profile:42") == {"n": 1}
    assert cache.get("42", namespace=PROFILES) == {"n": 1}
    left = cache.ttl("42", namespace=PROFILES)
    assert left is not None
    assert 3590 < left <= 3600


async def test_anamespace_ttl_override_and_never(cache: Cache) -> None:
    await cache.aset("q", [1], ttl=30, namespace=SEARCH)
    left = await cache.attl("q", namespace=SEARCH)
    assert left is not None
    assert 25 < left <= 30
    await cache.aset("forever", [1], ttl=NEVER, namespace=SEARCH)
    assert await cache.attl("forever", namespace=SEARCH) == math.inf
    await cache.aset("default", [1], namespace=SEARCH)
    left = await cache.attl("default", namespace=SEARCH)
    assert left is not None
    assert 590 < left <= 600


def test_registered_namespace_applies_to_plain_keys(backend: Any) -> None:
    cache = Cache(backend, namespaces=[PROFILES, SEARCH], default_ttl=5)
    cache.set("user:profile:7", 1)
    cache.set("other:7", 1)
    left_profile, left_other = cache.ttl("user:profile:7"), cache.ttl("other:7")
    assert left_profile is not None
    assert left_other is not None
    assert left_profile > 3000
    assert left_other <= 5
    assert metrics_of(cache).namespaces() == ["default", "user:profile:"]


def test_ttl_expire_persist(cache: Cache) -> None:
    assert cache.ttl("absent") is None
    cache.set("k", 1)
    assert cache.ttl("k") == math.inf
    assert cache.expire("k", 100)
    left = cache.ttl("k")
    assert left is not None
    assert 99 < left <= 100
    assert cache.persist("k")
    assert cache.ttl("k") == math.inf
    assert cache.expire("k", dt.timedelta(seconds=50))
    assert cache.expire("k", NEVER)
    assert cache.ttl("k") == math.inf
    assert not cache.expire("absent", 10)


async def test_attl_aexpire_apersist(cache: Cache) -> None:
    assert await cache.attl("absent") is None
    await cache.aset("k", 1)
    assert await cache.aexpire("k", 100)
    left = await cache.attl("k")
    assert left is not None
    assert 99 < left <= 100
    assert await cache.apersist("k")
    assert await cache.attl("k") == math.inf


@pytest.mark.slow  # the backend's own expiry, in real time
def test_short_ttl_expires_for_real(cache: Cache) -> None:
    import time

    cache.set("short", "v", ttl=0.1)
    assert cache.get("short") == "v"
    time.sleep(0.25)
    assert cache.get("short", MISSING) is MISSING


# -- deletes, exists, many -----------------------------------------------------------------


def test_delete_and_exists(cache: Cache) -> None:
    cache.set("k", 1)
    assert cache.exists("k")
    assert cache.delete("k")
    assert not cache.exists("k")
    assert not cache.delete("k")


async def test_adelete_and_aexists(cache: Cache) -> None:
    await cache.aset("k", 1)
    assert await cache.aexists("k")
    assert await cache.adelete("k")
    assert not await cache.aexists("k")


def test_get_many_set_many_delete_many(cache: Cache) -> None:
    assert cache.set_many({"a": 1, "b": None, "c": [3]}, ttl=60)
    assert cache.get_many(["a", "missing", "b", "c"]) == {"a": 1, "b": None, "c": [3]}
    assert cache.get_many([]) == {}
    left = cache.ttl("c")
    assert left is not None
    assert left <= 60
    assert cache.delete_many(["a", "c", "missing"]) == 2
    assert cache.get_many(["a", "b", "c"]) == {"b": None}
    [stats] = metrics_of(cache).stats(operation="get_many")
    assert (stats.hits, stats.misses) == (4, 3)


async def test_aget_many_aset_many_adelete_many(cache: Cache) -> None:
    assert await cache.aset_many({"a": 1, "b": 2}, namespace=PROFILES)
    assert await cache.aget_many(["a", "b", "x"], namespace=PROFILES) == {"a": 1, "b": 2}
    assert await cache.adelete_many(["a", "b"], namespace=PROFILES) == 2
    assert await cache.aget_many(["a", "b"], namespace=PROFILES) == {}


def test_get_many_typed(cache: Cache) -> None:
    profile = Profile(1, "Ada", dt.date(2024, 5, 1), uuid.uuid4())
    cache.set_many({"p1": profile})
    assert cache.get_many(["p1"], type=Profile) == {"p1": profile}


# -- counters ------------------------------------------------------------------------------


def test_incr_creates_with_ttl_and_reads_back_as_int(cache: Cache) -> None:
    assert cache.incr("hits", ttl=100) == 1
    assert cache.incr("hits", 5) == 6
    assert cache.incr("hits", -2) == 4
    assert cache.get("hits") == 4
    left = cache.ttl("hits")
    assert left is not None
    assert left <= 100


async def test_aincr(cache: Cache) -> None:
    assert await cache.aincr("hits") == 1
    assert await cache.aincr("hits", 9) == 10
    assert await cache.aget("hits") == 10


def test_incr_rejects_non_int_amount(cache: Cache) -> None:
    with pytest.raises(TypeError, match="amount"):
        cache.incr("k", 1.5)  # type: ignore[arg-type]


# -- patterns stay inside the key prefix ---------------------------------------------------


def test_delete_pattern_never_leaves_the_key_prefix(backend: Any) -> None:
    mine = Cache(backend, key_prefix="app1:")
    other = Cache(backend, key_prefix="app2:")
    bare = Cache(backend)
    for cache in (mine, other):
        cache.set("user:1", 1)
        cache.set("user:2", 2)
        cache.set("search:x", 3)
    bare.set("user:9", 9)
    assert mine.delete_pattern("user:*") == 2
    assert mine.get("search:x") == 3
    assert other.get_many(["user:1", "user:2"]) == {"user:1": 1, "user:2": 2}
    assert bare.get("user:9") == 9
    assert mine.delete_pattern("*") == 1
    assert other.get("search:x") == 3


async def test_adelete_pattern_with_namespace(backend: Any) -> None:
    cache = Cache(backend, key_prefix="app[1]:")  # glob characters in the prefix are literal
    await cache.aset("1", 1, namespace=PROFILES)
    await cache.aset("2", 2, namespace=PROFILES)
    await cache.aset("search:1", 3)
    assert await cache.adelete_pattern("*", namespace=PROFILES) == 2
    assert await cache.aget("search:1") == 3


def test_whole_database_pattern_needs_a_key_prefix(cache: Cache) -> None:
    with pytest.raises(ConfigurationError, match="key_prefix"):
        cache.delete_pattern("*")
    with pytest.raises(ConfigurationError):
        cache.delete_pattern("**")


@pytest.mark.parametrize("bad", ["app", "app-", "app_1", "myapp:x"])
def test_a_key_prefix_must_end_with_a_separator(backend: Any, bad: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{bad!r} must end with a separator"):
        Cache(backend, key_prefix=bad)
    with pytest.raises(ConfigurationError, match="separator"):
        Cache.from_url("memory://", key_prefix=bad)


@pytest.mark.parametrize("prefix", ["app:", "app.", "app/", "app|", "", "a:b:"])
def test_every_separator_is_accepted(backend: Any, prefix: str) -> None:
    cache = Cache(backend, key_prefix=prefix)
    cache.set("x", 1)
    assert backend.get(prefix + "x") is not None


def test_no_key_prefix_reaches_another_caches_keys(backend: Any) -> None:
    """``app`` alone would make ``app*`` of ``delete_pattern("*")`` match ``app2:x``."""
    with pytest.raises(ConfigurationError):
        Cache(backend, key_prefix="app")
    app, app2 = Cache(backend, key_prefix="app:"), Cache(backend, key_prefix="app2:")
    app2.set("x", "theirs")
    app.set("x", "mine")
    assert app.delete_pattern("*") == 1
    assert app.invalidate_pattern("x*") == 0
    assert app2.get("x") == "theirs"
    assert app.get("x") is None


# -- the reserved internal key space -----------------------------------------------------


def test_a_user_key_cannot_forge_a_generation(backend: Any) -> None:
    """The issue's reproduction: ``set("kirocache:gen:rec:", 0)`` undid a bump."""
    recs = Namespace("rec:", ttl=60, bumpable=True)
    cache = Cache(backend, key_prefix="app:", namespaces=[recs])
    cache.set("1", "old", namespace=recs)
    assert cache.bump(recs) == cache.keyspace.generations["rec:"] > 1
    with pytest.raises(InvalidKeyError, match="reserved key space 'kirocache:'"):
        cache.set("kirocache:gen:rec:", 0)
    with pytest.raises(InvalidKeyError, match="reserved"):
        cache.delete("kirocache:gen:rec:")
    assert Cache(backend, key_prefix="app:", namespaces=[recs]).get("1", namespace=recs) is None
    assert cache.get("1", namespace=recs) is None


def _reserved_calls(cache: Cache) -> dict[str, Any]:
    """Every way a caller's key or pattern enters the cache, aimed at the reserved space."""
    key, tag_index = "kirocache:gen:rec:", "kirocache:tag:team"
    kiro = Namespace("kiro")  # not reserved itself, but "kiro" + "cache:..." is
    return {
        "get": lambda: cache.get(key),
        "set": lambda: cache.set(key, 0),
        "set nx": lambda: cache.set(tag_index, 0, nx=True),
        "delete": lambda: cache.delete(key),
        "incr": lambda: cache.incr(key),
        "exists": lambda: cache.exists(key),
        "ttl": lambda: cache.ttl(key),
        "expire": lambda: cache.expire(key, 5),
        "persist": lambda: cache.persist(key),
        "get_many": lambda: cache.get_many(["ok", key]),
        "set_many": lambda: cache.set_many({"ok": 1, key: 0}),
        "delete_many": lambda: cache.delete_many(["ok", key]),
        "delete_pattern": lambda: cache.delete_pattern("kirocache:*"),
        "invalidate_pattern": lambda: cache.invalidate_pattern("kirocache:tag:*"),
        "namespace pattern": lambda: cache.delete_pattern("cache:*", namespace=kiro),
        "namespace key": lambda: cache.get("cache:gen:rec:", namespace=kiro),
        "get_or_set": lambda: cache.get_or_set(key, lambda: 0),
        "depends": lambda: cache.depends("ok", on=key),
        "batch set": lambda: cache.batch().set(key, 0),
        "batch get_many": lambda: cache.batch().get_many(["ok", key]),
        "batch incr": lambda: cache.batch().incr(key),
        "namespace": lambda: Namespace("kirocache:mine:"),
        "cached": lambda: cached(prefix="kirocache:mine:", cache=cache)(lambda: 1),
    }


def test_reserved_keys_are_refused_before_anything_is_sent(backend: Any) -> None:
    recording = FaultyBackend(backend)
    recs = Namespace("rec:", bumpable=True)  # bumpable: writes read generations first
    cache = Cache(recording, key_prefix="app:", namespaces=[recs])
    for name, call in _reserved_calls(cache).items():
        with pytest.raises(InvalidKeyError, match="reserved key space") as raised:
            call()
        assert "kirocache:" in str(raised.value), name
    assert recording.calls == {}  # nothing reached the backend


async def test_async_reserved_keys_are_refused_before_anything_is_sent(backend: Any) -> None:
    recording = FaultyBackend(backend)
    cache = Cache(recording)
    key = "kirocache:dep:k:x"

    async def zero() -> int:
        return 0

    calls = [
        cache.aget(key),
        cache.aset(key, 0),
        cache.adelete(key),
        cache.aincr(key),
        cache.aget_many([key]),
        cache.adelete_many([key]),
        cache.adelete_pattern("kirocache:*"),
        cache.aget_or_set(key, zero),
        cache.adepends(key, on="ok"),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError, match="reserved key space"):
            await call
    assert recording.calls == {}


def test_a_key_no_backend_can_encode_is_refused_before_an_invalidation(backend: Any) -> None:
    """A lone surrogate is refused by the key space, so no invalidation of it is recorded."""
    recording = FaultyBackend(backend)
    cache = Cache(recording, key_prefix="app:")
    cache.set("good", "value")
    recording.calls.clear()
    bad, space = "user:\ud800", Namespace("user:")
    for call in (
        lambda: cache.delete(bad),
        lambda: cache.delete_many(["good", bad]),
        lambda: cache.delete("\ud800", namespace=space),
        lambda: cache.delete_pattern("user:\ud800*"),
        lambda: cache.depends("good", on=bad),
        lambda: cache.get(bad),
        lambda: cache.set(bad, 1),
    ):
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            call()
    assert recording.calls == {}
    assert cache.get("good") == "value"  # nothing pending to replay over it
    assert cache.set("caf\u00e9", "ok") is True  # non-ASCII text is fine
    assert cache.get("caf\u00e9") == "ok"
    with pytest.raises(ConfigurationError, match="key_prefix"):
        Cache(backend, key_prefix="app\ud800:")


def test_the_caches_own_keys_still_work_beside_the_check(backend: Any) -> None:
    """Tags, dependencies, generations and @cached's distributed lock live near the space."""
    recs = Namespace("rec:", ttl=60, bumpable=True)
    cache = Cache(backend, key_prefix="app:", namespaces=[recs])
    cache.set("a", 1, tags=["team"])
    cache.set("b", 2)
    assert cache.depends("b", on="a") is True
    cache.set("1", "x", namespace=recs)
    cache.bump(recs)
    assert cache.invalidate_tags("team") == 2  # "a" and its dependent "b"
    assert cache.get("a") is None
    assert cache.get("b") is None  # followed the dependency
    assert cache.get("1", namespace=recs) is None
    # near misses are user keys
    for key in ("kirocache", "kirocache-x", "Kirocache:x", "x:kirocache:y", "kirocache;"):
        assert cache.set(key, key) is True
        assert cache.get(key) == key

    @cached(prefix="locked:", cache=cache, lock="distributed", ttl=60)
    def locked(n: int) -> int:
        return n * 2

    assert locked(2) == 4
    assert locked(2) == 4
    assert cache.get("kirocache-x") == "kirocache-x"
    assert cache.delete_pattern("*") >= 1  # the whole cache, internals included, as before


# -- get_or_set ----------------------------------------------------------------------------


def test_get_or_set_calls_the_factory_once(cache: Cache) -> None:
    calls = []

    def load() -> dict[str, int]:
        calls.append(1)
        return {"v": len(calls)}

    assert cache.get_or_set("k", load, ttl=60) == {"v": 1}
    assert cache.get_or_set("k", load, ttl=60) == {"v": 1}
    assert len(calls) == 1


async def test_aget_or_set_takes_sync_and_async_factories(cache: Cache) -> None:
    async def load() -> list[int]:
        return [1, 2]

    assert await cache.aget_or_set("a", load) == [1, 2]
    assert await cache.aget_or_set("a", lambda: [9]) == [1, 2]
    assert await cache.aget_or_set("b", lambda: None) is None
    assert await cache.aget("b", MISSING) is None


# -- corrupt and foreign entries -----------------------------------------------------------


def test_corrupt_entry_is_a_miss_and_is_deleted(cache: Cache) -> None:
    cache.set("k", {"a": 1})
    raw = cache.backend.get("k")
    cache.backend.set("k", raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    cache.backend.set("foreign", b'{"written": "by another app"}')
    assert cache.get("k", "gone") == "gone"
    assert not cache.backend.exists("k")
    assert cache.get_many(["foreign"]) == {}
    assert not cache.backend.exists("foreign")


async def test_acorrupt_entry_is_a_miss_and_is_deleted(cache: Cache) -> None:
    await cache.backend.aset("k", b"\xc5garbage")
    assert await cache.aget("k", MISSING) is MISSING
    assert not await cache.backend.aexists("k")


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [1, b"k", None, ""])
def test_bad_keys_are_named(cache: Cache, key: Any) -> None:
    with pytest.raises(InvalidKeyError, match="key"):
        cache.get(key)
    with pytest.raises(InvalidKeyError):
        cache.set(key, 1)


@pytest.mark.parametrize("ttl", [-1, 0, math.nan, True, "60", dt.timedelta(seconds=-5)])
def test_bad_ttls_are_named(cache: Cache, ttl: Any) -> None:
    with pytest.raises(InvalidTTLError, match="ttl"):
        cache.set("k", 1, ttl=ttl)
    assert not cache.exists("k")


def test_unserializable_value_names_its_type(cache: Cache) -> None:
    class Opaque:
        pass

    with pytest.raises(SerializationError, match="Opaque"):
        cache.set("k", Opaque())


async def test_too_large_value_is_refused(backend: Any) -> None:
    cache = Cache(backend, max_value_size=1000)
    with pytest.raises(ValueTooLargeError, match="max_value_size"):
        await cache.aset("k", "x" * 2000)
    assert cache.set("k", "x" * 100)


def test_bad_options_are_named(backend: Any) -> None:
    with pytest.raises(ConfigurationError, match="on_error"):
        Cache(backend, on_error="explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_value_size"):
        Cache(backend, max_value_size=0)
    with pytest.raises(ConfigurationError, match="not a kirocache backend"):
        Cache(object())  # type: ignore[arg-type]


# -- metrics and debug logging -------------------------------------------------------------


def test_metrics_count_hits_misses_and_sets_per_namespace(cache: Cache) -> None:
    cache.set("1", 1, namespace=PROFILES)
    cache.get("1", namespace=PROFILES)
    cache.get("2", namespace=PROFILES)
    metrics = metrics_of(cache)
    assert metrics.hit_rate("user:profile:") == 0.5
    [get] = metrics.stats("user:profile:", "get")
    [put] = metrics.stats("user:profile:", "set")
    assert (get.hits, get.misses, put.sets) == (1, 1, 1)
    assert get.latency_p95 is not None
    assert get.latency_p95 > 0


def test_debug_logs_every_operation(backend: Any, caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache(backend, debug=True)
    with caplog.at_level(logging.DEBUG, logger="kirocache"):
        cache.set("user:profile:1", 1)
        cache.get("user:profile:1")
        cache.get("user:profile:2")
    lines = [r.getMessage() for r in caplog.records]
    assert any("set user:profile:1 -> set" in line for line in lines)
    assert any("get user:profile:1 -> hit" in line for line in lines)
    assert any("get user:profile:2 -> miss" in line for line in lines)


def test_cache_debug_environment_variable(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_DEBUG", "true")
    assert Cache(backend).debug
    monkeypatch.setenv("CACHE_DEBUG", "0")
    assert not Cache(backend).debug


def test_metrics_can_be_off(backend: Any) -> None:
    cache = Cache(backend, metrics=False)
    cache.set("k", 1)
    assert cache.get("k") == 1
    assert cache.metrics is None


def test_set_many_stores_a_group_all_or_nothing() -> None:
    cache = Cache(MemoryBackend(max_bytes=300))
    with pytest.raises(ValueTooLargeError):
        cache.set_many({"a": "x", "b": "y" * 1000})
    assert cache.get("a") is None  # not stored beside the one the backend refused
