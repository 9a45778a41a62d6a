"""What both halves of the conformance suite check: data, op-kind scenarios and checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from kirocache.backends._protocol import TOMBSTONE_PREFIX, BackendStats, Op, OpName
from kirocache.exceptions import BackendError

# Seconds to live of the entries the expiry tests watch run out, and how long they wait.
SHORT_TTL = 0.1
PAST_SHORT_TTL = 0.3
ALL_BYTES = bytes(range(256))
MIB = 1024 * 1024
UNICODE = "ключ:日本語:🙂:é"

GLOB_KEYS = ("a1", "a2", "b1", "ab", "c*", "c?", "c[x]", "c\\", "cz")
GLOBS: tuple[tuple[str, set[str]], ...] = (
    ("*", set(GLOB_KEYS)),
    ("a*", {"a1", "a2", "ab"}),
    ("?1", {"a1", "b1"}),
    ("[ab]1", {"a1", "b1"}),
    ("[a-b]?", {"a1", "a2", "ab", "b1"}),
    ("a[^1]", {"a2", "ab"}),
    ("c\\*", {"c*"}),
    ("c\\?", {"c?"}),
    ("c?", {"c*", "c?", "c\\", "cz"}),
    ("c\\[x\\]", {"c[x]"}),
    ("c\\\\", {"c\\"}),
    ("nothing*", set()),
)


def ops_with_failure(k: str) -> list[Op]:
    return [
        Op("set", k + "text", value=b"not a number"),
        Op("incr", k + "text"),
        Op("set", k + "n", value=b"41"),
        Op("incr", k + "n"),
        Op("get", k + "n"),
    ]


def check_failure_results(results: Sequence[object]) -> None:
    assert results[0] is True
    assert isinstance(results[1], BackendError)
    assert results[2:] == [True, 42, b"42"]


def pipeline(k: str) -> list[Op]:
    return [
        Op("set", k + "a", value=b"1"),
        Op("set", k + "a", value=b"2", nx=True),
        Op("set", k + "b", value=b"x", ttl=60),
        Op("get", k + "a"),
        Op("get", k + "missing"),
        Op("exists", k + "b"),
        Op("incr", k + "n", amount=5, ttl=60),
        Op("ttl", k + "a"),
        Op("expire", k + "a", ttl=60),
        Op("persist", k + "b"),
        Op("delete", k + "b"),
        Op("delete", k + "b"),
    ]


def check_pipeline(results: Sequence[object]) -> None:
    assert results[:7] == [True, False, True, b"1", None, True, 5]
    assert results[7] == math.inf
    assert results[8:] == [True, True, True, False]


def conditional_ops(k: str) -> list[Op]:
    return [
        Op("set_if", k + "c", value=b"first", ttl=60, expected=None),
        Op("set_if", k + "c", value=b"lost", expected=None),
        Op("set_if", k + "c", value=b"lost", expected=b"other"),
        Op("set_if", k + "c", value=b"second", expected=b"first"),
        Op("get", k + "c"),
        Op("ttl", k + "c"),
        Op("swap", k + "c", value=b"third", ttl=60),
        Op("swap", k + "absent", value=b"new"),
        Op("get", k + "absent"),
        Op("ttl", k + "absent"),
        Op("tag_add", k + "tag", ttl=60, members=("x", "y")),
        Op("tag_add", k + "tag", ttl=1, members=("z",)),
        Op("tag_add", k + "tag", members=()),
        Op("tag_members", k + "tag"),
        Op("tag_members", k + "no-tag"),
    ]


def check_conditional(results: Sequence[object]) -> None:
    assert results[:5] == [True, False, False, True, b"second"]
    assert results[5] == math.inf  # set_if without a ttl stores without expiry
    assert results[6:10] == [b"second", None, b"new", math.inf]
    assert results[10:] == [True, True, True, ["x", "y", "z"], []]


def check_stats(stats: BackendStats, at_least_keys: int) -> None:
    assert isinstance(stats, BackendStats)
    assert isinstance(stats.backend, str)
    assert stats.backend
    if stats.keys is not None:
        assert stats.keys >= at_least_keys
    counters = ("used_memory", "max_memory", "connected_clients", "evictions", "expired")
    for name in (*counters, "hits", "misses"):
        value = getattr(stats, name)
        assert value is None or (isinstance(value, int) and value >= 0), name
    assert stats.uptime_seconds is None or stats.uptime_seconds >= 0
    assert stats.memory_ratio is None or stats.memory_ratio >= 0


# ---- every op kind, as rounds of ``execute`` (the same for both halves) ---------------------


@dataclass(frozen=True, slots=True)
class Within:
    """An answer that is a number of seconds in ``(low, high]`` (give or take rounding)."""

    low: float
    high: float


FAILS: Final = BackendError
"""The answer of an op that fails in its slot: a ``BackendError``."""

Answer = object
Round = tuple[list[Op], list[Answer]]


def check_answers(results: Sequence[object], expected: Sequence[Answer]) -> None:
    """Each slot holds its expected answer, of the documented type."""
    assert len(results) == len(expected), (results, expected)
    for at, (result, want) in enumerate(zip(results, expected, strict=True)):
        where = f"op {at}: {result!r}"
        if want is FAILS:
            assert isinstance(result, BackendError), where
        elif isinstance(want, Within):
            assert isinstance(result, (int, float)), where
            # deadline - now may round a hair above the TTL given
            assert want.low < result <= want.high * (1 + 1e-9), where
        elif isinstance(want, (bool, int)):
            assert type(result) is type(want), where
            assert result == want, where
        else:
            assert result == want, where


def _get(k: str) -> list[Round]:
    ops = [
        Op("set", k + "a", b"v"),
        Op("get", k + "a"),
        Op("get", k + "absent"),
        Op("set", k + "e", b""),
        Op("get", k + "e"),
        Op("tag_add", k + "t", ttl=60, members=("m",)),
        Op("get", k + "t"),
    ]
    return [(ops, [True, b"v", None, True, b"", True, FAILS])]


def _set(k: str) -> list[Round]:
    ops = [
        Op("set", k + "a", b"old", ttl=60),
        Op("ttl", k + "a"),
        Op("set", k + "a", b"new"),
        Op("get", k + "a"),
        Op("ttl", k + "a"),
        Op("set", k + "a", b"lost", ttl=60, nx=True),
        Op("set", k + "b", b"kept", ttl=60, nx=True),
        Op("get", k + "a"),
        Op("ttl", k + "b"),
    ]
    return [
        (ops, [True, Within(0, 60), True, b"new", math.inf, False, True, b"new", Within(0, 60)])
    ]


def _delete(k: str) -> list[Round]:
    ops = [
        Op("set", k + "a", b"v"),
        Op("delete", k + "a"),
        Op("delete", k + "a"),
        Op("get", k + "a"),
        Op("tag_add", k + "t", ttl=60, members=("m",)),
        Op("delete", k + "t"),
        Op("exists", k + "t"),
    ]
    return [(ops, [True, True, False, None, True, True, False])]


def _delete_if(k: str) -> list[Round]:
    ops = [
        Op("set", k + "lock", b"token-1", ttl=60),
        Op("delete_if", k + "lock", expected=b"token-2"),
        Op("delete_if", k + "lock", expected=b"token-"),
        Op("delete_if", k + "absent", expected=b"token-1"),
        Op("get", k + "lock"),
        Op("delete_if", k + "lock", expected=b"token-1"),
        Op("exists", k + "lock"),
        Op("delete_if", k + "lock", expected=b"token-1"),
        Op("tag_add", k + "t", ttl=60, members=("m",)),
        Op("delete_if", k + "t", expected=b"m"),
        Op("tag_members", k + "t"),
    ]
    answers = [True, False, False, False, b"token-1", True, False, False, True, FAILS, ["m"]]
    return [(ops, answers)]


def _exists(k: str) -> list[Round]:
    ops = [
        Op("exists", k + "a"),
        Op("set", k + "a", b""),
        Op("exists", k + "a"),
        Op("tag_add", k + "t", ttl=60, members=("m",)),
        Op("exists", k + "t"),
    ]
    return [(ops, [False, True, True, True, True])]


def _expire(k: str) -> list[Round]:
    ops = [
        Op("expire", k + "absent", ttl=10),
        Op("ttl", k + "absent"),
        Op("set", k + "a", b"v", ttl=1000),
        Op("expire", k + "a", ttl=10),
        Op("ttl", k + "a"),
        Op("get", k + "a"),
        Op("tag_add", k + "t", ttl=60, members=("m",)),
        Op("expire", k + "t", ttl=30),
        Op("ttl", k + "t"),
    ]
    return [(ops, [False, None, True, True, Within(0, 10), b"v", True, True, Within(0, 30)])]


def _persist(k: str) -> list[Round]:
    ops = [
        Op("set", k + "a", b"v", ttl=60),
        Op("set", k + "b", b"v"),
        Op("persist", k + "a"),
        Op("ttl", k + "a"),
        Op("persist", k + "a"),
        Op("persist", k + "b"),
        Op("persist", k + "absent"),
        Op("get", k + "a"),
    ]
    return [(ops, [True, True, True, math.inf, False, False, False, b"v"])]


def _incr(k: str) -> list[Round]:
    ops = [
        Op("incr", k + "n"),
        Op("incr", k + "n", amount=10),
        Op("incr", k + "n", amount=-20),
        Op("get", k + "n"),
        Op("ttl", k + "n"),
        Op("incr", k + "c", ttl=10),
        Op("incr", k + "c", ttl=1000),
        Op("ttl", k + "c"),
        Op("set", k + "m", b"41"),
        Op("incr", k + "m", ttl=10),
        Op("ttl", k + "m"),
        Op("set", k + "x", b"1.5"),
        Op("incr", k + "x"),
        Op("get", k + "x"),
    ]
    answers = [1, 11, -9, b"-9", math.inf, 1, 2, Within(0, 10), True, 42, math.inf]
    return [(ops, [*answers, True, FAILS, b"1.5"])]


def _ttl(k: str) -> list[Round]:
    ops = [
        Op("ttl", k + "absent"),
        Op("set", k + "p", b"v"),
        Op("ttl", k + "p"),
        Op("set", k + "s", b"v", ttl=10),
        Op("ttl", k + "s"),
        Op("tag_add", k + "t", members=("m",)),
        Op("ttl", k + "t"),
    ]
    return [(ops, [None, True, math.inf, True, Within(0, 10), True, math.inf])]


def _set_if(k: str) -> list[Round]:
    ops = [
        Op("set_if", k + "c", b"first", ttl=60, expected=None),
        Op("set_if", k + "c", b"lost", expected=None),
        Op("set_if", k + "c", b"lost", expected=b"other"),
        Op("ttl", k + "c"),
        Op("set_if", k + "c", b"second", expected=b"first"),
        Op("get", k + "c"),
        Op("ttl", k + "c"),
        Op("set", k + "g", b"one"),
        Op("set_if", k + "v", b"a", guards=((k + "g", b"other"),)),
        Op("set_if", k + "v", b"b", guards=((k + "g", b"one"), (k + "h", None))),
        Op("get", k + "v"),
    ]
    answers = [True, False, False, Within(0, 60), True, b"second", math.inf, True, False, True]
    return [(ops, [*answers, b"b"])]


def _swap(k: str) -> list[Round]:
    ops = [
        Op("swap", k + "c", b"first", ttl=60),
        Op("ttl", k + "c"),
        Op("swap", k + "c", b"second"),
        Op("get", k + "c"),
        Op("ttl", k + "c"),
    ]
    return [(ops, [None, Within(0, 60), b"first", b"second", math.inf])]


def _tag_add(k: str) -> list[Round]:
    ops = [
        Op("tag_add", k + "t", ttl=10, members=("x", "y")),
        Op("ttl", k + "t"),
        Op("tag_add", k + "t", ttl=1000, members=("z", "x")),
        Op("ttl", k + "t"),
        Op("tag_add", k + "t", ttl=10, members=("w",)),
        Op("ttl", k + "t"),
        Op("tag_add", k + "t", ttl=10, members=()),
        Op("tag_add", k + "empty", ttl=10, members=()),
        Op("exists", k + "empty"),
        Op("tag_add", k + "f", members=("a",)),
        Op("tag_add", k + "f", ttl=10, members=("b",)),
        Op("ttl", k + "f"),
        Op("set", k + "v", b"value"),
        Op("tag_add", k + "v", ttl=60, members=("a",)),
        Op("tag_members", k + "t"),
    ]
    answers = [True, Within(0, 10), True, Within(10, 1000), True, Within(10, 1000), True, True]
    return [(ops, [*answers, False, True, True, math.inf, True, FAILS, ["w", "x", "y", "z"]])]


def _tag_members(k: str) -> list[Round]:
    ops = [
        Op("tag_members", k + "absent"),
        Op("tag_add", k + "t", ttl=60, members=("b", "a", UNICODE)),
        Op("tag_add", k + "t", ttl=60, members=("a",)),
        Op("tag_members", k + "t"),
        Op("set", k + "v", b"value"),
        Op("tag_members", k + "v"),
    ]
    return [(ops, [[], True, True, sorted(["a", "b", UNICODE]), True, FAILS])]


def _tag_remove(k: str) -> list[Round]:
    ops = [
        Op("tag_add", k + "t", ttl=60, members=("a", "b", "c")),
        Op("tag_remove", k + "t", members=("a", "missing")),
        Op("tag_remove", k + "absent", members=("a",)),
        Op("tag_remove", k + "t"),
        Op("tag_members", k + "t"),
        Op("tag_remove", k + "t", members=("b", "c")),
        Op("exists", k + "t"),
    ]
    return [(ops, [True, 1, 0, 0, ["b", "c"], 2, False])]


def _tag_prune(k: str) -> list[Round]:
    ops = [
        Op("set", k + "live", b"v"),
        Op("set", k + "dead", TOMBSTONE_PREFIX + b"token"),
        Op("tag_add", k + "t", ttl=60, members=("live", "dead", "absent", "kept")),
        Op(
            "tag_prune",
            k + "t",
            members=("live", "dead", "absent"),
            probes=(k + "live", k + "dead", k + "absent"),
        ),
        Op("tag_prune", k + "t"),
        Op("tag_members", k + "t"),
    ]
    return [(ops, [True, True, True, 2, 0, ["kept", "live"]])]


OP_KINDS: Final[dict[OpName, Callable[[str], list[Round]]]] = {
    "get": _get,
    "set": _set,
    "delete": _delete,
    "delete_if": _delete_if,
    "exists": _exists,
    "expire": _expire,
    "persist": _persist,
    "incr": _incr,
    "ttl": _ttl,
    "set_if": _set_if,
    "swap": _swap,
    "tag_add": _tag_add,
    "tag_members": _tag_members,
    "tag_remove": _tag_remove,
    "tag_prune": _tag_prune,
}
"""Rounds of ops, and their answers, that pin down each op kind; keyed by the kind."""
