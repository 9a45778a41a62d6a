"""Least privilege: kirocache runs as an ACL user confined to its key prefix.

The user is ``ACL SETUSER kc on >secret resetkeys ~<prefix>* resetchannels &* +@all
-@dangerous`` and nothing more: no KEYS, FLUSHDB/FLUSHALL, CONFIG, DEBUG or INFO, and no
key outside ``<prefix>``. Under it the whole backend conformance suite runs (its keys are
all under ``kirocache-conformance:``) and a ``Cache`` with ``key_prefix`` exercises every
write, invalidation, the distributed lock and a ``SessionStore``. After each test the admin
connection reads ``ACL LOG``: any refusal Redis logged for ``kc`` is a command or key the
library reached for outside its grant, and fails the test; ``INFO commandstats`` shows no
call (or refused call) of a forbidden command. The one refusal allowed is ``INFO`` from
``stats()``, which answers with the fields INFO would fill left unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any

import pytest
import redis

from conftest import REDIS_ENV, redis_binary
from kirocache import Cache, Namespace, cached
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import BackendError
from kirocache.sessions import SessionStore
from kirocache.testing.conformance import BackendConformance
from redis_server import RedisServer

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]

USER = "kc"
SECRET = "secret"
APP_PREFIX = "acl-app:"
CONFORMANCE_PREFIX = "kirocache-conformance:"  # where every conformance test writes
# Commands a cache library must never send: they scan or wipe the whole server, or change it.
FORBIDDEN = ("keys", "flushdb", "flushall", "config", "debug")


def acl_rules(prefix: str) -> list[str]:
    """The exact grant: the issue's ``~<prefix>* &* +@all -@dangerous``, nothing extra.

    ``resetkeys``/``resetchannels`` make the rules exact when the module re-grants ``kc`` a
    different prefix. No extra rule turned out to be needed: EVAL, WATCH/MULTI, SCAN and
    DBSIZE are outside @dangerous, and INFO (inside it) is only used by ``stats()``, which
    tolerates its refusal.
    """
    return [
        *("on", f">{SECRET}"),
        *("resetkeys", f"~{prefix}*"),
        *("resetchannels", "&*"),
        *("+@all", "-@dangerous"),
    ]


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """One redis-server for the module (as ``make_redis_server`` starts them).

    Module-scoped rather than ``make_redis_server``'s per-test servers: the conformance
    suite is some 150 tests and a server each would dominate the run on shared CPUs.
    """
    server = RedisServer(redis_binary())
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    """A raw connection as the default (all-powerful) user, to grant and to audit."""
    client = redis.Redis(host="127.0.0.1", port=acl_server.port, decode_responses=True)
    yield client
    client.close()


def grant(admin: redis.Redis, prefix: str) -> None:
    """(Re)create ``kc`` confined to ``prefix`` and start the audit from a clean log."""
    rules = acl_rules(prefix)
    admin.execute_command("ACL", "SETUSER", USER, *rules)  # type: ignore[no-untyped-call]
    admin.acl_log_reset()


def refusals(admin: redis.Redis) -> list[tuple[str, str]]:
    """``(reason, object)`` of every ``ACL LOG`` entry for ``kc``: what it was refused."""
    entries: list[dict[str, Any]] = admin.acl_log()
    return [(e["reason"], e["object"]) for e in entries if e["username"] == USER]


def forbidden_calls(admin: redis.Redis) -> dict[str, dict[str, Any]]:
    """``INFO commandstats`` rows of forbidden commands that were called or refused."""
    stats: dict[str, dict[str, Any]] = admin.info("commandstats")
    return {
        name: row
        for name, row in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0] in FORBIDDEN
        and (row.get("calls", 0) or row.get("rejected_calls", 0))
    }


def acl_backend(server: RedisServer) -> RedisBackend:
    """A ``RedisBackend`` logged in as ``kc``, deaf to a developer's REDIS_* environment."""
    with pytest.MonkeyPatch.context() as env:
        for name in REDIS_ENV:
            env.delenv(name, raising=False)
        return RedisBackend(f"redis://{USER}:{SECRET}@127.0.0.1:{server.port}/0")


def audit(admin: redis.Redis, allowed: AbstractSet[tuple[str, str]] = frozenset()) -> None:
    """Nothing was refused to ``kc`` (beyond ``allowed``); no forbidden command ran."""
    assert set(refusals(admin)) <= allowed, refusals(admin)
    assert forbidden_calls(admin) == {}


# -- the backend conformance suite, as kc ---------------------------------------------------


class TestConformanceUnderACL(BackendConformance):
    """Every conformance test as ``kc`` confined to ``kirocache-conformance:``."""

    @pytest.fixture
    def backend(
        self, acl_server: RedisServer, admin: redis.Redis, request: pytest.FixtureRequest
    ) -> Iterator[RedisBackend]:
        grant(admin, CONFORMANCE_PREFIX)
        made = acl_backend(acl_server)
        yield made
        made.close()
        # stats() sends INFO (@dangerous): its refusal is logged, and stats leaves the
        # INFO fields unknown (test_stats_under_acl pins that). Nothing else may be refused.
        stats_test = request.node.name in {"test_stats", "test_astats"}
        audit(admin, {("command", "info")} if stats_test else set())


# -- the ACL bites, and what stats() gives under it -----------------------------------------


def test_a_key_outside_the_prefix_is_refused(acl_server: RedisServer, admin: redis.Redis) -> None:
    """Control: the grant is real, so the audits above would see a stray key."""
    grant(admin, APP_PREFIX)
    backend = acl_backend(acl_server)
    try:
        backend.set(APP_PREFIX + "in", b"1")
        assert backend.get(APP_PREFIX + "in") == b"1"
        with pytest.raises(BackendError, match=r"NOPERM|permission"):
            backend.get("elsewhere:out")
        assert ("key", "elsewhere:out") in refusals(admin)
    finally:
        backend.delete(APP_PREFIX + "in")
        backend.close()


def test_stats_under_acl(acl_server: RedisServer, admin: redis.Redis) -> None:
    """INFO is refused: stats() still answers, with DBSIZE's count and the rest unknown."""
    grant(admin, APP_PREFIX)
    backend = acl_backend(acl_server)
    try:
        stats = backend.stats()
    finally:
        backend.close()
    assert stats.backend == "redis"
    assert stats.keys is not None
    assert stats.used_memory is None
    assert stats.uptime_seconds is None
    audit(admin, {("command", "info")})


# -- a Cache and a SessionStore under the prefix ---------------------------------------------


def test_cache_never_leaves_its_prefix(acl_server: RedisServer, admin: redis.Redis) -> None:
    """Every cache operation works as ``kc``; Redis refused nothing and logged nothing."""
    grant(admin, APP_PREFIX)
    backend = acl_backend(acl_server)
    recs = Namespace("rec:", ttl=60, bumpable=True)
    # on_error="raise": a NOPERM must surface here, not be swallowed as a fail-open miss.
    cache = Cache(backend, key_prefix=APP_PREFIX, on_error="raise", namespaces=[recs])
    try:
        assert cache.set("a", 1, tags=["team"]) is True
        assert cache.set("b", 2) is True
        assert cache.set("c", 3) is True
        assert cache.get("a") == 1
        assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert cache.delete("c") is True
        assert cache.get("c") is None
        assert cache.depends("b", on="a") is True
        assert cache.set("1", "x", namespace=recs) is True
        assert cache.bump(recs) > 1
        assert cache.get("1", namespace=recs) is None
        assert cache.invalidate_tags("team") == 2  # "a" and its dependent "b"
        assert cache.get("a") is None
        assert cache.get("b") is None
        calls: list[int] = []

        @cached(prefix="locked:", cache=cache, lock="distributed", ttl=60)
        def locked(n: int) -> int:
            calls.append(n)
            return n * 2

        assert locked(2) == 4
        assert locked(2) == 4
        assert calls == [2]
        assert cache.get_or_set("g", lambda: "made", ttl=60) == "made"
        assert isinstance(cache.prune_indexes(), dict)
        assert cache.delete_pattern("*") >= 1
        assert cache.get("g") is None

        store = SessionStore(cache)
        first = store.create("u1", {"n": 1})
        second = store.create("u1")
        assert store.get(first) is not None
        assert store.update(first, {"n": 2}) is True
        assert store.touch(first) is True
        assert len(store.user_sessions("u1")) == 2
        assert store.revoke(first) is True
        assert store.get(first) is None
        assert store.revoke_all("u1") >= 1
        assert store.get(second) is None
        store.cleanup()
    finally:
        backend.close()
    audit(admin)


async def test_async_cache_never_leaves_its_prefix(
    acl_server: RedisServer, admin: redis.Redis
) -> None:
    """The async twins as ``kc``: the same grant suffices."""
    grant(admin, APP_PREFIX)
    backend = acl_backend(acl_server)
    recs = Namespace("rec:", ttl=60, bumpable=True)
    cache = Cache(backend, key_prefix=APP_PREFIX, on_error="raise", namespaces=[recs])
    try:
        assert await cache.aset("a", 1, tags=["team"]) is True
        assert await cache.aset("b", 2) is True
        assert await cache.adepends("b", on="a") is True
        assert await cache.aset("1", "x", namespace=recs) is True
        assert await cache.abump(recs) > 1
        assert await cache.ainvalidate_tags("team") == 2
        assert await cache.aget("b") is None

        @cached(prefix="alocked:", cache=cache, lock="distributed", ttl=60)
        async def locked(n: int) -> int:
            return n * 3

        assert await locked(2) == 6
        assert await locked(2) == 6
        assert await cache.aget_or_set("g", lambda: "made", ttl=60) == "made"
        assert isinstance(await cache.aprune_indexes(), dict)
        assert await cache.adelete_pattern("*") >= 1

        store = SessionStore(cache)
        sid = await store.acreate("u2")
        assert await store.aget(sid) is not None
        assert await store.arevoke_all("u2") >= 1
        assert await store.aget(sid) is None
    finally:
        backend.close()
    audit(admin)
