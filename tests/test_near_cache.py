"""The near cache: TieredBackend(invalidation="tracking"), its copies invalidated by Redis itself.

Every test runs on the real redis-server (client tracking is a server feature): another
client's writes, expiry and flushes reach the local layer without any PUBLISH; the cache's
tombstones, tag stamps and namespace bumps keep their guarantees through it.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from kirocache import Cache, Namespace, cached
from kirocache.backends import RedisBackend, TieredBackend
from kirocache.backends._glob import escape_glob
from kirocache.backends._tiered_tracking import decode_keys, tracked_prefixes
from kirocache.exceptions import ConfigurationError
from kirocache.testing.conformance import BackendConformance
from redis_server import RedisServer
from test_tiered import DEADLINE, aeventually, eventually

pytestmark = pytest.mark.real_redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of the test's own on the session server, cleaned up afterwards."""
    made = f"near-test:{uuid.uuid4().hex}:"
    yield made
    cleaner = RedisBackend(redis_url)
    cleaner.delete_pattern(escape_glob(made) + "*")
    cleaner.close()


@pytest.fixture
def make_near(redis_url: str, prefix: str) -> Iterator[Callable[..., TieredBackend]]:
    """Tracking TieredBackends on the session server, tracking ``prefix``, closed after."""
    made: list[TieredBackend] = []
    channel = f"near-test:{uuid.uuid4().hex}"

    def make(url: str | None = None, **options: Any) -> TieredBackend:
        options.setdefault("channel", channel)
        options.setdefault("tracking_prefixes", [prefix])
        options.setdefault("local_ttl", 60)
        backend = TieredBackend.from_url(url or redis_url, invalidation="tracking", **options)
        made.append(backend)
        assert backend.wait_connected(DEADLINE)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client: a writer that knows nothing of kirocache."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _local_hits(b: TieredBackend) -> int:
    hits = b.stats().extra["local_hits"]
    assert isinstance(hits, int)
    return hits


def applied_after(b: TieredBackend, write: Callable[[], object]) -> None:
    """Make a write and wait until ``b`` has applied an invalidation received after it."""
    applied = b.messages_applied
    write()
    assert eventually(lambda: b.messages_applied > applied)


# ---- the conformance suite ---------------------------------------------------------------------


class TestNearCacheConformance(BackendConformance):
    """The shared backend suite, with tracking on every key, and with fail-safe on."""

    @pytest.fixture(params=["tracking", "pubsub+fail_safe"])
    def backend(self, request: pytest.FixtureRequest, redis_url: str) -> Iterator[TieredBackend]:
        mode, _, fail_safe = request.param.partition("+")
        made = TieredBackend(
            RedisBackend(redis_url),
            channel=f"conformance:{uuid.uuid4().hex}",
            invalidation="tracking" if mode == "tracking" else "pubsub",
            fail_safe=60 if fail_safe else None,
        )
        assert made.wait_connected(DEADLINE)
        yield made
        made.close()


# ---- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "tracked"),
    [
        (None, ("",)),
        ([], ("",)),
        (["app:", ""], ("",)),
        (["app:", "app:user:", "other:"], ("app:", "other:")),
        (["b:", "a:", "a:"], ("a:", "b:")),
    ],
)
def test_tracked_prefixes_never_overlap(given: list[str] | None, tracked: tuple[str, ...]) -> None:
    assert tracked_prefixes(given) == tracked


@pytest.mark.parametrize(
    ("data", "keys"),
    [
        ([b"app:1", b"app:2"], ("app:1", "app:2")),
        ([b"app:1", b"\xff\xfe"], ("app:1",)),  # not UTF-8: not one of the cache's keys
        (None, None),  # FLUSHALL / FLUSHDB
        (b"app:1", None),
        ([1], None),
    ],
)
def test_invalidation_messages_decode(data: object, keys: tuple[str, ...] | None) -> None:
    assert decode_keys(data) == keys


@pytest.mark.parametrize(
    "options",
    [
        {"invalidation": "keyspace"},
        {"invalidation": "tracking", "tracking_prefixes": "app:"},
        {"tracking_prefixes": ["app:"]},  # only tracking has prefixes
    ],
)
def test_invalid_options_raise(redis_url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        TieredBackend(RedisBackend(redis_url), **options)


# ---- another client's writes reach the near copy ----------------------------------------------

RAW_WRITES: dict[str, Callable[[redis.Redis, str], object]] = {
    "SET": lambda r, k: r.set(k, b"new"),
    "DEL": lambda r, k: r.delete(k),
    "UNLINK": lambda r, k: r.unlink(k),
    "EXPIRE": lambda r, k: r.expire(k, 600),
    "APPEND": lambda r, k: r.append(k, b"-more"),
    "RENAME": lambda r, k: r.rename(k, k + ":moved"),
    "PEXPIRE": lambda r, k: r.pexpire(k, 1),  # and the key's expiry a few ms later
}


@pytest.mark.parametrize("write", list(RAW_WRITES))
def test_another_clients_write_drops_the_near_copy(
    make_near: Callable[..., TieredBackend], raw: redis.Redis, prefix: str, write: str
) -> None:
    b = make_near()
    key = prefix + "k"
    applied_after(b, lambda: raw.set(key, b"old"))  # its own invalidation, heard first
    assert b.get(key) == b"old"
    assert b.local.get(key) == b"old"
    RAW_WRITES[write](raw, key)
    assert eventually(lambda: not b.local.exists(key))
    assert eventually(lambda: b.get(key) == raw.get(key))


def test_keys_outside_the_tracked_prefixes_are_never_copied(
    make_near: Callable[..., TieredBackend], raw: redis.Redis, prefix: str
) -> None:
    b = make_near(tracking_prefixes=[prefix + "tracked:"])
    applied_after(b, lambda: raw.set(prefix + "tracked:1", b"1"))
    raw.set(prefix + "other:1", b"1")
    assert b.get_many([prefix + "tracked:1", prefix + "other:1"]) == [b"1", b"1"]
    assert b.local.exists(prefix + "tracked:1")
    assert not b.local.exists(prefix + "other:1")  # no invalidation would ever reach it
    raw.set(prefix + "other:1", b"2")
    assert b.get(prefix + "other:1") == b"2"


def test_writes_publish_nothing_and_still_reach_other_processes(
    make_near: Callable[..., TieredBackend], redis_url: str, prefix: str
) -> None:
    a, b = make_near(), make_near()
    key = prefix + "k"
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(a.channel)
    try:
        assert listener.get_message(timeout=DEADLINE)["type"] == "subscribe"  # type: ignore[index]
        applied_after(b, lambda: a.set(key, b"1"))
        assert b.get(key) == b"1"
        applied_after(b, lambda: a.set(key, b"2"))
        assert b.get(key) == b"2"
        a.clear_local()  # the one kirocache message left: a flush on the channel
        message = listener.get_message(timeout=DEADLINE)
        assert message is not None
        assert b'"f":true' in message["data"]  # the flush came first: set sent nothing
    finally:
        listener.close()
    assert eventually(lambda: b.local.stats().keys == 0)


async def test_async_reads_use_the_near_copy(
    make_near: Callable[..., TieredBackend], raw: redis.Redis, prefix: str
) -> None:
    b = make_near()
    keys = [prefix + "1", prefix + "2"]
    applied_after(b, lambda: raw.mset(dict.fromkeys(keys, b"old")))
    assert await b.aget_many(keys) == [b"old", b"old"]
    assert await b.aget(keys[0]) == b"old"
    assert b.local.get_many(keys) == [b"old", b"old"]
    raw.set(keys[1], b"new")
    assert await aeventually(lambda: b.local.get(keys[1]) is None)
    assert await b.aget_many(keys) == [b"old", b"new"]
    assert b.stats().extra["invalidation"] == "tracking"


def test_an_invalidation_during_a_read_wins(
    make_near: Callable[..., TieredBackend],
    raw: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = make_near()
    key = prefix + "k"
    applied_after(b, lambda: raw.set(key, b"old"))
    original = b.remote._pipe
    raced: list[bool] = []

    def read_then_race(operation: str, commands: Any, **options: Any) -> list[object]:
        replies = original(operation, commands, **options)
        if operation == "get" and not raced:
            raced.append(True)  # the read saw "old"; another client writes before it returns
            applied_after(b, lambda: raw.set(key, b"new"))
        return replies

    monkeypatch.setattr(b.remote, "_pipe", read_then_race)
    assert b.get(key) == b"old"
    assert not b.local.exists(key)  # its copy would have been stale: not kept
    assert b.get(key) == b"new"


# ---- flushes and a lost connection -------------------------------------------------------------


@pytest.mark.slow  # a server of its own, flushed
def test_a_flush_empties_the_layer(
    make_near: Callable[..., TieredBackend], make_redis_server: Callable[..., RedisServer]
) -> None:
    server = make_redis_server()
    b = make_near(server.url, tracking_prefixes=None)  # every key
    with redis.Redis.from_url(server.url) as raw:
        applied_after(b, lambda: raw.mset({"a": b"1", "b": b"2"}))
        assert b.get_many(["a", "b"]) == [b"1", b"2"]
        assert b.local.stats().keys == 2
        raw.flushdb()
        assert eventually(lambda: b.local.stats().keys == 0)
        assert b.get("a") is None


def tracking_clients(raw: redis.Redis) -> list[int]:
    """Ids of the connections tracking with a redirect to themselves (this test's near caches)."""
    return [int(c["id"]) for c in raw.client_list() if c.get("redir") == c["id"]]


def test_a_killed_tracking_connection_clears_bypasses_and_recovers(
    make_near: Callable[..., TieredBackend], raw: redis.Redis, prefix: str
) -> None:
    b = make_near()
    key = prefix + "k"
    applied_after(b, lambda: raw.set(key, b"old"))
    assert b.get(key) == b"old"
    ids = tracking_clients(raw)
    assert ids
    for client_id in ids:
        raw.client_kill_filter(_id=client_id)
    assert eventually(lambda: b.reconnects >= 1 and b.connected)
    assert b.connection_failures >= 1
    assert set(tracking_clients(raw)).isdisjoint(ids)  # a new connection tracks again
    assert b.get(key) == b"old"
    assert b.local.exists(key)
    raw.set(key, b"new")  # tracking is back on: the write reaches the new connection
    assert eventually(lambda: b.get(key) == b"new")


def test_a_refused_tracking_is_logged_once_and_the_layer_stays_bypassed(
    redis_url: str, raw: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    user, secret = f"near-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    raw.acl_setuser(
        user,
        enabled=True,
        passwords=["+" + secret],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-client|tracking"],
    )
    url = redis_url.replace("redis://", f"redis://{user}:{secret}@")
    b = TieredBackend.from_url(url, invalidation="tracking", tracking_prefixes=[prefix])
    try:
        assert eventually(lambda: b.connection_failures >= 2)
        assert not b.connected
        b.remote.set(prefix + "k", b"v")
        assert b.get(prefix + "k") == b"v"  # Redis alone serves
        assert not b.local.exists(prefix + "k")
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1
        assert "+client|tracking" in errors[0]
        assert secret not in caplog.text
    finally:
        b.close()
        raw.acl_deluser(user)


# ---- the cache's invalidations through the near cache -----------------------------------------


def test_tombstones_tags_and_bumps_reach_the_other_process(
    make_near: Callable[..., TieredBackend], prefix: str
) -> None:
    cache_a, cache_b = Cache(make_near(), key_prefix=prefix), Cache(make_near(), key_prefix=prefix)
    near_b = cache_b.backend
    assert isinstance(near_b, TieredBackend)
    source = {"version": 1}
    spaces = Namespace("recs:", ttl=60, bumpable=True)

    def functions(cache: Cache) -> tuple[Callable[[int], int], ...]:
        @cached(prefix="plain:", cache=cache, ttl=60)
        def plain(user_id: int) -> int:
            return source["version"]

        @cached(prefix="tagged:", tags=["user:{user_id}"], cache=cache, ttl=60)
        def tagged(user_id: int) -> int:
            return source["version"]

        @cached(prefix=spaces, cache=cache)
        def bumped(user_id: int) -> int:
            return source["version"]

        return plain, tagged, bumped

    (plain_a, tagged_a, bumped_a), (plain_b, tagged_b, bumped_b) = (
        functions(cache_a),
        functions(cache_b),
    )
    in_b = (plain_b, tagged_b, bumped_b)
    # Once the invalidations of b's own first writes are heard, its reads stay near.
    assert eventually(lambda: [fn(1) for fn in in_b] == [1, 1, 1] and _local_hits(near_b) >= 3)
    source["version"] = 2
    plain_a.invalidate(1)  # a tombstone over the entry
    cache_a.invalidate_tags("user:1")  # a stamp swap
    cache_a.bump(spaces)  # a new generation
    assert eventually(lambda: plain_b(1) == 2)
    assert eventually(lambda: tagged_b(1) == 2)
    assert eventually(lambda: bumped_b(1) == 2)
    assert all(fn(1) == 2 for fn in (plain_a, tagged_a, bumped_a))


class Held:
    """A loader held between reading the "database" and returning (the forced interleaving)."""

    def __init__(self) -> None:
        self.value = "old"
        self.loaded = threading.Event()
        self.release = threading.Event()
        self.hold = True

    def load(self) -> str:
        value = self.value
        if self.hold:
            self.hold = False
            self.loaded.set()
            assert self.release.wait(DEADLINE)
        return value


@pytest.mark.parametrize("how", ["key", "tag"])
def test_a_value_loaded_before_an_invalidation_is_not_stored(
    make_near: Callable[..., TieredBackend], prefix: str, how: str
) -> None:
    cache_a, cache_b = Cache(make_near(), key_prefix=prefix), Cache(make_near(), key_prefix=prefix)
    source = Held()

    def function(cache: Cache) -> Callable[[int], str]:
        @cached(prefix="race:", key="{user_id}", tags=["user:{user_id}"], cache=cache, ttl=60)
        def profile(user_id: int) -> str:
            return source.load()

        return profile

    in_a, in_b = function(cache_a), function(cache_b)
    results: list[str] = []
    caller = threading.Thread(target=lambda: results.append(in_b(1)))
    caller.start()
    assert source.loaded.wait(DEADLINE)  # b missed and is loading "old"
    source.value = "new"
    if how == "key":
        in_a.invalidate(1)
    else:
        cache_a.invalidate_tags("user:1")
    source.release.set()
    caller.join(DEADLINE)
    assert results == ["old"]  # the caller gets what it loaded...
    assert in_b(1) == "new"  # ...but it was never stored, in Redis or near
    assert in_a(1) == "new"


# ---- a real second process ---------------------------------------------------------------------


@pytest.mark.slow  # spawns a process
def test_a_real_second_process_sees_another_clients_write(
    make_near: Callable[..., TieredBackend], redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    import tiered_worker

    db_key = prefix + "db"
    raw.set(db_key, 1)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    options = {"invalidation": "tracking", "tracking_prefixes": [prefix]}
    reader = context.Process(
        target=tiered_worker.reader,
        args=(redis_url, "near-test:unused", prefix, db_key, theirs, options),
    )
    reader.start()
    theirs.close()

    def report() -> dict[str, Any]:
        assert ours.poll(60), "the reader process did not report"
        received: dict[str, Any] = ours.recv()
        assert "error" not in received, received["error"]
        return received

    try:
        cached_there = report()
        assert cached_there["connected"] is True
        assert cached_there["local_hits"] >= 1
        writer = Cache(make_near(), key_prefix=prefix)
        raw.set(db_key, 2)
        # The writer only invalidates: the entry becomes a tombstone, which the server
        # announces to the reader's tracking connection.
        assert tiered_worker.profile_function(writer, raw, db_key).invalidate(7) is True
        ours.send("go")
        seen = report()
        assert seen["latest"] == {"id": 7, "version": 2}
        assert seen["applied"] >= 1
    finally:
        ours.close()
        reader.join(30)
        if reader.is_alive():
            reader.terminate()
            reader.join()
    assert reader.exitcode == 0
