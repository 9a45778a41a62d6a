"""A miss of ``@cached``: the check before the store encodes the value once, for both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import kirocache._values.faithful as faithful
import kirocache._values.formats as formats
from kirocache import Cache, cached
from kirocache.serializers import CompressedSerializer, OrjsonSerializer


class Point(msgspec.Struct):
    x: int
    tags: list[str]


RECORDS: dict[str, Any] = {
    "id": 1,
    "score": 2.5,
    "history": [{"at": f"t{i}", "ok": i % 2 == 0, "ms": i, "note": None} for i in range(50)],
}


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of ``_encode`` (the serializer's and the typed check's), by where."""
    calls: list[str] = []

    def counted(where: str, encode: Callable[[object], bytes]) -> Callable[[object], bytes]:
        def wrapper(value: object) -> bytes:
            calls.append(where)
            return encode(value)

        return wrapper

    monkeypatch.setattr(formats, "_encode", counted("store", formats._encode))
    monkeypatch.setattr(faithful, "_encode", counted("check", faithful._encode))
    return calls


def test_a_plain_result_is_encoded_once_and_stored_as_the_serializer_writes_it(
    encodes: list[str],
) -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix="rec:", ttl=60, cache=cache)
        def records(x: int) -> dict[str, Any]:
            return RECORDS

        assert records(1) == RECORDS
        assert encodes == []  # the check's strict encode made the payload the store framed
        full = cache.full_key("1", records._plan.namespace)
        assert cache.backend.get(full) == OrjsonSerializer().dumps(RECORDS)
        assert records(1) == RECORDS


def test_a_typed_result_is_encoded_once_by_its_check(encodes: list[str]) -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix="pt:", ttl=60, cache=cache)
        def point(x: int) -> Point:
            return Point(x, ["a"])

        assert point(1) == Point(1, ["a"])
        assert encodes == ["check"]
        full = cache.full_key("1", point._plan.namespace)
        assert cache.backend.get(full) == OrjsonSerializer().dumps(Point(1, ["a"]))
        assert point(1) == Point(1, ["a"])


async def test_async_a_plain_result_is_encoded_once(encodes: list[str]) -> None:
    async with Cache.from_url("memory://") as cache:

        @cached(prefix="arec:", ttl=60, cache=cache)
        async def records(x: int) -> dict[str, Any]:
            return RECORDS

        assert await records(1) == RECORDS
        assert encodes == []
        full = cache.full_key("1", records._plan.namespace)
        assert cache.backend.get(full) == OrjsonSerializer().dumps(RECORDS)


def test_a_wrapping_serializer_encodes_for_itself(encodes: list[str]) -> None:
    with Cache.from_url("memory://", serializer=CompressedSerializer()) as cache:

        @cached(prefix="z:", ttl=60, cache=cache)
        def records(x: int) -> dict[str, Any]:
            return RECORDS

        assert records(1) == RECORDS
        assert records(1) == RECORDS
        assert encodes == ["store"]


def test_an_envelope_is_encoded_whole(encodes: list[str]) -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix="env:", ttl=60, stale_ttl=60, cache=cache)
        def records(x: int) -> dict[str, Any]:
            return RECORDS

        assert records(1) == RECORDS
        assert encodes == ["store"]  # the value's payload is not the envelope's
        assert records(1) == RECORDS
