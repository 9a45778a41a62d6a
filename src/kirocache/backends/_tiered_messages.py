"""TieredBackend's invalidation messages: orjson on the channel, anything unreadable a flush.

The format is described in :mod:`kirocache.backends.tiered`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

import orjson

__all__ = ["Message", "decode", "encode_flush", "encode_keys", "encode_pattern"]

# Keys per message, so one delete_many of many keys cannot make a message large enough to
# overflow a subscriber's output buffer (which would only cost it a reconnect anyway).
_KEYS_PER_MESSAGE: Final = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A decoded invalidation: ``keys``, else ``pattern``, else (neither) everything."""

    sender: str | None
    keys: tuple[str, ...] | None = None
    pattern: str | None = None


def encode_keys(sender: str, keys: Iterable[str]) -> list[bytes]:
    """The messages that drop ``keys``, at most a thousand keys in each."""
    unique = list(dict.fromkeys(keys))
    try:
        return [
            orjson.dumps({"s": sender, "k": unique[at : at + _KEYS_PER_MESSAGE]})
            for at in range(0, len(unique), _KEYS_PER_MESSAGE)
        ]
    except orjson.JSONEncodeError:  # a key orjson refuses (a lone surrogate): drop everything
        return [encode_flush(sender)]


def encode_pattern(sender: str, pattern: str) -> bytes:
    """The message that drops the keys matching ``pattern``."""
    try:
        return orjson.dumps({"s": sender, "p": pattern})
    except orjson.JSONEncodeError:
        return encode_flush(sender)


def encode_flush(sender: str) -> bytes:
    """The message that drops everything."""
    return orjson.dumps({"s": sender, "f": True})


def decode(data: object) -> Message:
    """The message in ``data``; anything unreadable means "drop everything"."""
    try:
        body = orjson.loads(data) if isinstance(data, (bytes, str)) else None
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return Message(None)
    sender = body.get("s") if isinstance(body.get("s"), str) else None
    keys, pattern = body.get("k"), body.get("p")
    if isinstance(keys, list) and all(isinstance(key, str) for key in keys):
        return Message(sender, keys=tuple(keys))
    if isinstance(pattern, str):
        return Message(sender, pattern=pattern)
    return Message(sender)
