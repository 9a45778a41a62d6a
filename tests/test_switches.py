"""Clearing one function (``fn.invalidate_all()``) and switching caching off (``bypass()``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from kirocache import MISSING, Cache, Namespace, bypass, cached, cached_many


def test_invalidate_all_removes_one_functions_entries_and_nothing_else(cache: Cache) -> None:
    calls: list[int] = []

    @cached(prefix="square:", cache=cache)
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    @cached(prefix="cube:", cache=cache)
    def cube(n: int) -> int:
        return n**3

    for n in range(5):
        square(n)
        cube(n)
    cache.set("squares-report", "kept")
    assert square.invalidate_all() == 5
    assert all(square.get_cached(n) is MISSING for n in range(5))
    assert cube.get_cached(2) == 8
    assert cache.get("squares-report") == "kept"
    square(1)
    assert calls.count(1) == 2  # computed again


def test_invalidate_all_is_a_bump_in_a_bumpable_namespace(cache: Cache) -> None:
    recs = Namespace("recs:", ttl=60, bumpable=True)
    calls: list[int] = []

    @cached(prefix=recs, cache=cache)
    def recommend(user: int) -> list[int]:
        calls.append(user)
        return [user]

    recommend(1)
    recommend(1)
    assert recommend.invalidate_all() == 0  # O(1): the old generation is never read again
    recommend(1)
    assert calls == [1, 1]


async def test_async_and_many_twins(cache: Cache) -> None:
    @cached(prefix="a:", cache=cache)
    async def double(n: int) -> int:
        return 2 * n

    @cached_many(prefix="m:", cache=cache)
    def many(ids: list[int]) -> dict[int, int]:
        return {i: i for i in ids}

    @cached_many(prefix="am:", cache=cache)
    async def amany(ids: list[int]) -> dict[int, int]:
        return {i: i for i in ids}

    await double(1)
    many([1, 2])
    await amany([1, 2, 3])
    assert await double.invalidate_all() == 1
    assert many.invalidate_all() == 2
    assert await amany.invalidate_all() == 3


def test_bypass_runs_the_function_and_leaves_the_cache_alone(cache: Cache) -> None:
    calls: list[int] = []

    @cached(prefix="b:", cache=cache)
    def value(n: int) -> int:
        calls.append(n)
        return n

    @cached_many(prefix="bm:", cache=cache)
    def values(ids: list[int]) -> dict[int, int]:
        calls.extend(ids)
        return {i: i for i in ids}

    value(1)
    with bypass():
        assert value(1) == 1  # not read from the cache
        assert value(2) == 2  # and not written to it
        assert values([7, 8]) == {7: 7, 8: 8}
        with bypass(False):
            assert value(1) == 1  # a hit again, inside the nested block
    assert calls == [1, 1, 2, 7, 8]
    assert not cache.exists("b:2")
    assert not cache.exists("bm:7")


async def test_bypass_is_per_task(cache: Cache) -> None:
    calls: list[str] = []

    @cached(prefix="t:", cache=cache)
    async def value(who: str) -> str:
        calls.append(who)
        await asyncio.sleep(0)
        return who

    await value("cached")
    await value("other")

    async def bypassing() -> None:
        with bypass():
            await asyncio.sleep(0.01)
            await value("cached")

    async def normal() -> None:
        await asyncio.sleep(0.005)
        await value("other")  # inside the other task's block in time, not in context

    await asyncio.gather(bypassing(), normal())
    assert calls == ["cached", "other", "cached"]


@pytest.mark.slow
def test_kirocache_disable_switches_caching_off_for_the_process() -> None:
    script = (
        "from kirocache import Cache, cached\n"
        "calls = []\n"
        "@cached(prefix='p:', cache=Cache.from_url('memory://'))\n"
        "def f(n):\n"
        "    calls.append(n)\n"
        "    return n\n"
        "f(1); f(1)\n"
        "print(len(calls))\n"
    )
    env = {**os.environ, "KIROCACHE_DISABLE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "2"
    env["KIROCACHE_DISABLE"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1"
