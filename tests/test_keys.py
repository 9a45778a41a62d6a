"""Keys: namespaces, make_key, code_hash, fingerprints, argument keys and key templates."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import inspect
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kirocache import keys
from kirocache._values.types import NEVER
from kirocache.exceptions import ConfigurationError, InvalidKeyError, InvalidTTLError
from kirocache.keys import ArgumentKey, KeyTemplate, Namespace, code_hash, fingerprint, make_key

SRC = Path(__file__).resolve().parent.parent / "src"
HEX32 = r"[0-9a-f]{32}"


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class User:
    id: int
    name: str
    note: str = dataclasses.field(default="", compare=False)


class Point(NamedTuple):
    x: int
    y: int


class Item(msgspec.Struct):
    sku: str
    qty: int


class Keyed:
    def __init__(self, ident: int) -> None:
        self.ident = ident

    def __cache_key__(self) -> object:
        return ("keyed", self.ident)


class Opaque:
    pass


def profile(user_id: int, lang: str = "en") -> None: ...


def body(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    return ArgumentKey(func).build(args, kwargs)


# -- module --------------------------------------------------------------------------------


def test_all_is_sorted_and_public() -> None:
    assert keys.__all__ == sorted(keys.__all__)
    for name in keys.__all__:
        assert getattr(keys, name).__doc__


# -- Namespace -----------------------------------------------------------------------------


def test_namespace_key_and_ttl_normalised() -> None:
    ns = Namespace("user:profile:", ttl=timedelta(hours=1))
    assert ns.ttl == 3600.0
    assert isinstance(ns.ttl, float)
    assert ns.key(123) == "user:profile:123"
    assert ns.key(123, "settings") == "user:profile:123:settings"
    assert ns.full_key("abc") == "user:profile:abc"
    assert ns.full_key("") == "user:profile:"
    assert Namespace("p:", ttl=5).ttl == 5.0
    assert Namespace("p:").ttl is None
    assert Namespace("p:", ttl=NEVER).ttl is None


def test_namespace_version_isolates_old_entries() -> None:
    ns = Namespace("user:profile:", version=2)
    assert ns.key(123) == "user:profile:v2:123"
    assert ns.full_key("x") == "user:profile:v2:x"
    bumped = dataclasses.replace(ns, version=3)
    assert bumped.key(123) == "user:profile:v3:123"
    assert bumped != ns
    assert Namespace("plain", version=1).key("a") == "plainv1:a"


def test_namespace_is_frozen_hashable_and_compares_by_settings() -> None:
    ns = Namespace("a:", ttl=60, version=1)
    assert ns == Namespace("a:", ttl=timedelta(minutes=1), version=1)
    assert hash(ns) == hash(Namespace("a:", ttl=60.0, version=1))
    assert ns != Namespace("a:", ttl=61, version=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ns.prefix = "b:"  # type: ignore[misc]
    assert repr(ns) == "Namespace(prefix='a:', ttl=60.0, version=1, bumpable=False)"


@pytest.mark.parametrize("prefix", ["", None, 3, b"a:"])
def test_namespace_rejects_bad_prefix(prefix: Any) -> None:
    with pytest.raises(ConfigurationError, match="prefix must be a non-empty str"):
        Namespace(prefix)


@pytest.mark.parametrize("prefix", ["kirocache:", "kirocache:gen:", "kirocache:mine:"])
def test_namespace_refuses_the_reserved_key_space(prefix: str) -> None:
    with pytest.raises(InvalidKeyError, match="reserved key space 'kirocache:'"):
        Namespace(prefix)


@pytest.mark.parametrize("prefix", ["kiro", "kirocache", "kirocache-x:", "my:kirocache:"])
def test_namespace_prefixes_near_the_reserved_space_are_allowed(prefix: str) -> None:
    assert Namespace(prefix).prefix == prefix  # the cache checks the keys built under them


@pytest.mark.parametrize("version", [0, -1, True, "2", 1.0])
def test_namespace_rejects_bad_version(version: Any) -> None:
    with pytest.raises(ConfigurationError, match="version must be an int >= 1"):
        Namespace("a:", version=version)


@pytest.mark.parametrize("ttl", [0, -1, "10", float("nan")])
def test_namespace_rejects_bad_ttl(ttl: Any) -> None:
    with pytest.raises(InvalidTTLError):
        Namespace("a:", ttl=ttl)


def test_namespace_key_checks_parts() -> None:
    ns = Namespace("a:")
    with pytest.raises(InvalidKeyError, match="at least one part"):
        ns.key()
    with pytest.raises(InvalidKeyError, match="index 1 is of type dict"):
        ns.key(1, {})


# -- make_key ------------------------------------------------------------------------------


def test_make_key_joins_like_generate_cache_key() -> None:
    assert make_key("user:profile", 123, "settings") == "user:profile:123:settings"
    assert make_key("solo") == "solo"


def test_make_key_part_types() -> None:
    uid = UUID("12345678-1234-5678-1234-567812345678")
    parts = (
        True,
        False,
        1.5,
        uid,
        Color.RED,
        Color.BLUE,
        Level.LOW,
        date(2024, 1, 2),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        time(3, 4),
        Decimal("1.10"),
        -7,
    )
    assert make_key(*parts) == (
        "true:false:1.5:12345678-1234-5678-1234-567812345678:red:2:1:2024-01-02:"
        "2024-01-02T03:04:05+00:00:03:04:00:1.10:-7"
    )


def test_make_key_never_uses_str_of_subclasses() -> None:
    class Sneaky(str):
        def __str__(self) -> str:
            return "changed"

    class Id(int):
        def __repr__(self) -> str:
            return "changed"

        __str__ = __repr__

    assert make_key(Sneaky("kept"), Id(7)) == "kept:7"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ((), "at least one part"),
        (("a", ""), "index 1 is empty"),
        (("a", "b", None), "index 2 is of type NoneType"),
        (([1],), "index 0 is of type list"),
        ((Opaque(),), "index 0 is of type Opaque"),
        (("a", b"bytes"), "index 1 is of type bytes"),
    ],
)
def test_make_key_errors_name_position_and_type(parts: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        make_key(*parts)


# -- code_hash -----------------------------------------------------------------------------


def test_code_hash_normalises_line_endings_and_includes_language() -> None:
    unix = code_hash("def f():\n    return 1\n", "python")
    assert len(unix) == 32
    assert int(unix, 16) >= 0
    assert code_hash("def f():\r\n    return 1\r\n", "python") == unix
    assert code_hash(b"def f():\r\n    return 1\r\n", "python") == unix
    assert code_hash("def f():\n    return 1\n", " Python ") == unix
    assert code_hash("def f():\n    return 1\n", "javascript") != unix
    assert code_hash("def f():\n    return 2\n", "python") != unix
    # The language is length-prefixed, so text cannot slide between language and content.
    assert code_hash("ascript", "jav") != code_hash("script", "java")


def test_code_hash_is_stable_across_releases() -> None:
    # Pinned: a change here changes every stored code-analysis key.
    assert code_hash("print(1)\n", "python") == "7189c025dc2dc72a17f428867a254d62"


@pytest.mark.parametrize(
    ("content", "language", "message"),
    [
        (123, "python", "content must be str or bytes, not int"),
        ("x", "", "language must be a non-blank str"),
        ("x", "   ", "language must be a non-blank str"),
        ("x", None, "language must be a non-blank str"),
    ],
)
def test_code_hash_rejects_bad_input(content: Any, language: Any, message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        code_hash(content, language)


# -- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_is_type_tagged() -> None:
    values: list[Any] = [
        1, 1.0, True, "1", b"1", None, "None", [1], (1,), {1}, {1: None}, Decimal(1),
        Color.BLUE, 2, Level.LOW, Point(1, 2), (1, 2), [], (), {}, set(), "",
        date(2024, 1, 2), datetime(2024, 1, 2), "2024-01-02", timedelta(1), time(0),
    ]  # fmt: skip
    prints = [fingerprint(v) for v in values]
    assert len(set(prints)) == len(values)
    assert all(len(p) == 32 for p in prints)


def test_fingerprint_ignores_dict_and_set_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({3, 1, 2}) == fingerprint({2, 3, 1})
    assert fingerprint(frozenset({"x", "y"})) == fingerprint({"y", "x"})
    assert fingerprint([1, 2]) != fingerprint([2, 1])


def test_fingerprint_handles_nan_inf_and_big_ints() -> None:
    nans = {fingerprint(float("nan")), fingerprint(-float("nan"))}
    assert len(nans) == 1
    assert fingerprint(float("inf")) != fingerprint(float("-inf"))
    assert fingerprint(10**5000) != fingerprint(10**5000 + 1)


def test_fingerprint_of_records_uses_class_and_compared_fields() -> None:
    assert fingerprint(User(1, "a", note="x")) == fingerprint(User(1, "a", note="y"))
    assert fingerprint(User(1, "a")) != fingerprint(User(2, "a"))
    assert fingerprint(Point(1, 2)) != fingerprint((1, 2))
    assert fingerprint(Item("s", 1)) == fingerprint(Item("s", 1))
    assert fingerprint(Item("s", 1)) != fingerprint(Item("s", 2))
    assert fingerprint(Keyed(1)) == fingerprint(Keyed(1))
    assert fingerprint(Keyed(1)) != fingerprint(Keyed(2))
    assert fingerprint(Keyed(1)) != fingerprint(("keyed", 1))


def test_fingerprint_of_subclass_ignores_overridden_dunders() -> None:
    class Id(int):
        def __format__(self, spec: str) -> str:
            return "changed"

    assert fingerprint(Id(5)) == fingerprint(5)


def test_fingerprint_rejects_unsupported_types_with_a_clear_message() -> None:
    with pytest.raises(InvalidKeyError) as info:
        fingerprint(Opaque())
    message = str(info.value)
    assert "cannot build a cache key from value of type Opaque" in message
    assert "pass key=..." in message
    assert "give Opaque a __cache_key__() method" in message
    with pytest.raises(InvalidKeyError, match=r"value at \[1\]\['x'\]\.name of type Opaque"):
        fingerprint([1, {"x": User(1, Opaque())}])  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="of type function"):
        fingerprint(profile)


def test_fingerprint_guards_recursion() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(InvalidKeyError, match=r"value at \[1\]: it contains itself"):
        fingerprint(loop)
    mapping: dict[str, object] = {}
    mapping["self"] = mapping
    with pytest.raises(InvalidKeyError, match="contains itself"):
        fingerprint(mapping)

    class Selfish:
        def __cache_key__(self) -> object:
            return self

    with pytest.raises(InvalidKeyError, match="contains itself"):
        fingerprint(Selfish())
    deep: list[object] = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(InvalidKeyError, match="nested more than 100 levels deep"):
        fingerprint(deep)
    shared = [1, 2]
    assert fingerprint([shared, shared]) == fingerprint([[1, 2], [1, 2]])


def test_fingerprint_is_stable_across_releases() -> None:
    # Pinned: a change here changes every hashed argument key already stored.
    assert fingerprint(None) == "626d368fe0e74b4f1a038927df1311d6"
    assert fingerprint(123) == "49ab39fd5aab13612ca3f4bb8474e24d"
    assert fingerprint("user") == "cc372094fd04d7a257ee893f696e5723"
    assert fingerprint({"b": [1, 2.5], "a": (True, None)}) == "b3a3485ece2fa1afa7f3b391e38c9501"


STABILITY_SCRIPT = """
import dataclasses, enum, json
from datetime import datetime, timezone
from decimal import Decimal
from uuid import UUID
from kirocache.keys import ArgumentKey, fingerprint

class Mood(enum.Enum):
    HAPPY = "happy"

@dataclasses.dataclass(frozen=True)
class Row:
    tags: frozenset
    when: datetime

values = [
    {"set of strings": {"alpha", "beta", "gamma", "delta", "epsilon"}},
    frozenset({"x", "y", "z", 1, 2.5, None}),
    {"nested": [{"b": 2, "a": 1}, ("t", b"bytes")]},
    Row(frozenset({"p", "q", "r"}), datetime(2024, 5, 6, 7, 8, tzinfo=timezone.utc)),
    Mood.HAPPY,
    UUID(int=12345),
    Decimal("3.14"),
    "unicode é 漢字",
]

def search(query, *, filters=None, **extra):
    pass

result = [fingerprint(v) for v in values]
result.append(ArgumentKey(search).build(("q",), {"filters": {"lang", "level", "tag"}, "z": 1}))
print(json.dumps(result))
"""


def test_fingerprint_is_stable_across_processes_and_hash_seeds() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    outputs = []
    for seed in ("1", "4242"):
        done = subprocess.run(
            [sys.executable, "-c", STABILITY_SCRIPT],
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        exec(STABILITY_SCRIPT, namespace)
    assert captured.getvalue() == outputs[0]


# -- argument keys: readable components and injectivity ------------------------------------


def test_bind_first_so_positional_keyword_and_default_agree() -> None:
    assert body(profile, 1) == "1:en"
    assert body(profile, user_id=1) == "1:en"
    assert body(profile, 1, lang="en") == "1:en"
    assert body(profile, lang="en", user_id=1) == "1:en"
    assert body(profile, 1, "fr") == "1:fr"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123, "123"),
        (-5, "-5"),
        ("alice", "alice"),
        ("en-GB", "en-GB"),
        ("a.b@c.d", "a.b@c.d"),
        ("2024-01-02", "2024-01-02"),
        ("-", "-"),
        (True, "!true"),
        (False, "!false"),
        (None, "!none"),
        (1.5, "!1.5"),
        (-0.0, "!-0.0"),
        (float("nan"), "!nan"),
        (float("-inf"), "!-inf"),
        (1e22, "!1e+22"),
    ],
)
def test_scalars_stay_readable(value: object, expected: str) -> None:
    assert body(lambda x: None, value) == expected


@pytest.mark.parametrize(
    "value",
    ["1", "-12", "", "a:b", "a#b", "!true", "x y", "é", "a" * 65, 10**20, [1], {"a": 1}, (1,),
     Color.RED, Level.LOW, UUID(int=1), User(1, "a"), b"x", Decimal(1)],
)  # fmt: skip
def test_other_values_are_hashed(value: object) -> None:
    assert body(lambda x: None, value) == "#" + fingerprint(value)


def test_documented_collisions_do_not_happen() -> None:
    def two(a: object, b: object) -> None: ...

    def kw(**kwargs: object) -> None: ...

    def one(x: object) -> None: ...

    def var(*args: object, **kwargs: object) -> None: ...

    assert body(two, 1, 23) != body(two, 12, 3)
    assert body(two, "a:b", "c") != body(two, "a", "b:c")
    assert body(kw, a="b=1") != body(kw, **{"a=b": "1"})
    assert body(kw, a="b", c="d") != body(kw, a="b:c=d")
    singles = [1, "1", 1.0, True, "true", "!true", None, "none", "!none", "#", "", [1], ["1"]]
    assert len({body(one, v) for v in singles}) == len(singles)
    assert body(var, 1, 2) != body(var, "1:2")
    assert body(var, "a", b=1) != body(var, **{"a:b": 1})
    assert body(var, "a", b=1) != body(var, **{"a=b": 1})
    assert body(var) == ""
    assert body(var, "") != body(var)


def test_no_parameters_gives_an_empty_body() -> None:
    def nothing() -> None: ...

    class Service:
        def ping(self) -> None: ...

    assert body(nothing) == ""
    assert ArgumentKey(Service.ping).build((Service(),), {}) == ""


def test_star_args_and_kwargs_components() -> None:
    def search(query: str, *tags: object, limit: int = 10, **filters: object) -> None: ...

    assert body(search, "py") == "py:10"
    assert body(search, "py", "a", 2, limit=5) == "py:a:2:5"
    got = body(search, "py", lang="en", level=3, limit=5)
    assert got == "py:5:lang=en:level=3"
    assert got == body(search, "py", limit=5, level=3, lang="en")
    assert body(search, "py", **{"a b": 1}).startswith("py:10:#")


def test_over_long_bodies_are_hashed_not_cut() -> None:
    def many(*args: object) -> None: ...

    short = ArgumentKey(many, max_length=40)
    assert short.build(tuple(range(10)), {}) == "0:1:2:3:4:5:6:7:8:9"
    exact = ("a" * 40,)
    assert short.build(exact, {}) == "a" * 40
    long_a = short.build(tuple(range(30)), {})
    long_b = short.build((*range(29), 99), {})
    assert long_a.startswith("##")
    assert len(long_a) == 34
    assert long_a != long_b
    assert "0:1:2" not in long_a
    with pytest.raises(ConfigurationError, match="max_length must be an int >= 34"):
        ArgumentKey(many, max_length=10)


# -- argument keys: binding ----------------------------------------------------------------


class Repo:
    def get(self, user_id: int, lang: str = "en") -> None: ...

    @classmethod
    def make(cls, x: int) -> None: ...

    @staticmethod
    def plain(x: int) -> None: ...


def test_self_and_cls_are_left_out() -> None:
    repo = Repo()
    assert ArgumentKey(Repo.get).skipped == "self"
    assert ArgumentKey(Repo.get).build((repo, 5), {}) == "5:en"
    raw_classmethod = Repo.__dict__["make"]
    assert ArgumentKey(raw_classmethod).build((Repo, 5), {}) == "5"
    assert ArgumentKey(Repo.make).build((5,), {}) == "5"
    assert ArgumentKey(Repo.__dict__["plain"]).build((5,), {}) == "5"
    assert ArgumentKey(repo.get).build((5,), {}) == "5:en"

    def named_cls(cls: type) -> None: ...

    assert ArgumentKey(named_cls).skipped == "cls"


def test_skip_first_can_be_forced_either_way() -> None:
    def handler(request: object, item_id: int) -> None: ...

    assert ArgumentKey(handler, skip_first=True).build((Opaque(), 3), {}) == "3"
    with pytest.raises(InvalidKeyError, match="argument 'self' of type Repo"):
        ArgumentKey(Repo.get, skip_first=False).build((Repo(), 3), {})

    def only_kw(*, a: int) -> None: ...

    with pytest.raises(ConfigurationError, match="no positional first parameter"):
        ArgumentKey(only_kw, skip_first=True)


def test_wrapped_functions_bind_to_the_original_signature() -> None:
    @functools.wraps(profile)
    def wrapper(*args: Any, **kwargs: Any) -> None: ...

    assert ArgumentKey(wrapper).build((), {"user_id": 4}) == "4:en"


def test_unkeyable_arguments_name_the_parameter_and_type() -> None:
    def show(user: object, *rest: object, **extra: object) -> None: ...

    key = ArgumentKey(show)
    with pytest.raises(InvalidKeyError) as info:
        key.build((Opaque(),), {})
    assert str(info.value) == (
        "cannot build a cache key from argument 'user' of type Opaque: pass key=... or give "
        "Opaque a __cache_key__() method"
    )
    with pytest.raises(InvalidKeyError, match=r"argument 'user' at \[0\]\['k'\] of type Opaque"):
        key.build(([{"k": Opaque()}],), {})
    with pytest.raises(InvalidKeyError, match=r"argument '\*rest' at \[1\] of type Opaque"):
        key.build((1, 2, Opaque()), {})
    with pytest.raises(InvalidKeyError, match=r"argument '\*\*extra' at \['z'\] of type Opaque"):
        key.build((1,), {"z": Opaque()})
    assert key.build((Keyed(1),), {}) == "#" + fingerprint(Keyed(1))


def test_render_checks_kwargs_mapping() -> None:
    def kw(**extra: object) -> None: ...

    with pytest.raises(InvalidKeyError, match=r"argument '\*\*extra' must be a dict with str"):
        ArgumentKey(kw).render({"extra": {1: 2}})


def test_bad_signature_is_a_configuration_error() -> None:
    class Odd:
        __signature__ = "not a signature"

        def __call__(self) -> None: ...

    with pytest.raises(ConfigurationError, match="cannot read the signature"):
        ArgumentKey(Odd())


SHAPES: list[Callable[..., None]] = []


def _shape(func: Callable[..., None]) -> Callable[..., None]:
    SHAPES.append(func)
    return func


@_shape
def s_fixed(a: object, b: object) -> None: ...


@_shape
def s_mixed(a: object, b: object = 0, *args: object, c: object = None, **kw: object) -> None: ...


@_shape
def s_var(*args: object, **kwargs: object) -> None: ...


@_shape
def s_posonly(a: object, /, b: object = "x", *, c: object, **kw: object) -> None: ...


@_shape
def s_kwonly(*, a: object = 1, b: object) -> None: ...


NAMES = ["a", "b", "c", "kw", "args", "kwargs", "x", "a=b", ":", "#", "", "é", "1", "a:b"]
text = st.text(alphabet="ab1-:#!=.é ", max_size=4)
# Values that read alike once written down: the ones an encoding is most likely to confuse.
CONFUSABLE: list[object] = [
    1, "1", 1.0, "!1.0", True, "true", "!true", False, "!false", None, "none", "!none",
    "", "#", "!", "=", ":", "a", "b", "a:b", "a=b", "b=1", 2, 3, 12, 23, "12", "-1", -1,
    float("nan"), "nan", "!nan", [1], (1,), ["1"], [], (), {}, {"a": 1}, {"a": "1"}, [[]],
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(CONFUSABLE),
    st.integers(-3, 30),
    st.integers(),
    text,
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
)
values: st.SearchStrategy[object] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(text, inner, max_size=3),
    ),
    max_leaves=6,
)
calls = st.tuples(
    st.lists(values, max_size=4).map(tuple),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=4),
)


def canon(value: object) -> object:
    """A type-strict, order-insensitive reference form, independent of kirocache."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(canon(v) for v in value))
    if isinstance(value, dict):
        items = sorted(((canon(k), canon(v)) for k, v in value.items()), key=repr)
        return ("dict", tuple(items))
    if isinstance(value, set):
        return ("set", tuple(sorted((canon(v) for v in value), key=repr)))
    return (type(value).__name__, value)


P = inspect.Parameter


def assert_injective(cases: list[tuple[object, str]]) -> None:
    """Equal reference forms give equal bodies, and different ones different bodies."""
    by_body: dict[str, object] = {}
    by_canon: dict[str, str] = {}
    for reference, key_body in cases:
        assert by_body.setdefault(key_body, reference) == reference, key_body
        assert by_canon.setdefault(repr(reference), key_body) == key_body, reference


def test_look_alike_values_never_collide_in_any_position() -> None:
    def one(x: object) -> None: ...

    def var(*args: object, **kwargs: object) -> None: ...

    pool = CONFUSABLE + [reorder(v) for v in CONFUSABLE]
    makers: list[Callable[[object], tuple[tuple[object, ...], dict[str, object]]]] = [
        lambda v: ((v,), {}),
        lambda v: (("a", v), {}),
        lambda v: ((), {"k": v}),
        lambda v: (([v],), {}),
        lambda v: (({"k": v},), {}),
        lambda v: (({v} if isinstance(v, (int, float, str)) else (v,),), {}),
    ]
    for make in makers:
        for func in (one, var):
            cases = []
            for value in pool:
                args, kwargs = make(value)
                if func is one and (len(args) != 1 or kwargs):
                    continue
                cases.append((canon((args, kwargs)), ArgumentKey(func).build(args, kwargs)))
            assert_injective(cases)


def test_star_args_and_kwargs_shapes_never_collide() -> None:
    def var(*args: object, **kwargs: object) -> None: ...

    def mixed(a: object = 0, *args: object, k: object = 0, **kwargs: object) -> None: ...

    arg_options: list[tuple[object, ...]] = [
        (), ("a",), ("b",), ("a", "b"), ("a:b",), ("a=b",), (1,), ("1",), (1, 2), ("k=1",),
        ("b=1",), ("a", "b=1"), (0,), ("0",),
    ]  # fmt: skip
    kwarg_options: list[dict[str, object]] = [
        {}, {"a": 1}, {"b": 1}, {"a:b": 1}, {"a=b": 1}, {"a": "b=1"}, {"a": "b", "c": 1},
        {"a": "b:c=1"}, {"k": 1}, {"k": 0}, {"": 1}, {"#": 1}, {"b": "1"}, {"1": 1},
    ]  # fmt: skip
    for func in (var, mixed):
        signature = inspect.signature(func)
        cases = []
        for args in arg_options:
            for kwargs in kwarg_options:
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError:
                    continue
                bound.apply_defaults()
                cases.append((canon(dict(bound.arguments)), ArgumentKey(func).build(args, kwargs)))
        assert_injective(cases)


@st.composite
def bound_arguments(draw: st.DrawFn, func: Callable[..., None]) -> dict[str, object]:
    """Values for every parameter of ``func``, as ``Signature.bind`` + defaults would give."""
    params = list(inspect.signature(func).parameters.values())
    named = {p.name for p in params if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
    extra_names = st.sampled_from([n for n in NAMES if n not in named])
    bound: dict[str, object] = {}
    for p in params:
        if p.kind is P.VAR_POSITIONAL:
            bound[p.name] = tuple(draw(st.lists(values, max_size=3)))
        elif p.kind is P.VAR_KEYWORD:
            bound[p.name] = draw(st.dictionaries(extra_names, values, max_size=3))
        elif p.default is not P.empty and draw(st.booleans()):
            bound[p.name] = p.default
        else:
            bound[p.name] = draw(values)
    return bound


def to_call(
    func: Callable[..., None], bound: dict[str, Any], cut: int, *, omit_defaults: bool
) -> tuple[tuple[object, ...], dict[str, object]]:
    """One way to call ``func`` that binds to ``bound``: the first ``cut`` positionally."""
    params = list(inspect.signature(func).parameters.values())
    positional_params = [
        p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    ]
    star = next((bound[p.name] for p in params if p.kind is P.VAR_POSITIONAL), ())
    only = sum(p.kind is P.POSITIONAL_ONLY for p in params)
    cut = len(positional_params) if star else max(cut, only)
    args: list[object] = [bound[p.name] for p in positional_params[:cut]]
    args.extend(star)
    kwargs: dict[str, object] = {}
    for p in params:
        if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY) and p not in positional_params[:cut]:
            if not (omit_defaults and bound[p.name] is p.default):
                kwargs[p.name] = bound[p.name]
        elif p.kind is P.VAR_KEYWORD:
            kwargs.update(bound[p.name])
    return tuple(args), kwargs


def tweak(
    data: st.DataObject, func: Callable[..., None], bound: dict[str, Any]
) -> dict[str, object]:
    """``bound`` with one value swapped for a look-alike (or an element added or dropped)."""
    params = inspect.signature(func).parameters
    name = data.draw(st.sampled_from(sorted(bound)))
    new = dict(bound)
    swap = st.sampled_from(CONFUSABLE)
    if params[name].kind is P.VAR_POSITIONAL:
        items = list(bound[name])
        replace = data.draw(st.booleans())
        if items and replace:
            items[data.draw(st.integers(0, len(items) - 1))] = data.draw(swap)
        else:
            items.insert(data.draw(st.integers(0, len(items))), data.draw(swap))
        new[name] = tuple(items)
    elif params[name].kind is P.VAR_KEYWORD:
        taken = {p for p in params if params[p].kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
        key = data.draw(st.sampled_from([n for n in NAMES if n not in taken]))
        new[name] = {**bound[name], key: data.draw(swap)}
    else:
        new[name] = data.draw(swap)
    return new


@given(st.data(), st.sampled_from(SHAPES))
def test_different_arguments_give_different_bodies(
    data: st.DataObject, func: Callable[..., None]
) -> None:
    first = data.draw(bound_arguments(func))
    if data.draw(st.booleans()):
        second = data.draw(bound_arguments(func))
    else:
        second = tweak(data, func, first)
    cuts = data.draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))
    key = ArgumentKey(func)
    one = key.build(*to_call(func, first, cuts[0], omit_defaults=True))
    two = key.build(*to_call(func, second, cuts[1], omit_defaults=False))
    assert (one == two) == (canon(first) == canon(second))


@given(st.sampled_from(SHAPES), calls, calls)
def test_arbitrary_calls_never_collide(func: Callable[..., None], first: Any, second: Any) -> None:
    key = ArgumentKey(func)
    signature = inspect.signature(func)
    try:
        one = signature.bind(*first[0], **first[1])
        two = signature.bind(*second[0], **second[1])
    except TypeError:
        return
    one.apply_defaults()
    two.apply_defaults()
    same = canon(dict(one.arguments)) == canon(dict(two.arguments))
    assert (key.build(*first) == key.build(*second)) == same


@given(st.sampled_from(SHAPES), calls)
def test_fast_bind_matches_signature_bind(func: Callable[..., None], call: Any) -> None:
    key = ArgumentKey(func)
    args, kwargs = call
    try:
        expected = inspect.signature(func).bind(*args, **kwargs)
    except TypeError as exc:
        message = str(exc)
    else:
        expected.apply_defaults()
        assert key.bind(args, kwargs) == dict(expected.arguments)
        return
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        key.bind(args, kwargs)


def reorder(value: Any) -> Any:
    """An equal value built afresh, with every dict in reverse insertion order."""
    if isinstance(value, list):
        return [reorder(v) for v in value]
    if isinstance(value, tuple):
        return tuple(reorder(v) for v in value)
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    return value


@given(st.data(), st.sampled_from(SHAPES))
def test_equal_arguments_give_equal_bodies(data: st.DataObject, func: Callable[..., None]) -> None:
    bound = data.draw(bound_arguments(func))
    cuts = data.draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))
    key = ArgumentKey(func)
    args, kwargs = to_call(func, bound, cuts[0], omit_defaults=True)
    expected = key.build(args, kwargs)
    assert canon(key.bind(args, kwargs)) == canon(bound)
    other_args, other_kwargs = to_call(func, reorder(bound), cuts[1], omit_defaults=False)
    order = data.draw(st.permutations(list(other_kwargs)))
    other_kwargs = {k: other_kwargs[k] for k in order}
    assert key.build(other_args, other_kwargs) == expected


@given(st.dictionaries(text, values, max_size=5))
def test_dict_order_does_not_change_a_key(mapping: dict[str, object]) -> None:
    def f(filters: object) -> None: ...

    assert body(f, mapping) == body(f, reorder(mapping))
    assert fingerprint(mapping) == fingerprint(reorder(mapping))


# -- key templates -------------------------------------------------------------------------


def test_template_with_attribute_and_index_access() -> None:
    def settings(user: object, lang: str = "en", tags: object = ()) -> None: ...

    user = SimpleNamespace(id=123, profile={"name": "ada", "0": "zero"})
    template = KeyTemplate("{user.id}:{lang}", settings)
    assert template.build((user,), {}) == "123:en"
    assert template.build((), {"user": user, "lang": "fr"}) == "123:fr"
    assert KeyTemplate("u{user.profile[name]}", settings).build((user,), {}) == "uada"
    assert KeyTemplate("t={tags[1]}", settings).build((user,), {"tags": [1, 2]}) == "t=2"
    assert KeyTemplate("static", settings).build((user,), {}) == "static"
    assert KeyTemplate("{{literal}}:{lang}", settings).build((user,), {}) == "{literal}:en"


def test_template_values_follow_the_scalar_rules() -> None:
    def f(x: object) -> None: ...

    template = KeyTemplate("x:{x}", f)
    assert template.build((True,), {}) == "x:!true"
    assert template.build(("1",), {}) == "x:#" + fingerprint("1")
    assert template.build(([1, 2],), {}) == "x:#" + fingerprint([1, 2])
    with pytest.raises(InvalidKeyError, match=r"template field \{x\} of type Opaque"):
        template.build((Opaque(),), {})
    long = KeyTemplate("{x}" + ":pad" * 60, f)
    assert long.build((1,), {}).startswith("##")


def test_template_can_use_self_and_shares_the_binder() -> None:
    class Account:
        id = 9

        def balance(self, currency: str) -> None: ...

    template = KeyTemplate("{self.id}:{currency}", Account.balance)
    arguments = ArgumentKey(Account.balance)
    bound = arguments.bind((Account(), "EUR"), {})
    assert template.render(bound) == "9:EUR"
    assert arguments.render(bound) == "EUR"


def test_template_resolution_errors_are_clear() -> None:
    def f(user: object) -> None: ...

    with pytest.raises(InvalidKeyError) as info:
        KeyTemplate("{user.id}", f).build((None,), {})
    assert "key template '{user.id}' cannot resolve {user.id} for this call" in str(info.value)
    assert "AttributeError" in str(info.value)
    with pytest.raises(InvalidKeyError, match="IndexError"):
        KeyTemplate("{user[3]}", f).build(([1],), {})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{usr}", "has no parameter 'usr'; its parameters are: user, lang"),
        ("{usr.id}:{lang}", "no parameter 'usr'"),
        ("{user!r}", "conversion or format spec"),
        ("{user:>5}", "conversion or format spec"),
        ("{}", "must name a parameter"),
        ("{0}", "must name a parameter"),
        ("{user-1}", "must name a parameter"),
        ("{user}{lang}", "fields {user} and {lang} touch"),
        ("{user", "is malformed"),
        ("", "must be a non-empty str"),
    ],
)  # fmt: skip
def test_bad_templates_are_configuration_errors(template: str, message: str) -> None:
    def f(user: object, lang: str = "en") -> None: ...

    with pytest.raises(ConfigurationError) as info:
        KeyTemplate(template, f)
    assert message in str(info.value)


def test_reprs_are_informative() -> None:
    assert repr(ArgumentKey(Repo.get)) == (
        "ArgumentKey((self, user_id: 'int', lang: 'str' = 'en') -> 'None', skipped='self')"
    )
    assert repr(KeyTemplate("{x}", lambda x: None)) == "KeyTemplate('{x}')"


def test_docstring_examples_run() -> None:
    import doctest

    failed, attempted = doctest.testmod(keys)
    assert attempted > 0
    assert failed == 0


@given(st.one_of(st.text(min_size=1), st.text().map(lambda tail: "kirocache" + tail)))
def test_the_reserved_check_is_exactly_the_prefix(key: str) -> None:
    """The cheap range comparison in ``KeySpace.resolve`` refuses exactly these keys."""
    from kirocache._cache.keyspace import KeySpace

    space = KeySpace("app:", None, [Namespace("kiro"), Namespace("x:")])
    for body, namespace in ((key, None), (key[4:] if key.startswith("kiro") else None, "kiro")):
        if body is None or (namespace is not None and not body):
            continue
        ns = Namespace(namespace) if namespace else None
        whole = (namespace or "") + body
        if whole.startswith("kirocache:"):
            with pytest.raises(InvalidKeyError, match="reserved"):
                space.resolve(body, ns)
        else:
            assert space.resolve(body, ns)[0] == "app:" + whole
