"""A hit returns the same type and value as the miss did, for every supported kind of type."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import uuid
from decimal import Decimal
from typing import Any, NamedTuple, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kirocache import Cache, cached
from kirocache.backends.memory import MemoryBackend


class Level(enum.Enum):
    BEGINNER = "beginner"
    EXPERT = "expert"


@dataclasses.dataclass
class Profile:
    id: int
    name: str
    level: Level
    joined: dt.date
    tags: list[str]


class Progress(TypedDict):
    exercise: int
    done: bool
    score: float


class Point(NamedTuple):
    x: int
    y: int


names = st.text(max_size=20)
small_ints = st.integers(-(2**53), 2**53)
naive_datetimes = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1))
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1970, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.just(dt.timezone.utc),
)
profiles = st.builds(
    Profile,
    id=small_ints,
    name=names,
    level=st.sampled_from(Level),
    joined=st.dates(),
    tags=st.lists(names, max_size=3),
)
progress = st.fixed_dictionaries(
    {
        "exercise": small_ints,
        "done": st.booleans(),
        "score": st.floats(allow_nan=False, allow_infinity=False),
    }
)

CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (Profile, profiles),
    (Progress, progress),
    (Point, st.builds(Point, small_ints, small_ints)),
    (dt.datetime, naive_datetimes | aware_datetimes),
    (dt.date, st.dates()),
    (uuid.UUID, st.uuids()),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False, places=4)),
    (Level, st.sampled_from(Level)),
    (tuple[int, str], st.tuples(small_ints, names)),
    (set[int], st.sets(small_ints, max_size=5)),
    (frozenset[str], st.frozensets(names, max_size=5)),
    (list[Profile], st.lists(profiles, max_size=3)),
    (
        dict[str, list[Point]],
        st.dictionaries(
            names, st.lists(st.builds(Point, small_ints, small_ints), max_size=2), max_size=3
        ),
    ),
    (Profile | None, st.none() | profiles),
    (None, st.none()),
]

_tokens = itertools.count()


def cached_echo(annotation: Any, cache: Cache) -> Any:
    """A cached function returning whatever it is given, annotated ``-> annotation``."""
    box: dict[int, Any] = {}

    def echo(token: int) -> Any:
        return box.pop(token)

    echo.__annotations__ = {"token": int, "return": annotation}
    return box, cached(prefix="typed:", cache=cache)(echo)


def check_round_trip(box: dict[int, Any], echo: Any, value: Any) -> None:
    token = next(_tokens)
    box[token] = value
    miss = echo(token)
    hit = echo(token)  # the function would raise KeyError: it must not run again
    assert hit == miss == value
    assert type(hit) is type(miss)


@pytest.mark.parametrize(
    ("annotation", "strategy"), CASES, ids=lambda c: getattr(c, "__name__", str(c))
)
def test_hit_equals_miss_property(annotation: Any, strategy: st.SearchStrategy[Any]) -> None:
    box, echo = cached_echo(annotation, Cache(MemoryBackend()))

    @settings(max_examples=40, deadline=None)
    @given(strategy)
    def check(value: Any) -> None:
        check_round_trip(box, echo, value)

    check()


@pytest.mark.parametrize(
    ("annotation", "strategy"), CASES, ids=lambda c: getattr(c, "__name__", str(c))
)
def test_hit_equals_miss_on_every_backend(
    cache: Cache, annotation: Any, strategy: st.SearchStrategy[Any]
) -> None:
    box, echo = cached_echo(annotation, cache)

    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(value: Any) -> None:
        check_round_trip(box, echo, value)

    check()


# -- what @cached checks before it stores: never refuses a faithful value, never lets another by

MORE_CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (bytes, st.binary(max_size=20)),
    (dict[int, str], st.dictionaries(small_ints, names, max_size=4)),
    (tuple[int, ...], st.lists(small_ints, max_size=4).map(tuple)),
    (float, st.floats(allow_nan=False, allow_infinity=False)),  # an int comes back as a float
    (list[float | None], st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.none())),
]


@pytest.mark.parametrize(
    ("annotation", "strategy"), MORE_CASES, ids=lambda c: getattr(c, "__name__", str(c))
)
def test_hit_equals_miss_for_types_json_changes(
    annotation: Any, strategy: st.SearchStrategy[Any]
) -> None:
    box, echo = cached_echo(annotation, Cache(MemoryBackend()))

    @settings(max_examples=40, deadline=None)
    @given(strategy)
    def check(value: Any) -> None:
        check_round_trip(box, echo, value)

    check()


ALL_CASES = CASES + MORE_CASES
any_value = st.one_of([strategy for _, strategy in ALL_CASES])


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(ALL_CASES),
    value=any_value | st.floats() | st.tuples(small_ints) | st.none(),
)
def test_a_value_the_check_accepts_reads_back_equal(case: Any, value: Any) -> None:
    """Soundness: what ``Check`` lets through, a typed read gives back equal; else it says why."""
    from kirocache._values.faithful import Check
    from kirocache.exceptions import SerializationError
    from kirocache.serializers import OrjsonSerializer

    annotation = case[0]
    serializer = OrjsonSerializer()
    try:
        reason = Check(annotation)(value)
    except SerializationError:
        return  # no JSON form: the store refuses it the same way
    if reason is not None:
        assert reason  # refused, with a reason
        return
    read = serializer.loads(serializer.dumps(value), annotation)
    assert read == value
