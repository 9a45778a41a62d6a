"""Key building: namespaces, ``make_key``, ``code_hash``, value fingerprints and argument keys.

Everything here is pure and deterministic: the same input gives the same key in every process
and on every Python run (no ``hash()``, no ``id()``, never ``str()``/``repr()`` of an arbitrary
object). Hashes are xxh3_128, written as 32 lowercase hex digits.

Argument keys
-------------
`ArgumentKey` turns the arguments of one call into the *body* of a key (the part after the
namespace prefix). The arguments are bound to the signature first (defaults applied, ``self`` /
``cls`` left out), then each parameter, in signature order, gives one or more *components*
joined by ``:``. A component is one of:

* ``123``, ``-5``: an ``int`` (exactly ``-?[0-9]+``; at most 20 digits);
* ``alice``, ``en-GB``, ``a.b@c.d``: a ``str`` of 1 to 64 characters from
  ``[A-Za-z0-9_.@-]`` that does not itself read as an ``int``;
* ``!true``, ``!false``, ``!none``, ``!1.5``, ``!nan``, ``!-inf``: a ``bool``, ``None`` or
  ``float`` (``!`` followed by ``true``/``false``/``none`` or the float's ``repr``);
* ``#`` followed by 32 hex digits: `fingerprint` of any other value (a list, a dict, a long or
  unsafe string such as ``"1"`` or ``"a:b"``, a dataclass, ...).

A ``*args`` parameter gives one component per element; a ``**kwargs`` parameter gives one
``name=component`` per entry, sorted by name, where ``name`` is the keyword itself when it is
1 to 64 characters of ``[A-Za-z0-9_.@-]``, else ``#`` and its fingerprint.

Why this is injective (two different sets of bound arguments never share a body, up to an
xxh3_128 collision): no component is empty or contains ``:``, so splitting the body on ``:``
recovers the component list (a function with no key parameters has the body ``""``, the empty
list). Plain components never contain ``=`` and keyword components always do, so the keyword
components are the trailing run that contains ``=``; every other parameter gives exactly one
component, so what remains is split by count, the ``*args`` elements being whatever lies
between the parameters before it and the keyword-only ones after it. Finally the four kinds of
component are told apart by their first character and shape (``!``, ``#``, the ``int`` pattern,
the rest), each kind is injective on its values, and the keyword name is everything before the
first ``=``, which a name never contains. Types are part of the value: ``f(1)``, ``f("1")``,
``f(1.0)`` and ``f(True)`` all differ.

A body longer than ``max_length`` is replaced by ``##`` and the hash of the whole body (never
cut); no component starts with ``##``, so a hashed body cannot equal a plain one.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import re
import string
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, Final, cast
from uuid import UUID

import msgspec
import xxhash

from kirocache._types import Duration, ttl_seconds
from kirocache.exceptions import ConfigurationError, InvalidKeyError

__all__ = ["ArgumentKey", "KeyTemplate", "Namespace", "code_hash", "fingerprint", "make_key"]

_hex128 = xxhash.xxh3_128_hexdigest
_BARE = re.compile(r"(?!-?[0-9]+\Z)[A-Za-z0-9_.@\-]{1,64}\Z")
_NAME = re.compile(r"[A-Za-z0-9_.@\-]{1,64}\Z")
_INT_LIMIT: Final = 10**20
_MAX_DEPTH: Final = 100
_HASHED_BODY: Final = "##"
_MIN_LENGTH: Final = len(_HASHED_BODY) + 32


def _is_text(value: object) -> bool:
    """Whether ``value`` is a non-empty str (a runtime check of what annotations promise)."""
    return isinstance(value, str) and bool(value)


# -- Namespace -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Namespace:
    """A key prefix with its default TTL and an optional version, such as ``user:profile:``.

    ``Namespace("user:profile:", ttl=3600).key(123)`` is ``"user:profile:123"``. Setting
    ``version=2`` makes it ``"user:profile:v2:123"``: bumping the version (for example with
    ``dataclasses.replace(ns, version=3)``) moves every key of the namespace at once, so entries
    written in an older format are never read again and expire by their TTL.

    Args:
        prefix: The key prefix; by convention it ends with ``:``.
        ttl: Default TTL of the namespace's entries (seconds or ``timedelta``); ``None`` or
            ``NEVER`` for no expiry. Stored as float seconds or ``None``.
        version: An int >= 1 inserted as ``v{version}:`` after the prefix, or ``None``.
        bumpable: Let ``cache.bump(namespace)`` invalidate the whole namespace in O(1) by
            raising a generation kept in the backend. Reads of a bumpable namespace fetch
            the generation with the value (one ``get_many`` instead of a ``get``, still one
            round trip); writes and deletes first read it.

    Raises:
        ConfigurationError: The prefix is not a non-empty str or the version is not an int >= 1.
        InvalidTTLError: The TTL is zero, negative or not a duration.
    """

    prefix: str
    ttl: float | None
    version: int | None
    bumpable: bool
    _head: str = dataclasses.field(init=False, repr=False, compare=False)

    def __init__(
        self,
        prefix: str,
        ttl: Duration | None = None,
        version: int | None = None,
        *,
        bumpable: bool = False,
    ) -> None:
        if not _is_text(prefix):
            msg = (
                f"namespace prefix must be a non-empty str such as 'user:profile:', got {prefix!r}"
            )
            raise ConfigurationError(msg)
        if version is not None and (type(version) is not int or version < 1):
            msg = f"namespace version must be an int >= 1 or None, got {version!r}"
            raise ConfigurationError(msg)
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "ttl", ttl_seconds(ttl))
        object.__setattr__(self, "version", version)
        if not isinstance(bumpable, bool):
            msg = f"bumpable must be True or False, got {bumpable!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        object.__setattr__(self, "bumpable", bumpable)
        head = prefix if version is None else f"{prefix}v{version}:"
        object.__setattr__(self, "_head", head)

    def key(self, *parts: object) -> str:
        """Build a key in this namespace from parts, as `make_key` joins them.

        Args:
            *parts: At least one part; see `make_key` for the accepted types.

        Returns:
            The prefix, the version segment if any, and the joined parts.

        Raises:
            InvalidKeyError: No part, an empty part or a part of an unsupported type.
        """
        return self._head + make_key(*parts)

    def full_key(self, body: str) -> str:
        """Put the prefix (and version segment) in front of an already-built key body.

        Args:
            body: The key body, for example from `ArgumentKey.build`; ``""`` gives the prefix
                and version segment alone, the scope of the whole namespace.

        Returns:
            The full key.
        """
        return self._head + body


# -- make_key and code_hash -------------------------------------------------------------------


def _part(part: object, index: int) -> str:
    t = type(part)
    if t is str:
        text: str = part  # type: ignore[assignment]
    elif t is int:
        text = str(part)
    elif t is bool:
        text = "true" if part else "false"
    elif isinstance(part, enum.Enum):
        return _part(part.value, index)
    elif isinstance(part, str):
        text = str.__str__(part)
    elif isinstance(part, int):
        text = int.__repr__(part)
    elif isinstance(part, float):
        text = float.__repr__(part)
    elif isinstance(part, UUID):
        text = str(part)
    elif isinstance(part, (date, time)):
        text = part.isoformat()
    elif isinstance(part, Decimal):
        text = Decimal.__str__(part)
    else:
        msg = (
            f"make_key() part at index {index} is of type {t.__qualname__}: parts must be str, "
            "int, float, bool, UUID, Enum, date, datetime or Decimal (use fingerprint() for "
            "other values)"
        )
        raise InvalidKeyError(msg)
    if not text:
        msg = f"make_key() part at index {index} is empty"
        raise InvalidKeyError(msg)
    return text


def make_key(*parts: object) -> str:
    """Join key parts with ``:``: ``make_key("user:profile", 123, "settings")``.

    That gives ``"user:profile:123:settings"``. Each part is written as: a str as is (it may
    contain ``:``), an int in decimal, a float by its ``repr``, a bool as ``true``/``false``, a
    UUID in its hyphenated form, an Enum as its value, a date, datetime or time by
    ``isoformat()``, a Decimal by its canonical string. Unlike `ArgumentKey`, this is meant for
    hand-made, readable keys: ``make_key("a:b")`` equals ``make_key("a", "b")``.

    Args:
        *parts: At least one part, none of them empty.

    Returns:
        The parts joined by ``:``.

    Raises:
        InvalidKeyError: No parts, an empty part, or a part of another type (the message
            names its index and type).
    """
    if not parts:
        msg = "make_key() needs at least one part"
        raise InvalidKeyError(msg)
    if len(parts) == 1:
        return _part(parts[0], 0)
    return ":".join([_part(part, index) for index, part in enumerate(parts)])


def code_hash(content: str | bytes, language: str) -> str:
    r"""Hash source code for a cache key, such as the key of a code analysis result.

    Line endings are normalised (``\r\n`` becomes ``\n``) so a Windows checkout hashes like a
    Unix one; str content is hashed as UTF-8, so ``code_hash("x", ...)`` equals
    ``code_hash(b"x", ...)``. The language (stripped and lower-cased) is part of the hash, so the
    same text in two languages gives two hashes.

    Args:
        content: The source code.
        language: The language name, such as ``"python"``; must not be blank.

    Returns:
        The xxh3_128 hex digest (32 characters).

    Raises:
        InvalidKeyError: The content is not str or bytes, or the language is not a non-blank
            str.
    """
    raw: object = content
    if isinstance(raw, str):
        data = raw.replace("\r\n", "\n").encode("utf-8", "surrogatepass")
    elif isinstance(raw, (bytes, bytearray)):
        data = bytes(raw).replace(b"\r\n", b"\n")
    else:
        msg = f"code_hash() content must be str or bytes, not {type(raw).__qualname__}"
        raise InvalidKeyError(msg)
    if not _is_text(language) or not language.strip():
        msg = f"code_hash() language must be a non-blank str such as 'python', got {language!r}"
        raise InvalidKeyError(msg)
    lang = language.strip().lower().encode("utf-8", "surrogatepass")
    return _hex128(b"%d:%b:%b" % (len(lang), lang, data))


# -- fingerprint -------------------------------------------------------------------------------


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


def fingerprint(value: object) -> str:
    """Hash a value by a canonical, type-tagged encoding, the same in every process.

    Supported: ``None``, bool, int, float (NaN and infinities included), str, bytes, tuple and
    list (told apart), dict (order does not matter), set and frozenset, datetime, date, time,
    timedelta, UUID, Decimal, Enum members, dataclass instances (their compared fields),
    NamedTuples, msgspec Structs, and any object whose class defines ``__cache_key__()``: the
    value it returns is encoded instead, with the class name. Subclasses of the scalar types
    encode as their base type. Types are part of the encoding: ``1``, ``1.0``, ``True`` and
    ``"1"`` all differ.

    Args:
        value: The value.

    Returns:
        The xxh3_128 hex digest (32 characters) of the encoding.

    Raises:
        InvalidKeyError: The value holds an unsupported type (the message names it and where it
            is), contains itself, or is nested more than 100 levels deep.
    """
    return _digest(value, "value")


# -- argument keys -----------------------------------------------------------------------------


def _component(value: Any, label: str, index: int | str | None = None) -> str:
    t = type(value)
    if t is str:
        if _BARE.match(value):
            return cast(str, value)
    elif t is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return str(value)
    elif value is None:
        return "!none"
    elif t is bool:
        return "!true" if value else "!false"
    elif t is float:
        return "!" + float.__repr__(value)
    return "#" + _digest(value, label, index)


def _limit(body: str, max_length: int) -> str:
    if len(body) > max_length:
        return _HASHED_BODY + _hex128(body.encode())
    return body


def _check_max_length(max_length: int) -> int:
    if type(max_length) is not int or max_length < _MIN_LENGTH:
        msg = (
            f"max_length must be an int >= {_MIN_LENGTH} (the length of a hashed body), "
            f"got {max_length!r}"
        )
        raise ConfigurationError(msg)
    return max_length


_REQUIRED: Final = inspect.Parameter.empty
_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ArgumentKey:
    """Builds key bodies from a function's call arguments; everything is precomputed once.

    The encoding is described, and shown injective, in this module's docstring.

    Example:
        >>> def profile(user_id: int, lang: str = "en") -> dict[str, str]: ...
        >>> keys = ArgumentKey(profile)
        >>> keys.build((123,), {}), keys.build((), {"user_id": 123, "lang": "en"})
        ('123:en', '123:en')

    Args:
        func: The function whose calls are keyed. A ``classmethod`` or ``staticmethod``
            object is unwrapped.
        skip_first: Leave the first parameter out of the body. ``None`` (the default) skips it
            when it is named ``self`` or ``cls``, or when ``func`` is a ``classmethod``.
        max_length: Bodies longer than this are replaced by ``##`` and their hash.

    Raises:
        ConfigurationError: The signature cannot be read, ``skip_first=True`` with no
            positional first parameter, or ``max_length`` is below 34.
    """

    __slots__ = (
        "_by_position",
        "_defaults",
        "_keywords",
        "_npos",
        "_plan",
        "_positional",
        "_simple",
        "_total",
        "_varkw",
        "_varpos",
        "max_length",
        "parameters",
        "signature",
        "skipped",
    )

    def __init__(
        self, func: Callable[..., Any], *, skip_first: bool | None = None, max_length: int = 200
    ) -> None:
        is_classmethod = isinstance(func, classmethod)
        if isinstance(func, (classmethod, staticmethod)):
            func = func.__func__
        try:
            self.signature: inspect.Signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            msg = f"cannot read the signature of {func!r} to build keys: {exc}; pass key=..."
            raise ConfigurationError(msg) from exc
        self.max_length: int = _check_max_length(max_length)
        params = list(self.signature.parameters.values())
        self.parameters: tuple[str, ...] = tuple(p.name for p in params)
        first = params[0] if params and params[0].kind in _POSITIONAL else None
        if skip_first is None:
            skip_first = first is not None and (is_classmethod or first.name in ("self", "cls"))
        if skip_first and first is None:
            msg = f"skip_first=True, but {func!r} has no positional first parameter"
            raise ConfigurationError(msg)
        self.skipped: str | None = first.name if skip_first and first is not None else None
        self._positional = tuple(p.name for p in params if p.kind in _POSITIONAL)
        self._npos = len(self._positional)
        self._keywords = frozenset(
            p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        self._varpos = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
        self._varkw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        self._defaults = tuple(
            (p.name, p.default) for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        self._total = len(params)
        stars: dict[Any, str] = {
            inspect.Parameter.VAR_POSITIONAL: "*",
            inspect.Parameter.VAR_KEYWORD: "**",
        }
        self._plan = tuple(
            (p.name, p.kind, f"argument {stars.get(p.kind, '') + p.name!r}")
            for p in params
            if p.name != self.skipped
        )
        # Without *args/**kwargs every parameter is one component: render takes a short path.
        self._simple: tuple[tuple[str, str], ...] | None = (
            None if self._varpos or self._varkw else tuple((n, lbl) for n, _, lbl in self._plan)
        )
        # And a call passing every positional parameter by position, no keyword: build takes
        # the components straight from ``args`` (the index of each, and its label).
        self._by_position: tuple[tuple[int, str], ...] | None = None
        if self._simple is not None and len(self._positional) == self._total:
            self._by_position = tuple(
                (self._positional.index(name), label) for name, label in self._simple
            )

    def __repr__(self) -> str:
        return f"ArgumentKey({self.signature}, skipped={self.skipped!r})"

    def _bind_slow(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind call arguments to the parameters, defaults applied, as ``Signature.bind`` does.

        Args:
            args: The positional arguments of the call (``self`` included for a method).
            kwargs: The keyword arguments of the call.

        Returns:
            Every parameter name mapped to its value; ``*args`` to a tuple, ``**kwargs`` to a
            dict, both possibly empty.

        Raises:
            TypeError: The arguments do not fit the signature (the error ``Signature.bind``
                raises).
        """
        npos = self._npos
        # Fewer args than positional parameters is normal (defaults), hence no strict=.
        bound = dict(zip(self._positional, args))  # noqa: B905
        if self._varpos is not None:
            bound[self._varpos] = args[npos:]
        elif len(args) > npos:
            return self._bind_slow(args, kwargs)
        if self._varkw is not None:
            extra: dict[str, Any] = {}
            bound[self._varkw] = extra
        for name, value in kwargs.items():
            if name in self._keywords:
                if name in bound:
                    return self._bind_slow(args, kwargs)
                bound[name] = value
            elif self._varkw is not None:
                extra[name] = value
            else:
                return self._bind_slow(args, kwargs)
        if len(bound) != self._total:
            for name, default in self._defaults:
                if name not in bound:
                    if default is _REQUIRED:
                        return self._bind_slow(args, kwargs)
                    bound[name] = default
        return bound

    def render(self, bound: Mapping[str, object]) -> str:
        """Build the key body from bound arguments (the result of `bind`).

        Args:
            bound: Every parameter name mapped to its value.

        Returns:
            The body; ``""`` for a function with no parameters besides ``self``/``cls``.

        Raises:
            InvalidKeyError: An argument holds a type that cannot be keyed (the message names
                the argument and the type), or a ``**kwargs`` value is not a dict of str keys.
        """
        if self._simple is not None:
            body = ":".join([_component(bound[name], label) for name, label in self._simple])
            return body if len(body) <= self.max_length else _limit(body, self.max_length)
        parts: list[str] = []
        for name, kind, label in self._plan:
            value = bound[name]
            if kind is inspect.Parameter.VAR_POSITIONAL:
                items: tuple[object, ...] = value  # type: ignore[assignment]
                parts.extend(_component(item, label, i) for i, item in enumerate(items))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                if not isinstance(value, dict) or not all(type(k) is str for k in value):
                    msg = f"{label} must be a dict with str keys to build a cache key"
                    raise InvalidKeyError(msg)
                for k in sorted(value):
                    head = k if _NAME.match(k) else "#" + _digest(k, f"{label} key")
                    parts.append(f"{head}={_component(value[k], label, k)}")
            else:
                parts.append(_component(value, label))
        return _limit(":".join(parts), self.max_length)

    def build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Bind the call arguments and build the key body: ``render(bind(args, kwargs))``.

        Args:
            args: The positional arguments of the call.
            kwargs: The keyword arguments of the call.

        Returns:
            The key body.

        Raises:
            TypeError: The arguments do not fit the signature.
            InvalidKeyError: An argument cannot be keyed.
        """
        fast = self._by_position
        if fast is not None and not kwargs and len(args) == self._npos:
            if len(fast) == 1:
                body = _component(args[fast[0][0]], fast[0][1])
            else:
                body = ":".join([_component(args[at], label) for at, label in fast])
            return body if len(body) <= self.max_length else _limit(body, self.max_length)
        return self.render(self.bind(args, kwargs))


# -- key templates -----------------------------------------------------------------------------

_FIELD = re.compile(r"([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[[^\[\]]+\])*)\Z")
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[([^\[\]]+)\]")


class KeyTemplate:
    """A ``str.format``-style key template over a function's parameters, compiled once.

    ``KeyTemplate("{user.id}:{lang}", func)`` renders ``user.id`` and ``lang`` with the scalar
    rules of `ArgumentKey` (readable ints and safe strings, ``!`` forms for bool, None and
    float, ``#`` and a hash for anything else). Fields may use attribute access and ``[index]``
    (digits index, anything else is a str key), as in ``str.format``; conversions (``!r``) and
    format specs (``:>5``) are refused, since values are never rendered by ``str()``/``repr()``.
    Two fields must be separated by literal text: with ``:`` between them, as in
    ``"{a}:{b}"``, distinct values always give distinct bodies.

    Example:
        >>> from types import SimpleNamespace
        >>> def settings(user: object, lang: str = "en") -> None: ...
        >>> template = KeyTemplate("{user.id}:{lang}", settings)
        >>> template.build((SimpleNamespace(id=123),), {})
        '123:en'

    Args:
        template: The template, such as ``"{user_id}"``.
        func: The function whose parameters the fields name.
        max_length: Bodies longer than this are replaced by ``##`` and their hash.

    Raises:
        ConfigurationError: The template is empty or malformed, a field is not a parameter of
            ``func`` (the message lists the parameters), two fields touch, or a field has a
            conversion or format spec.
    """

    __slots__ = ("_fields", "arguments", "max_length", "template")

    def __init__(self, template: str, func: Callable[..., Any], *, max_length: int = 200) -> None:
        if not _is_text(template):
            msg = f"key template must be a non-empty str such as '{{user_id}}', got {template!r}"
            raise ConfigurationError(msg)
        self.template = template
        # The template may name self/cls (``"{self.id}"``), so nothing is skipped here.
        self.arguments = ArgumentKey(func, skip_first=False, max_length=max_length)
        self.max_length = self.arguments.max_length
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            msg = f"key template {template!r} is malformed: {exc}"
            raise ConfigurationError(msg) from exc
        owner = getattr(func, "__qualname__", None) or "the function"
        # (literal text, field, error label, root parameter, steps); field is "" after the
        # last field.
        fields: list[tuple[str, str, str, str, tuple[tuple[bool, str | int], ...]]] = []
        previous = ""
        for literal, field, spec, conversion in parsed:
            if field is None:
                fields.append((literal, "", "", "", ()))
                continue
            match = self._check(field, spec, conversion, literal, previous, owner)
            steps = tuple(
                (True, attr) if attr else (False, int(key) if key.isdigit() else key)
                for attr, key in _STEP.findall(match.group(2))
            )
            label = f"template field {{{field}}}"
            fields.append((literal, field, label, match.group(1), steps))
            previous = field
        self._fields = tuple(fields)

    def _check(
        self,
        field: str,
        spec: str | None,
        conversion: str | None,
        literal: str,
        previous: str,
        owner: str,
    ) -> re.Match[str]:
        where = f"key template {self.template!r}"
        match = _FIELD.match(field)
        if match is None:
            msg = f"{where}: field {{{field}}} must name a parameter, such as {{user_id}}"
            raise ConfigurationError(msg)
        if match.group(1) not in self.arguments.parameters:
            names = ", ".join(self.arguments.parameters) or "(none)"
            msg = (
                f"{where} uses {{{field}}}, but {owner}() has no parameter "
                f"{match.group(1)!r}; its parameters are: {names}"
            )
            raise ConfigurationError(msg)
        if conversion or spec:
            msg = (
                f"{where}: {{{field}}} has a conversion or format spec, which key templates do "
                "not support (values are rendered by the key rules: ints and safe strings as "
                "they are, anything else hashed)"
            )
            raise ConfigurationError(msg)
        if previous and not literal:
            msg = (
                f"{where}: fields {{{previous}}} and {{{field}}} touch; separate them, "
                "for example with ':'"
            )
            raise ConfigurationError(msg)
        return match

    def __repr__(self) -> str:
        return f"KeyTemplate({self.template!r})"

    def render(self, bound: Mapping[str, object]) -> str:
        """Render the template from bound arguments (the result of `ArgumentKey.bind`).

        Args:
            bound: Parameter names mapped to their values.

        Returns:
            The key body.

        Raises:
            InvalidKeyError: A field cannot be resolved for these values (a missing attribute
                or index) or its value cannot be keyed.
        """
        parts: list[str] = []
        for literal, field, label, root, steps in self._fields:
            parts.append(literal)
            if not field:
                continue
            value = bound[root]
            try:
                for is_attr, step in steps:
                    value = getattr(value, step) if is_attr else value[step]  # type: ignore[arg-type, index]
            except (AttributeError, LookupError, TypeError) as exc:
                msg = (
                    f"key template {self.template!r} cannot resolve {{{field}}} for this call: "
                    f"{type(exc).__name__}: {exc}"
                )
                raise InvalidKeyError(msg) from exc
            parts.append(_component(value, label))
        return _limit("".join(parts), self.max_length)

    def build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Bind the call arguments and render: ``render(arguments.bind(args, kwargs))``.

        Args:
            args: The positional arguments of the call.
            kwargs: The keyword arguments of the call.

        Returns:
            The key body.

        Raises:
            TypeError: The arguments do not fit the signature.
            InvalidKeyError: A field cannot be resolved or keyed.
        """
        return self.render(self.arguments.bind(args, kwargs))
