"""The envelope of a tagged entry: its tags' stamps as written, around the serializer's frame.

A tagged entry is valid only while the stamp of each of its tags still holds the bytes it
was written with. A tag invalidation replaces the stamp; an eviction removes it; either way
the entry reads as a miss, even when the tag's index (the set that lists its entries) was
evicted and the invalidation could not find the entry to delete it.

Layout: ``0xC6``, a count byte, then per tag a 2-byte length and the tag (UTF-8), a 1-byte
length and the stamp, then the frame. ``0xC6`` starts no frame (``0xC5``), tombstone
(``0xC5 0xFF``) or counter (ASCII digits), so a reader tells the four apart by one byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from kirocache.exceptions import CorruptValueError

__all__ = ["MAX_TAGS", "STAMPED", "is_stamped", "unwrap", "wrap"]

STAMPED: Final = 0xC6
"""The first byte of a tagged entry's envelope."""
MAX_TAGS: Final = 255
"""How many tags one entry may carry (the count is one byte)."""
_HEAD: Final = bytes((STAMPED,))


def is_stamped(raw: bytes) -> bool:
    """Whether stored bytes are a tagged entry's envelope (see ``unwrap``)."""
    return raw[:1] == _HEAD


def wrap(stamps: Sequence[tuple[str, bytes]], data: bytes) -> bytes:
    """Put ``data`` (a frame) in an envelope that carries ``(tag, stamp)`` pairs.

    Raises:
        ValueError: More than ``MAX_TAGS`` tags, a tag over 65,535 bytes or a stamp over
            255 bytes (the cache's own stamps are 14 bytes; tags are checked before).
    """
    if len(stamps) > MAX_TAGS:
        msg = f"an entry carries at most {MAX_TAGS} tags, not {len(stamps)}"
        raise ValueError(msg)
    parts = [bytes((STAMPED, len(stamps)))]
    for tag, stamp in stamps:
        name = tag.encode("utf-8")
        parts += [len(name).to_bytes(2, "big"), name, len(stamp).to_bytes(1, "big"), stamp]
    parts.append(data)
    return b"".join(parts)


def unwrap(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Split an envelope into its ``(tag, stamp)`` pairs and the frame it holds.

    Raises:
        CorruptValueError: The bytes are no envelope or are cut short.
    """
    if not is_stamped(raw) or len(raw) < 2:
        msg = "not a tagged kirocache entry"
        raise CorruptValueError(msg)
    stamps: list[tuple[str, bytes]] = []
    at = 2
    try:
        for _ in range(raw[1]):
            size = int.from_bytes(raw[at : at + 2], "big")
            name = raw[at + 2 : at + 2 + size]
            at += 2 + size
            length = raw[at]
            stamp = raw[at + 1 : at + 1 + length]
            if len(name) != size or len(stamp) != length:
                raise IndexError(at)
            stamps.append((name.decode("utf-8"), stamp))
            at += 1 + length
    except (IndexError, UnicodeDecodeError) as exc:
        msg = "tagged kirocache entry is cut short or corrupt"
        raise CorruptValueError(msg) from exc
    return stamps, raw[at:]
