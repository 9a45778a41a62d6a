"""Decoding on the hit path: the memo of immutable values, and many plain entries at once.

Used by the hand-written hot twins of ``readthrough.py`` (``lookup``/``alookup`` decode one
entry through ``decode``; ``_decode_many`` tries ``joined`` first). Both keep what
``codec.loads`` promises: every entry's header and checksum are checked, and a value read
is a fresh copy unless nobody can mutate it.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import sys
import uuid
from array import array
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import getitem
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import msgspec
import orjson

from kirocache._cache.invalidator import TOMBSTONE
from kirocache._values.formats import OrjsonSerializer, json_loader
from kirocache._values.framing import (
    _MAGIC,
    _VERSION,
    _XXH3_64,
    FORMAT_JSON,
    HEADER_SIZE,
)

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache

__all__ = ["Memo", "decode", "immutable", "joined"]


# -- the memo of decoded values ------------------------------------------------------------------

# A hit decodes a fresh copy of the stored bytes, so mutating a value read never changes
# what is cached. An immutable value (a scalar, a str, a tuple or frozenset of such, a
# frozen dataclass or msgspec Struct, a datetime, a UUID...) cannot be mutated, so one
# decoded copy can be handed out again: the memo keeps it per full key beside the very
# bytes object it was decoded from, and serves it only when the backend hands back that
# same object (``is``), which an in-process backend does until the entry is written,
# deleted, invalidated or evicted. Every hit still reads the backend, so an invalidation
# (here, or one a TieredBackend learns of) is seen as before: the backend returns other
# bytes or none, and the memo entry is not used. Redis returns new bytes on every read, so
# the memo never serves there. Bounded: small entries only, and cleared when full.
#
# A mutable value read from a small plain JSON entry is decoded afresh on every hit, but
# the memo keeps the entry's payload, checked once: a bytes object cannot change, so the
# same object read again has the same checksum, and its header and checksum are not
# checked again (bytes that crossed a wire are new objects, checked on every read).
_MEMO_ENTRIES: Final = 4096
_MEMO_BYTES: Final = 16 * 1024
_MEMO_PAYLOAD: Final = 2048  # payloads kept for fresh decodes: up to 8 MB in all
_ATOMS: Final = frozenset(
    {str, int, float, bool, bytes, complex, type(None), decimal.Decimal, uuid.UUID}
    | {datetime.datetime, datetime.date, datetime.time, datetime.timedelta}
)
_DEPTH: Final = 8
# The first four header bytes of an uncompressed JSON entry, and its checksum's seed.
_JSON_HEAD: Final = bytes((_MAGIC, _VERSION, FORMAT_JSON, 0))
_JSON_SEED: Final = FORMAT_JSON << 8
# Entries smaller than this on average are decoded as one JSON array (see ``_joined``).
_JOINED_BYTES: Final = 2048
_HEAD_OF: Final = slice(None, HEADER_SIZE)
_BODY_OF: Final = slice(HEADER_SIZE, None)
_cut: Final = cast("Callable[[bytes, slice], bytes]", getitem)  # raw[slice], mapped in C
_WIDTH: Final = 64


Memo: TypeAlias = "dict[str, tuple[bytes, Any, Any, Any, Callable[[bytes], Any] | None, bytes]]"
"""Per full key: the bytes, the type and serializer they were decoded with, the value
(immutable) or ``None``, and for a mutable value the loader and the checked payload."""


def decode(self: Cache, full: str, raw: bytes, type: Any) -> Any:
    """``codec.loads``, or what the memo keeps for these very bytes.

    Raises:
        CorruptValueError: The codec refused the bytes (a tagged entry, or corrupt).
    """
    codec = self.codec
    memo = codec.decoded
    kept = memo.get(full)
    serializer = codec.serializer
    if kept is not None and kept[0] is raw and kept[1] is type and kept[2] is serializer:
        loads = kept[4]
        return kept[3] if loads is None else loads(kept[5])
    value = codec.loads(raw, type, full)
    size = len(raw)
    entry: tuple[bytes, Any, Any, Any, Callable[[bytes], Any] | None, bytes]
    # only bytes are known by identity: a backend reusing one bytearray would change them
    if size <= _MEMO_BYTES and raw.__class__ is bytes:
        if immutable(value):
            entry = (raw, type, serializer, value, None, b"")
        elif (
            size <= _MEMO_PAYLOAD
            and serializer.__class__ is OrjsonSerializer
            and raw.startswith(_JSON_HEAD)
        ):
            entry = (raw, type, serializer, None, json_loader(type), raw[HEADER_SIZE:])
        else:
            return value
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[full] = entry
    return value


def immutable(value: Any, depth: int = 0) -> bool:  # noqa: PLR0911 - one answer per kind
    """Whether ``value`` and everything in it is immutable (a bounded look, else False)."""
    kind = value.__class__
    if kind is dict or kind is list:  # the usual result: no further look
        return False
    if kind in _ATOMS or isinstance(value, enum.Enum):
        return True
    if depth >= _DEPTH:
        return False
    if isinstance(value, (tuple, frozenset)):
        return len(value) <= _WIDTH and all(immutable(item, depth + 1) for item in value)
    if isinstance(value, msgspec.Struct):
        config = kind.__struct_config__
        return config.frozen and all(
            immutable(getattr(value, name), depth + 1) for name in kind.__struct_fields__
        )
    params = getattr(kind, "__dataclass_params__", None)
    if params is not None and params.frozen:
        return all(
            immutable(getattr(value, field.name), depth + 1) for field in dataclasses.fields(value)
        )
    return False


# -- many plain JSON entries at once ----------------------------------------------------------


def joined(keys: Sequence[str], raws: Sequence[Any]) -> dict[str, Any] | None:
    """The values of plain JSON entries, decoded in one pass; ``None`` if any is not one.

    Each entry's header and checksum are checked as ``OrjsonSerializer.loads`` checks them
    (the headers compared at once, the checksums as two lists); absent keys and tombstones
    are left out. Anything else (a tagged entry, a counter, a corrupt or compressed one)
    makes the caller decode entry by entry.
    """
    if None in raws:
        tomb = TOMBSTONE
        pairs = [(key, raw) for key, raw in zip(keys, raws, strict=True) if raw is not None]
        if any(raw.startswith(tomb) for _, raw in pairs):
            pairs = [(key, raw) for key, raw in pairs if not raw.startswith(tomb)]
        keys = [key for key, _ in pairs]
        raws = [raw for _, raw in pairs]
    count = len(raws)
    heads = b"".join(map(_cut, raws, repeat(_HEAD_OF)))
    if len(heads) != HEADER_SIZE * count:  # an entry shorter than a header
        return None
    # the four fixed header bytes, each compared across all entries at once (a strided slice)
    if any(heads[at::HEADER_SIZE] != _JSON_HEAD[at : at + 1] * count for at in range(4)):
        return None
    payloads = list(map(_cut, raws, repeat(_BODY_OF)))
    # the checksums: xxh3_64 of each payload, big-endian, so that the low 32 bits stored in
    # bytes 4-7 of each header are bytes 4-7 of each 8-byte sum, compared the same way
    sums = array("Q", map(_XXH3_64, payloads, repeat(_JSON_SEED)))
    if sys.byteorder == "little":
        sums.byteswap()
    big = sums.tobytes()
    if any(heads[at::HEADER_SIZE] != big[at::8] for at in range(4, 8)):
        return None
    loads = orjson.loads
    try:
        if count and sum(map(len, payloads)) < _JOINED_BYTES * count:
            # small entries: one call over a JSON array of them all
            values = loads(b"[" + b",".join(payloads) + b"]")
        else:
            # large ones: one call each (one array of them all decodes slower)
            values = list(map(loads, payloads))
    except orjson.JSONDecodeError:
        return None
    if len(values) != count:  # a payload holding more than one value
        return None
    return dict(zip(keys, values, strict=True))
