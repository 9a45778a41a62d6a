"""Serializers: values to framed bytes and back, with compression, encryption and signing.

Every stored value starts with an 8-byte header (see :func:`frame`): magic byte ``0xC5``,
header version, format id, flags and a checksum, so a foreign, truncated or corrupt value is
detected (:class:`~kirocache.exceptions.CorruptValueError`, which the cache treats as a miss)
and never returned. Format ids 1 to 4 are kirocache's (JSON, raw bytes, raw str, signed
pickle), 5 to 127 are reserved for it, and 128 to 255 are free for third-party serializers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import msgspec
import orjson
import xxhash

from kirocache.exceptions import ConfigurationError, CorruptValueError, SerializationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FORMAT_JSON",
    "FORMAT_PICKLE",
    "FORMAT_RAW_BYTES",
    "FORMAT_RAW_STR",
    "HEADER_SIZE",
    "CompressedSerializer",
    "EncryptedSerializer",
    "OrjsonSerializer",
    "PickleSerializer",
    "RawSerializer",
    "Serializer",
    "frame",
    "resolve_serializer",
    "unframe",
]

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
# The first four header bytes of an uncompressed, unencrypted JSON entry, and its seed.
_JSON_HEAD: Final = bytes((_MAGIC, _VERSION, FORMAT_JSON, 0))
_JSON_SEED: Final = FORMAT_JSON << 8
# Under this size, copying a payload out of its entry is cheaper than a memoryview.
_COPY_LIMIT: Final = 2048

FLAG_COMPRESSED: Final = 0b01
"""Header flag: the payload is zlib-compressed (set by :class:`CompressedSerializer`)."""
FLAG_ENCRYPTED: Final = 0b10
"""Header flag: the payload is AES-GCM encrypted (set by :class:`EncryptedSerializer`)."""

_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_MAC_SIZE: Final = hashlib.sha256().digest_size
_MIN_SECRET_SIZE: Final = 16
_AES_KEY_SIZES: Final = (16, 24, 32)
_MAX_CACHED_DECODERS: Final = 1024


@runtime_checkable
class Serializer(Protocol):
    """Turns values into framed bytes and back; satisfied without importing kirocache.

    A serializer's ``dumps`` output must be a frame (see :func:`frame`), so the cache and the
    wrapping serializers can tell kirocache entries from foreign or corrupt bytes. Format ids
    1 to 127 belong to kirocache; third-party serializers use 128 to 255.
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


def _is_instance(value: object, annotation: Any) -> bool:
    """Tell whether ``value`` satisfies ``annotation`` when that is a plain class, else True."""
    if not isinstance(annotation, type):
        return True
    try:
        return isinstance(value, annotation)
    except TypeError:  # typing.Any and friends refuse isinstance()
        return True


def _json_default(obj: object) -> Any:
    """Convert what orjson lacks (Decimal, set, NamedTuple, timedelta, bytes, Struct...)."""
    try:
        return msgspec.to_builtins(obj)
    except TypeError as exc:
        msg = _unsupported(type(obj), "JSON")
        raise SerializationError(msg) from exc


def _unsupported(tp: type, what: str) -> str:
    """Build the message for a value of type ``tp`` that cannot be serialized as ``what``."""
    return (
        f"cannot serialize a value of type {tp.__module__}.{tp.__qualname__} as {what}: "
        "return builtins, a dataclass, TypedDict, NamedTuple, msgspec.Struct, datetime, UUID, "
        "Decimal or Enum, or store it with PickleSerializer(secret=...)"
    )


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    """Return the cached msgspec decoder for ``annotation``, building it on first use."""
    try:
        return _DECODERS[annotation]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation is decoded without caching its decoder
        return _build_decoder(annotation)
    decoder = _build_decoder(annotation)
    if len(_DECODERS) < _MAX_CACHED_DECODERS:
        _DECODERS[annotation] = decoder
    return decoder


def _build_decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    """Build a msgspec JSON decoder, turning an unsupported annotation into a clear error."""
    try:
        custom = _custom_type(msgspec.inspect.type_info(annotation), set())
        problem = None if custom is None else f"{custom.__qualname__} has no JSON decoding"
        decoder = msgspec.json.Decoder(annotation)
    except TypeError as exc:
        problem = str(exc)
    if problem is None:
        return decoder
    # Without this check, such an annotation would make every read a miss, silently.
    msg = (
        f"cannot decode cached JSON into {annotation!r}: {problem}. Annotate the function with "
        "a type msgspec supports (builtins, dataclass, TypedDict, NamedTuple, msgspec.Struct, "
        "datetime, UUID, Decimal, Enum, Optional/Union of these), resolved rather than a string"
    )
    raise SerializationError(msg)


def _custom_type(node: object, seen: set[int]) -> type | None:
    """Find a class in a msgspec type tree that msgspec would only decode with a hook."""
    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, msgspec.inspect.CustomType):
        # ``object`` decodes as any JSON value, which is what an annotation of it means.
        return None if node.cls is object else node.cls
    children: Sequence[object] = ()
    if isinstance(node, msgspec.Struct):
        children = [getattr(node, name) for name in node.__struct_fields__]
    elif isinstance(node, (list, tuple)):
        children = node
    for child in children:
        found = _custom_type(child, seen)
        if found is not None:
            return found
    return None


class OrjsonSerializer:
    """JSON through orjson, decoded back into the caller's type with msgspec: the default.

    ``dumps`` handles builtins, dataclasses, TypedDict, datetime/date/time, UUID and Enum
    natively, and Decimal (as a string), set/frozenset and NamedTuple (as arrays), timedelta,
    bytes (base64) and msgspec Structs through a fallback. Dicts with int, float, UUID or
    datetime keys are written with string keys.

    ``loads`` without a type returns plain JSON values (so a tuple comes back as a list and a
    Decimal as a string); with a type (a function's return annotation) it returns exactly that
    type, validated. NaN and infinities are written as ``null``, as orjson does, and integers
    must fit in 64 bits.
    """

    __slots__ = ()

    def dumps(self, value: object) -> bytes:
        """Serialize a value as JSON in a frame of format 1.

        Args:
            value: The value to store.

        Returns:
            The framed JSON.

        Raises:
            SerializationError: The value, or something inside it, has no JSON form; the
                message names its type and what to do.
        """
        try:
            payload = orjson.dumps(value, default=_json_default)
        except orjson.JSONEncodeError:
            # Non-str dict keys are rare, and allowing them slows every dump down, so they
            # are allowed only on this second try.
            try:
                payload = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
            except orjson.JSONEncodeError as exc:
                cause = exc.__cause__
                if isinstance(cause, SerializationError):
                    raise SerializationError(str(cause)) from cause.__cause__
                msg = f"{_unsupported(type(value), 'JSON')} (orjson: {exc})"
                raise SerializationError(msg) from exc
        return frame(FORMAT_JSON, payload)

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Decode a format-1 frame, into ``type`` when one is given.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: A type annotation to decode and validate into, or ``None`` for plain JSON.

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a valid JSON entry or do not match ``type``.
            SerializationError: ``type`` is an annotation msgspec cannot decode into.
        """
        if data.startswith(_JSON_HEAD):
            # The common case, checked inline: an uncompressed JSON entry whose checksum
            # holds; a large payload is read in place rather than copied.
            payload: bytes | memoryview = (
                data[HEADER_SIZE:] if len(data) < _COPY_LIMIT else memoryview(data)[HEADER_SIZE:]
            )
            if _XXH3_64(payload, _JSON_SEED) & _LOW_32 != _CHECKSUM_FROM(data, 4)[0]:
                _expect(data, (FORMAT_JSON,), "OrjsonSerializer")  # raises, saying why
        else:
            _, payload = _expect(data, (FORMAT_JSON,), "OrjsonSerializer")
        if type is None:
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                msg = f"cached JSON does not decode: {exc}"
                raise CorruptValueError(msg) from exc
        try:
            return _decoder(type).decode(payload)
        except msgspec.DecodeError as exc:
            msg = f"cached JSON does not decode as {type!r}: {exc}"
            raise CorruptValueError(msg) from exc

    def __repr__(self) -> str:
        return "OrjsonSerializer()"


class RawSerializer:
    """Stores ``bytes`` and ``str`` as they are, and gives back the same type."""

    __slots__ = ()

    def dumps(self, value: object) -> bytes:
        """Frame bytes as format 2 and str (UTF-8) as format 3.

        Args:
            value: A ``bytes`` or ``str``.

        Returns:
            The framed value.

        Raises:
            SerializationError: The value is neither bytes nor str, or the str is not
                encodable as UTF-8.
        """
        if isinstance(value, bytes):
            return frame(FORMAT_RAW_BYTES, value)
        if isinstance(value, str):
            try:
                return frame(FORMAT_RAW_STR, value.encode())
            except UnicodeEncodeError as exc:
                msg = f"RawSerializer cannot store this str as UTF-8: {exc}"
                raise SerializationError(msg) from exc
        tp = value.__class__
        msg = (
            f"RawSerializer stores only bytes and str, not {tp.__module__}.{tp.__qualname__}: "
            "use OrjsonSerializer for other values"
        )
        raise SerializationError(msg)

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Return the stored bytes or str.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: ``bytes``, ``str``, another annotation, or ``None``; a plain class the
                stored value is not an instance of makes the entry a miss.

        Returns:
            The stored ``bytes`` or ``str``.

        Raises:
            CorruptValueError: The bytes are not a valid raw entry, the str is not UTF-8, or
                the value is not an instance of ``type``.
        """
        format_id, payload = _expect(data, (FORMAT_RAW_BYTES, FORMAT_RAW_STR), "RawSerializer")
        value: bytes | str = payload
        if format_id == FORMAT_RAW_STR:
            try:
                value = payload.decode()
            except UnicodeDecodeError as exc:
                msg = f"cached str is not valid UTF-8: {exc}"
                raise CorruptValueError(msg) from exc
        if not _is_instance(value, type):
            msg = f"cached {value.__class__.__name__} is not an instance of {type!r}"
            raise CorruptValueError(msg)
        return value

    def __repr__(self) -> str:
        return "RawSerializer()"


def _secrets(value: Any, what: str, *, text: bool) -> list[bytes]:
    """Normalize one secret or a sequence of them into a non-empty list of bytes.

    A ``str`` is UTF-8 encoded when ``text`` is true and refused otherwise.
    """
    items = [value] if isinstance(value, (bytes, bytearray, str)) else value
    if not isinstance(items, Sequence) or not items:
        msg = f"{what} must be bytes or a non-empty list of bytes, not {value.__class__.__name__}"
        raise ConfigurationError(msg)
    out = [item.encode() if text and isinstance(item, str) else item for item in items]
    for item in out:
        if not isinstance(item, (bytes, bytearray)):
            msg = f"each {what} must be bytes, not {item.__class__.__name__}"
            raise ConfigurationError(msg)
    return [bytes(item) for item in out if isinstance(item, (bytes, bytearray))]


def _is_int_in(value: object, low: int, high: int) -> bool:
    """Tell whether ``value`` is an int (not a bool) from ``low`` to ``high`` inclusive."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class PickleSerializer:
    """Pickle, signed with HMAC-SHA256 so that only entries this app wrote are unpickled.

    Unpickling runs code named by the bytes, so bytes from anyone who can write to the cache
    could run arbitrary code; the signature is checked in constant time before unpickling,
    and a mismatch is a :class:`CorruptValueError` (a miss). Opt-in only: ``"pickle"`` is not
    accepted by :func:`resolve_serializer`.

    Args:
        secret: At least 16 bytes (a str is UTF-8 encoded), or a list of them for rotation:
            the first signs, any of them verifies.
        protocol: The pickle protocol.

    Raises:
        ConfigurationError: No secret, a secret under 16 bytes, or a bad protocol.
    """

    __slots__ = ("_protocol", "_secrets")

    def __init__(
        self,
        secret: bytes | str | Sequence[bytes | str],
        *,
        protocol: int = pickle.HIGHEST_PROTOCOL,
    ) -> None:
        secrets = _secrets(secret, "pickle secret", text=True) if secret else []
        if not secrets or min(map(len, secrets)) < _MIN_SECRET_SIZE:
            msg = (
                f"PickleSerializer needs a secret of at least {_MIN_SECRET_SIZE} bytes "
                "(e.g. os.urandom(32)): unpickling untrusted bytes runs code, so entries are "
                "signed with HMAC and checked before they are unpickled"
            )
            raise ConfigurationError(msg)
        self._secrets = secrets
        if not _is_int_in(protocol, 0, pickle.HIGHEST_PROTOCOL):
            msg = f"pickle protocol must be an int from 0 to {pickle.HIGHEST_PROTOCOL}"
            raise ConfigurationError(msg)
        self._protocol = protocol

    def dumps(self, value: object) -> bytes:
        """Pickle and sign a value into a frame of format 4.

        Args:
            value: Any picklable value.

        Returns:
            The framed signature and pickle.

        Raises:
            SerializationError: The value cannot be pickled; the message names its type.
        """
        try:
            pickled = pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            tp = value.__class__
            msg = f"cannot pickle a value of type {tp.__module__}.{tp.__qualname__}: {exc}"
            raise SerializationError(msg) from exc
        return frame(FORMAT_PICKLE, hmac.digest(self._secrets[0], pickled, "sha256") + pickled)

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Verify the signature, then unpickle.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: Ignored: pickle restores the original type itself.

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a pickle entry, the signature matches none of
                the secrets, or the signed pickle no longer loads (a class was renamed).
        """
        _, payload = _expect(data, (FORMAT_PICKLE,), "PickleSerializer")
        signature, pickled = payload[:_MAC_SIZE], payload[_MAC_SIZE:]
        if len(signature) != _MAC_SIZE or not any(
            hmac.compare_digest(hmac.digest(key, pickled, "sha256"), signature)
            for key in self._secrets
        ):
            msg = "pickle entry signature does not match: not written with this secret"
            raise CorruptValueError(msg)
        try:
            return pickle.loads(pickled)  # noqa: S301 - signed by our own secret, checked above
        except Exception as exc:
            msg = f"signed pickle entry no longer loads: {exc!r}"
            raise CorruptValueError(msg) from exc

    def __repr__(self) -> str:
        return f"PickleSerializer(secrets=<{len(self._secrets)} hidden>, protocol={self._protocol})"


def _inner_frame(inner: Serializer, value: object) -> tuple[bytes, int, int, bytes]:
    """Serialize with ``inner``: its frame, format, flags and payload; blame it if not a frame."""
    data = inner.dumps(value)
    try:
        return (data, *unframe(data))
    except CorruptValueError as exc:
        msg = f"{inner!r} did not return a kirocache frame (see kirocache.serializers.frame)"
        raise SerializationError(msg) from exc


class CompressedSerializer:
    """Wraps a serializer and zlib-compresses payloads larger than ``threshold`` bytes.

    A payload is stored compressed (flag bit 0) only when compression makes it smaller;
    ``loads`` reads compressed and uncompressed entries alike.

    Args:
        inner: The serializer whose output is compressed; :class:`OrjsonSerializer` if None.
        threshold: Payloads of at most this many bytes are stored as they are.
        level: zlib level, 1 (fast) to 9 (small).

    Raises:
        ConfigurationError: A negative threshold or a level outside 1 to 9.
    """

    __slots__ = ("_inner", "_level", "_threshold")

    def __init__(
        self, inner: Serializer | None = None, *, threshold: int = 1024, level: int = 6
    ) -> None:
        if not _is_int_in(threshold, 0, sys.maxsize):
            msg = f"compression threshold must be an int of bytes >= 0, got {threshold!r}"
            raise ConfigurationError(msg)
        if not _is_int_in(level, 1, 9):
            msg = f"compression level must be an int from 1 to 9, got {level!r}"
            raise ConfigurationError(msg)
        self._inner: Serializer = OrjsonSerializer() if inner is None else inner
        self._threshold = threshold
        self._level = level

    def dumps(self, value: object) -> bytes:
        """Serialize with the inner serializer, then compress a large payload.

        Args:
            value: The value to store.

        Returns:
            The framed, possibly compressed payload.

        Raises:
            SerializationError: The inner serializer cannot serialize the value.
        """
        data, format_id, flags, payload = _inner_frame(self._inner, value)
        if len(payload) > self._threshold and not flags & FLAG_COMPRESSED:
            packed = zlib.compress(payload, self._level)
            if len(packed) < len(payload):
                return frame(format_id, packed, flags | FLAG_COMPRESSED)
        return data

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Decompress a compressed entry, then load it with the inner serializer.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: Passed on to the inner serializer.

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a valid entry or do not decompress.
        """
        format_id, flags, payload = unframe(data)
        if not flags & FLAG_COMPRESSED:
            return self._inner.loads(data, type)
        try:
            payload = zlib.decompress(payload)
        except zlib.error as exc:
            msg = f"compressed entry does not decompress: {exc}"
            raise CorruptValueError(msg) from exc
        return self._inner.loads(frame(format_id, payload, flags & ~FLAG_COMPRESSED), type)

    def __repr__(self) -> str:
        return (
            f"CompressedSerializer(inner={self._inner!r}, threshold={self._threshold}, "
            f"level={self._level})"
        )


class EncryptedSerializer:
    """Wraps a serializer and encrypts its payload with AES-GCM (the ``crypto`` extra).

    Each entry gets a random 12-byte nonce; the header's magic, version, format and flags are
    authenticated as associated data, so tampering with any of them is detected. ``loads``
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

    def dumps(self, value: object) -> bytes:
        """Serialize with the inner serializer, then encrypt the payload with the first key.

        Args:
            value: The value to store.

        Returns:
            The framed nonce and ciphertext.

        Raises:
            SerializationError: The inner serializer cannot serialize the value.
        """
        _, format_id, flags, payload = _inner_frame(self._inner, value)
        flags |= FLAG_ENCRYPTED
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._ciphers[0].encrypt(nonce, payload, _aad(format_id, flags))
        return frame(format_id, nonce + sealed, flags)

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Decrypt with the first key that authenticates, then load with the inner serializer.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: Passed on to the inner serializer.

        Returns:
            The value.

        Raises:
            CorruptValueError: The entry is not encrypted, was tampered with, or was written
                with a key that is not configured.
        """
        from cryptography.exceptions import InvalidTag

        format_id, flags, payload = unframe(data)
        if not flags & FLAG_ENCRYPTED:
            msg = "EncryptedSerializer refuses an entry that is not encrypted"
            raise CorruptValueError(msg)
        if len(payload) < _NONCE_SIZE + _TAG_SIZE:
            msg = "encrypted entry is too short to hold a nonce and a tag"
            raise CorruptValueError(msg)
        nonce, sealed, aad = payload[:_NONCE_SIZE], payload[_NONCE_SIZE:], _aad(format_id, flags)
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            return self._inner.loads(frame(format_id, plain, flags & ~FLAG_ENCRYPTED), type)
        msg = "encrypted entry does not authenticate: tampered with, or written with another key"
        raise CorruptValueError(msg)

    def __repr__(self) -> str:
        return f"EncryptedSerializer(inner={self._inner!r}, keys=<{len(self._ciphers)} hidden>)"


def _aad(format_id: int, flags: int) -> bytes:
    """The associated data of an encrypted entry: the header bytes before the checksum."""
    return bytes((_MAGIC, _VERSION, format_id, flags))


_NAMED: Final[dict[str, Callable[[], Serializer]]] = {
    "json": OrjsonSerializer,
    "orjson": OrjsonSerializer,
    "raw": RawSerializer,
}


def resolve_serializer(spec: Serializer | str | None) -> Serializer:
    """Turn a serializer, a serializer name or None into a serializer.

    Args:
        spec: A serializer instance (returned as is), ``None``, ``"json"`` or ``"orjson"``
            (:class:`OrjsonSerializer`), or ``"raw"`` (:class:`RawSerializer`).

    Returns:
        The serializer.

    Raises:
        ConfigurationError: An unknown name, ``"pickle"`` (which needs a secret), or
            something that is not a serializer.
    """
    if spec is None:
        return OrjsonSerializer()
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in _NAMED:
            return _NAMED[name]()
        if name == "pickle":
            msg = (
                'serializer "pickle" needs a secret: pass '
                "serializer=PickleSerializer(secret=...) with at least 16 secret bytes"
            )
            raise ConfigurationError(msg)
        msg = f"unknown serializer {spec!r}: use one of {', '.join(sorted(_NAMED))}"
        msg += " or a Serializer instance"
        raise ConfigurationError(msg)
    candidate: object = spec
    if isinstance(candidate, type):
        msg = f"serializer must be an instance, not the class {candidate.__name__}: add ()"
        raise ConfigurationError(msg)
    if isinstance(candidate, Serializer):
        return candidate
    tp = candidate.__class__
    msg = f"{tp.__qualname__} is not a serializer: it needs dumps() and loads() methods"
    raise ConfigurationError(msg)
