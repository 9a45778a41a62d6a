"""MemoryBackend's values: what an entry holds, what it weighs, and checks of what callers pass."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

from kirocache.backends._limits import MAX_TTL, longest_ttl, not_text
from kirocache.exceptions import CommandError, InvalidTTLError, SerializationError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "NO_EXPIRY",
    "Entry",
    "Tags",
    "Value",
    "as_amount",
    "as_bytes",
    "as_members",
    "as_tags",
    "as_value",
    "deadline",
    "members_size",
    "parse_counter",
    "size_of",
]

NO_EXPIRY: Final = math.inf
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# What Redis accepts as an integer for INCRBY: no sign but "-", no spaces, no leading zeros.
_INTEGER: Final = re.compile(rb"\A(?:0|-?[1-9][0-9]{0,18})\Z")

# A key holds bytes or, written by ``tag_add``, a tag set (mutated in place under the lock).
Tags = set[str]  # an alias, since MemoryBackend's ``set`` method shadows the builtin there
Value = bytes | Tags
Entry = tuple[Value, float]  # (value, expires_at); expires_at is inf without a TTL


def size_of(key: str, value: Value) -> int:
    """What an entry weighs against ``max_bytes``: its UTF-8 key plus its value or members.

    Raises:
        InvalidKeyError: The key (or a member) has a lone surrogate, as on Redis.
    """
    held = len(value) if isinstance(value, bytes) else members_size(value)
    return _utf8_size(key) + held


def members_size(members: set[str]) -> int:
    """The UTF-8 bytes of a tag set's ``members``.

    Raises:
        InvalidKeyError: A member has a lone surrogate, as on Redis.
    """
    return sum(_utf8_size(member) for member in members)


def _utf8_size(text: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise not_text(text, exc) from None


def as_value(key: str, value: Value) -> bytes:
    """The bytes held at ``key``.

    Raises:
        CommandError: ``key`` holds a tag set (WRONGTYPE).
    """
    if isinstance(value, bytes):
        return value
    msg = f"{key!r:.80} holds a tag set, not a value (WRONGTYPE); use a different key"
    raise CommandError(msg)


def as_tags(key: str, value: Value) -> set[str]:
    """The tag set held at ``key``.

    Raises:
        CommandError: ``key`` holds bytes (WRONGTYPE).
    """
    if isinstance(value, set):
        return value
    msg = f"{key!r:.80} holds a value, not a tag set (WRONGTYPE); use a different key"
    raise CommandError(msg)


def as_members(members: Sequence[str]) -> set[str]:
    """The distinct tag ``members`` a caller passed.

    Raises:
        TypeError: ``members`` is a single ``str``.
    """
    if isinstance(members, str):
        msg = "members must be a sequence of str, not a single str; wrap it in a list"
        raise TypeError(msg)
    return set(members)


def parse_counter(raw: bytes) -> int | None:
    """The integer Redis would read from ``raw`` for INCRBY, or ``None``."""
    if not _INTEGER.match(raw):
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


def as_bytes(value: object) -> bytes:
    """A caller's bytes-like ``value`` as ``bytes``.

    Raises:
        SerializationError: ``value`` is not bytes-like.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    msg = f"backends store bytes, not {type(value).__name__}; serialize the value first"
    raise SerializationError(msg)


def as_amount(amount: object) -> int:
    """A caller's ``incr`` amount, checked.

    Raises:
        TypeError: ``amount`` is not an ``int``.
    """
    if type(amount) is int:
        return amount
    msg = f"incr amount must be an int, not {type(amount).__name__}"
    raise TypeError(msg)


def deadline(now: float, ttl: object, *, required: bool = False) -> float:
    """The clock time at which an entry with ``ttl`` seconds to live expires.

    Raises:
        InvalidTTLError: ``ttl`` is not a number of seconds > 0 (or ``None``, unless
            ``required``).
    """
    if ttl is None and not required:
        return NO_EXPIRY
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        msg = f"ttl must be a number of seconds > 0 or None, got {ttl!r}"
        raise InvalidTTLError(msg)
    if ttl > MAX_TTL and ttl != NO_EXPIRY:
        longest_ttl(ttl)  # refused as RedisBackend refuses it
    return now + ttl
