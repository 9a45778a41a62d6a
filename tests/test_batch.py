"""Batches: many cache operations in one round trip, sync and async, on every backend."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Literal

import pytest
import redis

from kirocache import (
    BackendError,
    Batch,
    BatchResult,
    Cache,
    ConfigurationError,
    InvalidKeyError,
    InvalidTTLError,
    Namespace,
    SerializationError,
    batch,
)
from kirocache.backends import TOMBSTONE_PREFIX, Op
from kirocache.backends.memory import MemoryBackend
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import CacheRecorder, FaultyBackend, use_cache

if TYPE_CHECKING:
    from kirocache.testing.conformance import FullBackend

Mode = Literal["sync", "async"]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Run a scenario through ``execute()`` and through ``await aexecute()``."""
    return request.param  # type: ignore[no-any-return]


async def run(b: Batch, mode: Mode) -> BatchResult:
    return b.execute() if mode == "sync" else await b.aexecute()


def faulty(cache: Cache, **options: object) -> tuple[Cache, FaultyBackend]:
    wrapped = FaultyBackend(cache.backend)
    return Cache(wrapped, **options), wrapped  # type: ignore[arg-type]


async def test_chained_operations_answer_in_order(cache: Cache, mode: Mode) -> None:
    cache.set("gone", 1)
    result = await run(
        Batch(cache)
        .set("a", {"n": 1}, ttl=60)
        .get("a")
        .get("missing")
        .delete("gone")
        .exists("gone")
        .incr("hits", 5)
        .expire("a", 120)
        .set_many({"x": 1, "y": [2]})
        .get_many(["x", "y", "nope"]),
        mode,
    )
    assert list(result) == [
        True,
        {"n": 1},
        None,
        True,
        False,
        5,
        True,
        True,
        {"x": 1, "y": [2]},
    ]
    assert len(result) == 9
    assert result[-1] == {"x": 1, "y": [2]}
    assert result[1:3] == [{"n": 1}, None]
    assert result.ok
    assert result.errors == []
    ttl = cache.ttl("a")
    assert ttl is not None
    assert 60 < ttl <= 120
    assert cache.get("hits") == 5


async def test_operations_run_in_the_order_added(cache: Cache, mode: Mode) -> None:
    result = await run(
        Batch(cache).set("k", 1).get("k").set("k", 2).get("k").delete("k").get("k"), mode
    )
    assert list(result) == [True, 1, True, 2, True, None]


async def test_labels_give_named_access(cache: Cache, mode: Mode) -> None:
    result = await run(
        Batch(cache).set("u", "Ada").get("u", label="user").incr("n", label="count"), mode
    )
    assert result["user"] == "Ada"
    assert result["count"] == 1
    assert result.labels == {"user": 1, "count": 2}
    with pytest.raises(KeyError, match="nothing"):
        result["nothing"]


def test_a_label_cannot_be_used_twice(cache: Cache) -> None:
    b = Batch(cache).get("a", label="x")
    with pytest.raises(ConfigurationError, match="'x' is already used"):
        b.get("b", label="x")
    assert len(b) == 1


def test_get_decodes_into_a_type(cache: Cache) -> None:
    cache.set("p", [1, 2])
    result = Batch(cache).get("p", type=tuple[int, int]).execute()
    assert result[0] == (1, 2)


@pytest.mark.parametrize(
    ("add", "error"),
    [
        (lambda b: b.set(123, 1), InvalidKeyError),
        (lambda b: b.get(""), InvalidKeyError),
        (lambda b: b.set("k", 1, ttl=-1), InvalidTTLError),
        (lambda b: b.expire("k", 0), InvalidTTLError),
        (lambda b: b.set("k", object()), SerializationError),
        (lambda b: b.set_many({"a": 1, "b": object()}), SerializationError),
        (lambda b: b.get_many(["a", 5]), InvalidKeyError),
        (lambda b: b.incr("k", "1"), TypeError),
        (lambda b: b.get_many("abc"), TypeError),
    ],
)
def test_mistakes_raise_when_added_and_nothing_is_sent(
    cache: Cache, add: object, error: type[Exception]
) -> None:
    wrapped_cache, wrapped = faulty(cache)
    b = Batch(wrapped_cache).set("before", 1)
    with pytest.raises(error):
        add(b)  # type: ignore[operator]
    assert len(b) == 1
    assert sum(wrapped.calls.values()) == 0


async def test_one_round_trip_and_no_other_call(cache: Cache, mode: Mode) -> None:
    wrapped_cache, wrapped = faulty(cache)
    b = Batch(wrapped_cache).set_many({f"k{i}": i for i in range(50)})
    b.get_many([f"k{i}" for i in range(50)]).incr("n").delete("k0").exists("k1")
    result = await run(b, mode)
    assert result[1] == {f"k{i}": i for i in range(50)}
    assert wrapped.calls == {"execute" if mode == "sync" else "aexecute": 1}


async def test_an_empty_batch_sends_nothing(cache: Cache, mode: Mode) -> None:
    wrapped_cache, wrapped = faulty(cache)
    result = await run(Batch(wrapped_cache), mode)
    assert list(result) == []
    assert sum(wrapped.calls.values()) == 0


@pytest.mark.parametrize("transaction", [False, True])
async def test_a_failed_op_keeps_its_slot_and_the_others_run(
    cache: Cache, mode: Mode, transaction: bool
) -> None:
    cache.set("text", "hello")
    b = Batch(cache, transaction=transaction)
    result = await run(b.set("a", 1).incr("text", label="bad").set("b", 2).get("b"), mode)
    assert isinstance(result["bad"], BackendError)
    assert result.errors == [result["bad"]]
    assert not result.ok
    assert [result[0], result[2], result[3]] == [True, True, 2]
    assert cache.get("a") == 1
    assert cache.get("text") == "hello"
    with pytest.raises(BackendError):
        result.raise_for_errors()


async def test_a_failed_get_many_member_fails_its_slot_only(cache: Cache, mode: Mode) -> None:
    cache.set("plain", 2)
    # a set (written under a user key by another program) is not a value: reading one fails
    # as Redis's WRONGTYPE does
    cache.backend.execute([Op("tag_add", cache.full_key("foreign"), members=("m",))])
    result = await run(Batch(cache).get_many(["plain", "foreign"]).get("plain"), mode)
    assert isinstance(result[0], BackendError)
    assert result[1] == 2


async def test_a_corrupt_entry_reads_as_a_miss(cache: Cache, mode: Mode) -> None:
    cache.backend.set("bad", b"\xc5not a valid entry")
    cache.set("good", 1)
    result = await run(Batch(cache).get("bad").get_many(["bad", "good"]), mode)
    assert list(result) == [None, {"good": 1}]


async def test_context_manager_executes_on_exit(cache: Cache) -> None:
    with Batch(cache) as b:
        b.set("a", 1).incr("n", label="n")
    assert b.result is not None
    assert b.result["n"] == 1
    assert cache.get("a") == 1
    async with Batch(cache) as ab:
        ab.set("b", 2)
    assert ab.result is not None
    assert list(ab.result) == [True]
    assert await cache.aget("b") == 2


async def test_context_manager_sends_nothing_when_an_exception_escapes(cache: Cache) -> None:
    wrapped_cache, wrapped = faulty(cache)
    b = Batch(wrapped_cache)
    ab = Batch(wrapped_cache)

    def fail() -> None:
        with b:
            b.set("a", 1)
            raise RuntimeError

    async def afail() -> None:
        async with ab:
            ab.set("b", 2)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail()
    with pytest.raises(RuntimeError):
        await afail()
    assert b.result is None
    assert ab.result is None
    assert sum(wrapped.calls.values()) == 0
    assert cache.get("a") is None
    assert cache.get("b") is None


async def test_backend_fault_fails_open_in_every_slot(cache: Cache, mode: Mode) -> None:
    wrapped_cache, wrapped = faulty(cache)
    wrapped.failing = True
    result = await run(Batch(wrapped_cache).set("a", 1).get("a", label="a").incr("n"), mode)
    assert len(result) == 3
    assert all(isinstance(slot, BackendError) for slot in result)
    assert isinstance(result["a"], BackendError)
    assert len(result.errors) == 3
    assert wrapped_cache.errors_total == 1


async def test_backend_fault_raises_with_on_error_raise(cache: Cache, mode: Mode) -> None:
    wrapped_cache, wrapped = faulty(cache, on_error="raise")
    wrapped.failing = True
    with pytest.raises(BackendError, match="injected fault"):
        await run(Batch(wrapped_cache).set("a", 1), mode)


async def test_an_open_breaker_skips_the_round_trip(cache: Cache, mode: Mode) -> None:
    wrapped_cache, wrapped = faulty(cache)
    wrapped.failing = True
    for _ in range(20):  # enough failures to open the default breaker
        await run(Batch(wrapped_cache).get("a"), mode)
    sent = sum(wrapped.calls.values())
    result = await run(Batch(wrapped_cache).get("a"), mode)
    assert isinstance(result[0], BackendError)
    assert sum(wrapped.calls.values()) == sent


async def test_every_op_is_recorded_in_the_metrics(backend: FullBackend, mode: Mode) -> None:
    recorder = CacheRecorder()
    cache = Cache(backend, metrics=recorder)
    await run(Batch(cache).set("a", 1).get("a").get("b").get_many(["a", "b"]).delete("a"), mode)
    assert recorder.outcomes("batch.set") == ["set"]
    assert recorder.outcomes("batch.get") == ["hit", "miss"]
    assert recorder.outcomes("batch.get_many") == ["hit", "miss"]
    assert recorder.outcomes("batch.delete") == ["delete"]


async def test_transaction_is_atomic_for_other_readers(cache: Cache) -> None:
    # A writer keeps setting two keys to the same number in transactions; a transactional
    # reader must never see them differ. A tiny switch interval makes threads interleave
    # between ops, so the same loop without transactions does see them differ.
    cache.set_many({"left": 0, "right": 0})
    stop = threading.Event()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            Batch(cache, transaction=True).set("left", n).set("right", n).execute()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(300):
            result = Batch(cache, transaction=True).get("left").get("right").execute()
            assert result[0] == result[1]
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)


def test_transaction_uses_multi_exec_on_redis(redis_url: str) -> None:
    from kirocache.backends.redis import RedisBackend

    def multis(raw: redis.Redis) -> int:
        stats = raw.info("commandstats").get("cmdstat_multi", {"calls": 0})
        return int(stats["calls"])

    with redis.Redis.from_url(redis_url) as raw, Cache(RedisBackend(redis_url)) as cache:
        before = multis(raw)
        Batch(cache).set("a", 1).set("b", 2).execute()
        assert multis(raw) == before
        Batch(cache, transaction=True).set("a", 1).set("b", 2).execute()
        assert multis(raw) == before + 1


def test_module_level_batch_uses_the_default_cache() -> None:
    with use_cache(Cache(MemoryBackend())) as default:
        result = batch().set("a", 1).set("b", 2).delete("a").execute()
        assert list(result) == [True, True, True]
        assert default.get("b") == 2
        assert batch(transaction=True).transaction


def test_expire_never_removes_the_ttl(cache: Cache) -> None:
    cache.set("a", 1, ttl=60)
    from kirocache import NEVER

    assert Batch(cache).expire("a", NEVER).expire("absent", NEVER).execute()[0] is True
    assert cache.ttl("a") == float("inf")


def test_repr_names_the_operations(cache: Cache) -> None:
    b = Batch(cache, transaction=True).set("a", 1).get("a")
    assert repr(b) == "Batch([set, get], transaction=True)"
    assert repr(b.execute()) == "BatchResult([True, 1])"


def test_a_delete_the_backend_refused_is_kept_pending_and_batch_reads_miss_it() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)
    cache.set("k", "old", ttl=3600)
    backend.failing = True
    result = Batch(cache).delete("k").execute()
    assert isinstance(result[0], BackendError)
    backend.failing = False
    # this process never serves the old value: a batch read of it is a miss ...
    assert Batch(cache).get("k").execute()[0] is None
    # ... and the delete is replayed before a read is served from the backend
    assert cache.get("k") is None
    assert cache.invalidator.pending.figures()["invalidations_pending"] == 0
    raw = backend.get(cache.full_key("k"))
    assert raw is None or raw.startswith(TOMBSTONE_PREFIX)  # gone from the backend too


# -- one round trip, read back op by op --------------------------------------------------------


async def test_one_key_get_many_and_one_item_set_many_keep_their_slots(
    cache: Cache, mode: Mode
) -> None:
    result = await run(Batch(cache).set_many({"a": 1}).get_many(["a"]).get_many(["b"]), mode)
    assert list(result) == [True, {"a": 1}, {}]


async def test_outcomes_are_counted_per_operation_label_and_outcome(
    backend: FullBackend, mode: Mode
) -> None:
    metrics = InMemoryMetrics()
    cache = Cache(backend, metrics=metrics, namespaces=[Namespace("user:")])
    b = Batch(cache)
    for i in range(3):
        b.set(f"user:{i}", i)
    b.get("user:0").get("user:1").get("user:9").get("other").exists("user:2").delete("other")
    assert list(await run(b, mode)) == [True, True, True, 0, 1, None, None, True, False]
    stats = {(s.operation, s.namespace): s for s in metrics.stats()}
    assert stats["batch.set", "user:"].calls == 3
    assert (stats["batch.get", "user:"].hits, stats["batch.get", "user:"].misses) == (2, 1)
    assert (stats["batch.get", "default"].hits, stats["batch.get", "default"].misses) == (0, 1)
    assert stats["batch.exists", "user:"].hits == 1
    assert stats["batch.delete", "default"].calls == 1


async def test_debug_logs_each_operation_with_its_key(
    backend: FullBackend, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(backend, debug=True)
    with caplog.at_level(logging.DEBUG, logger="kirocache"):
        await run(Batch(cache).set("a", 1).get("a").get("b"), mode)
    lines = [record.getMessage() for record in caplog.records]
    assert any("batch.get a -> hit" in line for line in lines)
    assert any("batch.get b -> miss" in line for line in lines)
