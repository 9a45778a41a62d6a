"""Whether a value comes back from a JSON entry as it went in, checked before it is stored.

JSON has fewer types than Python: an untyped read gives a tuple back as a list, a
``Decimal`` as text, a dataclass as a dict, and ``inf`` was written as ``null``. A typed read
(``@cached``'s return annotation) brings most of them back exactly, so a value is faithful
when its entry, decoded the way a hit will decode it, equals it. ``Check`` answers that for
one annotation, at once for plain scalars, and says where and why a value is not, so the
caller refuses it loudly rather than storing what a hit would change.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from collections.abc import Callable
from types import UnionType
from typing import Any, Final

import msgspec
import orjson

from kirocache._values.formats import OrjsonSerializer, _encode
from kirocache._values.packed import MsgpackSerializer
from kirocache._values.typed_decode import _decoder
from kirocache.exceptions import CorruptValueError

__all__ = ["Check", "packed_reason", "speaks_json", "speaks_msgpack"]

# JSON entries hold integers of at most 64 bits, signed or not (orjson's limits).
_INT_RANGE: Final = range(-(2**63), 2**64)
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
# Keys in a path are shown when short (field names, codes), else elided: values stay private.
_SHOWN_KEY: Final = 32
_MAX_WRAPPERS: Final = 8


def _speaks(serializer: object, kind: type) -> bool:
    """Whether ``serializer`` is a ``kind``, or wraps one (compressed, encrypted)."""
    for _ in range(_MAX_WRAPPERS):
        if isinstance(serializer, kind):
            return True
        serializer = getattr(serializer, "_inner", None)
        if serializer is None:
            return False
    return False


def speaks_json(serializer: object) -> bool:
    """Whether ``serializer`` stores JSON: an ``OrjsonSerializer`` or a wrapper around one."""
    return _speaks(serializer, OrjsonSerializer)


def speaks_msgpack(serializer: object) -> bool:
    """Whether ``serializer`` stores MessagePack: a ``MsgpackSerializer``, or one wrapped."""
    return _speaks(serializer, MsgpackSerializer)


def packed_reason(value: object, annotation: Any) -> str | None:
    """Why ``value`` would not read back equal from a MessagePack entry (``None``: it would).

    MessagePack keeps bytes, non-finite floats and integer keys, so the check is the round
    trip itself: the value, decoded the way a hit decodes it, must equal it and be of its
    type (a dataclass from an unannotated function reads back as a dict).
    """
    serializer = MsgpackSerializer()
    try:
        back = serializer.loads(serializer.dumps(value), annotation)
    except CorruptValueError as exc:  # the annotation does not take the value
        return str(exc)
    if type(back) is not type(value) and not (type(value) is int and type(back) is float):
        return f"a {type(value).__name__} reads back as a {type(back).__name__}"
    if back != value:
        return "it reads back changed (a tuple, set or Decimal the annotation does not name?)"
    return None


def _scalar(value: object) -> bool:
    """Whether ``value`` reads back as itself however it is read: a plain JSON scalar."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if kind is int:
        return value in _INT_RANGE
    return kind is str or kind is bool or value is None


def _scalar_test(annotation: Any) -> Callable[[object], bool] | None:
    """For ``int``, ``str``, ``float``, ``bool``, ``None`` and unions of them, a quick yes.

    ``None`` for other annotations. What the test does not accept is checked the slow way,
    not refused (an ``IntEnum`` for ``-> int``, say).
    """
    union = typing.get_origin(annotation) in (typing.Union, UnionType)
    kinds = set(typing.get_args(annotation)) if union else {annotation}
    if not kinds <= _SCALARS:
        return None
    if float in kinds:  # a JSON 1 decodes into a float as 1.0, which equals it
        kinds.add(int)
    frozen = frozenset(kinds)

    def accepts(value: object) -> bool:
        return type(value) in frozen and _scalar(value)

    return accepts


# Annotations whose typed read is an untyped one under a dict or list: the fast walk checks
# them, without a round trip.
_JSON_OBJECT: Final[frozenset[Any]] = frozenset((dict, dict[str, Any], dict[str, object]))
_JSON_ARRAY: Final[frozenset[Any]] = frozenset((list, list[Any], list[object]))


class Check:
    """Tells whether a value stored as JSON reads back as itself, for one annotation.

    Args:
        annotation: The type a hit is decoded into, or ``None`` for an untyped read.

    Calling it with a value returns ``None`` when the value is faithful, else the reason it
    is not: where in the value (``$['scores'][2]``), what it would become, and the fix.

    Raises:
        SerializationError: When called: the value has no JSON form at all, or the
            annotation is one msgspec cannot decode into.
    """

    __slots__ = ("_decoder", "_quick", "_top", "annotation")

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self._quick = _scalar_test(annotation) if annotation is not None else None
        # an untyped read, or one typed as a JSON object or array of anything
        self._top: type | None = None
        if annotation is None or annotation is object:
            self._top = object
        elif _hashable(annotation) and annotation in _JSON_OBJECT:
            self._top = dict
        elif _hashable(annotation) and annotation in _JSON_ARRAY:
            self._top = list
        # built on the first value, so an annotation is judged only where JSON is used
        self._decoder: msgspec.json.Decoder[Any] | None = None

    def __call__(self, value: object) -> str | None:
        return self.judge(value)[0]

    def judge(self, value: object) -> tuple[str | None, bytes | None]:
        """Why ``value`` would not read back as itself (``None``: it would), and its payload.

        The payload is the JSON ``OrjsonSerializer`` would frame for the value, when the
        check encoded it on the way (``None`` when it did not): a store can frame it
        rather than encode the value again.

        Raises:
            SerializationError: The value has no JSON form at all, or the annotation is
                one msgspec cannot decode into.
        """
        quick = self._quick
        if quick is not None and quick(value):
            return None, None
        if self._top is not None:
            return _json_value(value, self._top)
        payload = _encode(value)
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _decoder(self.annotation)
        try:
            back = decoder.decode(payload)
        except msgspec.ValidationError as exc:
            return _undecodable(value, exc, self.annotation), None
        if back == value:
            return None, payload
        # None: equal field by field (a class whose == is identity, say)
        reason = _difference(value, back, "$")
        return reason, payload if reason is None else None


def _undecodable(value: object, exc: msgspec.ValidationError, annotation: Any) -> str:
    """Why a value's entry does not decode into the annotation at all."""
    found = _unrepresentable(value, "$")
    if found is not None:
        return found
    if value is None:
        name = annotation.__qualname__ if isinstance(annotation, type) else str(annotation)
        return f"it returned None: annotate the return type -> {name} | None to cache None"
    return f"a hit would not decode it ({exc})"


def _json_value(value: object, top: type) -> tuple[str | None, bytes | None]:
    """Why ``value`` is not plain JSON under a ``top`` (``dict``, ``list`` or any), or ``None``.

    And the JSON payload of a plain value: a strict encode (``_strict``) refuses in C
    what is not plain JSON in keys, integers and subclasses, and its bytes are the entry's
    payload; the walk after it (``_leaves``) looks only at the types of the leaves. A
    value either refuses is walked again the slow way, which says where and why.
    """
    if top is not object and type(value) is not top:
        if not isinstance(value, top):
            reason = (
                f"it is {_a(_name(type(value)))}, not the {_name(top)} its annotation says: "
                f"return {_a(_name(top))}, or annotate what it returns"
            )
            return reason, None
        value = top(value)  # a subclass (defaultdict): a hit gives the base type back
    payload = _strict(value)
    if payload is not None and _leaves(value):
        return None, payload
    return (None if _plain(value) else _not_json(value, "$")), None


# The strict encode: subclasses of the JSON types, dataclasses and datetimes go to
# ``default`` (which refuses them, as it refuses anything without a JSON form), and so
# do keys that are not exactly ``str`` and integers beyond 64 bits (orjson refuses both).
# What it lets by and a read would change: tuples, enums, UUIDs and non-finite floats
# (written as null), which ``_leaves`` finds by type. A value it accepts is written
# exactly as ``_encode`` writes it: no ``default`` ran, no option changed a byte.
_STRICT: Final = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def _refuse(obj: object) -> None:
    raise TypeError


def _strict(value: object) -> bytes | None:
    """The JSON payload of ``value`` if it holds only JSON's own types, else ``None``."""
    try:
        return orjson.dumps(value, default=_refuse, option=_STRICT)
    except orjson.JSONEncodeError:  # a refusal, or nesting deeper than orjson goes
        return None


def _leaves(value: object) -> bool:
    """After ``_strict`` took ``value``: whether its leaves are all plain JSON (by type)."""
    kind = type(value)
    if kind is dict:
        return _leaves_dict(value)  # type: ignore[arg-type]
    if kind is list:
        return _leaves_list(value)  # type: ignore[arg-type]
    return kind is str or kind is bool or kind is int or value is None or _finite(value)


def _finite(value: object) -> bool:
    return type(value) is float and math.isfinite(value)


# The walk after the strict encode, one call per container but the records of a list,
# walked inline (a list of records is the usual large result): keys and integer ranges
# are the encode's, so a leaf is judged by its exact type alone (and a float by its value).


def _leaves_dict(value: dict[str, Any]) -> bool:
    for item in value.values():
        leaf = type(item)
        if leaf is str or leaf is bool or leaf is int or item is None:
            continue
        if leaf is dict:
            if not _leaves_dict(item):
                return False
        elif leaf is list:
            if not _leaves_list(item):
                return False
        elif leaf is not float or not math.isfinite(item):
            return False
    return True


def _leaves_list(value: list[Any]) -> bool:  # noqa: PLR0912 - records walked inline
    for item in value:
        leaf = type(item)
        if leaf is dict:
            for field in item.values():
                kind = type(field)
                if kind is str or kind is bool or kind is int or field is None:
                    continue
                if kind is dict:
                    if not _leaves_dict(field):
                        return False
                elif kind is list:
                    if not _leaves_list(field):
                        return False
                elif kind is not float or not math.isfinite(field):
                    return False
            continue
        if leaf is str or leaf is bool or leaf is int or item is None:
            continue
        if leaf is list:
            if not _leaves_list(item):
                return False
        elif leaf is not float or not math.isfinite(item):
            return False
    return True


def _hashable(annotation: Any) -> bool:
    try:
        hash(annotation)
    except TypeError:
        return False
    return True


def _plain(value: object) -> bool:
    """Whether ``value`` is plain JSON, so an untyped read gives it back as it is.

    A dict with str keys, a list, a str, a bool, ``None``, a finite float, an int of at most
    64 bits: exact types, no subclass (a ``StrEnum`` reads back as a str).
    """
    kind = type(value)
    if kind is dict:
        return _plain_dict(value)  # type: ignore[arg-type]
    if kind is list:
        return _plain_list(value)  # type: ignore[arg-type]
    return _scalar(value)


# The hot loops of a miss's check, one call per container: the common leaves are told apart
# inline, in the order they are most often met. The two differ only in the key check.


def _plain_dict(value: dict[Any, Any]) -> bool:
    for key, item in value.items():
        if type(key) is not str:
            return False
        leaf = type(item)
        if leaf is str or leaf is bool or item is None:
            continue
        if leaf is int:
            if item not in _INT_RANGE:
                return False
        elif leaf is dict:
            if not _plain_dict(item):
                return False
        elif leaf is list:
            if not _plain_list(item):
                return False
        elif leaf is not float or not math.isfinite(item):
            return False
    return True


def _plain_list(value: list[Any]) -> bool:
    for item in value:
        leaf = type(item)
        if leaf is str or leaf is bool or item is None:
            continue
        if leaf is int:
            if item not in _INT_RANGE:
                return False
        elif leaf is dict:
            if not _plain_dict(item):
                return False
        elif leaf is list:
            if not _plain_list(item):
                return False
        elif leaf is not float or not math.isfinite(item):
            return False
    return True


def _name(kind: type) -> str:
    return "None" if kind is type(None) else kind.__qualname__


def _key(path: str, key: object) -> str:
    if isinstance(key, str) and len(key) > _SHOWN_KEY:
        return f"{path}[...]"
    return f"{path}[{key!r}]"


def _non_finite(value: float, path: str) -> str:
    return (
        f"{path} is {value!r}, which JSON cannot hold (it would be stored as null): "
        "return None or a str there, or cache with PickleSerializer(secret=...)"
    )


def _too_big(path: str) -> str:
    return f"{path} is an int beyond 64 bits, which JSON entries cannot hold: return a str"


# What to write in the annotation for a value of each kind an untyped read changes.
_HINTS: Final[dict[type, str]] = {
    tuple: "tuple[int, ...]",
    set: "set[str]",
    frozenset: "frozenset[str]",
    dict: "dict[int, str]",
}


def _not_json(value: object, path: str) -> str | None:  # noqa: PLR0911 - a return per kind
    """Where an untyped read would change ``value``: its first part that is not plain JSON."""
    kind = type(value)
    if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
        return _non_finite(value, path)  # type: ignore[arg-type]
    if kind is int and value not in _INT_RANGE:
        return _too_big(path)
    if _scalar(value):
        return None
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return (
                    f"{_key(path, key)}: {_a(_name(type(key)))} key, which reads back as a "
                    f"str: annotate the return type (for example -> dict[{_name(type(key))}, "
                    "str]) so hits decode it, or use str keys"
                )
            found = _not_json(item, _key(path, key))
            if found is not None:
                return found
        return None
    if kind is list:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            found = _not_json(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    _encode(value)  # no JSON form at all: the serializer's error says so, and what to do
    hint = _HINTS.get(kind, _name(kind))
    return (
        f"{path} is {_a(_name(kind))}, which reads back as {_reads_as(value)} where the "
        f"return annotation does not name its type: annotate it (for example -> {hint}) "
        "so hits decode into it, or return plain JSON (dict, list, str, int, float, bool, None)"
    )


def _reads_as(value: object) -> str:
    """What an untyped read gives back for a value that is not plain JSON, in words."""
    if isinstance(value, enum.Enum):
        return "its value"
    if isinstance(value, (tuple, set, frozenset)):
        return "a list"
    if isinstance(value, (dict, msgspec.Struct)) or dataclasses.is_dataclass(value):
        return "a dict"
    for base, words in ((bool, "a bool"), (int, "an int"), (float, "a float"), (list, "a list")):
        if isinstance(value, base):
            return words
    return "a str"


def _a(name: str) -> str:
    vowel = name[:1].lower() in "aeiou" and not name.startswith(("UU", "Uni", "Use"))
    return f"an {name}" if vowel else f"a {name}"


def _parts(value: object, path: str) -> list[tuple[str, object]]:
    """The parts of a container or record, each with its path."""
    if isinstance(value, dict):
        return [(_key(path, key), item) for key, item in value.items()]
    fields: Any = getattr(value, "_fields", None)  # a NamedTuple
    if isinstance(value, msgspec.Struct):
        fields = value.__struct_fields__
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [field.name for field in dataclasses.fields(value)]
    if isinstance(fields, (tuple, list)):
        return [(f"{path}.{name}", getattr(value, name)) for name in fields]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    return []


def _unrepresentable(value: object, path: str) -> str | None:
    """The first non-finite float or over-long int inside ``value``, wherever it sits."""
    if isinstance(value, float):
        return None if math.isfinite(value) else _non_finite(value, path)
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT_RANGE:
        return _too_big(path)
    for where, item in _parts(value, path):
        found = _unrepresentable(item, where)
        if found is not None:
            return found
    return None


def _difference(value: object, back: object, path: str) -> str | None:  # noqa: PLR0911 - a return per kind
    """Where a typed read changes ``value`` into ``back``, or ``None`` if nowhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return _non_finite(value, path)
    kind, other = type(value), type(back)
    if kind is not other and not (kind is int and other is float):
        return (
            f"{path} is {_a(_name(kind))}, which the annotation reads back as "
            f"{_a(_name(other))}: return {_a(_name(other))} there, or annotate it as "
            f"{_name(kind)}"
        )
    if isinstance(value, dict) and isinstance(back, dict):
        for key, item in value.items():
            if key not in back:
                return (
                    f"{_key(path, key)}: this {_name(type(key))} key reads back as another "
                    f"type: annotate the key type (dict[{_name(type(key))}, ...])"
                )
            found = _difference(item, back[key], _key(path, key))
            if found is not None:
                return found
        return None
    if isinstance(value, (set, frozenset)):
        return None if value == back else f"{path}: its items read back as other values"
    mine, theirs = _parts(value, path), _parts(back, path)
    if mine and len(mine) == len(theirs):
        for (where, item), (_, other_item) in zip(mine, theirs, strict=True):
            found = _difference(item, other_item, where)
            if found is not None:
                return found
        return None
    return None if value == back else f"{path} reads back as another {_name(kind)}"
