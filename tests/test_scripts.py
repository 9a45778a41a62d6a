"""Scripts by digest (EVALSHA) and the ACL matrix: what a restricted user can and cannot do.

kirocache's conditional writes, invalidations, tags, locks and sessions are short Lua
scripts. The body goes once per server (EVAL loads it), then only its SHA1 (EVALSHA); a
server that lost them (SCRIPT FLUSH, a restart) gets the bodies again. A user without
``@scripting`` gets an error that names the grant, never a bare NOPERM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from conftest import REDIS_ENV
from kirocache import Cache, cached
from kirocache.backends import Op
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import PermissionDeniedError
from redis_server import RedisServer

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


@pytest.fixture
def server(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    return make_redis_server()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    yield client
    client.close()


def _backend(server: RedisServer, user: str = "", secret: str = "") -> RedisBackend:
    login = f"{user}:{secret}@" if user else ""
    with pytest.MonkeyPatch.context() as env:
        for name in REDIS_ENV:
            env.delenv(name, raising=False)
        return RedisBackend(f"redis://{login}127.0.0.1:{server.port}/0")


def _calls(admin: redis.Redis) -> dict[str, int]:
    stats: dict[str, dict[str, Any]] = admin.info("commandstats")
    return {name: int(row.get("calls", 0)) for name, row in stats.items()}


def test_scripts_go_by_digest_after_their_first_use(
    server: RedisServer, admin: redis.Redis
) -> None:
    with Cache(_backend(server), key_prefix="app:") as cache:
        for n in range(20):
            cache.set(f"k{n}", n, tags=["t"])
            cache.delete(f"k{n}")
        calls = _calls(admin)
    # tag_add, set_if-free sets and the tombstone swaps: 40 script runs, each body sent once
    assert calls.get("cmdstat_evalsha", 0) >= 35
    assert calls.get("cmdstat_eval", 0) <= 5


async def test_a_server_that_lost_its_scripts_gets_them_again(
    server: RedisServer, admin: redis.Redis
) -> None:
    with Cache(_backend(server), key_prefix="app:") as cache:
        cache.set("a", 1, tags=["t"])
        assert cache.delete("a") is True
        admin.script_flush()
        cache.set("b", 2, tags=["t"])  # EVALSHA answers NOSCRIPT: the body goes again
        assert cache.get("b") == 2
        assert cache.delete("b") is True
        assert cache.get("b") is None
        admin.script_flush()
        await cache.aset("c", 3, tags=["t"])
        assert await cache.adelete("c") is True
        assert cache.invalidate_tags("t") == 0  # every entry of it is gone already


def test_after_a_restart_the_bodies_go_again(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server()
    with Cache(_backend(server), key_prefix="app:", breaker=None) as cache:
        cache.set("a", 1, tags=["t"])
        server.restart()  # no scripts on the new server; the old connections break
        cache.get("a")  # a fault the backend sees, which resets what it knows loaded
        cache.set("a", 2, tags=["t"])
        assert cache.get("a") == 2
        assert cache.delete("a") is True


def test_a_user_without_scripting_is_told_the_grant(
    server: RedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL",
        "SETUSER",
        "noscript",
        "on",
        ">pw",
        "~app:*",
        "&*",
        "+@all",
        "-@dangerous",
        "-@scripting",
    )
    backend = _backend(server, "noscript", "pw")
    [refused] = backend.execute([Op("delete_if", "app:k", expected=b"v")])
    assert isinstance(refused, PermissionDeniedError)
    assert "+@scripting" in str(refused)
    with Cache(backend, key_prefix="app:") as cache:
        # plain reads and writes need no script
        assert cache.set("plain", 1) is True
        assert cache.get("plain") == 1
        assert cache.set_many({"m1": 1, "m2": 2}) is True
        assert cache.get_many(["m1", "m2"]) == {"m1": 1, "m2": 2}
        assert cache.exists("m1") is True
        assert cache.ttl("m1") is not None
        assert cache.incr("n") == 1
        assert cache.delete_pattern("m*") == 2
        calls: list[int] = []

        @cached(prefix="f:", cache=cache)
        def f(n: int) -> int:
            calls.append(n)
            return n

        with caplog.at_level(logging.ERROR, logger="kirocache"):
            assert f(1) == 1  # computed; its guarded store is refused: fail open
            cache.delete("plain")  # kept pending, read as a miss here
        assert cache.get("plain") is None
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert "@scripting" in logged


def test_a_user_confined_to_another_prefix_is_told_the_key_grant(
    server: RedisServer, admin: redis.Redis
) -> None:
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "narrow", "on", ">pw", "~other:*", "&*", "+@all", "-@dangerous"
    )
    backend = _backend(server, "narrow", "pw")
    try:
        [refused] = backend.execute([Op("get", "app:k")])
    finally:
        backend.close()
    assert isinstance(refused, PermissionDeniedError)
    assert "~<prefix>*" in str(refused)
