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
from collections.abc import Callable
from datetime import date, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from kirocache._values.argument_key import ArgumentKey
from kirocache._values.expiry import Expiry, TtlOption, checked_jitter, expiry_of
from kirocache._values.fingerprint import _digest, _hex128, _is_text
from kirocache._values.key_template import KeyTemplate
from kirocache._values.types import RESERVED_PREFIX, Duration, reserved_key_error
from kirocache.exceptions import ConfigurationError, InvalidKeyError

__all__ = ["ArgumentKey", "KeyTemplate", "Namespace", "code_hash", "fingerprint", "make_key"]


# ArgumentKey and KeyTemplate are written in private modules but documented and imported from
# here, so they name this module as theirs (as httpx does): reprs, pickles and doctests see
# kirocache.keys.
for _public in (ArgumentKey, KeyTemplate):
    _public.__module__ = __name__
del _public


# -- Namespace -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, init=False, repr=False)
class Namespace:
    """A key prefix with its default TTL and an optional version, such as ``user:profile:``.

    ``Namespace("user:profile:", ttl=3600).key(123)`` is ``"user:profile:123"``. Setting
    ``version=2`` makes it ``"user:profile:v2:123"``: bumping the version (for example with
    ``dataclasses.replace(ns, version=3)``) moves every key of the namespace at once, so entries
    written in an older format are never read again and expire by their TTL.

    Args:
        prefix: The key prefix; by convention it ends with ``:``.
        ttl: Default TTL of the namespace's entries (seconds or ``timedelta``); ``None`` or
            ``NEVER`` for no expiry. Stored as float seconds or ``None``. Or a function of
            the value stored, ``ttl=lambda value: 60 if value else 5``, kept as
            ``ttl_function`` (``ttl`` is then ``None``): ``cache.set`` and ``@cached``
            in the namespace ask it for each value.
        version: An int >= 1 inserted as ``v{version}:`` after the prefix, or ``None``.
        bumpable: Let ``cache.bump(namespace)`` invalidate the whole namespace in O(1) by
            raising a generation kept in the backend. Reads of a bumpable namespace fetch
            the generation with the value (one ``get_many`` instead of a ``get``, still one
            round trip); writes and deletes first read it.
        jitter: Up to this many seconds (or a ``timedelta``) added at random to each
            entry's TTL, so entries written together do not expire together.
        ttl_function: The same as passing a function as ``ttl`` (``dataclasses.replace``
            hands it back this way).

    Raises:
        ConfigurationError: The prefix is not a non-empty str or the version is not an int >= 1.
        InvalidKeyError: The prefix is in the reserved key space ``kirocache:``, where the
            cache keeps its own keys.
        InvalidTTLError: The TTL is zero, negative or not a duration.
    """

    prefix: str
    ttl: float | None
    version: int | None
    bumpable: bool
    ttl_function: Callable[[Any], Duration | None] | None
    jitter: float
    _head: str = dataclasses.field(init=False, repr=False, compare=False)
    # What the cache's key space hands out as the default TTL: ``ttl``, or an ``Expiry``
    # when the TTL depends on the value or is jittered.
    _expiry: float | Expiry | None = dataclasses.field(init=False, repr=False, compare=False)
    # Whether a key body can complete the prefix into the reserved space (a prefix such as
    # "kiro"): the cache checks such keys, and skips the check for every other namespace.
    _near_reserved: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __init__(
        self,
        prefix: str,
        ttl: TtlOption = None,
        version: int | None = None,
        *,
        bumpable: bool = False,
        jitter: Duration | None = None,
        ttl_function: Callable[[Any], Duration | None] | None = None,
    ) -> None:
        if not _is_text(prefix):
            msg = (
                f"namespace prefix must be a non-empty str such as 'user:profile:', got {prefix!r}"
            )
            raise ConfigurationError(msg)
        if prefix.startswith(RESERVED_PREFIX):
            raise reserved_key_error(prefix)  # said where the namespace is made, not at first use
        if version is not None and (type(version) is not int or version < 1):
            msg = f"namespace version must be an int >= 1 or None, got {version!r}"
            raise ConfigurationError(msg)
        object.__setattr__(self, "prefix", prefix)
        seconds, function = expiry_of(ttl)
        if ttl_function is not None:  # dataclasses.replace() passes it back as it is
            if seconds is not None or not callable(ttl_function):
                msg = "ttl_function must be a callable, given instead of a fixed ttl"
                raise ConfigurationError(msg)
            function = ttl_function
        object.__setattr__(self, "ttl", seconds)
        object.__setattr__(self, "ttl_function", function)
        object.__setattr__(self, "jitter", checked_jitter(jitter))
        rule = Expiry(seconds, function, None, self.jitter)
        object.__setattr__(self, "_expiry", seconds if rule.fixed else rule)
        object.__setattr__(self, "version", version)
        if not isinstance(bumpable, bool):
            msg = f"bumpable must be True or False, got {bumpable!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        object.__setattr__(self, "bumpable", bumpable)
        head = prefix if version is None else f"{prefix}v{version}:"
        object.__setattr__(self, "_head", head)
        object.__setattr__(self, "_near_reserved", RESERVED_PREFIX.startswith(head))

    def __repr__(self) -> str:
        extra = ""
        if self.ttl_function is not None:
            extra += f", ttl_function={self.ttl_function!r}"
        if self.jitter:
            extra += f", jitter={self.jitter!r}"
        return (
            f"Namespace(prefix={self.prefix!r}, ttl={self.ttl!r}, version={self.version!r}, "
            f"bumpable={self.bumpable!r}{extra})"
        )

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
