"""The Django CACHES backend against Django's cache contract, sync and async, memory and Redis.

The scenarios follow Django's own cache test suite (tests/cache/tests.py, BaseCacheTests) for
the methods a backend implements, plus what kirocache adds: clear() confined to the key
prefix, native async, atomic counters, signed pickles.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
import warnings
from typing import Any

import pytest

from contrib.contrib_support import SECRET_KEY, django_cache

pytestmark = pytest.mark.usefixtures("django_settings")


def f() -> int:
    return 42


class C:
    def m(self) -> int:
        return 24


class Unpicklable:
    def __getstate__(self) -> Any:
        raise pickle.PickleError


def full_key(caches: Any, key: str, alias: str = "default", version: int | None = None) -> str:
    """The key as the kirocache Cache sees it (before its own key prefix)."""
    return str(caches[alias].make_key(key, version=version))


# -- get, set, add ---------------------------------------------------------------------------


def test_simple_and_none_is_a_value(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("key", "value")
    assert cache.get("key") == "value"
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"


async def test_async_simple_and_none_is_a_value(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset("key", "value")
    assert await cache.aget("key") == "value"
    await cache.aset("key_default_none", None)
    assert await cache.aget("key_default_none", default="default") is None
    assert await cache.aget("does_not_exist", "bang!") == "bang!"


def test_add_stores_only_when_absent(django_caches: Any) -> None:
    cache = django_caches["default"]
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"
    cache.delete("addkey1")
    assert cache.add("addkey1", "again") is True  # a deleted key is absent
    assert cache.get("addkey1") == "again"


async def test_async_add_stores_only_when_absent(django_caches: Any) -> None:
    cache = django_caches["default"]
    assert await cache.aadd("addkey1", "value") is True
    assert await cache.aadd("addkey1", "newvalue") is False
    assert await cache.aget("addkey1") == "value"


def test_data_types_round_trip(django_caches: Any) -> None:
    cache = django_caches["default"]
    values: dict[str, Any] = {
        "string": "this is a string",
        "unicode": "Iñtërnâtiônàlizætiøn",
        "int": 42,
        "big_int": 2**70,
        "bool": True,
        "float": 1.5,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "set": {"a", "b"},
        "dict": {"A": 1, "B": 2},
        "bytes": b"\x00\xc5binary",
        "function": f,
        "class": C,
    }
    for key, value in values.items():
        cache.set(key, value)
    for key, value in values.items():
        got = cache.get(key)
        assert got == value, key
        assert type(got) is type(value), key


def test_an_unpicklable_value_raises(django_caches: Any) -> None:
    from kirocache import SerializationError

    cache = django_caches["default"]
    with pytest.raises(SerializationError, match="function"):
        cache.set("lambda", lambda: 1)
    with pytest.raises(pickle.PickleError):  # as Django's own backends: the error goes up
        cache.add("unpicklable", Unpicklable())
    assert cache.has_key("lambda") is False
    assert cache.has_key("unpicklable") is False


def test_prefixed_and_versioned_aliases_do_not_collide(django_caches: Any) -> None:
    cache, prefixed, v2 = (django_caches[a] for a in ("default", "prefix", "v2"))
    cache.set("somekey", "value")
    assert prefixed.has_key("somekey") is False
    prefixed.set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert prefixed.get("somekey") == "value2"

    cache.set("answer1", 42)
    assert cache.get("answer1", version=2) is None
    assert v2.get("answer1") is None
    assert v2.get("answer1", version=1) == 42
    v2.set("answer3", 42)
    assert cache.get("answer3", version=2) == 42


def test_make_key_follows_key_prefix_version_and_key_function(django_caches: Any) -> None:
    assert django_caches["default"].make_key("k") == ":1:k"
    assert django_caches["prefix"].make_key("k") == "cacheprefix:1:k"
    assert django_caches["v2"].make_key("k") == ":2:k"
    custom = django_caches["custom_key"]
    assert custom.make_key("k") == "CUSTOM--1-k"
    custom.set("answer", 42)
    assert custom.get("answer") == 42
    assert django_caches["default"].get("answer") is None
    assert custom.cache.get("CUSTOM--1-answer") == 42


# -- many ------------------------------------------------------------------------------------


def test_get_many_and_set_many_shapes(django_caches: Any) -> None:
    cache = django_caches["default"]
    assert cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"}) == []
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}
    assert cache.set_many({}) == []
    assert cache.get_many([]) == {}


async def test_async_get_many_and_set_many_shapes(django_caches: Any) -> None:
    cache = django_caches["default"]
    assert await cache.aset_many({"a": "a", "b": "b", "c": None}) == []
    assert await cache.aget_many(["a", "c", "e"]) == {"a": "a", "c": None}
    assert await cache.aset_many({}) == []


def test_delete_and_delete_many(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    assert cache.delete("key1") is True
    assert cache.delete("key1") is False
    assert cache.delete("nonexistent_key") is False
    assert cache.get("key1") is None
    assert cache.delete_many(["key2", "missing"]) is None
    assert cache.delete_many([]) is None
    assert cache.get("key2") is None
    assert cache.get("key3") == "ham"


async def test_async_delete_and_delete_many(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    assert await cache.adelete("key1") is True
    assert await cache.adelete("key1") is False
    await cache.adelete_many(["key2"])
    assert await cache.aget_many(["key1", "key2", "key3"]) == {"key3": "ham"}


def test_has_key_and_in(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True
    assert "null" in cache
    assert "goodbye1" not in cache


async def test_async_has_key(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset("null", None)
    assert await cache.ahas_key("null") is True
    assert await cache.ahas_key("nothing") is False


# -- counters --------------------------------------------------------------------------------


def test_incr_and_decr(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41
    assert cache.decr("answer", -1) == 42
    for missing in (lambda: cache.incr("does_not_exist"), lambda: cache.decr("nope", -1)):
        with pytest.raises(ValueError, match="not found"):
            missing()
    assert cache.has_key("does_not_exist") is False  # no counter was created
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.incr("null")
    cache.set("float", 1.5)
    assert cache.incr("float") == 2.5
    cache.set("huge", 2**63 - 1)  # beyond a 64-bit counter: read, add, write back
    assert cache.incr("huge") == 2**63
    assert cache.get("huge") == 2**63


async def test_async_incr_and_decr(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset("answer", 41)
    assert await cache.aincr("answer") == 42
    assert await cache.adecr("answer", 2) == 40
    assert await cache.aget("answer") == 40
    with pytest.raises(ValueError, match="not found"):
        await cache.aincr("does_not_exist")
    await cache.aset("float", 1.5)
    assert await cache.aincr("float") == 2.5


def test_incr_adds_atomically_in_the_backend_and_keeps_the_ttl(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("counter", 0, timeout=600)
    full = full_key(django_caches, "counter")
    assert cache.cache.backend.get(cache.cache.full_key(full)) == b"0"  # a counter, not a pickle

    def add_many() -> None:
        for _ in range(50):
            cache.incr("counter")

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("counter") == 200  # no lost update: each incr is one INCRBY
    left = cache.cache.ttl(full)
    assert left is not None
    assert 0 < left <= 600


def test_incr_and_decr_version(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError, match="not found"):
        cache.incr_version("does_not_exist")


# -- timeouts --------------------------------------------------------------------------------


def ttl_of(caches: Any, key: str, alias: str = "default") -> float | None:
    return caches[alias].cache.ttl(full_key(caches, key, alias))  # type: ignore[no-any-return]


def test_timeout_default_explicit_none_and_float(django_settings: None, location: str) -> None:
    from django.core.cache import caches
    from django.test import override_settings

    setting = {"default": django_cache(location), "short": django_cache(location, TIMEOUT=60)}
    with override_settings(CACHES=setting):
        cache, short = caches["default"], caches["short"]
        cache.set("default", 1)
        short.set("short", 1)
        cache.set("explicit", 1, 100.2)
        cache.set("forever", 1, None)
        assert cache.add("added_forever", 1, None) is True
        cache.set_many({"many": 1}, None)
        default_left, short_left = ttl_of(caches, "default"), ttl_of(caches, "short", "short")
        explicit_left = ttl_of(caches, "explicit")
        assert default_left is not None
        assert 290 < default_left <= 300  # Django's default TIMEOUT
        assert short_left is not None
        assert 50 < short_left <= 60
        assert explicit_left is not None
        assert 90 < explicit_left <= 100.2
        for key in ("forever", "added_forever", "many"):
            assert ttl_of(caches, key) == math.inf
            assert cache.get(key) == 1
        for alias in setting:
            caches[alias].clear()


def test_zero_timeout_stores_nothing(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get_many(["key3", "key4"]) == {}
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None
    cache.set("key6", "waffles")
    cache.set("key6", "waffles", -1)  # a negative timeout expires the key too
    assert cache.has_key("key6") is False


async def test_async_zero_timeout_stores_nothing(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset("key1", "eggs", 0)
    assert await cache.aget("key1") is None
    assert await cache.aadd("key2", "ham", 0) is True
    assert await cache.aget("key2") is None
    await cache.aset("key5", "belgian fries", timeout=5)
    assert await cache.atouch("key5", timeout=0) is True
    assert await cache.aget("key5") is None


def test_touch_sets_a_new_timeout(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=400) is True
    left = ttl_of(django_caches, "expire1")
    assert left is not None
    assert 390 < left <= 400
    assert cache.touch("expire1", timeout=None) is True
    assert ttl_of(django_caches, "expire1") == math.inf
    assert cache.touch("expire1", timeout=None) is True  # already without expiry: it exists
    assert cache.touch("expire1") is True  # DEFAULT_TIMEOUT: 300 s
    assert ttl_of(django_caches, "expire1") <= 300  # type: ignore[operator]
    assert cache.touch("nonexistent") is False


async def test_async_touch_sets_a_new_timeout(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset("expire1", "very quickly", timeout=1)
    assert await cache.atouch("expire1", timeout=None) is True
    assert await cache.cache.attl(full_key(django_caches, "expire1")) == math.inf
    assert await cache.atouch("nonexistent") is False


@pytest.mark.slow
def test_values_expire_on_the_backend_clock(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("touched", "kept", 1)
    assert cache.touch("touched", 30) is True
    time.sleep(1.5)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert cache.get("touched") == "kept"


# -- get_or_set ------------------------------------------------------------------------------


def test_get_or_set(django_caches: Any) -> None:
    cache = django_caches["default"]
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get_or_set("null", "default") is None  # the cached None wins

    calls: list[int] = []

    def my_callable() -> str:
        calls.append(1)
        return "value"

    assert cache.get_or_set("mykey", my_callable) == "value"
    assert cache.get_or_set("mykey", my_callable) == "value"
    assert calls == [1]
    assert cache.get_or_set("version", 1, version=2) == 1
    assert cache.get("version", version=2) == 1
    assert cache.get("version") is None


async def test_async_get_or_set(django_caches: Any) -> None:
    cache = django_caches["default"]
    assert await cache.aget_or_set("projector", 42) == 42
    assert await cache.aget_or_set("projector", 43) == 42
    assert await cache.aget_or_set("callable", lambda: "value") == "value"


# -- clear stays inside the prefix -----------------------------------------------------------


def test_clear_deletes_only_the_aliases_keys(django_caches: Any) -> None:
    from kirocache import Cache

    cache, prefixed = django_caches["default"], django_caches["prefix"]
    kc = cache.cache
    other_app = Cache(kc.backend, key_prefix="otherapp:")  # same store, another prefix
    other_app.set("keep", "me")
    cache.set_many({"key1": "spam", "key2": "eggs"})
    prefixed.set("pkey", "prefixed")

    prefixed.clear()  # KEY_PREFIX with the default key function: only its own keys
    assert prefixed.get("pkey") is None
    assert cache.get_many(["key1", "key2"]) == {"key1": "spam", "key2": "eggs"}

    cache.clear()  # no KEY_PREFIX: everything under the kirocache key prefix
    assert cache.get_many(["key1", "key2"]) == {}
    assert other_app.get("keep") == "me"
    other_app.delete("keep")


async def test_async_clear(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset_many({"key1": "spam", "key2": "eggs"})
    await cache.aclear()
    assert await cache.aget_many(["key1", "key2"]) == {}


def test_close_keeps_the_cache_working(django_caches: Any) -> None:
    cache = django_caches["default"]
    cache.set("key", "value")
    cache.close()
    assert cache.get("key") == "value"


async def test_async_close_keeps_the_cache_working(django_caches: Any) -> None:
    cache = django_caches["default"]
    await cache.aset("key", "value")
    await cache.aclose()
    assert await cache.aget("key") == "value"


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "key with spaces and 清",
            (
                "Cache key contains characters that will cause errors if used with memcached: "
                "'key with spaces and 清'"
            ),
        ),
        (
            "a" * 250 + "清",
            (
                "Cache key will cause errors if used with memcached: "
                f"{'a' * 250 + '清'!r} (longer than 250)"
            ),
        ),
    ],
)
def test_keys_memcached_would_refuse_warn_and_still_work(
    django_caches: Any, key: str, expected: str
) -> None:
    from django.core.cache import CacheKeyWarning

    cache = django_caches["default"]
    cache.key_func = lambda key, *args: key
    operations: list[tuple[str, list[Any]]] = [
        ("add", [key, 1]),
        ("get", [key]),
        ("set", [key, 1]),
        ("incr", [key]),
        ("decr", [key]),
        ("touch", [key]),
        ("has_key", [key]),
        ("get_many", [[key, "b"]]),
        ("set_many", [{key: 1, "b": 2}]),
        ("delete", [key]),
        ("delete_many", [[key, "b"]]),
    ]
    for name, args in operations:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(cache, name)(*args)
        assert [str(w.message) for w in caught if w.category is CacheKeyWarning] == [expected]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        assert cache.get(key) is None  # deleted last


# -- configuration and values ----------------------------------------------------------------


def test_unknown_options_and_bad_locations_are_refused_clearly(django_settings: None) -> None:
    from django.core.cache import caches
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    bad = {
        "typo": django_cache("memory://", OPTIONS={"max_entires": 10}),
        "scheme": django_cache("memcached://user:hunter2@localhost"),
        "prefix": django_cache("memory://", OPTIONS={"key_prefix": "nosep"}),
    }
    with override_settings(CACHES={"default": django_cache("memory://"), **bad}):
        with pytest.raises(ImproperlyConfigured, match="max_entires") as typo:
            caches["typo"].get("k")
        assert "OPTIONS" in str(typo.value)
        with pytest.raises(ImproperlyConfigured, match="unsupported cache URL") as scheme:
            caches["scheme"].get("k")
        assert "hunter2" not in str(scheme.value)
        with pytest.raises(ImproperlyConfigured, match="'nosep:'"):
            caches["prefix"].get("k")


def test_options_reach_the_kirocache_cache(django_settings: None, location: str) -> None:
    from django.core.cache import caches
    from django.test import override_settings

    from kirocache.serializers import OrjsonSerializer

    setting = {"default": django_cache(location, OPTIONS={"serializer": "json"})}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        assert isinstance(cache.cache.serializer, OrjsonSerializer)
        assert cache.cache.key_prefix == setting["default"]["OPTIONS"]["key_prefix"]
        cache.set("n", 41)
        assert cache.incr("n") == 42  # JSON values: read, add, write back
        assert cache.get("n") == 42
        cache.clear()


def test_values_are_signed_with_the_secret_key(django_settings: None, location: str) -> None:
    from django.core.cache import caches
    from django.test import override_settings

    from kirocache import Cache
    from kirocache.serializers import PickleSerializer

    setting = {"default": django_cache(location)}
    prefix = setting["default"]["OPTIONS"]["key_prefix"]
    with override_settings(CACHES=setting):
        cache = caches["default"]
        cache.set("signed", {"ok": True})
        forged = Cache(
            cache.cache.backend, key_prefix=prefix, serializer=PickleSerializer(b"k" * 32)
        )
        forged.set(full_key(caches, "forged"), {"evil": True})  # pickled without the secret
        assert cache.get("forged", "miss") == "miss"
        kc = cache.cache
        moved = kc.backend.get(kc.full_key(full_key(caches, "signed")))
        kc.backend.set(kc.full_key(full_key(caches, "moved")), moved)
        assert cache.get("moved", "miss") == "miss"  # the signature covers the key too
    rotated = {"SECRET_KEY": "a-new-secret-" + "y" * 40, "SECRET_KEY_FALLBACKS": [SECRET_KEY]}
    with override_settings(CACHES=setting, **rotated):
        assert caches["default"].get("signed") == {"ok": True}  # the old key still verifies
    with override_settings(CACHES=setting, SECRET_KEY="another-secret-" + "z" * 40):
        assert caches["default"].get("signed", "miss") == "miss"  # unverifiable: a miss
        caches["default"].clear()


def test_aliases_share_one_kirocache_cache_per_location_and_options(
    django_caches: Any,
) -> None:
    from django.core.cache.backends.base import BaseCache

    from kirocache.contrib.django import KirocacheCache

    default = django_caches["default"]
    assert isinstance(default, BaseCache)
    assert default.cache is django_caches["v2"].cache
    params = {"OPTIONS": dict(default._options)}
    again = KirocacheCache(default._location, params)  # another thread's instance
    assert again.cache is default.cache
    default.set("shared", 1)
    assert again.get("shared") == 1
