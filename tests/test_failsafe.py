"""Fail-safe: TieredBackend(fail_safe=...) serves the last values read while Redis is unreachable.

Bounded in time, counted, and never after an invalidation this process knows of: its own
writes and deletes (even failed ones), other processes' messages, and the cache's pending
invalidations. Most tests make Redis unreachable by making its calls raise an outage; the
slow ones stop a real server and start it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from kirocache import Cache, InMemoryMetrics, cached
from kirocache.backends import MemoryBackend, RedisBackend, TieredBackend
from kirocache.backends._glob import escape_glob
from kirocache.exceptions import BackendError, CommandError, ConfigurationError
from kirocache.testing import FaultyBackend, ManualClock
from redis_server import RedisServer
from test_tiered import DEADLINE, eventually, heard

pytestmark = pytest.mark.real_redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    made = f"failsafe-test:{uuid.uuid4().hex}:"
    yield made
    cleaner = RedisBackend(redis_url)
    cleaner.delete_pattern(escape_glob(made) + "*")
    cleaner.close()


@pytest.fixture
def make_tiered(redis_url: str) -> Iterator[Callable[..., TieredBackend]]:
    made: list[TieredBackend] = []
    channel = f"failsafe-test:{uuid.uuid4().hex}"

    def make(url: str | None = None, **options: Any) -> TieredBackend:
        options.setdefault("channel", channel)
        backend = TieredBackend.from_url(url or redis_url, **options)
        made.append(backend)
        assert backend.wait_connected(DEADLINE)
        return backend

    yield make
    for backend in made:
        backend.close()


class Outage:
    """Makes every Redis call of one backend raise, as an unreachable server does."""

    def __init__(self, backend: TieredBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self._backend = backend
        self._monkeypatch = monkeypatch
        self.error: BackendError = BackendError("connection refused")

    def __enter__(self) -> Outage:  # noqa: PYI034 -- a final class of the tests
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        async def afail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        remote = self._backend.remote
        for name in ("_pipe", "_call", "delete_pattern", "delete_if_equals"):
            self._monkeypatch.setattr(remote, name, fail)
        for name in ("_apipe", "_acall"):
            self._monkeypatch.setattr(remote, name, afail)
        # The fresh copies are gone (as local_ttl or a lost subscription makes them go):
        # only the fail-safe store is left to answer.
        self._backend.local.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self._monkeypatch.undo()


def pending(cache: Cache) -> int:
    return cache.pending_invalidations()["invalidations_pending"]


@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_fail_safe_must_be_a_positive_duration(redis_url: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        TieredBackend(RedisBackend(redis_url), fail_safe=value)  # type: ignore[arg-type]


def test_last_values_are_served_while_redis_is_unreachable(
    make_tiered: Callable[..., TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make_tiered(fail_safe=60)
    k1, k2, never = prefix + "1", prefix + "2", prefix + "never"
    b.remote.set_many({k1: b"one", k2: b"two"})
    assert b.get(k1) == b"one"
    assert b.get_many([k2, never]) == [b"two", None]
    assert b.stats().extra["fail_safe_keys"] == 2
    with Outage(b, monkeypatch):
        assert b.get(k1) == b"one"
        assert b.get_many([k1, k2, never]) == [b"one", b"two", None]
        with pytest.raises(BackendError):
            b.get(never)  # nothing known of it: the outage shows
        with pytest.raises(BackendError):
            b.get_many([never])
        assert b.fail_safe_served == 3
    assert b.stats().extra["fail_safe_served"] == 3
    assert b.get(k1) == b"one"  # Redis again


async def test_async_reads_serve_last_values_too(
    make_tiered: Callable[..., TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make_tiered(fail_safe=60)
    await b.aset(prefix + "k", b"v")
    assert await b.aget(prefix + "k") == b"v"
    with Outage(b, monkeypatch):
        assert await b.aget(prefix + "k") == b"v"
        assert await b.aget_many([prefix + "k", prefix + "x"]) == [b"v", None]
        with pytest.raises(BackendError):
            await b.aget(prefix + "x")
    assert b.fail_safe_served == 2


def test_without_fail_safe_an_outage_raises(
    make_tiered: Callable[..., TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make_tiered()
    b.remote.set(prefix + "k", b"v")
    assert b.get(prefix + "k") == b"v"
    with Outage(b, monkeypatch), pytest.raises(BackendError):
        b.get(prefix + "k")
    assert "fail_safe_served" not in b.stats().extra


def test_a_refused_command_is_no_reason_to_serve_an_old_value(
    make_tiered: Callable[..., TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make_tiered(fail_safe=60)
    b.remote.set(prefix + "k", b"v")
    assert b.get(prefix + "k") == b"v"
    with Outage(b, monkeypatch) as outage:
        outage.error = CommandError("NOPERM this user has no permissions to run 'get'")
        with pytest.raises(CommandError):
            b.get(prefix + "k")
    assert b.fail_safe_served == 0


def test_last_values_are_served_for_fail_safe_seconds_at_most(
    make_tiered: Callable[..., TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make_tiered(fail_safe=30)
    clock = ManualClock()
    b._local.fallback = MemoryBackend(clock=clock.monotonic)  # the store's time, moved by hand
    b.remote.set(prefix + "k", b"v")
    assert b.get(prefix + "k") == b"v"
    with Outage(b, monkeypatch):
        clock.advance(29)
        assert b.get(prefix + "k") == b"v"
        clock.advance(2)
        with pytest.raises(BackendError):
            b.get(prefix + "k")


# ---- never after an invalidation this process knows of ----------------------------------------

OWN_WRITES: dict[str, Callable[[TieredBackend, str], object]] = {
    "set": lambda b, k: b.set(k, b"new"),
    "delete": lambda b, k: b.delete(k),
    "delete_many": lambda b, k: b.delete_many([k]),
    "expire": lambda b, k: b.expire(k, 60),
    "delete_pattern": lambda b, k: b.delete_pattern(escape_glob(k) + "*"),
    "delete_if_equals": lambda b, k: b.delete_if_equals(k, b"v"),
    "clear_local": lambda b, k: b.clear_local(),
}


@pytest.mark.parametrize("write", list(OWN_WRITES))
def test_a_failed_write_of_this_process_drops_the_last_value(
    make_tiered: Callable[..., TieredBackend],
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    write: str,
) -> None:
    b = make_tiered(fail_safe=60)
    key = prefix + "k"
    b.remote.set(key, b"v")
    assert b.get(key) == b"v"
    with Outage(b, monkeypatch):
        assert b.get(key) == b"v"
        with pytest.raises(BackendError):
            OWN_WRITES[write](b, key)  # it may have landed: the old value is void
        with pytest.raises(BackendError):
            b.get(key)


@pytest.mark.parametrize(
    "write",
    [
        lambda a, k: a.set(k, b"new"),
        lambda a, k: a.delete_pattern(escape_glob(k) + "*"),
        lambda a, k: a.clear_local(),
    ],
    ids=["keys", "pattern", "flush"],
)
def test_another_process_invalidation_drops_the_last_value(
    make_tiered: Callable[..., TieredBackend],
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    write: Callable[[TieredBackend, str], object],
) -> None:
    a, b = make_tiered(), make_tiered(fail_safe=60)
    key = prefix + "k"
    heard(b, lambda: a.set(key, b"v"))
    assert b.get(key) == b"v"
    heard(b, lambda: write(a, key))
    with Outage(b, monkeypatch), pytest.raises(BackendError):
        b.get(key)


def test_a_read_that_finds_the_key_gone_drops_the_last_value(
    make_tiered: Callable[..., TieredBackend],
    redis_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = make_tiered(fail_safe=60)
    key = prefix + "k"
    b.remote.set(key, b"v")
    assert b.get(key) == b"v"
    with redis.Redis.from_url(redis_url) as raw:
        raw.delete(key)  # behind the cache's back: no message
    b.local.clear()  # the fresh copy ran out
    assert b.get(key) is None
    with Outage(b, monkeypatch), pytest.raises(BackendError):
        b.get(key)


def test_tracking_invalidations_drop_the_last_value_too(
    make_tiered: Callable[..., TieredBackend],
    redis_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = make_tiered(fail_safe=60, invalidation="tracking", tracking_prefixes=[prefix])
    key = prefix + "k"
    with redis.Redis.from_url(redis_url) as raw:
        heard(b, lambda: raw.set(key, b"v"))
        assert b.get(key) == b"v"
        assert b._local.fallback is not None
        assert b._local.fallback.get(key) == b"v"
        heard(b, lambda: raw.set(key, b"new"))  # another client, announced by Redis
    with Outage(b, monkeypatch), pytest.raises(BackendError):
        b.get(key)


def test_the_caches_pending_invalidations_win_over_the_last_values(
    make_tiered: Callable[..., TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiered = make_tiered(fail_safe=60)
    # The writes fail before they reach the backend, so its last values stay: only the
    # cache's pending invalidations stand between them and the reads.
    faulty = FaultyBackend(tiered, reads_work=True)
    cache = Cache(faulty, key_prefix=prefix, breaker=None)
    calls: list[int] = []

    @cached(prefix="profile:", tags=["team:{team}"], cache=cache, ttl=60)
    def profile(user_id: int, team: str = "t") -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id, "call": len(calls)}

    @cached(prefix="plain:", cache=cache, ttl=60)
    def plain(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id, "call": len(calls)}

    first = plain(1)
    assert plain(1) == first  # read back, and so kept as a last value
    full = cache.keyspace.resolve(plain.cache_key(1), None)[0]
    with Outage(tiered, monkeypatch):
        assert plain(1) == first  # served from the last value
        assert tiered.fail_safe_served >= 1
        faulty.failing = True
        plain.invalidate(1)  # fails: kept pending by the cache
        assert pending(cache)
        assert tiered.get(full) is not None  # the backend alone would still serve it...
        assert plain(1) != first  # ...but the cache reads a miss and computes
        cache.invalidate_tags("team:t")
        before = len(calls)
        profile(2)
        profile(2)
        assert len(calls) == before + 2  # computed each time, never a stale hit
    faulty.failing = False
    assert eventually(lambda: not pending(cache) and plain(1) != first)


# ---- a real server stopped and started again ---------------------------------------------------


@pytest.mark.slow  # a server of its own, stopped and restarted
def test_a_stopped_server_is_bridged_by_the_last_values(
    make_tiered: Callable[..., TieredBackend], fault_redis: RedisServer
) -> None:
    b = make_tiered(fault_redis.url, fail_safe=60)
    cache = Cache(b, breaker=None)
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache, ttl=60)
    def profile(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id, "call": len(calls)}

    assert profile(1) == profile(1) == {"id": 1, "call": 1}
    assert profile(2) == {"id": 2, "call": 2}
    fault_redis.stop()
    assert eventually(lambda: not b.connected)
    assert b.local.stats().keys == 0  # no copy is fresh any more...
    assert profile(1) == {"id": 1, "call": 1}  # ...but the last value bridges the outage
    assert cache.get(profile.cache_key(1)) == {"id": 1, "call": 1}
    assert b.fail_safe_served >= 2
    assert profile(3) == {"id": 3, "call": 3}  # never read: computed, as without fail-safe
    profile.invalidate(1)  # fails, pending, and drops the last value
    assert profile(1) == {"id": 1, "call": 4}
    fault_redis.start()
    assert eventually(lambda: b.connected and not pending(cache))
    assert profile(1) == {"id": 1, "call": 5}  # the restarted server lost its data
    assert profile(1) == {"id": 1, "call": 5}


@pytest.mark.slow  # a server of its own
def test_a_lost_subscription_keeps_the_last_values(
    make_tiered: Callable[..., TieredBackend],
    make_redis_server: Callable[..., RedisServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_redis_server()
    b = make_tiered(server.url, fail_safe=60)
    b.remote.set_many({"k": b"v", "other": b"o"})
    assert b.get_many(["k", "other"]) == [b"v", b"o"]
    with redis.Redis.from_url(server.url) as raw:
        raw.execute_command("ACL", "SETUSER", "default", "resetchannels")
        assert eventually(lambda: not b.connected and b.local.stats().keys == 0)
        raw.set("k", b"newer")  # missed by the subscription, seen by the next read
        assert b.get("k") == b"newer"  # Redis answers: read there, and kept as the last value
        with Outage(b, monkeypatch):
            assert b.get_many(["k", "other"]) == [b"newer", b"o"]
        raw.execute_command("ACL", "SETUSER", "default", "allchannels")
    assert eventually(lambda: b.connected)


@pytest.mark.slow  # a server of its own, stopped and restarted
def test_the_last_values_are_served_while_the_breaker_is_open(
    make_tiered: Callable[..., TieredBackend], fault_redis: RedisServer
) -> None:
    # With the default circuit breaker the cache stops calling Redis after a few faults;
    # it then asks the backend for its kept copy (no I/O), serves it as stale, and never
    # a copy an invalidation of this process reached.
    b = make_tiered(fault_redis.url, fail_safe=60)
    cache = Cache(b)  # the default breaker
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache, ttl=60, tags=["t:{user_id}"])
    def tagged(user_id: int) -> int:
        calls.append(user_id)
        return user_id

    @cached(prefix="plain:", cache=cache, ttl=60)
    def plain(user_id: int) -> dict[str, int]:
        calls.append(-user_id)
        return {"id": user_id}

    assert plain(1) == plain(1) == {"id": 1}
    plain(2)
    tagged(7)
    fault_redis.stop()
    assert eventually(lambda: not b.connected)
    for _ in range(5):  # enough faults to open the breaker
        cache.get("other")
    assert cache.guard.breaker is not None
    assert not cache.guard.breaker.healthy
    before = len(calls)
    assert plain(1) == {"id": 1}  # served from the kept copy, the breaker open
    assert len(calls) == before
    assert isinstance(cache.metrics, InMemoryMetrics)
    assert sum(row.stale for row in cache.metrics.stats(operation="get")) >= 1
    plain.invalidate(2)  # refused: pending, so the kept copy is not served
    assert plain(2) == {"id": 2}
    assert len(calls) == before + 1
    tagged(7)  # a tagged copy cannot have its stamps checked: computed, not served
    assert len(calls) == before + 2
    fault_redis.start()
