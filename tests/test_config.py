"""Settings from arguments then the environment, and the process-wide default cache."""

from __future__ import annotations

import pytest

import kirocache
from kirocache import Cache, ConfigurationError, configure, get_cache
from kirocache._cache import default as _global
from kirocache.backends.memory import MemoryBackend


@pytest.fixture(autouse=True)
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_global, "_default", None)
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_default_is_memory_without_redis_url() -> None:
    cache = get_cache()
    assert isinstance(cache.backend, MemoryBackend)
    assert get_cache() is cache


def test_configure_with_url_and_options() -> None:
    cache = configure("memory://?max_entries=10", key_prefix="app:", default_ttl=30)
    assert get_cache() is cache
    assert cache.key_prefix == "app:"
    assert cache.default_ttl == 30
    assert isinstance(cache.backend, MemoryBackend)
    assert cache.backend.stats().extra["max_entries"] == 10


def test_configure_with_a_cache_refuses_options() -> None:
    ready = Cache(MemoryBackend())
    assert configure(ready) is ready
    with pytest.raises(ConfigurationError, match="options"):
        configure(ready, key_prefix="x:")


def test_from_url_rejects_unknown_schemes_and_options() -> None:
    with pytest.raises(ConfigurationError, match="memcached"):
        Cache.from_url("memcached://localhost")
    with pytest.raises(ConfigurationError, match="colour"):
        Cache.from_url("memory://?colour=blue")
    with pytest.raises(ConfigurationError, match="whole number"):
        Cache.from_url("memory://?max_entries=lots")


def test_redis_url_from_the_environment(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    from kirocache.backends.redis import RedisBackend

    monkeypatch.setenv("REDIS_URL", redis_url)
    cache = get_cache()
    assert isinstance(cache.backend, RedisBackend)
    try:
        cache.set("config:env", 1)
        assert cache.get("config:env") == 1
        cache.delete("config:env")
    finally:
        cache.close()


def test_password_never_shows_in_repr_or_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Cache.from_url("memcached://user:s3cret@localhost")
    assert "s3cret" not in str(info.value)
    cache = Cache.from_url("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(cache)
    cache.close()


def test_top_level_reexports() -> None:
    assert kirocache.Cache is Cache
    assert kirocache.configure is configure
