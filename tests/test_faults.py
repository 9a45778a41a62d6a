"""Faults fail open: the caller never breaks, the breaker stops paying, the cache recovers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from kirocache import MISSING, BackendError, Cache, CircuitBreaker, CircuitOpenError
from kirocache.backends.memory import MemoryBackend
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import FaultyBackend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def faulty() -> FaultyBackend:
    return FaultyBackend(MemoryBackend())


def make_cache(backend: Any, clock: Clock | None = None, **options: Any) -> Cache:
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=1.0, clock=clock or Clock())
    return Cache(backend, breaker=breaker, **options)


def test_every_operation_fails_open(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=None)
    cache.set("k", 1)
    faulty.failing = True
    assert cache.get("k", "fallback") == "fallback"
    assert cache.set("k", 2) is False
    assert cache.delete("k") is False
    assert cache.exists("k") is False
    assert cache.get_many(["k"]) == {}
    assert cache.set_many({"k": 3}) is False
    assert cache.delete_many(["k"]) == 0
    assert cache.ttl("k") is None
    assert cache.expire("k", 5) is False
    assert cache.persist("k") is False
    assert cache.incr("n") is None
    assert cache.get_or_set("k", lambda: "computed") == "computed"
    assert cache.errors_total == 13
    faulty.failing = False
    assert cache.get("k") == 1  # nothing was written or deleted during the outage


async def test_every_async_operation_fails_open(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=None)
    await cache.aset("k", 1)
    faulty.failing = True
    assert await cache.aget("k", "fallback") == "fallback"
    assert await cache.aset("k", 2) is False
    assert await cache.adelete("k") is False
    assert await cache.aexists("k") is False
    assert await cache.aget_many(["k"]) == {}
    assert await cache.aset_many({"k": 3}) is False
    assert await cache.adelete_many(["k"]) == 0
    assert await cache.attl("k") is None
    assert await cache.aincr("n") is None
    assert await cache.adelete_pattern("k*") == 0
    assert await cache.aget_or_set("k", lambda: "computed") == "computed"
    faulty.failing = False
    assert await cache.aget("k") == 1


def test_errors_are_counted_in_metrics(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=None)
    faulty.failing = True
    cache.get("user:1")
    cache.set("user:1", 1)
    assert isinstance(cache.metrics, InMemoryMetrics)
    assert sum(s.errors for s in cache.metrics.stats()) == 2


def test_breaker_stops_calling_a_failing_backend_and_probes_it_back(
    faulty: FaultyBackend,
) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock)
    faulty.failing = True
    for _ in range(100):
        assert cache.get("k", MISSING) is MISSING
    assert faulty.calls["get"] == 3  # the threshold; the other 97 never reached it
    assert cache.breaker is not None
    assert cache.breaker.state == "open"
    assert cache.errors_total == 100
    faulty.failing = False
    clock.now += 1.0
    cache.set("k", "back")  # the probe
    assert cache.breaker.state == "closed"
    assert cache.get("k") == "back"


async def test_breaker_guards_async_calls_too(faulty: FaultyBackend) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock)
    faulty.failing = True
    for _ in range(50):
        await cache.aget("k")
    assert faulty.calls["aget"] == 3
    faulty.failing = False
    clock.now += 1.0
    assert await cache.aset("k", 1)
    assert await cache.aget("k") == 1


def test_failed_probe_keeps_the_breaker_open(faulty: FaultyBackend) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock)
    faulty.failing = True
    for _ in range(3):
        cache.get("k")
    clock.now += 1.0
    cache.get("k")  # probe fails
    assert faulty.calls["get"] == 4
    cache.get("k")
    assert faulty.calls["get"] == 4
    assert cache.breaker is not None
    assert cache.breaker.state == "open"


def test_on_error_raise(faulty: FaultyBackend) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock, on_error="raise")
    faulty.failing = True
    for _ in range(3):
        with pytest.raises(BackendError, match="injected"):
            cache.get("k")
    with pytest.raises(CircuitOpenError):
        cache.get("k")


async def test_on_error_raise_async_wraps_foreign_errors() -> None:
    backend = FaultyBackend(MemoryBackend(), error=ConnectionResetError("peer reset"))
    cache = Cache(backend, on_error="raise", breaker=None)
    backend.failing = True
    with pytest.raises(BackendError, match="peer reset") as info:
        await cache.aget("k")
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_foreign_exceptions_from_a_backend_fail_open() -> None:
    backend = FaultyBackend(MemoryBackend(), error=TimeoutError("slow"))
    cache = Cache(backend, breaker=None)
    backend.failing = True
    assert cache.get("k", 0) == 0
    assert cache.errors_total == 1


def test_logged_once_per_burst(faulty: FaultyBackend, caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache(faulty, breaker=None)
    with caplog.at_level(logging.WARNING, logger="kirocache"):
        faulty.failing = True
        for _ in range(20):
            cache.get("k")
        faulty.failing = False
        cache.get("k")
        cache.get("k")
        faulty.failing = True
        cache.get("k")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failing open" in m for m in messages) == 2
    assert sum("recovered after 20 failed calls" in m for m in messages) == 1
    assert len(messages) == 3


def test_programming_errors_still_raise_while_the_backend_is_down(faulty: FaultyBackend) -> None:
    cache = Cache(faulty)
    faulty.failing = True
    with pytest.raises(TypeError):
        cache.set(42, "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object"):
        cache.set("k", object())


# -- the real server ---------------------------------------------------------------------


@pytest.mark.slow  # a real server stopped and restarted
@pytest.mark.real_redis
def test_real_server_stopped_mid_run_then_back(fault_redis: Any) -> None:
    cache = Cache.from_url(
        fault_redis.url,
        breaker=CircuitBreaker(failure_threshold=2, recovery_time=0.1, max_recovery_time=0.2),
    )
    try:
        assert cache.set("k", "before")
        fault_redis.stop()
        for _ in range(20):
            assert cache.get("k", "fallback") == "fallback"  # no exception reaches us
        assert cache.breaker is not None
        assert cache.breaker.state in ("open", "half_open")
        assert cache.errors_total == 20
        fault_redis.restart()
        deadline = time.monotonic() + 10
        while not cache.set("k", "after") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.get("k") == "after"
        assert cache.breaker.state == "closed"
    finally:
        cache.close()


@pytest.mark.slow  # a real server stopped and restarted
@pytest.mark.real_redis
async def test_real_server_stopped_mid_run_async(fault_redis: Any) -> None:
    cache = Cache.from_url(
        fault_redis.url,
        breaker=CircuitBreaker(failure_threshold=2, recovery_time=0.1, max_recovery_time=0.2),
    )
    try:
        assert await cache.aset("k", "before")
        fault_redis.stop()
        for _ in range(10):
            assert await cache.aget("k", "fallback") == "fallback"
        fault_redis.restart()
        deadline = time.monotonic() + 10
        while not await cache.aset("k", "after") and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert await cache.aget("k") == "after"
    finally:
        await cache.aclose()
        cache.close()


@pytest.mark.slow  # real socket timeouts
def test_unanswering_server_costs_one_timeout_then_nothing(blackhole: Any) -> None:
    from kirocache.backends.redis import RedisBackend

    backend = FaultyBackend(RedisBackend(blackhole.url, socket_timeout=0.2, connect_timeout=0.2))
    cache = Cache(
        backend, breaker=CircuitBreaker(failure_threshold=3, recovery_time=60, max_recovery_time=60)
    )
    try:
        started = time.monotonic()
        for _ in range(3):
            assert cache.get("k", "fallback") == "fallback"
        # each of the first calls is bounded by the socket timeout (peers wait 2-10 s)
        assert time.monotonic() - started < 3 * 2.0
        assert cache.breaker is not None
        assert cache.breaker.state == "open"
        for _ in range(200):
            assert cache.get("k", "fallback") == "fallback"
            assert cache.set("k", 1) is False
        assert backend.calls["get"] == 3  # the other 400 calls never touched the network
        assert backend.calls["set"] == 0
    finally:
        cache.close()
