"""Canonical, type-tagged encoding of values and the xxh3_128 hashes built on it.

`kirocache.keys.fingerprint`, `kirocache.keys.code_hash` and the ``#`` components of argument
keys all hash here, so the same value gives the same hash in every process and on every run.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, Final
from uuid import UUID

import msgspec
import xxhash

from kirocache.exceptions import InvalidKeyError

_hex128 = xxhash.xxh3_128_hexdigest
_MAX_DEPTH: Final = 100


def _is_text(value: object) -> bool:
    """Whether ``value`` is a non-empty str (a runtime check of what annotations promise)."""
    return isinstance(value, str) and bool(value)


class _EncodeError(Exception):
    """Raised inside the encoder; turned into an `InvalidKeyError` naming the argument."""

    def __init__(self, reason: str, type_name: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.type_name = type_name
        self.path: list[str] = []

    def error(self, label: str) -> InvalidKeyError:
        where = label + (" at " + "".join(reversed(self.path)) if self.path else "")
        if self.type_name:
            name = self.type_name
            msg = (
                f"cannot build a cache key from {where} of type {name}: pass key=... or give "
                f"{name} a __cache_key__() method"
            )
        else:
            msg = f"cannot build a cache key from {where}: {self.reason}"
        return InvalidKeyError(msg)


def _atom(tag: bytes, payload: bytes) -> bytes:
    return b"%b%d:%b" % (tag, len(payload), payload)


def _text(tag: bytes, text: str) -> bytes:
    # Unbound str.encode: a str subclass cannot change how it is keyed.
    return _atom(tag, str.encode(text, "utf-8", "surrogatepass"))


def _qualname(t: type) -> bytes:
    return _text(b"q", f"{t.__module__}.{t.__qualname__}")


# Every encoding is a tag byte, then a length or count and ":", then the payload: each one is
# self-delimiting, so a concatenation of encodings is unambiguous.
_SCALARS: Final[dict[type, Callable[[Any], bytes]]] = {
    type(None): lambda _: b"N",
    bool: lambda v: b"T" if v else b"F",
    int: lambda v: _text(b"i", int.__format__(v, "x")),
    float: lambda v: _text(b"f", float.__repr__(v)),
    str: lambda v: _text(b"s", v),
    bytes: lambda v: _atom(b"b", bytes(v)),
    bytearray: lambda v: _atom(b"b", bytes(v)),
    datetime: lambda v: _text(b"D", datetime.isoformat(v)),
    date: lambda v: _text(b"a", date.isoformat(v)),
    time: lambda v: _text(b"h", time.isoformat(v)),
    timedelta: lambda v: _text(b"g", f"{v.days},{v.seconds},{v.microseconds}"),
    UUID: lambda v: _atom(b"u", v.bytes),
    Decimal: lambda v: _text(b"m", Decimal.__str__(v)),
}
# Subclasses (an ``int`` subclass used as an id type, a ``datetime`` subclass) encode as their
# base; the order matters where one base derives from another (datetime from date).
_BASES: Final = (str, int, float, bytes, bytearray, datetime, date, time, timedelta, UUID, Decimal)


@functools.lru_cache(maxsize=512)
def _dataclass_fields(t: Any) -> tuple[str, ...]:
    # Only the fields that take part in ==, so equal instances share a key.
    return tuple(f.name for f in dataclasses.fields(t) if f.compare)


def _record(
    tag: bytes, t: type, items: list[tuple[str, object]], out: bytearray, seen: set[int]
) -> None:
    out += b"%b%d:%b" % (tag, len(items), _qualname(t))
    name = ""
    try:
        for name, item in items:
            out += _text(b"s", name)
            _encode(item, out, seen)
    except _EncodeError as exc:
        exc.path.append(f".{name}")
        raise


def _sequence(value: list[object] | tuple[object, ...], out: bytearray, seen: set[int]) -> None:
    out += b"%b%d:" % (b"t" if isinstance(value, tuple) else b"l", len(value))
    index = -1
    try:
        for item in value:
            index += 1
            _encode(item, out, seen)
    except _EncodeError as exc:
        exc.path.append(f"[{index}]")
        raise


def _mapping(value: dict[object, object], out: bytearray, seen: set[int]) -> None:
    pairs = []
    key: object = None
    try:
        for key, item in value.items():
            pairs.append((_encoded(key, seen), _encoded(item, seen)))
    except _EncodeError as exc:
        exc.path.append(f"[{key!r}]" if type(key) in (str, int) else "[...]")
        raise
    # Sorted by encoded key alone: two keys never share an encoding unless they are equal
    # (NaN aside), and values may not be comparable.
    pairs.sort(key=itemgetter(0))
    out += b"d%d:%b" % (len(pairs), b"".join(k + v for k, v in pairs))


def _encoded(value: object, seen: set[int]) -> bytes:
    out = bytearray()
    _encode(value, out, seen)
    return bytes(out)


def _encode(value: object, out: bytearray, seen: set[int]) -> None:
    t = type(value)
    scalar = _SCALARS.get(t)
    if scalar is not None:
        out += scalar(value)
        return
    ident = id(value)
    if ident in seen:
        msg = "it contains itself"
        raise _EncodeError(msg)
    if len(seen) >= _MAX_DEPTH:
        msg = f"it is nested more than {_MAX_DEPTH} levels deep"
        raise _EncodeError(msg)
    seen.add(ident)
    try:
        _encode_object(value, t, out, seen)
    finally:
        seen.discard(ident)


def _encode_object(value: object, t: type, out: bytearray, seen: set[int]) -> None:
    cache_key = getattr(t, "__cache_key__", None)
    if cache_key is not None:
        out += b"K" + _qualname(t)
        _encode(cache_key(value), out, seen)
    elif isinstance(value, enum.Enum):
        out += b"E" + _qualname(t)
        _encode(value.value, out, seen)
    elif isinstance(value, (list, tuple)) and not hasattr(t, "_fields"):
        _sequence(value, out, seen)
    elif isinstance(value, dict):
        _mapping(value, out, seen)
    elif isinstance(value, (set, frozenset)):
        try:
            items = sorted(_encoded(item, seen) for item in value)
        except _EncodeError as exc:
            exc.path.append("{...}")
            raise
        out += b"e%d:%b" % (len(items), b"".join(items))
    elif isinstance(value, tuple):
        names: tuple[str, ...] = t._fields  # type: ignore[attr-defined]
        _record(b"R", t, list(zip(names, value, strict=True)), out, seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = _dataclass_fields(t)
        _record(b"C", t, [(n, getattr(value, n)) for n in fields], out, seen)
    elif isinstance(value, msgspec.Struct):
        fields = value.__struct_fields__
        _record(b"M", t, [(n, getattr(value, n)) for n in fields], out, seen)
    else:
        for base in _BASES:
            if isinstance(value, base):
                out += _SCALARS[base](value)
                return
        msg = "unsupported type"
        raise _EncodeError(msg, t.__qualname__)


def _digest(value: object, label: str, index: int | str | None = None) -> str:
    try:
        return _hex128(_encoded(value, set()))
    except _EncodeError as exc:
        if index is not None:
            exc.path.append(f"[{index!r}]")
        raise exc.error(label) from None
