"""The engine's one sync/async mechanism: operations as steps, the drivers and their fault policy.

Operations are generators of ``Io`` steps; they are tested here by sending them answers,
with no backend at all. The drivers are tested with a backend that raises on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from conformance.dict_backend import DictBackend
from kirocache import Cache, CircuitBreaker
from kirocache._cache import invalidations, writes
from kirocache._cache.driver import Io, Pages, arun, run
from kirocache._cache.guard import FAILED, is_fault
from kirocache._values.stamped import unwrap
from kirocache.backends import BackendStats, MemoryBackend, Op, OpResult
from kirocache.exceptions import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    CorruptValueError,
    InvalidKeyError,
    InvalidTTLError,
    KirocacheError,
    SerializationError,
    ValueTooLargeError,
)
from kirocache.testing import FaultyBackend, ManualClock

# -- the one rule: fault of the store, or a bug ------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (BackendError("down"), True),
        (CircuitOpenError("open"), True),  # a BackendError, though also a KirocacheError
        (ConnectionError("refused"), True),  # a third-party backend's own errors
        (TimeoutError("slow"), True),
        (OSError("reset"), True),
        (RuntimeError("anything else"), True),
        (TypeError("bad argument"), False),  # programming errors, ours or a backend's
        (AttributeError("no such method"), False),
        (KirocacheError("ours"), False),
        (ConfigurationError("misconfigured"), False),
        (InvalidKeyError("bad key"), False),
        (InvalidTTLError("bad ttl"), False),
        (SerializationError("cannot encode"), False),
        (CorruptValueError("cannot decode"), False),
        (ValueTooLargeError("too big"), False),
    ],
)
def test_is_fault_sorts_faults_from_bugs(exc: Exception, fault: bool) -> None:
    assert is_fault(exc) is fault


# -- operations tested by sending them answers, with no server ----------------------------------


def offline_cache(**options: Any) -> Cache:
    """A cache whose backend is never called: the steps are answered by hand."""
    return Cache(MemoryBackend(), **options)


def test_set_is_one_execute_step_and_answers_what_it_is_sent() -> None:
    cache = offline_cache(key_prefix="app:")
    steps = writes.set_value(cache, "k", {"a": 1}, 60, False, None, ())
    step = next(steps)
    assert isinstance(step, Io)
    assert (step.method, step.op, step.label) == ("execute", "set", "default")
    [ops] = step.args
    assert [(op.name, op.key, op.ttl) for op in ops] == [("set", "app:k", 60)]
    with pytest.raises(StopIteration) as done:
        steps.send([True])
    assert done.value.value is True


def test_a_tagged_set_reads_its_stamps_then_stores_them_with_the_value() -> None:
    cache = offline_cache(key_prefix="app:")
    steps = writes.set_value(cache, "k", {"a": 1}, 60, False, None, ["t", "u"])
    read = next(steps)
    assert (read.method, read.args) == (
        "get_many",
        (["app:kirocache:tagstamp:t", "app:kirocache:tagstamp:u"],),
    )
    step = steps.send([b"stamp-of-t", None])  # u has no stamp yet: the write creates one
    [ops] = step.args
    assert [op.name for op in ops] == ["tag_add", "tag_add", "set", "set"]
    created, value = ops[2], ops[3]
    assert (created.key, created.nx, created.ttl) == ("app:kirocache:tagstamp:u", True, None)
    pairs, frame = unwrap(value.value)
    assert pairs == [("t", b"stamp-of-t"), ("u", created.value)]
    assert cache.codec.loads(frame, None) == {"a": 1}
    with pytest.raises(StopIteration) as done:
        steps.send([True, True, True, True])
    assert done.value.value is True


def test_set_nx_over_a_tombstone_takes_two_more_steps() -> None:
    cache = offline_cache()
    steps = writes.set_value(cache, "k", 1, None, True, None, ())
    assert next(steps).method == "execute"
    held = steps.send([False])  # nx found the key present: is it a tombstone?
    assert (held.method, held.args) == ("get", ("k",))
    tombstone = cache.invalidator.erase_ops(["k"])[0].value
    replace = steps.send(tombstone)
    [ops] = replace.args
    assert [(op.name, op.expected) for op in ops] == [("set_if", tombstone)]
    with pytest.raises(StopIteration) as done:
        steps.send([True])
    assert done.value.value is True


def test_a_failed_step_makes_the_operation_return_its_fail_open_default() -> None:
    cache = offline_cache()
    steps = writes.incr(cache, "n", 1, None, None)
    next(steps)
    with pytest.raises(StopIteration) as done:
        steps.send(FAILED)  # what the driver sends for a fault under on_error="ignore"
    assert done.value.value is None


def test_delete_cascades_through_dependents_level_by_level() -> None:
    cache = offline_cache()
    steps = invalidations.delete(cache, "a", None)
    first = next(steps)
    [ops] = first.args
    assert [(op.name, op.key) for op in ops] == [
        ("swap", "a"),  # the tombstone
        ("tag_members", "kirocache:dep:k:a"),  # who depends on "a"
    ]
    second = steps.send([b"live value", ["k:b"]])
    [ops] = second.args
    assert [(op.name, op.key) for op in ops] == [
        ("swap", "b"),
        ("tag_members", "kirocache:dep:k:b"),
    ]
    with pytest.raises(StopIteration) as done:
        steps.send([None, ["k:a"]])  # "b" was absent; its dependent "a" is visited already
    assert done.value.value is True
    record = cache.invalidation_log.why("b")
    assert record is not None
    assert record.removed == 1


def test_pattern_delete_scans_and_deletes_page_by_page_skipping_internal_keys() -> None:
    cache = offline_cache(key_prefix="app:")
    steps = invalidations.delete_pattern(cache, "user:*", None, 2)
    scan = next(steps)
    assert isinstance(scan.target, Pages)
    assert (scan.method, scan.args) == ("take", (2,))
    delete = steps.send(["app:user:1", "app:user:2"])
    assert (delete.method, delete.args) == ("delete_many", (["app:user:1", "app:user:2"],))
    assert steps.send(2).method == "take"
    assert steps.send(["app:kirocache:tag:x", "app:user:3"]).method == "take"  # half a page
    delete = steps.send([])  # the scan is over: the rest goes
    assert delete.args == (["app:user:3"],)
    with pytest.raises(StopIteration) as done:
        steps.send(0)
    assert done.value.value == 2


def test_pattern_delete_on_the_small_protocol_deletes_with_ops() -> None:
    cache = Cache(DictBackend(error=BackendError, stats=BackendStats))
    steps = invalidations.delete_pattern(cache, "user:*", None, 500)
    next(steps)
    delete = steps.send(["user:1", "user:2"])
    assert delete.method == "execute"
    assert [(op.name, op.key) for op in delete.args[0]] == [
        ("delete", "user:1"),
        ("delete", "user:2"),
    ]
    with pytest.raises(StopIteration) as done:
        steps.send([True, False])
    assert done.value.value == 1
    for n in range(3):
        cache.set(f"user:{n}", n)
    assert cache.delete_pattern("user:*") == 3
    assert cache.get_many(["user:0", "user:1"]) == {}


def test_pages_read_a_scan_a_page_at_a_time_on_both_sides() -> None:
    backend = MemoryBackend()
    for n in range(5):
        backend.set(f"k{n}", b"v", None)
    pages = Pages(backend, "k*", 2)
    sync = [pages.take(2), pages.take(2), pages.take(2), pages.take(2)]
    assert [len(page) for page in sync] == [2, 2, 1, 0]

    async def pages_async() -> list[list[str]]:
        apages = Pages(backend, "k*", 2)
        return [await apages.atake(2) for _ in range(4)]

    assert sorted(k for page in asyncio.run(pages_async()) for k in page) == sorted(
        k for page in sync for k in page
    )


# -- the drivers ---------------------------------------------------------------------------------


def test_sync_driver_sends_a_fault_as_failed_and_counts_it() -> None:
    faulty = FaultyBackend(MemoryBackend())
    cache = Cache(faulty, breaker=None)
    faulty.failing = True
    assert cache.set("k", 1) is False  # the fail-open default
    assert cache.incr("n") is None
    assert cache.errors_total == 2
    assert cache.metrics is not None
    faulty.failing = False
    assert cache.set("k", 1) is True


async def test_async_driver_sends_a_fault_as_failed_and_counts_it() -> None:
    faulty = FaultyBackend(MemoryBackend())
    cache = Cache(faulty, breaker=None)
    faulty.failing = True
    assert await cache.aset("k", 1) is False
    assert await cache.adelete("k") is False
    assert cache.errors_total == 2
    faulty.failing = False
    assert await cache.aset("k", 1) is True


def test_on_error_raise_raises_out_of_the_driver_and_closes_the_steps() -> None:
    faulty = FaultyBackend(MemoryBackend())
    cache = Cache(faulty, breaker=None, on_error="raise")
    faulty.failing = True
    closed = []

    def steps() -> Any:
        try:
            yield Io(faulty, "execute", ([Op("get", "k")],), "get", "default", 0.0)
        finally:
            closed.append(True)

    with pytest.raises(BackendError, match="injected fault"):
        run(cache.guard, steps())
    assert closed == [True]
    with pytest.raises(BackendError):
        cache.set("k", 1)


async def test_async_on_error_raise() -> None:
    faulty = FaultyBackend(MemoryBackend())
    cache = Cache(faulty, breaker=None, on_error="raise")
    faulty.failing = True
    with pytest.raises(BackendError):
        await cache.aset("k", 1)


def test_a_bug_in_the_backend_is_raised_even_when_failing_open() -> None:
    faulty = FaultyBackend(MemoryBackend(), error=TypeError("a backend bug"))
    cache = Cache(faulty)
    faulty.failing = True
    with pytest.raises(TypeError, match="a backend bug"):
        cache.set("k", 1)
    assert cache.errors_total == 0


def test_an_open_breaker_answers_failed_without_calling_the_backend() -> None:
    clock = ManualClock()
    faulty = FaultyBackend(MemoryBackend())
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5, clock=clock.monotonic)
    cache = Cache(faulty, breaker=breaker, clock=clock)
    faulty.failing = True
    assert cache.set("k", 1) is False
    faulty.calls.clear()
    assert cache.set("k", 1) is False
    assert cache.exists("k") is False
    assert sum(faulty.calls.values()) == 0  # refused by the breaker, not sent
    faulty.failing = False
    clock.advance(5)  # the breaker lets a probe through, which closes it
    assert cache.set("k", 1) is True
    assert breaker.state == "closed"


def test_an_open_breaker_raises_circuit_open_under_on_error_raise() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5, clock=clock.monotonic)
    faulty = FaultyBackend(MemoryBackend())
    cache = Cache(faulty, breaker=breaker, on_error="raise", clock=clock)
    faulty.failing = True
    with pytest.raises(BackendError):
        cache.set("k", 1)
    with pytest.raises(CircuitOpenError):
        cache.set("k", 1)


def test_drivers_refuse_the_half_a_backend_lacks() -> None:
    class SyncOnly:
        def get(self, key: str) -> bytes | None:
            return None

        def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
            return [None for _ in keys]

        def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
            return [None for _ in ops]

        def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
            return iter(())

        def ping(self) -> float:
            return 0.0

        def stats(self) -> BackendStats:
            return BackendStats(backend="sync-only")

        def close(self) -> None:
            pass

    cache = Cache(SyncOnly())
    assert run(cache.guard, writes.exists(cache, "k", None)) is False
    with pytest.raises(ConfigurationError, match="no async methods"):
        asyncio.run(arun(cache.guard, writes.exists(cache, "k", None)))


def test_a_flow_answered_by_the_sync_and_the_async_driver_alike() -> None:
    cache = Cache(MemoryBackend())
    cache.set("k", 1)
    assert run(cache.guard, writes.exists(cache, "k", None)) is True
    assert asyncio.run(arun(cache.guard, writes.exists(cache, "k", None))) is True


# -- the one clock ---------------------------------------------------------------------------------


def test_the_default_breaker_and_the_log_read_the_cache_clock() -> None:
    clock = ManualClock()
    faulty = FaultyBackend(MemoryBackend())
    cache = Cache(faulty, clock=clock)
    faulty.failing = True
    for _ in range(3):  # the default breaker opens after 3 faults in a row
        assert cache.get("k", "fallback") == "fallback"
    breaker = cache.breaker
    assert breaker is not None
    assert breaker.times_opened == 1
    faulty.failing = False
    assert cache.get("k", "fallback") == "fallback"  # refused: no time has passed
    clock.advance(1.0)  # the default recovery time, on the cache's clock
    assert cache.set("k", 1) is True
    assert breaker.state == "closed"
    at = clock.time()
    cache.delete("k")
    record = cache.invalidation_log.why("k")
    assert record is not None
    assert record.at == at
