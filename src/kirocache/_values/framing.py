"""The 8-byte header that starts every stored value, and the ``Serializer`` protocol over it.

`frame`, `unframe`, the constants and `Serializer` are documented and imported from
`kirocache.serializers`.
"""

from __future__ import annotations

import struct
from typing import Any, Final, Protocol, runtime_checkable

import xxhash

from kirocache.exceptions import CorruptValueError, SerializationError

# The header: magic, header version, format id, flags, checksum (big-endian).
_HEADER: Final = struct.Struct(">BBBBI")
_PACK: Final = _HEADER.pack
_UNPACK_FROM: Final = _HEADER.unpack_from
_XXH3_64: Final = xxhash.xxh3_64_intdigest
_MAGIC: Final = 0xC5
_VERSION: Final = 1
_LOW_32: Final = 0xFFFFFFFF

HEADER_SIZE: Final = _HEADER.size
"""Size in bytes of the header that starts every stored value (8)."""

_CHECKSUM_FROM: Final = struct.Struct(">I").unpack_from

FORMAT_JSON: Final = 1
"""Format id of :class:`OrjsonSerializer` entries."""
FORMAT_RAW_BYTES: Final = 2
"""Format id of :class:`RawSerializer` entries holding ``bytes``."""
FORMAT_RAW_STR: Final = 3
"""Format id of :class:`RawSerializer` entries holding ``str`` (UTF-8)."""
FORMAT_PICKLE: Final = 4
"""Format id of :class:`PickleSerializer` entries."""
FORMAT_MSGPACK: Final = 5
"""Format id of :class:`MsgpackSerializer` entries."""

FLAG_COMPRESSED: Final = 0b01
"""Header flag: the payload is zlib-compressed (set by :class:`CompressedSerializer`)."""
FLAG_ENCRYPTED: Final = 0b10
"""Header flag: the payload is AES-GCM encrypted (set by :class:`EncryptedSerializer`)."""


def frame(format_id: int, payload: bytes, flags: int = 0) -> bytes:
    """Prefix a payload with the 8-byte kirocache header.

    The header is the magic byte ``0xC5`` (not ASCII, so neither a counter written by
    ``INCR`` nor foreign JSON can pass for an entry), the header version (1), the format id,
    the flags (bit 0 compressed, bit 1 encrypted, the rest reserved) and a 4-byte checksum:
    the low 32 bits of xxh3_64 of the payload, seeded with the format id and flags so that a
    change to any byte of the entry, header included, is detected.

    Args:
        format_id: The payload's format: 1 JSON, 2 raw bytes, 3 raw str, 4 signed pickle;
            5 to 127 are reserved for kirocache, 128 to 255 are free for third parties.
        payload: The serialized value.
        flags: Header flags (:data:`FLAG_COMPRESSED`, :data:`FLAG_ENCRYPTED`).

    Returns:
        The header followed by the payload.

    Raises:
        SerializationError: The format id or the flags do not fit in one byte.
    """
    try:
        checksum = _XXH3_64(payload, (format_id << 8) | flags) & _LOW_32
        header = _PACK(_MAGIC, _VERSION, format_id, flags, checksum)
    except (struct.error, OverflowError, TypeError) as exc:
        msg = f"format id {format_id!r} and flags {flags!r} must each be an int from 0 to 255"
        raise SerializationError(msg) from exc
    return header + payload


def unframe(data: bytes) -> tuple[int, int, bytes]:
    """Check the header of a stored value and split it.

    Args:
        data: Bytes read from a backend.

    Returns:
        ``(format_id, flags, payload)``.

    Raises:
        CorruptValueError: The bytes are shorter than a header, do not start with the magic
            byte, have an unknown header version, or fail the checksum.
    """
    if len(data) < HEADER_SIZE:
        msg = f"not a kirocache entry: {len(data)} bytes, under the {HEADER_SIZE}-byte header"
        raise CorruptValueError(msg)
    magic, version, format_id, flags, checksum = _UNPACK_FROM(data)
    if magic != _MAGIC:
        msg = f"not a kirocache entry: first byte is {magic:#04x}, expected {_MAGIC:#04x}"
        raise CorruptValueError(msg)
    if version != _VERSION:
        msg = f"unknown kirocache header version {version} (this version reads {_VERSION})"
        raise CorruptValueError(msg)
    payload = data[HEADER_SIZE:]
    if _XXH3_64(payload, (format_id << 8) | flags) & _LOW_32 != checksum:
        msg = "kirocache entry failed its checksum: the stored bytes are corrupt"
        raise CorruptValueError(msg)
    return format_id, flags, payload


def _expect(data: bytes, formats: tuple[int, ...], owner: str) -> tuple[int, bytes]:
    """Unframe ``data`` and check it is an uncompressed, unencrypted entry of ``formats``."""
    format_id, flags, payload = unframe(data)
    if format_id not in formats:
        expected = " or ".join(map(str, formats))
        msg = f"{owner} cannot read an entry of format {format_id} (it reads format {expected})"
        raise CorruptValueError(msg)
    if flags:
        wrapper = "CompressedSerializer" if flags & FLAG_COMPRESSED else "EncryptedSerializer"
        if flags & ~(FLAG_COMPRESSED | FLAG_ENCRYPTED):
            wrapper = "a newer kirocache"
        msg = f"{owner} cannot read an entry with flags {flags:#04x}: it needs {wrapper}"
        raise CorruptValueError(msg)
    return format_id, payload


@runtime_checkable
class Serializer(Protocol):
    """Turns values into framed bytes and back; satisfied without importing kirocache.

    A serializer's ``dumps`` output must be a frame (see :func:`frame`), so the cache and the
    wrapping serializers can tell kirocache entries from foreign or corrupt bytes. Format ids
    1 to 127 belong to kirocache; third-party serializers use 128 to 255.

    Optionally, a serializer that declares ``binds_key = True`` is called with the entry's
    full backend key (``dumps(value, key=...)``, ``loads(data, type, key=..., limit=...)``)
    so it can bind its output to the key (as the signing and encrypting ones do) and bound
    what it inflates to ``limit`` bytes (the cache's ``max_value_size``).
    """

    def dumps(self, value: object) -> bytes:
        """Serialize a value into a frame.

        Args:
            value: The value to store.

        Returns:
            The framed bytes.

        Raises:
            SerializationError: The value cannot be serialized; the message names its type.
        """
        ...

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Turn a frame back into a value.

        Args:
            data: Bytes produced by ``dumps``.
            type: A type annotation the result must be an instance of, or ``None``.

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a valid entry of this serializer.
        """
        ...
