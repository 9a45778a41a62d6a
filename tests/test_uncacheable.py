"""A result that cannot be stored costs the caller nothing: returned uncached, counted, warned.

The function ran and its answer is right; only the cache cannot hold it (too large for
``max_value_size``, no form the serializer knows). The caller gets the answer, the metrics
count a ``set`` error, the log says why once per function, and ``strict=True`` raises as
before, for ``@cached``, ``@cached_many``, ``warm`` and their async twins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from kirocache import Cache, awarm, cached, cached_many, warm
from kirocache.exceptions import SerializationError, ValueTooLargeError

BIG = "x" * 500


@pytest.fixture
def small(backend: Any) -> Cache:
    """A cache whose values may be at most 200 bytes serialized."""
    return Cache(backend, max_value_size=200)


@pytest.fixture(autouse=True)
def _capture_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING, logger="kirocache"):
        yield


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The kirocache warnings logged so far, as text."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def set_errors(cache: Cache, prefix: str) -> int:
    """The ``set`` errors the cache's metrics counted under ``prefix``."""
    metrics: Any = cache.metrics
    return sum(s.errors for s in metrics.stats(namespace=prefix, operation="set"))


class Opaque:
    """No serializer but pickle knows it."""


# -- too large --------------------------------------------------------------------------------


def test_a_result_too_large_to_cache_is_returned_uncached(
    small: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(prefix="report:", cache=small)
    def report(day: int) -> str:
        calls.append(day)
        return BIG

    assert report(1) == BIG
    assert report(1) == BIG
    assert calls == [1, 1]
    assert not small.exists("report:1")
    assert set_errors(small, "report:") == 2
    [line] = warned(caplog)  # once per function
    assert "report" in line
    assert "max_value_size" in line


async def test_async_a_result_too_large_to_cache_is_returned_uncached(
    small: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(prefix="report:", cache=small)
    async def report(day: int) -> str:
        calls.append(day)
        return BIG

    assert await report(1) == BIG
    assert await report(1) == BIG
    assert calls == [1, 1]
    assert not await small.aexists("report:1")
    assert set_errors(small, "report:") == 2
    assert len(warned(caplog)) == 1


def test_strict_keeps_the_raise(small: Cache) -> None:
    @cached(prefix="report:", cache=small, strict=True)
    def report(day: int) -> str:
        return BIG

    with pytest.raises(ValueTooLargeError, match="max_value_size"):
        report(1)


async def test_async_strict_keeps_the_raise(small: Cache) -> None:
    @cached(prefix="report:", cache=small, strict=True)
    async def report(day: int) -> str:
        return BIG

    with pytest.raises(ValueTooLargeError, match="max_value_size"):
        await report(1)


# -- no form the serializer knows -------------------------------------------------------------


def test_an_unserializable_result_is_returned_uncached(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[Opaque] = []

    @cached(prefix="opaque:", cache=cache)
    def make() -> Opaque:
        made.append(Opaque())
        return made[-1]

    first, second = make(), make()
    assert first is made[0]
    assert second is made[1]
    assert set_errors(cache, "opaque:") == 2
    [line] = warned(caplog)
    assert "make" in line
    assert "Opaque" in line
    assert "PickleSerializer" in line  # what to do


async def test_async_an_unserializable_result_is_returned_uncached(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(prefix="opaque:", cache=cache)
    async def make():  # type: ignore[no-untyped-def]  # unannotated: the same outcome
        return Opaque()

    assert isinstance(await make(), Opaque)
    assert isinstance(await make(), Opaque)
    assert set_errors(cache, "opaque:") == 2
    assert len(warned(caplog)) == 1


def test_strict_raises_the_serialization_error_naming_the_function(cache: Cache) -> None:
    @cached(prefix="opaque:", cache=cache, strict=True)
    def make() -> Opaque:
        return Opaque()

    with pytest.raises(SerializationError, match=r"make.*Opaque"):
        make()


# -- @cached_many and warm ----------------------------------------------------------------------


def test_cached_many_returns_values_it_cannot_store(
    small: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached_many(prefix="report:", cache=small)
    def reports(days: list[int]) -> dict[int, str]:
        return dict.fromkeys(days, BIG)

    assert reports([1, 2]) == {1: BIG, 2: BIG}
    assert not small.exists("report:1")
    assert set_errors(small, "report:") == 1
    assert len(warned(caplog)) == 1


async def test_async_cached_many_returns_values_it_cannot_store(
    small: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached_many(prefix="report:", cache=small)
    async def reports(days: list[int]) -> list[str]:
        return [BIG for _ in days]

    assert await reports([1, 2]) == [BIG, BIG]
    assert not await small.aexists("report:1")
    assert set_errors(small, "report:") == 1
    assert len(warned(caplog)) == 1


def test_cached_many_strict_keeps_the_raise(small: Cache) -> None:
    @cached_many(prefix="report:", cache=small, strict=True)
    def reports(days: list[int]) -> dict[int, str]:
        return dict.fromkeys(days, BIG)

    with pytest.raises(ValueTooLargeError):
        reports([1])


def test_warm_stores_nothing_it_cannot_store_and_says_so(
    small: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(prefix="report:", cache=small)
    def report(day: int) -> str:
        return BIG

    assert warm(report, [1, 2]) == 0
    assert not small.exists("report:1")
    assert len(warned(caplog)) == 1


async def test_awarm_stores_nothing_it_cannot_store_and_says_so(
    small: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(prefix="report:", cache=small)
    async def report(day: int) -> str:
        return BIG

    assert await awarm(report, [1, 2]) == 0
    assert not await small.aexists("report:1")
    assert len(warned(caplog)) == 1


def test_a_result_that_holds_itself_is_returned_uncached(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    looped: list[Any] = []
    looped.append(looped)

    @cached(prefix="loop:", cache=cache)
    def load():  # type: ignore[no-untyped-def]
        return looped

    assert load() is looped
    assert not cache.exists("loop:")
    [line] = warned(caplog)
    assert "holds itself" in line
