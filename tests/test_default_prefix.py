"""Default key prefixes: a function's own name, refused where that name is not unique."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kirocache import Cache, cached, cached_many
from kirocache.backends import MemoryBackend
from kirocache.exceptions import ConfigurationError

memory = Cache(MemoryBackend())


@cached(cache=memory)
def double(x: int) -> int:
    return x * 2


@cached(cache=memory)
def triple(x: int) -> int:
    return x * 3


@cached_many(cache=memory)
def doubled(ids: list[int]) -> dict[int, int]:
    return {i: 2 * i for i in ids}


class Report:
    @cached(cache=memory)
    def total(self, year: int) -> int:
        return year


def test_a_module_level_function_is_keyed_by_its_module_and_name() -> None:
    assert (double(5), triple(5), double(5), triple(5)) == (10, 15, 10, 15)
    assert double.cache_key(5) == f"{__name__}.double:5"
    assert triple.cache_key(5) == f"{__name__}.triple:5"
    assert doubled.cache_keys([1]) == [f"{__name__}.doubled:1"]
    assert Report().total.cache_key(2024) == f"{__name__}.Report.total:2024"


def test_two_lambdas_are_refused_without_a_prefix() -> None:
    with pytest.raises(ConfigurationError, match=r"<lambda> is shared.*Pass prefix="):
        cached(cache=memory)(lambda x: x + 1)


def factory(step: int) -> Callable[[int], int]:
    @cached(cache=memory)
    def add(x: int) -> int:
        return x + step

    return add


def test_closures_of_one_factory_are_refused_without_a_prefix() -> None:
    # Before: factory(1) and factory(2) both keyed "<module>.factory.<locals>.add:" and
    # answered each other's calls.
    with pytest.raises(ConfigurationError) as caught:
        factory(1)
    message = str(caught.value)
    assert "factory.<locals>.add" in message
    assert "pass prefix=" in message.lower()


@pytest.mark.parametrize("decorator", ["cached", "cached_many"])
def test_nested_functions_are_refused_sync_and_async(decorator: str) -> None:
    if decorator == "cached":

        def build() -> object:
            @cached(cache=memory)
            async def inner(x: int) -> int:
                return x

            return inner

    else:

        def build() -> object:
            @cached_many(cache=memory)
            def inner(ids: list[int]) -> dict[int, int]:
                return dict.fromkeys(ids, 0)

            return inner

    with pytest.raises(ConfigurationError, match=f"@{decorator} cannot derive a key prefix"):
        build()


def test_with_a_prefix_lambdas_and_closures_are_fine_and_apart() -> None:
    def made(step: int) -> Callable[[int], int]:
        @cached(prefix=f"add{step}:", cache=memory)
        def add(x: int) -> int:
            return x + step

        return add

    one, two = made(1), made(2)
    assert (one(10), two(10), one(10), two(10)) == (11, 12, 11, 12)
    square = cached(prefix="square:", cache=memory)(lambda x: x * x)
    assert square(3) == 9
    assert square.cache_key(3) == "square:3"
