"""The memo of decoded values on the hit path: immutable results only, never after a change."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from kirocache import Cache, cached
from kirocache._cache.decoding import immutable


class Point(msgspec.Struct, frozen=True):
    x: int
    tags: tuple[str, ...]


class Loose(msgspec.Struct):
    x: int


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    items: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class HoldsAList:
    items: list[int]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        ("a", True),
        (None, True),
        ((1, ("a", 2.5)), True),
        (frozenset({1, 2}), True),
        (Point(1, ("a",)), True),
        (Frozen("a", (1, 2)), True),
        ({"a": 1}, False),
        ([1], False),
        ((1, [2]), False),
        (Loose(1), False),
        (HoldsAList([1]), False),
        (tuple(range(1_000)), False),  # too wide to look through
    ],
)
def test_what_counts_as_immutable(value: Any, expected: bool) -> None:
    assert immutable(value) is expected


def test_an_immutable_result_is_served_from_the_memo_until_the_entry_changes() -> None:
    with Cache.from_url("memory://") as cache:
        version = [0]

        @cached(prefix="pt:", ttl=60, cache=cache)
        def point(x: int) -> Point:
            version[0] += 1
            return Point(x, (f"v{version[0]}",))

        first = point(1)
        assert point(1) is point(1)  # decoded once, then handed out again
        assert point(1) == first
        point.invalidate(1)
        assert point(1) == Point(1, ("v2",))  # never the value from before the invalidation
        cache.set("pt:1", Point(1, ("set",)))
        assert cache.get("pt:1", type=Point) == Point(1, ("set",))
        cache.delete("pt:1")
        assert cache.get("pt:1", type=Point) is None


def test_a_mutable_result_is_a_fresh_copy_every_time() -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix="d:", ttl=60, cache=cache)
        def profile(x: int) -> dict[str, list[int]]:
            return {"items": [x]}

        profile(1)
        read = profile(1)
        read["items"].append(99)
        assert profile(1) == {"items": [1]}
        assert profile(1) is not profile(1)


async def test_the_async_hit_uses_the_memo_too() -> None:
    async with Cache.from_url("memory://") as cache:

        @cached(prefix="apt:", ttl=60, cache=cache)
        async def point(x: int) -> Point:
            return Point(x, ())

        await point(1)
        assert await point(1) is await point(1)
        await point.invalidate(1)
        assert await point(1) == Point(1, ())


def test_get_many_decodes_plain_entries_together_and_others_alone() -> None:
    with Cache.from_url("memory://") as cache:
        cache.set_many({f"k{i}": {"i": i} for i in range(5)})
        cache.set("tagged", [1, 2], tags=["t"])
        cache.incr("count", 3)
        cache.set("gone", "x")
        cache.delete("gone")  # a tombstone or nothing: a miss either way
        full = cache.keyspace.resolve("bad", None)[0]
        cache.backend.set(full, b"\xc5\x01\x01\x00\x00\x00\x00\x00{}")  # checksum wrong
        keys = ["k0", "tagged", "k1", "count", "missing", "gone", "k4", "bad"]
        assert cache.get_many(keys) == {
            "k0": {"i": 0},
            "k1": {"i": 1},
            "k4": {"i": 4},
            "tagged": [1, 2],
            "count": 3,
        }
        assert cache.get_many([f"k{i}" for i in range(5)] * 2) == {
            f"k{i}": {"i": i} for i in range(5)
        }
        cache.invalidate_tags("t")
        assert cache.get_many(["tagged", "k2"]) == {"k2": {"i": 2}}
