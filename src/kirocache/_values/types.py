"""Small shared types: the miss sentinel, durations and their validation (no I/O)."""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from typing import Final, Literal, TypeAlias

from kirocache.exceptions import ConfigurationError, InvalidKeyError, InvalidTTLError

__all__ = [
    "MISSING",
    "NEVER",
    "RESERVED_PREFIX",
    "Duration",
    "Missing",
    "check_key",
    "reserved_key_error",
    "to_seconds",
    "ttl_seconds",
]


class _MissingType(enum.Enum):
    """The type of :data:`MISSING`; an enum so type checkers can narrow on it."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> Literal[False]:
        return False


Missing: TypeAlias = Literal[_MissingType.MISSING]
"""The type of :data:`MISSING`, for annotations: ``T | Missing``."""

MISSING: Final[Missing] = _MissingType.MISSING
"""Returned where "not cached" must be told apart from "cached ``None``"."""

Duration: TypeAlias = "float | int | timedelta"
"""A duration: seconds as ``int``/``float``, or a ``timedelta``."""

NEVER: Final[float] = math.inf
"""A TTL meaning "never expires" (where ``None`` would mean "use the default")."""

RESERVED_PREFIX: Final = "kirocache:"
"""Where the cache keeps its own keys, after the key prefix: no user key may start with it.

Tag indexes, tag stamps, dependency sets and namespace generations live there; a user key
written there would forge one (a ``set("kirocache:gen:<ns>", 0)`` would undo a ``bump``).
"""


def to_seconds(value: Duration, *, name: str = "duration") -> float:
    """Turn a ``float``/``int`` number of seconds or a ``timedelta`` into float seconds.

    Args:
        value: The duration.
        name: What the value is, for the error message.

    Returns:
        The duration in seconds, possibly ``math.inf``.

    Raises:
        InvalidTTLError: The value is a bool, not a number, NaN or negative.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number of seconds or a timedelta, not {type(value).__name__}"
        raise InvalidTTLError(msg)
    else:
        seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        msg = f"{name} must be a non-negative number of seconds, got {value!r}"
        raise InvalidTTLError(msg)
    return seconds


def option_seconds(value: Duration, name: str, *, allow_zero: bool = False) -> float:
    """An option's duration in seconds: ``to_seconds``, finite, and above 0 unless ``allow_zero``.

    An option set wrong is a ``ConfigurationError`` (where ``to_seconds`` raises the
    ``InvalidTTLError`` a TTL gets), and a timeout or wait of 0 or ``inf`` makes no sense
    where a TTL of ``inf`` does. Backend timeouts and the distributed lock use it.

    Raises:
        ConfigurationError: The value is not such a duration.
    """
    try:
        seconds = to_seconds(value, name=name)
    except InvalidTTLError as exc:
        raise ConfigurationError(str(exc)) from None
    if math.isinf(seconds) or (seconds == 0 and not allow_zero):
        low = "0 or more" if allow_zero else "greater than 0"
        msg = f"{name} must be a finite number of seconds, {low}, got {value!r}"
        raise ConfigurationError(msg)
    return seconds


def ttl_seconds(value: Duration | None) -> float | None:
    """Validate a TTL: ``None`` stays ``None`` (no expiry), anything else must be > 0.

    ``NEVER`` (``math.inf``) also means no expiry and becomes ``None``.

    Raises:
        InvalidTTLError: The TTL is zero, negative, NaN or not a duration.
    """
    if value is None:
        return None
    seconds = to_seconds(value, name="ttl")
    if seconds == 0:
        msg = "ttl must be greater than 0 seconds (use delete() to remove an entry now)"
        raise InvalidTTLError(msg)
    return None if math.isinf(seconds) else seconds


def check_key(key: object) -> str:
    """Return ``key`` if it is a non-empty ``str``.

    Raises:
        InvalidKeyError: The key is not a ``str`` or is empty.
    """
    if type(key) is str and key:
        return key
    if isinstance(key, str):
        if not key:
            msg = "cache key must not be empty"
            raise InvalidKeyError(msg)
        return key
    msg = f"cache key must be str, not {type(key).__name__} ({key!r:.60})"
    raise InvalidKeyError(msg)


def reserved_key_error(key: str) -> InvalidKeyError:
    """The error for a caller's key (or pattern) inside the reserved internal key space."""
    msg = (
        f"cache key {key!r:.80} is in the reserved key space {RESERVED_PREFIX!r}: the cache "
        "keeps its tag indexes, stamps, dependency sets and generations there; choose "
        "another key or namespace prefix"
    )
    return InvalidKeyError(msg)
