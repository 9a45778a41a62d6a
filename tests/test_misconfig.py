"""Misconfiguration that looks like an outage is made loud (issue 12, item 12).

A wrong or missing password, an ACL that refuses what the cache needs, a bad REDIS_URL or
REDIS_DB, an unknown option, CACHE_DEBUG with no logging configured: each says what is
wrong and what to do, at start-up where it can (``check=True``), as an error in the logs,
and as ``unhealthy`` (or ``degraded``) in health checks, never as a warning about a
backend that "failed" and will "recover".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from conftest import REDIS_ENV
from kirocache import Cache, configure, get_cache
from kirocache._cache import default as _global
from kirocache.backends import MemoryBackend
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import (
    AuthenticationError,
    CommandError,
    ConfigurationError,
    PermissionDeniedError,
)
from kirocache.monitoring import HealthChecker

if TYPE_CHECKING:
    from redis_server import RedisServer

PASSWORD = "the-right-one"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_global, "_default", None)


@pytest.fixture
def guarded(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    """A redis-server whose default user needs ``PASSWORD``."""
    return make_redis_server(password=PASSWORD)


@pytest.fixture
def acl_server(make_redis_server: Callable[..., RedisServer]) -> Iterator[RedisServer]:
    """A redis-server with ACL users: ``reader`` (no writes, no INFO, no channels)."""
    server = make_redis_server()
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "reader", "on", ">pw", "resetkeys", "~app:*", "resetchannels",
            "+@read", "+ping", "+dbsize", "-info",
        )  # fmt: skip
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "elsewhere", "on", ">pw", "resetkeys", "~other:*",
            "+@all", "-@dangerous",
        )  # fmt: skip
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "nochannel", "on", ">pw", "resetkeys", "~*", "resetchannels",
            "+@all", "-@dangerous",
        )  # fmt: skip
    return server


def _url(server: RedisServer, userinfo: str = "", db: int = 0) -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/{db}"


# -- a wrong or missing password --------------------------------------------------------------


@pytest.mark.slow
def test_a_wrong_password_is_an_error_said_once_and_an_unhealthy_check(
    guarded: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with Cache(RedisBackend(_url(guarded, ":wrong@"))) as cache:
        with caplog.at_level(logging.DEBUG, logger="kirocache"):
            for _ in range(20):
                assert cache.get("k", "fallback") == "fallback"  # still fails open
        lines = [r for r in caplog.records if r.name == "kirocache" and r.levelno >= logging.INFO]
        # one line, at ERROR (before: a WARNING of a failure "until it recovers")
        assert [r.levelno for r in lines] == [logging.ERROR]
        assert "WRONGPASS" in lines[0].getMessage()
        report = HealthChecker(cache).check()
        assert report.status == "unhealthy"
        assert report.issues[0].kind == "authentication"
        assert "password" in report.issues[0].recommendation
        assert "unreachable" not in {issue.kind for issue in report.issues}


@pytest.mark.slow
async def test_a_wrong_password_makes_the_async_check_unhealthy(guarded: RedisServer) -> None:
    cache = Cache(RedisBackend(_url(guarded, ":wrong@")))
    report = await HealthChecker(cache).acheck()
    assert report.status == "unhealthy"
    assert report.issues[0].kind == "authentication"
    await cache.aclose()


@pytest.mark.slow
def test_a_missing_password_is_said_in_plain_words(guarded: RedisServer) -> None:
    backend = RedisBackend(_url(guarded))
    try:
        with pytest.raises(AuthenticationError) as info:
            backend.get("k")
        message = str(info.value)
        assert "the server needs a password: put it in the URL" in message
        assert "REDIS_PASSWORD" in message
        assert "HELLO must be called" not in message  # redis's raw words, before
    finally:
        backend.close()


@pytest.mark.slow
def test_a_refused_password_is_not_retried(guarded: RedisServer) -> None:
    with redis.Redis.from_url(_url(guarded, f":{PASSWORD}@")) as admin:
        admin.config_resetstat()
        backend = RedisBackend(_url(guarded, ":wrong@"), retries=5)
        try:
            with pytest.raises(AuthenticationError):
                backend.get("k")
        finally:
            backend.close()
        stats = admin.info("stats")
        # one connection, one refused HELLO: not 6 x (connect + HELLO)
        assert stats["total_connections_received"] <= 2  # the admin's own, and one


# -- start-up checks ------------------------------------------------------------------------------


@pytest.mark.slow
def test_check_names_the_problem(
    guarded: RedisServer, acl_server: RedisServer, blackhole: object
) -> None:
    cases = [
        (_url(guarded, ":wrong@"), {}, "authenticate"),
        (_url(guarded), {}, "authenticate"),
        (_url(guarded, f":{PASSWORD}@", db=99), {}, "no such database"),
        (_url(acl_server, "elsewhere:pw@"), {"key_prefix": "app:"}, "ACL"),
        ("redis://127.0.0.1:1/0", {}, "unreachable"),
    ]
    for url, options, words in cases:
        with pytest.raises(ConfigurationError, match=words):
            Cache.from_url(url, check=True, **options)
        with pytest.raises(ConfigurationError, match=words):
            configure(url, check=True, **options)
    # what passes the check works
    cache = configure(_url(acl_server, "elsewhere:pw@"), check=True, key_prefix="other:")
    assert get_cache() is cache
    assert cache.set("k", 1)
    cache.close()
    ready = Cache(RedisBackend(_url(guarded, ":wrong@")))
    with pytest.raises(ConfigurationError, match="authenticate"):
        configure(ready, check=True)


def test_check_on_memory_passes() -> None:
    cache = configure("memory://", check=True)
    assert isinstance(cache.backend, MemoryBackend)


# -- the environment, read when it is read ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("REDIS_DB", "two", "REDIS_DB"),
        ("REDIS_DB", "-1", "REDIS_DB"),
        ("REDIS_URL", "redis:/cache.internal", "two slashes"),
        ("REDIS_URL", "redis://cache.internal:port/0", "port"),
        ("REDIS_URL", "memcached://cache.internal", "REDIS_URL"),
    ],
)
def test_bad_environment_raises_at_configure_not_at_first_use(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=words):
        configure()
    # and the lazy default says where it should have been found
    with pytest.raises(ConfigurationError, match=r"configure\(\) at start-up"):
        get_cache()


def test_one_slash_is_a_malformed_url_not_a_bad_database() -> None:
    with pytest.raises(ConfigurationError, match="malformed") as info:
        Cache.from_url("redis:/cache.internal")
    assert "database" not in str(info.value)


# -- unknown options --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "redis://127.0.0.1:1/0"])
def test_an_unknown_option_lists_the_known_ones(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Cache.from_url(url, max_entires=10)  # a typo
    message = str(info.value)
    assert "max_entires" in message
    assert "key_prefix" in message  # the cache's options
    assert ("max_entries" if url.startswith("memory") else "socket_timeout") in message
    with pytest.raises(ConfigurationError, match="known options"):
        RedisBackend.from_url("redis://127.0.0.1:1/0", sockettimeout=1)


# -- CACHE_DEBUG ------------------------------------------------------------------------------


def test_cache_debug_shows_on_stderr_when_nothing_is_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("kirocache")
    # an application that configured no logging: no handler anywhere (pytest adds its own)
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.setenv("CACHE_DEBUG", "1")
    cache = Cache.from_url("memory://")
    cache.set("user:1", "Ada")
    cache.get("user:1")
    assert "user:1 -> hit" in capsys.readouterr().err  # before: nothing at all


def test_cache_debug_leaves_a_configured_application_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("kirocache")
    handlers = list(logger.handlers)
    monkeypatch.setenv("CACHE_DEBUG", "1")
    Cache.from_url("memory://")  # pytest's handlers are on the root logger
    assert logger.handlers == handlers


# -- ACLs: stats, and the tiered backend's channel ------------------------------------------------


@pytest.mark.slow
def test_a_refused_info_is_reported_not_hidden(acl_server: RedisServer) -> None:
    backend = RedisBackend(_url(acl_server, "reader:pw@"))
    with Cache(backend, key_prefix="app:") as cache:
        stats = cache.stats()
        assert stats.used_memory is None
        assert "NOPERM" in str(stats.extra["info_error"]) or "ACL" in str(stats.extra["info_error"])
        report = HealthChecker(cache).check()
        assert report.status == "degraded"  # before: "healthy", with no memory figures
        [issue] = [i for i in report.issues if i.kind == "stats_refused"]
        assert "+info" in issue.recommendation


@pytest.mark.slow
def test_an_acl_refusal_of_a_write_is_an_error(
    acl_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with Cache(RedisBackend(_url(acl_server, "reader:pw@")), key_prefix="app:") as cache:
        with caplog.at_level(logging.WARNING, logger="kirocache"):
            assert cache.set("k", 1) is False
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors
        assert "ACL" in errors[0].getMessage()
    with pytest.raises(PermissionDeniedError):
        RedisBackend(_url(acl_server, "reader:pw@")).set("app:k", b"1")
    assert issubclass(PermissionDeniedError, CommandError)  # the breaker never counts it


@pytest.mark.slow
def test_a_tiered_backend_refused_its_channel_logs_an_error(
    acl_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from kirocache.backends.tiered import TieredBackend

    with caplog.at_level(logging.DEBUG, logger="kirocache"):
        tiered = TieredBackend(RedisBackend(_url(acl_server, "nochannel:pw@")))
        try:
            tiered.get("k")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                r.levelno == logging.ERROR for r in caplog.records
            ):
                time.sleep(0.05)
        finally:
            tiered.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, [r.getMessage() for r in caplog.records]  # before: DEBUG lines only
    assert "invalidation channel" in errors[0]
    assert "ACL SETUSER" in errors[0]
    assert len(errors) == 1  # said once, not once per retry


def test_repr_of_a_half_built_backend_never_raises() -> None:
    assert "RedisBackend" in repr(RedisBackend.__new__(RedisBackend))
