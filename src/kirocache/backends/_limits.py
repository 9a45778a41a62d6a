"""What every backend refuses before sending anything: TTLs too long, keys not UTF-8 text.

Memory and Redis apply the same two rules with the same errors, so a caller's mistake is a
caller's error everywhere (``InvalidTTLError``, ``InvalidKeyError``), raised before any
I/O, and never a backend fault that could open the circuit breaker.
"""

from __future__ import annotations

from typing import Final

from kirocache.exceptions import InvalidKeyError, InvalidTTLError

__all__ = ["MAX_TTL", "check_text", "longest_ttl", "not_text"]

MAX_TTL: Final = 100 * 365.25 * 86400
"""The longest finite TTL, in seconds: 100 years. Redis refuses an expiry time that
overflows its clock (``ttl=1e300``); ``NEVER`` or ``None`` is how to say "no expiry"."""


def longest_ttl(seconds: float) -> float:
    """``seconds`` if it is at most ``MAX_TTL``.

    Raises:
        InvalidTTLError: It is longer.
    """
    if seconds <= MAX_TTL:
        return seconds
    msg = (
        f"ttl must be at most 100 years ({MAX_TTL:.0f} seconds), got {seconds!r}; "
        "use NEVER (or None) for an entry that never expires"
    )
    raise InvalidTTLError(msg)


def not_text(text: str, exc: UnicodeEncodeError | None = None) -> InvalidKeyError:
    """The error for a key (or tag, or pattern) that cannot be UTF-8 encoded."""
    where = "" if exc is None else f" at index {exc.start}"
    msg = (
        f"cache key {text!r:.80} is not valid text: it has a lone surrogate{where}, which "
        "cannot be encoded as UTF-8 (decode bytes with errors='replace', or hash them)"
    )
    return InvalidKeyError(msg)


def check_text(text: str) -> str:
    """``text`` if it can be UTF-8 encoded (it has no lone surrogate).

    Raises:
        InvalidKeyError: It cannot.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise not_text(text, exc) from None
    return text
