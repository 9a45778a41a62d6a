"""Serializers that wrap another: zlib compression and AES-GCM encryption of its payload.

They are documented and imported from `kirocache.serializers`.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from kirocache._values.formats import OrjsonSerializer, _is_int_in, _secrets, bound_to
from kirocache._values.framing import (
    _MAGIC,
    _VERSION,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    frame,
    unframe,
)
from kirocache.exceptions import ConfigurationError, CorruptValueError, SerializationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kirocache._values.framing import Serializer

_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_AES_KEY_SIZES: Final = (16, 24, 32)


_DEFAULT_MAX_SIZE: Final = 16 * 1024 * 1024


def binds_key(serializer: object) -> bool:
    """Whether a serializer takes the entry's ``key`` (and a size ``limit``) as keywords.

    Optional, so a third-party serializer satisfies ``Serializer`` without it; the cache
    passes the full backend key to those that declare ``binds_key = True``.
    """
    return getattr(serializer, "binds_key", False) is True


def _inner_dumps(inner: Serializer, value: object, key: str | None) -> bytes:
    if binds_key(inner):
        return inner.dumps(value, key=key)  # type: ignore[call-arg]
    return inner.dumps(value)


def _inner_loads(
    inner: Serializer, data: bytes, type: Any, key: str | None, limit: int | None
) -> Any:
    if binds_key(inner):
        return inner.loads(data, type, key=key, limit=limit)  # type: ignore[call-arg]
    return inner.loads(data, type)


def _inner_frame(
    inner: Serializer, value: object, key: str | None
) -> tuple[bytes, int, int, bytes]:
    """Serialize with ``inner``: its frame, format, flags and payload; blame it if not a frame."""
    data = _inner_dumps(inner, value, key)
    try:
        return (data, *unframe(data))
    except CorruptValueError as exc:
        msg = f"{inner!r} did not return a kirocache frame (see kirocache.serializers.frame)"
        raise SerializationError(msg) from exc


class CompressedSerializer:
    """Wraps a serializer and zlib-compresses payloads larger than ``threshold`` bytes.

    A payload is stored compressed (flag bit 0) only when compression makes it smaller;
    ``loads`` reads compressed and uncompressed entries alike.

    Decompression is bounded: an entry that would inflate past ``max_size`` bytes (or the
    cache's ``max_value_size``, which the cache passes as ``limit``) is refused as corrupt
    after inflating at most that much, so a planted "zip bomb" costs a bounded read.

    Args:
        inner: The serializer whose output is compressed; :class:`OrjsonSerializer` if None.
        threshold: Payloads of at most this many bytes are stored as they are.
        level: zlib level, 1 (fast) to 9 (small).
        max_size: The most bytes an entry may inflate to when no ``limit`` is passed.

    Raises:
        ConfigurationError: A negative threshold, a level outside 1 to 9, or a
            ``max_size`` under 1.
    """

    __slots__ = ("_inner", "_level", "_max_size", "_threshold")

    binds_key: Final = True
    """It passes the entry's key on to the inner serializer and bounds decompression."""

    def __init__(
        self,
        inner: Serializer | None = None,
        *,
        threshold: int = 1024,
        level: int = 6,
        max_size: int = _DEFAULT_MAX_SIZE,
    ) -> None:
        if not _is_int_in(threshold, 0, sys.maxsize):
            msg = f"compression threshold must be an int of bytes >= 0, got {threshold!r}"
            raise ConfigurationError(msg)
        if not _is_int_in(level, 1, 9):
            msg = f"compression level must be an int from 1 to 9, got {level!r}"
            raise ConfigurationError(msg)
        if not _is_int_in(max_size, 1, sys.maxsize):
            msg = f"max_size must be an int of bytes >= 1, got {max_size!r}"
            raise ConfigurationError(msg)
        self._inner: Serializer = OrjsonSerializer() if inner is None else inner
        self._threshold = threshold
        self._level = level
        self._max_size = max_size

    def dumps(self, value: object, *, key: str | None = None) -> bytes:
        """Serialize with the inner serializer, then compress a large payload.

        Args:
            value: The value to store.
            key: The entry's backend key, passed on to an inner serializer that binds it.

        Returns:
            The framed, possibly compressed payload.

        Raises:
            SerializationError: The inner serializer cannot serialize the value.
        """
        data, format_id, flags, payload = _inner_frame(self._inner, value, key)
        if len(payload) > self._threshold and not flags & FLAG_COMPRESSED:
            packed = zlib.compress(payload, self._level)
            if len(packed) < len(payload):
                return frame(format_id, packed, flags | FLAG_COMPRESSED)
        return data

    def loads(
        self, data: bytes, type: Any = None, *, key: str | None = None, limit: int | None = None
    ) -> Any:
        """Decompress a compressed entry, then load it with the inner serializer.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: Passed on to the inner serializer.
            key: The key the bytes were read at, passed on to the inner serializer.
            limit: The most bytes the entry may inflate to (the cache's ``max_value_size``);
                ``max_size`` when not given.

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a valid entry, do not decompress, or
                inflate past the limit.
        """
        format_id, flags, payload = unframe(data)
        if not flags & FLAG_COMPRESSED:
            return _inner_loads(self._inner, data, type, key, limit)
        bound = self._max_size if limit is None else min(limit, self._max_size)
        inflater = zlib.decompressobj()
        try:
            payload = inflater.decompress(payload, bound + 1)
        except zlib.error as exc:
            msg = f"compressed entry does not decompress: {exc}"
            raise CorruptValueError(msg) from exc
        if len(payload) > bound or inflater.unconsumed_tail:
            msg = f"compressed entry inflates past {bound} bytes: refused"
            raise CorruptValueError(msg)
        if not inflater.eof:
            msg = "compressed entry does not decompress: it is cut short"
            raise CorruptValueError(msg)
        plain = frame(format_id, payload, flags & ~FLAG_COMPRESSED)
        return _inner_loads(self._inner, plain, type, key, limit)

    def __repr__(self) -> str:
        return (
            f"CompressedSerializer(inner={self._inner!r}, threshold={self._threshold}, "
            f"level={self._level})"
        )


class EncryptedSerializer:
    """Wraps a serializer and encrypts its payload with AES-GCM (the ``crypto`` extra).

    Each entry gets a random 12-byte nonce; the header's magic, version, format and flags,
    and the entry's backend key (passed by the cache), are authenticated as associated data,
    so tampering with any of them is detected, and bytes swapped to or replayed at another
    key do not decrypt there. ``loads``
    refuses entries that are not encrypted, so nobody can plant plaintext values. Compose as
    ``EncryptedSerializer(CompressedSerializer(), key=...)``: compress, then encrypt. Random
    nonces keep a key safe for about 2**32 writes: rotate keys well before that.

    Args:
        inner: The serializer whose output is encrypted; :class:`OrjsonSerializer` if None.
        key: A 16, 24 or 32-byte key (e.g. ``os.urandom(32)``), or a list of them for
            rotation: the first encrypts, each is tried to decrypt.

    Raises:
        ConfigurationError: ``cryptography`` is not installed, a key has a wrong size, or
            ``inner`` is already an EncryptedSerializer.
    """

    __slots__ = ("_ciphers", "_inner")

    binds_key: Final = True
    """The associated data covers the entry's key (see ``dumps``)."""

    def __init__(self, inner: Serializer | None = None, *, key: bytes | Sequence[bytes]) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            msg = (
                "EncryptedSerializer needs the cryptography package: "
                "pip install 'kirocache[crypto]'"
            )
            raise ConfigurationError(msg) from exc
        if isinstance(inner, EncryptedSerializer):
            msg = "EncryptedSerializer cannot wrap another EncryptedSerializer: pass several keys"
            raise ConfigurationError(msg)
        keys = _secrets(key, "encryption key", text=False)
        for item in keys:
            if len(item) not in _AES_KEY_SIZES:
                msg = (
                    f"each encryption key must be 16, 24 or 32 bytes (e.g. os.urandom(32)), "
                    f"got {len(item)} bytes"
                )
                raise ConfigurationError(msg)
        self._ciphers: list[AESGCM] = [AESGCM(item) for item in keys]
        self._inner: Serializer = OrjsonSerializer() if inner is None else inner

    def dumps(self, value: object, *, key: str | None = None) -> bytes:
        """Serialize with the inner serializer, then encrypt the payload with the first key.

        Args:
            value: The value to store.
            key: The backend key the entry is stored at (the cache passes it): it is
                authenticated with the entry, which then decrypts only when read there.

        Returns:
            The framed nonce and ciphertext.

        Raises:
            SerializationError: The inner serializer cannot serialize the value.
        """
        _, format_id, flags, payload = _inner_frame(self._inner, value, key)
        flags |= FLAG_ENCRYPTED
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._ciphers[0].encrypt(nonce, payload, _aad(format_id, flags, key))
        return frame(format_id, nonce + sealed, flags)

    def loads(
        self, data: bytes, type: Any = None, *, key: str | None = None, limit: int | None = None
    ) -> Any:
        """Decrypt with the first key that authenticates, then load with the inner serializer.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: Passed on to the inner serializer.
            key: The backend key the bytes were read at: the one they were sealed for.
            limit: Passed on to the inner serializer (a decompression bound).

        Returns:
            The value.

        Raises:
            CorruptValueError: The entry is not encrypted, was tampered with, was written
                for another key, or with an encryption key that is not configured.
        """
        from cryptography.exceptions import InvalidTag

        format_id, flags, payload = unframe(data)
        if not flags & FLAG_ENCRYPTED:
            msg = "EncryptedSerializer refuses an entry that is not encrypted"
            raise CorruptValueError(msg)
        if len(payload) < _NONCE_SIZE + _TAG_SIZE:
            msg = "encrypted entry is too short to hold a nonce and a tag"
            raise CorruptValueError(msg)
        nonce, sealed = payload[:_NONCE_SIZE], payload[_NONCE_SIZE:]
        aad = _aad(format_id, flags, key)
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            inner = frame(format_id, plain, flags & ~FLAG_ENCRYPTED)
            return _inner_loads(self._inner, inner, type, key, limit)
        msg = (
            "encrypted entry does not authenticate: tampered with, written for another key, "
            "or with an encryption key that is not configured"
        )
        raise CorruptValueError(msg)

    def __repr__(self) -> str:
        return f"EncryptedSerializer(inner={self._inner!r}, keys=<{len(self._ciphers)} hidden>)"


def _aad(format_id: int, flags: int, key: str | None) -> bytes:
    """The associated data of an encrypted entry: its header's first bytes, and its key."""
    return bound_to(key, bytes((_MAGIC, _VERSION, format_id, flags)))
