"""TieredBackend: a local layer in front of Redis, kept honest by invalidations on a channel."""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import fakeredis
import orjson
import pytest
import redis

from eventually import aeventually, eventually
from kirocache import Cache, cached
from kirocache.backends import MemoryBackend, Op, RedisBackend, TieredBackend, _tiered_subscriber
from kirocache.backends._glob import escape_glob
from kirocache.backends.tiered import (
    _backoff,
    _decode,
    _encode_flush,
    _encode_keys,
    _encode_pattern,
    _local_ttl,
)
from kirocache.exceptions import BackendError, ConfigurationError
from kirocache.testing.conformance import BackendConformance
from redis_server import RedisServer

REDIS_ENV = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG")
DEADLINE = 10.0


def heard(b: TieredBackend, write: Callable[[], object]) -> None:
    """Write through another backend and wait until ``b`` has applied the message.

    Until then a copy ``b`` reads may still be dropped by the message of this earlier
    write: a spurious miss, harmless, but not what a test of local hits wants.
    """
    applied = b.messages_applied
    write()
    assert eventually(lambda: b.messages_applied > applied)


async def aheard(b: TieredBackend, write: Callable[[], Awaitable[object]]) -> None:
    applied = b.messages_applied
    await write()
    assert await aeventually(lambda: b.messages_applied > applied)


def subscriber_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kirocache-tiered" and t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaked_subscribers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean environment, and no subscriber thread outliving the test's backends."""
    for name in REDIS_ENV:  # a developer's REDIS_PASSWORD must not reach these servers
        monkeypatch.delenv(name, raising=False)
    yield
    assert eventually(lambda: not subscriber_threads()), subscriber_threads()


@pytest.fixture
def channel() -> str:
    return f"kirocache-test:{uuid.uuid4().hex}"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of the test's own on the session server, cleaned up afterwards."""
    made = f"tiered-test:{uuid.uuid4().hex}:"
    yield made
    cleaner = RedisBackend(redis_url)
    cleaner.delete_pattern(escape_glob(made) + "*")
    cleaner.close()


@pytest.fixture
def make_tiered(redis_url: str, channel: str) -> Iterator[Callable[..., TieredBackend]]:
    """Build TieredBackends on the session server (or ``url``), closed after the test."""
    made: list[TieredBackend] = []

    def make(url: str | None = None, **options: Any) -> TieredBackend:
        options.setdefault("channel", channel)
        backend = TieredBackend.from_url(url or redis_url, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def pair(make_tiered: Callable[..., TieredBackend]) -> tuple[TieredBackend, TieredBackend]:
    """Two backends on one server and channel: process A (writer) and process B (reader)."""
    a, b = make_tiered(), make_tiered()
    assert a.wait_connected(DEADLINE)
    assert b.wait_connected(DEADLINE)
    return a, b


# ---- the conformance suite ------------------------------------------------------------------


class TestTieredConformance(BackendConformance):
    """The shared backend suite, over the real server and over fakeredis's pub/sub."""

    @pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.real_redis), "fakeredis"])
    def backend(self, request: pytest.FixtureRequest) -> Iterator[TieredBackend]:
        if request.param == "redis":
            remote = RedisBackend(request.getfixturevalue("redis_url"))
        else:
            server = fakeredis.FakeServer()
            remote = RedisBackend.from_clients(
                fakeredis.FakeRedis(server=server),
                lambda: fakeredis.FakeAsyncRedis(server=server),
                name="fakeredis",
            )
        made = TieredBackend(remote, channel=f"conformance:{uuid.uuid4().hex}")
        assert made.wait_connected(DEADLINE)
        yield made
        made.close()


# ---- the pure parts: messages, TTL of a copy, backoff -----------------------------------------


def test_messages_round_trip_and_ignore_duplicates() -> None:
    [data] = _encode_keys("me", ["a", "b", "a"])
    assert orjson.loads(data) == {"s": "me", "k": ["a", "b"]}
    message = _decode(data)
    assert (message.sender, message.keys, message.pattern) == ("me", ("a", "b"), None)
    pattern = _decode(_encode_pattern("me", "user:*"))
    assert (pattern.sender, pattern.keys, pattern.pattern) == ("me", None, "user:*")
    flush = _decode(_encode_flush("me"))
    assert (flush.sender, flush.keys, flush.pattern) == ("me", None, None)


def test_many_keys_are_split_over_several_messages() -> None:
    keys = [f"k{i}" for i in range(2500)]
    messages = [_decode(data) for data in _encode_keys("me", keys)]
    assert [len(m.keys or ()) for m in messages] == [1000, 1000, 500]
    assert [key for m in messages for key in m.keys or ()] == keys


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1, 2]", b'{"k": "not a list"}', b'{"k": [1]}', b"{}", 42, b'{"x": 1}'],
)
def test_unreadable_messages_mean_drop_everything(data: object) -> None:
    message = _decode(data)
    assert (message.keys, message.pattern) == (None, None)


def test_a_key_orjson_refuses_becomes_a_flush() -> None:
    [data] = _encode_keys("me", ["\ud800"])
    assert orjson.loads(data) == {"s": "me", "f": True}
    assert orjson.loads(_encode_pattern("me", "\ud800*")) == {"s": "me", "f": True}


def test_local_copy_ttl() -> None:
    assert _local_ttl(b"v", math.inf, 5.0) == 5.0
    assert _local_ttl(b"v", 2.0, 5.0) == 2.0  # never outlives the remote entry
    assert _local_ttl(b"v", None, 5.0) is None  # gone meanwhile
    assert _local_ttl(b"v", 0.0, 5.0) is None
    assert _local_ttl(None, math.inf, 5.0) is None
    assert _local_ttl(b"\xc5\xfftomb:1234", math.inf, 5.0) is None  # a tombstone


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for failures in range(1, 40):
        ceiling = min(2.0, 0.05 * 2 ** (failures - 1))
        assert ceiling / 2 <= _backoff(failures) <= ceiling
    assert _backoff(10_000) <= 2.0


# ---- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"local_ttl": 0},
        {"local_ttl": -1},
        {"local_ttl": math.inf},
        {"local_ttl": "5"},
        {"ping_interval": 0},
        {"channel": ""},
        {"max_entries": 0},
    ],
)
def test_invalid_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        TieredBackend(RedisBackend("redis://127.0.0.1:1/0"), **options)
    assert not subscriber_threads()


def test_remote_must_be_a_redis_backend() -> None:
    with pytest.raises(ConfigurationError, match="RedisBackend"):
        TieredBackend(MemoryBackend())  # type: ignore[arg-type]


def test_repr_names_the_channel_and_hides_the_password(channel: str) -> None:
    backend = TieredBackend.from_url(
        "redis://:hunter2@127.0.0.1:1/0", channel=channel, connect_timeout=0.05
    )
    try:
        text = repr(backend)
        assert channel in text
        assert "hunter2" not in text
        assert "not connected" in text
    finally:
        backend.close()


# ---- reads: the local layer -------------------------------------------------------------------


def test_b_serves_its_local_copy_until_told_otherwise(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, redis_url: str
) -> None:
    a, b = pair
    heard(b, lambda: a.set(prefix + "k", b"old"))
    assert b.get(prefix + "k") == b"old"
    assert b.local.get(prefix + "k") == b"old"
    plain = RedisBackend(redis_url)  # a writer that announces nothing
    plain.set(prefix + "k", b"unannounced")
    plain.close()
    assert b.get(prefix + "k") == b"old"  # from the local layer
    a.set(prefix + "k", b"new")
    assert eventually(lambda: b.get(prefix + "k") == b"new")


def test_local_copy_lives_at_most_local_ttl_and_never_past_the_remote_ttl(
    make_tiered: Callable[..., TieredBackend], prefix: str
) -> None:
    b = make_tiered(local_ttl=30)
    assert b.wait_connected(DEADLINE)
    b.remote.set(prefix + "short", b"v", ttl=5)
    b.remote.set(prefix + "long", b"v")
    assert b.get_many([prefix + "short", prefix + "long"]) == [b"v", b"v"]
    assert 0 < (b.local.ttl(prefix + "short") or 0) <= 5
    assert 5 < (b.local.ttl(prefix + "long") or 0) <= 30


def test_an_unannounced_write_heals_after_local_ttl(
    make_tiered: Callable[..., TieredBackend], prefix: str
) -> None:
    b = make_tiered(local_ttl=0.2)
    assert b.wait_connected(DEADLINE)
    b.remote.set(prefix + "k", b"old")
    assert b.get(prefix + "k") == b"old"
    b.remote.set(prefix + "k", b"new")  # straight to Redis: no message
    assert eventually(lambda: b.get(prefix + "k") == b"new")


def test_get_many_reads_local_copies_and_fetches_the_rest(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    k1, k2, k3 = prefix + "1", prefix + "2", prefix + "3"
    heard(b, lambda: a.set_many({k1: b"1", k2: b"2"}))
    assert b.get_many([k1, k2, k3, k1]) == [b"1", b"2", None, b"1"]
    assert b.local.get_many([k1, k2, k3]) == [b"1", b"2", None]
    b.remote.set(k1, b"unannounced")
    assert b.get_many([k1, k3]) == [b"1", None]
    a.set(k2, b"22")
    assert eventually(lambda: b.get_many([k1, k2]) == [b"1", b"22"])
    assert b.get_many([]) == []


async def test_aget_and_aget_many_use_the_local_layer(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    k1, k2 = prefix + "1", prefix + "2"
    await aheard(b, lambda: a.aset_many({k1: b"1", k2: b"2"}))
    assert await b.aget(k1) == b"1"
    assert await b.aget_many([k1, k2, prefix + "none"]) == [b"1", b"2", None]
    await b.remote.aset(k1, b"unannounced")
    assert await b.aget(k1) == b"1"
    assert await b.aget_many([k1, k2]) == [b"1", b"2"]
    await a.aset(k1, b"new")
    assert await aeventually(lambda: b.local.get(k1) is None)
    assert await b.aget(k1) == b"new"
    assert await b.aget_many([]) == []


def test_tombstones_and_tag_sets_are_never_copied(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    tomb = b"\xc5\xfftomb:12345678"
    a.set(prefix + "tomb", tomb)
    a.tag_add(prefix + "tag", ["m"], 60)
    assert b.get(prefix + "tomb") == tomb
    assert b.get_many([prefix + "tomb", prefix + "tag"]) == [tomb, None]
    with pytest.raises(BackendError):
        b.get(prefix + "tag")
    assert b.local.stats().keys == 0


def test_an_invalidation_during_a_read_wins(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    key = prefix + "k"
    heard(b, lambda: a.set(key, b"old"))
    original = b.remote._pipe
    raced: list[bool] = []

    def read_then_race(operation: str, commands: Any, **options: Any) -> list[object]:
        replies = original(operation, commands, **options)
        if operation == "get" and not raced:
            raced.append(True)  # the read saw "old"; A overwrites before it returns
            applied = b.messages_applied
            a.set(key, b"new")
            assert eventually(lambda: b.messages_applied > applied)
        return replies

    monkeypatch.setattr(b.remote, "_pipe", read_then_race)
    assert b.get(key) == b"old"
    assert b.local.get(key) is None  # its copy would have been stale: not kept
    assert b.get(key) == b"new"


async def test_an_invalidation_during_an_async_read_wins(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    keys = [prefix + "1", prefix + "2"]
    await aheard(b, lambda: a.aset_many(dict.fromkeys(keys, b"old")))
    original = b.remote._apipe

    async def read_then_race(operation: str, commands: Any, **options: Any) -> list[object]:
        replies = await original(operation, commands, **options)
        if operation == "get_many":
            applied = b.messages_applied
            await a.aset(keys[0], b"new")
            assert await aeventually(lambda: b.messages_applied > applied)
        return replies

    monkeypatch.setattr(b.remote, "_apipe", read_then_race)
    assert await b.aget_many(keys) == [b"old", b"old"]
    monkeypatch.undo()
    assert b.local.get_many(keys) == [None, b"old"]
    assert await b.aget_many(keys) == [b"new", b"old"]


# ---- writes: every one announces the keys it changed -------------------------------------------

WRITES: dict[str, Callable[[TieredBackend, str], object]] = {
    "set": lambda a, k: a.set(k, b"2"),
    "set_nx": lambda a, k: a.set(k, b"2", nx=True),
    "delete": lambda a, k: a.delete(k),
    "set_many": lambda a, k: a.set_many({k: b"2"}, ttl=60),
    "delete_many": lambda a, k: a.delete_many([k, k + "-other"]),
    "expire": lambda a, k: a.expire(k, 60),
    "persist": lambda a, k: a.persist(k),
    "incr": lambda a, k: a.incr(k, 5),
    "delete_if_equals": lambda a, k: a.delete_if_equals(k, b"1"),
    "delete_pattern": lambda a, k: a.delete_pattern(escape_glob(k) + "*"),
    "execute_set": lambda a, k: a.execute([Op("set", k, b"2")]),
    "execute_delete": lambda a, k: a.execute([Op("delete", k)], transaction=True),
    "execute_expire": lambda a, k: a.execute([Op("expire", k, ttl=60)]),
    "execute_incr": lambda a, k: a.execute([Op("incr", k)]),
    "execute_persist": lambda a, k: a.execute([Op("persist", k)]),
    "execute_set_if": lambda a, k: a.execute([Op("set_if", k, b"2", expected=b"1")]),
    "execute_swap": lambda a, k: a.execute([Op("swap", k, b"2")]),
    "execute_delete_if": lambda a, k: a.execute([Op("delete_if", k, expected=b"1")]),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_drops_the_other_process_copy(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, write: str
) -> None:
    a, b = pair
    key = prefix + "k"
    heard(b, lambda: a.set(key, b"1"))
    assert b.get(key) == b"1"
    assert b.local.exists(key)
    a.local.set(key, b"1", ttl=60)  # the writer's own copy goes right away
    WRITES[write](a, key)
    assert not a.local.exists(key)
    assert eventually(lambda: not b.local.exists(key))
    assert b.get(key) == a.remote.get(key)


AWRITES: dict[str, Callable[[TieredBackend, str], Any]] = {
    "aset": lambda a, k: a.aset(k, b"2"),
    "adelete": lambda a, k: a.adelete(k),
    "aset_many": lambda a, k: a.aset_many({k: b"2"}),
    "adelete_many": lambda a, k: a.adelete_many([k]),
    "aexpire": lambda a, k: a.aexpire(k, 60),
    "apersist": lambda a, k: a.apersist(k),
    "aincr": lambda a, k: a.aincr(k, 5, ttl=60),
    "adelete_if_equals": lambda a, k: a.adelete_if_equals(k, b"1"),
    "adelete_pattern": lambda a, k: a.adelete_pattern(escape_glob(k) + "*"),
    "aexecute": lambda a, k: a.aexecute([Op("swap", k, b"2")], transaction=True),
}


@pytest.mark.parametrize("write", list(AWRITES))
async def test_every_async_write_drops_the_other_process_copy(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, write: str
) -> None:
    a, b = pair
    key = prefix + "k"
    await aheard(b, lambda: a.aset(key, b"1"))
    assert await b.aget(key) == b"1"
    assert b.local.exists(key)
    await AWRITES[write](a, key)
    assert await aeventually(lambda: not b.local.exists(key))
    assert await b.aget(key) == await a.remote.aget(key)


def test_tag_ops_and_reads_announce_nothing(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    a.tag_add(prefix + "tag", ["x"], 60)
    a.tag_remove(prefix + "tag", ["x"])
    a.execute([Op("tag_add", prefix + "tag", ttl=60, members=("y",)), Op("get", prefix + "k")])
    assert a.tag_members(prefix + "tag") == ["y"]
    a.set(prefix + "marker", b"1")  # messages arrive in order: this one comes last
    assert eventually(lambda: b.messages_received >= 1)
    assert b.messages_received == 1


def test_a_backend_ignores_its_own_messages(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    a.set(prefix + "k", b"1")
    assert eventually(lambda: a.messages_received == 1 and b.messages_applied == 1)
    assert a.messages_applied == 0


def test_clear_local_empties_every_process(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    a.set_many({prefix + "1": b"1", prefix + "2": b"2"})
    a.get_many([prefix + "1", prefix + "2"])
    b.get_many([prefix + "1", prefix + "2"])
    a.clear_local()
    assert a.local.stats().keys == 0
    assert eventually(lambda: b.local.stats().keys == 0)
    assert b.get(prefix + "1") == b"1"  # Redis is untouched


async def test_aclear_local_empties_every_process(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    await a.aset(prefix + "1", b"1")
    assert await b.aget(prefix + "1") == b"1"
    await a.aclear_local()
    assert await aeventually(lambda: b.local.stats().keys == 0)


def test_messages_from_other_writers(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, redis_url: str
) -> None:
    """Any client may publish the documented format; anything unreadable drops everything."""
    _, b = pair
    b.remote.set_many({prefix + "1": b"1", prefix + "2": b"2"})
    b.get_many([prefix + "1", prefix + "2"])
    with redis.Redis.from_url(redis_url) as raw:
        raw.publish(b.channel, orjson.dumps({"k": [prefix + "1"]}))
        assert eventually(lambda: not b.local.exists(prefix + "1"))
        assert b.local.exists(prefix + "2")
        raw.publish(b.channel, b"\x00garbage")
        assert eventually(lambda: b.local.stats().keys == 0)
    assert b.messages_applied == 2


# ---- through kirocache.Cache -------------------------------------------------------------------

CACHE_WRITES: dict[str, tuple[Callable[[Cache], object], object]] = {
    "delete": (lambda cache: cache.delete("user:1"), None),
    "set": (lambda cache: cache.set("user:1", {"name": "Grace"}), {"name": "Grace"}),
    "invalidate_tags": (lambda cache: cache.invalidate_tags("team"), None),
    "delete_pattern": (lambda cache: cache.delete_pattern("user:*"), None),
}


@pytest.mark.parametrize("write", list(CACHE_WRITES))
def test_a_cache_write_in_a_reaches_b(
    pair: tuple[TieredBackend, TieredBackend], prefix: str, write: str
) -> None:
    a, b = pair
    cache_a, cache_b = Cache(a, key_prefix=prefix), Cache(b, key_prefix=prefix)
    heard(b, lambda: cache_a.set("user:1", {"name": "Ada"}, tags=["team"]))
    assert cache_b.get("user:1") == {"name": "Ada"}
    assert b.local.exists(prefix + "user:1")
    action, expected = CACHE_WRITES[write]
    action(cache_a)
    assert eventually(lambda: cache_b.get("user:1") == expected)


async def test_an_async_cache_write_in_a_reaches_b(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    cache_a, cache_b = Cache(a, key_prefix=prefix), Cache(b, key_prefix=prefix)
    await aheard(b, lambda: cache_a.aset("user:1", {"name": "Ada"}, tags=["team"]))
    assert await cache_b.aget("user:1") == {"name": "Ada"}
    await cache_a.ainvalidate_tags("team")
    assert await aeventually(lambda: not b.local.exists(prefix + "user:1"))
    assert await cache_b.aget("user:1") is None


def test_cached_functions_in_two_processes_stay_in_step(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    database = {"version": 1}
    calls: list[str] = []

    def loader(cache: Cache, name: str) -> Callable[[int], dict[str, int]]:
        @cached(prefix="profile:", cache=cache)
        def profile(user_id: int) -> dict[str, int]:
            calls.append(name)
            return {"id": user_id, **database}

        return profile

    in_a = loader(Cache(a, key_prefix=prefix), "a")
    in_b = loader(Cache(b, key_prefix=prefix), "b")
    assert in_a(1) == in_b(1) == {"id": 1, "version": 1}
    assert in_b(1) == {"id": 1, "version": 1}
    assert calls == ["a"]
    database["version"] = 2
    in_a.invalidate(1)
    assert eventually(lambda: in_b(1) == {"id": 1, "version": 2})
    assert calls == ["a", "b"]


def test_a_real_second_process_drops_what_this_one_invalidates(
    make_tiered: Callable[..., TieredBackend], redis_url: str, channel: str, prefix: str
) -> None:
    import tiered_worker

    db_key = prefix + "db"
    raw = redis.Redis.from_url(redis_url)
    raw.set(db_key, 1)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    reader = context.Process(
        target=tiered_worker.reader, args=(redis_url, channel, prefix, db_key, theirs)
    )
    reader.start()
    theirs.close()  # the reader's end: if it dies, recv() raises EOFError at once

    def report() -> dict[str, Any]:
        assert ours.poll(60), "the reader process did not report"
        received: dict[str, Any] = ours.recv()
        assert "error" not in received, received["error"]
        return received

    try:
        cached_there = report()
        assert cached_there["connected"] is True
        assert cached_there["first"] == cached_there["again"] == {"id": 7, "version": 1}
        assert cached_there["local_hits"] >= 1  # the third call came from its local layer
        writer = Cache(make_tiered(), key_prefix=prefix)
        raw.set(db_key, 2)
        assert tiered_worker.profile_function(writer, raw, db_key).invalidate(7) is True
        ours.send("go")
        seen = report()
        assert seen["latest"] == {"id": 7, "version": 2}
        assert seen["applied"] >= 1
        assert int(raw.get(db_key + ":calls") or 0) == 2
    finally:
        ours.close()  # a reader still waiting for "go" gets EOFError and ends
        reader.join(30)
        if reader.is_alive():
            reader.terminate()
            reader.join()
        raw.close()
    assert reader.exitcode == 0


# ---- losing the subscription -------------------------------------------------------------------


def test_a_killed_subscription_clears_the_local_layer_and_recovers(
    make_tiered: Callable[..., TieredBackend], make_redis_server: Callable[..., RedisServer]
) -> None:
    server = make_redis_server()
    a, b = make_tiered(server.url), make_tiered(server.url)
    assert a.wait_connected(DEADLINE)
    assert b.wait_connected(DEADLINE)
    heard(b, lambda: a.set("k", b"old"))
    assert b.get("k") == b"old"
    with redis.Redis.from_url(server.url) as raw:
        raw.set("k", b"written while nobody listened")
        assert b.get("k") == b"old"
        assert raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
    assert eventually(lambda: b.reconnects >= 1 and b.connected)
    assert b.connection_failures >= 1
    assert b.get("k") == b"written while nobody listened"  # the layer was cleared
    assert b.local.exists("k")
    assert eventually(lambda: a.connected)
    a.set("k", b"new")
    assert eventually(lambda: b.get("k") == b"new")


def test_reads_bypass_the_local_layer_while_the_subscription_is_down(
    make_tiered: Callable[..., TieredBackend],
    make_redis_server: Callable[..., RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_redis_server()
    a, b = make_tiered(server.url), make_tiered(server.url)
    assert a.wait_connected(DEADLINE)
    assert b.wait_connected(DEADLINE)
    a.set("k", b"old")
    assert b.get("k") == b"old"
    with redis.Redis.from_url(server.url) as raw:
        # No channel may be used: subscribers are dropped and cannot come back, while
        # Redis itself keeps serving.
        raw.execute_command("ACL", "SETUSER", "default", "resetchannels")
        assert eventually(lambda: not b.connected and b.local.stats().keys == 0)
        with pytest.raises(BackendError):
            a.set("k", b"x")  # in a MULTI, a write that cannot be announced is not made
        # Without a transaction the write lands, and the failed announcement is logged.
        assert a.execute([Op("set", "other", b"x")]) == [True]
        assert "could not be announced" in caplog.text
        raw.set("k", b"new")
        assert b.get("k") == b"new"
        assert b.get_many(["k"]) == [b"new"]
        assert not b.local.exists("k")  # nothing is copied while down
        raw.execute_command("ACL", "SETUSER", "default", "allchannels")
    assert eventually(lambda: b.connected and a.connected)
    assert b.get("k") == b"new"
    assert b.local.exists("k")
    a.set("k", b"newer")
    assert eventually(lambda: b.get("k") == b"newer")


@pytest.mark.slow  # waits on real ping and backoff intervals
def test_a_silent_connection_is_noticed_by_ping(
    make_tiered: Callable[..., TieredBackend], make_redis_server: Callable[..., RedisServer]
) -> None:
    server = make_redis_server()
    b = make_tiered(server.url, ping_interval=0.1)
    assert b.wait_connected(DEADLINE)
    b.remote.set("k", b"v")
    assert b.get("k") == b"v"
    with redis.Redis.from_url(server.url) as raw:
        # The server keeps every socket open but answers nobody for a while: no error
        # ever reaches the subscriber, only its PING goes unanswered.
        raw.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    assert eventually(lambda: b.connection_failures >= 1)
    assert not b.local.exists("k")
    assert eventually(lambda: b.connected)
    assert b.get("k") == b"v"


@pytest.mark.slow  # waits on real ping and backoff intervals
def test_a_stopped_server_fails_open_and_the_subscriber_backs_off(
    make_tiered: Callable[..., TieredBackend], make_redis_server: Callable[..., RedisServer]
) -> None:
    server = make_redis_server()
    a, b = make_tiered(server.url), make_tiered(server.url)
    assert a.wait_connected(DEADLINE)
    assert b.wait_connected(DEADLINE)
    cache_b = Cache(b, breaker=None)
    cache_b.set("user:1", {"name": "Ada"})
    assert cache_b.get("user:1") == {"name": "Ada"}
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache_b)
    def profile(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    heard(b, lambda: a.set("k", b"old"))
    assert b.get("k") == b"old"
    assert b.local.exists("k")
    server.stop()
    assert eventually(lambda: not b.connected and b.local.stats().keys == 0)
    assert cache_b.get("user:1", default="fallback") == "fallback"  # fails open
    assert profile(2) == {"id": 2}
    assert cache_b.errors_total >= 1
    with pytest.raises(BackendError):
        b.get("user:1")
    failures = b.connection_failures
    # Not a timing assertion: over a while longer than the 2 s backoff cap the thread
    # retries at least once, and a handful of times rather than thousands.
    time.sleep(2.5)
    assert 1 <= b.connection_failures - failures <= 40
    server.start()
    with redis.Redis.from_url(server.url) as raw:
        raw.set("k", b"written as it came back")  # announced to nobody
    assert b.get("k") == b"written as it came back"  # not hidden by the old copy
    assert eventually(lambda: a.connected and b.connected)
    assert b.get("k") == b"written as it came back"
    a.set("k", b"new")
    assert eventually(lambda: b.get("k") == b"new")
    assert calls == [2]


# ---- stats, ping, close -----------------------------------------------------------------------


async def test_stats_and_ping_come_from_redis_with_local_figures(
    pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = pair
    heard(b, lambda: a.set(prefix + "k", b"1"))
    b.get(prefix + "k")
    b.get(prefix + "k")
    for stats in (b.stats(), await b.astats()):
        assert stats.backend == "tiered"
        assert stats.keys is not None
        assert stats.keys >= 1
        assert stats.extra["redis_version"]
        assert stats.extra["local_keys"] == 1
        assert stats.extra["local_hits"] == 1
        assert stats.extra["subscriber_connected"] is True
        assert stats.extra["reconnects"] == 0
    assert b.ping() >= 0
    assert await b.aping() >= 0


def test_close_stops_the_thread_and_a_read_starts_it_again(
    make_tiered: Callable[..., TieredBackend], prefix: str
) -> None:
    b = make_tiered()
    assert b.wait_connected(DEADLINE)
    b.remote.set(prefix + "k", b"v")
    b.get(prefix + "k")
    b.close()
    assert not subscriber_threads()
    assert not b.connected
    assert b.local.stats().keys == 0
    assert b.set(prefix + "k", b"w") is True  # writes need no subscriber
    assert not subscriber_threads()
    assert b.get(prefix + "k") == b"w"
    assert b.wait_connected(DEADLINE)
    b.close()
    assert not subscriber_threads()


async def test_aclose_stops_the_thread(
    make_tiered: Callable[..., TieredBackend], prefix: str
) -> None:
    b = make_tiered()
    assert await b.await_connected(DEADLINE)
    await b.aset(prefix + "k", b"v")
    assert await b.aget(prefix + "k") == b"v"
    await b.aclose()
    assert not subscriber_threads()
    assert not b.connected
    assert await b.aget(prefix + "k") == b"v"
    assert await b.await_connected(DEADLINE)
    await b.aclose()


def test_a_backend_dropped_without_close_stops_its_thread(channel: str) -> None:
    backend = TieredBackend.from_url("redis://127.0.0.1:1/0", channel=channel)
    assert subscriber_threads()
    del backend  # its finalizer asks the thread to stop
    assert eventually(lambda: not subscriber_threads())


@pytest.fixture
async def async_pair(
    pair: tuple[TieredBackend, TieredBackend],
) -> AsyncIterator[tuple[TieredBackend, TieredBackend]]:
    yield pair
    for backend in pair:
        await backend.aclose()


async def test_async_pair_round_trip(
    async_pair: tuple[TieredBackend, TieredBackend], prefix: str
) -> None:
    a, b = async_pair
    assert await a.aexists(prefix + "k") is False
    await a.aset(prefix + "k", b"1", ttl=60)
    assert await b.aget(prefix + "k") == b"1"
    assert 0 < (await b.attl(prefix + "k") or 0) <= 60
    assert [k async for k in b.ascan(escape_glob(prefix) + "*")] == [prefix + "k"]
    await a.atag_add(prefix + "tag", ["m"], 60)
    assert await b.atag_members(prefix + "tag") == ["m"]
    assert await b.atag_remove(prefix + "tag", ["m"]) == 1


@pytest.mark.real_redis
def test_close_wakes_the_subscriber_without_waiting_out_its_poll(
    make_tiered: Callable[..., TieredBackend],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With a minute-long poll, only stop() waking the thread (its socket shut down) lets
    # close() return within the join below; the wake is not a lost subscription, so
    # nothing is logged.
    monkeypatch.setattr(_tiered_subscriber, "POLL", 60.0)
    backend = make_tiered()
    assert backend.wait_connected(10)
    [thread] = subscriber_threads()
    with caplog.at_level(logging.INFO, logger="kirocache"):
        closer = threading.Thread(target=backend.close)
        closer.start()
        closer.join(20)
    assert not closer.is_alive()
    assert not thread.is_alive()
    assert backend.stats().extra["connection_failures"] == 0
    assert [r.getMessage() for r in caplog.records if "subscri" in r.getMessage()] == []
