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


# -- passwords with reserved characters (issue 12, item 2) --------------------------------------

RESERVED = "#/?@:&=%[] "
CANARY = "canaryA#canaryB/canaryC?canaryD@canaryE:canaryF&canaryG=canaryH%canaryI"


@pytest.mark.parametrize("char", list(RESERVED))
@pytest.mark.parametrize(
    "shape",
    [
        "redis://:{pw}@localhost:6379/0",
        "redis://user:{pw}@localhost:6379/0",
        "rediss://user:{pw}@cache.example:6380/2",
        "unix://user:{pw}@/run/redis.sock?db=1",
        "redis://localhost:6379/0?password={pw}",
    ],
)
def test_an_unencoded_password_is_never_quoted(shape: str, char: str) -> None:
    from kirocache.backends._config import mask_url, parse_redis_url

    password = f"canaryX{char}canaryY"
    url = shape.format(pw=password)
    assert "canary" not in mask_url(url)
    try:
        parsed = parse_redis_url(url)
    except ConfigurationError as exc:
        refused: ConfigurationError | None = exc
    else:
        refused = None
    if refused is not None:
        assert "canary" not in str(refused)
        assert "canary" not in repr(refused)
        assert "percent-encode" in str(refused) or "password" in str(refused)
    else:
        # What parses, parses right: the whole password, not a piece of it. A "%" before
        # two hex digits is an escape by the URL's rules (encode "%" as "%25").
        if char != "%":
            assert parsed.password == password
        assert "canary" not in repr(parsed)


@pytest.mark.parametrize("char", list(RESERVED))
def test_a_percent_encoded_password_round_trips(char: str) -> None:
    from urllib.parse import quote

    from kirocache.backends._config import mask_url, parse_redis_url

    password = f"canaryX{char}canaryY"
    url = f"redis://user:{quote(password, safe='')}@localhost:6379/3"
    parsed = parse_redis_url(url)
    assert (parsed.password, parsed.username, parsed.db) == (password, "user", 3)
    assert mask_url(url) == "redis://user:***@localhost:6379/3"


def test_every_error_shape_of_a_url_keeps_the_canary_out() -> None:
    from kirocache.backends._config import parse_redis_url

    shapes = [
        f"redis://:{CANARY}@localhost:6379/0",
        f"redis:/:{CANARY}@localhost",
        f"redis:{CANARY}@localhost",
        f"redis://:{CANARY}@[::1:6379/0",
        f"redis://:{CANARY}@localhost:99999/0",
        f"redis://:{CANARY}@localhost/notadb",
        f"http://:{CANARY}@localhost/",
        f"redis://localhost/0?password={CANARY}",
        f"redis://localhost/0?password={CANARY}&colour=blue",
        f"unix://:{CANARY}@/run/redis.sock?db=x",
    ]
    for url in shapes:
        with pytest.raises(ConfigurationError) as info:
            parse_redis_url(url)
        assert "canary" not in str(info.value), url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis:/localhost", "two slashes"),
        ("redis:localhost:6379", "two slashes"),
        ("unix:/run/redis.sock", "two slashes"),
        ("redis://localhost/0#frag", "'#'"),
        ("redis://localhost:port/0", "port"),
    ],
)
def test_malformed_urls_are_named_as_such(url: str, words: str) -> None:
    from kirocache.backends._config import parse_redis_url

    with pytest.raises(ConfigurationError, match=words) as info:
        parse_redis_url(url)
    assert "database number" not in str(info.value)  # before: "redis:/host" was a bad db


def test_mask_url_masks_what_only_a_password_can_be() -> None:
    from kirocache.backends._config import mask_url

    assert mask_url("redis://alice@localhost/0") == "redis://alice@localhost/0"
    assert mask_url("redis://u:p%40ss@h:1/0") == "redis://u:***@h:1/0"
    assert mask_url("redis://u:p@ss@h/0") == "redis://u:***@h/0"
    assert mask_url("redis://h/0?db=1&password=x&y=2") == "redis://h/0?db=1&password=***"
    assert mask_url("redis://h/0#rest") == "redis://h/0#***"
    assert mask_url("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"
    assert mask_url("not a url @ all") == "***@ all" or "all" in mask_url("not a url @ all")


@pytest.mark.parametrize(("name", "value"), [("REDIS_DB", "two"), ("REDIS_URL", "redis:/host")])
def test_a_cache_on_another_backend_ignores_a_bad_redis_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    # A memory cache uses nothing of the Redis settings: a malformed one must not fail it,
    # while CACHE_DEBUG, which it does use, is still read.
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("CACHE_DEBUG", "yes")
    cache = Cache(MemoryBackend())
    assert cache.debug is True
    cache.set("k", 1)
    assert cache.get("k") == 1
    with pytest.raises(ConfigurationError, match=name):
        configure("redis://localhost:1")  # a Redis cache still reads and refuses it
