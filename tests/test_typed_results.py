"""Loud misuse of typed results: a value that would not read back as it is never goes in.

A hit must return what the miss returned, equal and of the same type. A result that does
not decode into its return annotation (``None`` from ``-> Profile``, a str from ``-> int``,
``inf``), or that JSON would change where the annotation does not name its type (a tuple,
int keys, a dataclass from an unannotated function), is returned uncached, counted as a
``decode`` error and warned about once, naming the function, the type and where. A typed
``get`` of an entry of another shape is a counted miss and leaves the entry alone.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from kirocache import Cache, cached, cached_many
from kirocache.exceptions import SerializationError
from kirocache.serializers import CompressedSerializer, PickleSerializer


class Color(enum.Enum):
    RED = 1


class Label(enum.StrEnum):
    A = "a"


class Key(str):
    """A str subclass: as a key it reads back as a plain str."""


@dataclasses.dataclass
class Profile:
    id: int
    name: str


def decode_errors(cache: Cache, prefix: str) -> int:
    """The ``decode`` errors the cache's metrics counted under ``prefix``."""
    metrics: Any = cache.metrics
    return sum(s.errors for s in metrics.stats(namespace=prefix, operation="decode"))


@pytest.fixture(autouse=True)
def _capture_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING, logger="kirocache"):
        yield


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The kirocache warnings logged so far, as text."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- a result that does not decode into its annotation -------------------------------------


def test_none_from_a_profile_function_is_refused_at_the_first_store(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache)
    def get_profile(user_id: int) -> Profile:
        calls.append(user_id)
        return None  # type: ignore[return-value]  # "not found", against the annotation

    assert get_profile(1) is None
    assert get_profile(1) is None
    assert calls == [1, 1]
    assert not cache.exists("profile:1")  # nothing stored that every read would refuse
    assert decode_errors(cache, "profile:") == 2
    [line] = warned(caplog)  # once per function, however many calls
    assert "get_profile" in line
    assert "Profile" in line
    assert "Profile | None" in line  # the fix


async def test_async_none_from_a_profile_function_is_refused_at_the_first_store(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache)
    async def get_profile(user_id: int) -> Profile:
        calls.append(user_id)
        return None  # type: ignore[return-value]

    assert await get_profile(1) is None
    assert await get_profile(1) is None
    assert calls == [1, 1]
    assert not await cache.aexists("profile:1")
    assert decode_errors(cache, "profile:") == 2
    [line] = warned(caplog)
    assert "get_profile" in line
    assert "Profile | None" in line


def test_an_optional_annotation_caches_none(cache: Cache) -> None:
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache)
    def get_profile(user_id: int) -> Profile | None:
        calls.append(user_id)
        return None

    assert get_profile(1) is None
    assert get_profile(1) is None
    assert calls == [1]
    assert decode_errors(cache, "profile:") == 0


@pytest.mark.parametrize(
    ("annotation", "value", "reason"),
    [
        (int, "42", "Expected `int`, got `str`"),
        (int, True, "Expected `int`, got `bool`"),
        (dict[str, float], {"math": 1.5, "art": math.inf}, "$['art'] is inf"),
        (list[float], [1.0, math.nan], "$[1] is nan"),
        (list[int], (1, 2), "$ is a tuple"),
        (dict[str, Any], {"point": (1, 2)}, "$['point'] is a tuple"),
        (dict[str, Any], {"ids": {1: "a"}}, "$['ids'][1]: an int key"),
        (dict[str, Any], {"at": Decimal("1.10")}, "$['at'] is a Decimal"),
        (list[Profile], [Profile(1, "Ada"), None], "$[1]"),
        # inside the records of a list, which the check walks inline
        (dict[str, Any], {"log": [{"at": 1}, {"at": (1, 2)}]}, "$['log'][1]['at'] is a tuple"),
        (dict[str, Any], {"log": [{"ms": 1.5}, {"ms": math.inf}]}, "$['log'][1]['ms'] is inf"),
        (dict[str, Any], {"log": [{"c": Color.RED}]}, "$['log'][0]['c'] is a Color"),
        (dict[str, Any], {"log": [{"s": Label.A}]}, "$['log'][0]['s'] is a Label"),
        (dict[str, Any], {"log": [{"id": UUID(int=1)}]}, "$['log'][0]['id'] is a UUID"),
        (dict[str, Any], {"log": [{"n": 2**64}]}, "$['log'][0]['n'] is an int beyond 64 bits"),
        (dict[str, Any], {"log": [{Key("k"): 1}]}, "$['log'][0]['k']: a Key key"),
        (dict[str, Any], {"log": [{"d": {"x": (1,)}}]}, "$['log'][0]['d']['x'] is a tuple"),
        (dict[str, Any], {"log": [[{"x": {1, 2}}]]}, "$['log'][0][0]['x'] is a set"),
        (dict[str, Any], {"log": [OrderedDict(a=1)]}, "$['log'][0] is an OrderedDict"),
        (list[Any], [{"a": 1}, [(2,)]], "$[1][0] is a tuple"),
        (list[Any], [{"a": 1}, {"b": [math.nan]}], "$[1]['b'][0] is nan"),
    ],
)
def test_a_result_that_would_not_read_back_is_refused_naming_where(
    cache: Cache, caplog: pytest.LogCaptureFixture, annotation: Any, value: Any, reason: str
) -> None:
    def compute() -> Any:
        return value

    compute.__annotations__ = {"return": annotation}
    func = cached(prefix="typed:", cache=cache)(compute)
    assert func() == value or value != value  # returned as it is (nan != nan)
    assert not cache.exists("typed:")
    assert decode_errors(cache, "typed:") == 1
    [line] = warned(caplog)
    assert "compute" in line
    assert reason in line


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (tuple[int, ...], (1, 2, 3)),
        (set[str], {"a", "b"}),
        (frozenset[int], frozenset({1})),
        (bytes, b"\x00\xff"),
        (Decimal, Decimal("1.10")),
        (dict[int, str], {1: "one", 2: "two"}),
        (dict[str, Decimal], {"price": Decimal("9.99")}),
        (float, 3),  # a JSON 3 decodes into the float 3.0, which equals it
        (Profile, Profile(1, "Ada")),
    ],
)
def test_values_the_annotation_names_round_trip_exactly(
    cache: Cache, annotation: Any, value: Any
) -> None:
    calls: list[int] = []

    def compute() -> Any:
        calls.append(1)
        return value

    compute.__annotations__ = {"return": annotation}
    func = cached(prefix="exact:", cache=cache)(compute)
    miss, hit = func(), func()
    assert hit == miss == value
    assert calls == [1]  # stored, then a hit
    assert decode_errors(cache, "exact:") == 0


def test_strict_raises_naming_the_function_type_and_path(cache: Cache) -> None:
    @cached(prefix="scores:", cache=cache, strict=True)
    def scores() -> dict[str, float]:
        return {"math": math.inf}

    with pytest.raises(
        SerializationError, match=r"scores.*dict\[str, float\].*\$\['math'\] is inf"
    ):
        scores()
    assert not cache.exists("scores:")


# -- hit and miss without a return annotation ----------------------------------------------


def test_an_unannotated_dataclass_result_is_returned_alike_every_time(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(prefix="untyped:", cache=cache)
    def load(user_id: int):  # type: ignore[no-untyped-def]
        return Profile(user_id, "Ada")

    assert load(1) == Profile(1, "Ada")
    second = load(1)
    assert second == Profile(1, "Ada")  # a hit would have been a dict: nothing was stored
    assert type(second) is Profile
    assert not cache.exists("untyped:1")
    [line] = warned(caplog)
    assert "no return annotation" in line
    assert "-> Profile" in line


async def test_async_an_unannotated_dataclass_result_is_returned_alike_every_time(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(prefix="untyped:", cache=cache)
    async def load(user_id: int):  # type: ignore[no-untyped-def]
        return Profile(user_id, "Ada")

    assert await load(1) == Profile(1, "Ada")
    assert type(await load(1)) is Profile
    assert not await cache.aexists("untyped:1")
    assert len(warned(caplog)) == 1


def test_unannotated_plain_json_is_cached(cache: Cache) -> None:
    calls: list[int] = []

    @cached(prefix="plain:", cache=cache)
    def load(user_id: int):  # type: ignore[no-untyped-def]
        calls.append(user_id)
        return {"id": user_id, "tags": ["a"], "score": 1.5, "none": None}

    assert load(1) == load(1) == {"id": 1, "tags": ["a"], "score": 1.5, "none": None}
    assert calls == [1]


def test_other_serializers_keep_types_themselves(backend: Any) -> None:
    cache = Cache(backend, serializer=PickleSerializer(b"s" * 32))

    @cached(prefix="pickled:", cache=cache)
    def load(user_id: int):  # type: ignore[no-untyped-def]
        return (Profile(user_id, "Ada"), math.inf)

    miss, hit = load(1), load(1)
    assert hit == miss
    assert type(hit[0]) is Profile
    assert cache.exists("pickled:1")


def test_a_wrapped_json_serializer_is_checked_too(backend: Any) -> None:
    cache = Cache(backend, serializer=CompressedSerializer())

    @cached(prefix="zipped:", cache=cache)
    def load(user_id: int) -> dict[str, float]:
        return {"x": math.nan}

    load(1)
    assert not cache.exists("zipped:1")
    assert decode_errors(cache, "zipped:") == 1


# -- @cached_many: per id -------------------------------------------------------------------


def test_cached_many_refuses_the_values_that_would_not_read_back(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix="profile:", cache=cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(sorted(user_ids))
        return {uid: Profile(uid, "Ada") if uid % 2 else None for uid in user_ids}  # type: ignore[misc]

    assert get_profiles([1, 2, 3]) == {1: Profile(1, "Ada"), 2: None, 3: Profile(3, "Ada")}
    assert get_profiles([1, 2, 3]) == {1: Profile(1, "Ada"), 2: None, 3: Profile(3, "Ada")}
    assert calls == [[1, 2, 3], [2]]  # 1 and 3 were stored, 2 never is
    assert decode_errors(cache, "profile:") == 2
    [line] = warned(caplog)
    assert "get_profiles" in line


async def test_async_cached_many_refuses_the_values_that_would_not_read_back(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix="profile:", cache=cache)
    async def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(sorted(user_ids))
        return {uid: Profile(uid, "Ada") if uid % 2 else None for uid in user_ids}  # type: ignore[misc]

    assert await get_profiles([1, 2]) == {1: Profile(1, "Ada"), 2: None}
    assert await get_profiles([1, 2]) == {1: Profile(1, "Ada"), 2: None}
    assert calls == [[1, 2], [2]]
    assert decode_errors(cache, "profile:") == 2
    assert len(warned(caplog)) == 1


# -- a typed get of an entry of another shape ------------------------------------------------


def test_a_typed_get_of_another_shape_is_a_counted_miss_that_keeps_the_entry(
    cache: Cache,
) -> None:
    cache.set("user:1", {"other": "shape"})
    assert cache.get("user:1", type=Profile) is None
    assert cache.get_many(["user:1"], type=Profile) == {}
    assert cache.get("user:1") == {"other": "shape"}  # still there for its own readers
    assert decode_errors(cache, "default") == 2


async def test_async_a_typed_get_of_another_shape_is_a_counted_miss_that_keeps_the_entry(
    cache: Cache,
) -> None:
    await cache.aset("user:1", {"other": "shape"}, tags=["team:1"])
    assert await cache.aget("user:1", type=Profile) is None
    assert await cache.aget_many(["user:1"], type=Profile) == {}
    assert await cache.aget("user:1") == {"other": "shape"}
    assert decode_errors(cache, "default") == 2


def test_a_cached_function_replaces_an_entry_of_another_shape(cache: Cache) -> None:
    calls: list[int] = []

    @cached(prefix="profile:", cache=cache)
    def get_profile(user_id: int) -> Profile:
        calls.append(user_id)
        return Profile(user_id, "Ada")

    cache.set("profile:1", ["written", "by", "an", "older", "release"])
    assert get_profile(1) == Profile(1, "Ada")
    assert get_profile(1) == Profile(1, "Ada")
    assert calls == [1]  # the miss stored over the old entry; the second call was a hit
