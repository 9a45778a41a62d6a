"""The serializers of kirocache's own formats: JSON (1), raw bytes and str (2, 3), pickle (4).

They are documented and imported from `kirocache.serializers`.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec
import orjson

from kirocache._values.framing import (
    _CHECKSUM_FROM,
    _LOW_32,
    _MAGIC,
    _VERSION,
    _XXH3_64,
    FORMAT_JSON,
    FORMAT_PICKLE,
    FORMAT_RAW_BYTES,
    FORMAT_RAW_STR,
    HEADER_SIZE,
    _expect,
    frame,
)
from kirocache._values.typed_decode import _decoder
from kirocache.exceptions import ConfigurationError, CorruptValueError, SerializationError

# The first four header bytes of an uncompressed, unencrypted JSON entry, and its seed.
_JSON_HEAD: Final = bytes((_MAGIC, _VERSION, FORMAT_JSON, 0))
_JSON_SEED: Final = FORMAT_JSON << 8
# Under this size, copying a payload out of its entry is cheaper than a memoryview.
_COPY_LIMIT: Final = 2048
_MAC_SIZE: Final = hashlib.sha256().digest_size
_MIN_SECRET_SIZE: Final = 16


# Annotations of a JSON object or array of anything, and the type a decode must give.
_PLAIN_TOPS: Final[dict[Any, type]] = {
    dict: dict,
    dict[str, Any]: dict,
    dict[str, object]: dict,
    typing.Dict[str, Any]: dict,  # noqa: UP006 - the spelling users may annotate with
    list: list,
    list[Any]: list,
    list[object]: list,
    typing.List[Any]: list,  # noqa: UP006 - the spelling users may annotate with
}


def _plain_top(annotation: Any) -> type | None:
    """``dict`` or ``list`` when ``annotation`` is a JSON object or array of anything."""
    try:
        return _PLAIN_TOPS.get(annotation)
    except TypeError:  # an unhashable annotation (Annotated metadata, say)
        return None


def json_loader(annotation: Any) -> Callable[[bytes], Any]:
    """What ``OrjsonSerializer.loads`` decodes a checked payload with, for ``annotation``.

    For the memo of checked payloads (``_cache/decoding.py``): a payload this loader once
    decoded into ``annotation`` decodes the same way again.
    """
    if annotation is None or _plain_top(annotation) is not None:
        return orjson.loads
    return _decoder(annotation).decode


def bound_to(key: str | None, payload: bytes) -> bytes:
    """What a signature or an AEAD tag covers besides the payload: the entry's key.

    Length-prefixed, so no key and payload pair reads as another. ``None`` (a serializer
    used on its own, outside a cache) binds to the empty key.
    """
    name = b"" if key is None else key.encode("utf-8", "surrogatepass")
    return len(name).to_bytes(4, "big") + name + payload


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


def _encode(value: object) -> bytes:
    """The JSON payload of a value, as ``OrjsonSerializer.dumps`` frames it.

    Raises:
        SerializationError: The value, or something inside it, has no JSON form.
    """
    try:
        return orjson.dumps(value, default=_json_default)
    except orjson.JSONEncodeError:
        # Non-str dict keys are rare, and allowing them slows every dump down, so they
        # are allowed only on this second try.
        try:
            return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, SerializationError):
                raise SerializationError(str(cause)) from cause.__cause__
            msg = f"{_unsupported(type(value), 'JSON')} (orjson: {exc})"
            raise SerializationError(msg) from exc


def _unsupported(tp: type, what: str) -> str:
    """Build the message for a value of type ``tp`` that cannot be serialized as ``what``."""
    return (
        f"cannot serialize a value of type {tp.__module__}.{tp.__qualname__} as {what}: "
        "return builtins, a dataclass, TypedDict, NamedTuple, msgspec.Struct, datetime, UUID, "
        "Decimal or Enum, or store it with PickleSerializer(secret=...)"
    )


class OrjsonSerializer:
    """JSON through orjson, decoded back into the caller's type with msgspec: the default.

    ``dumps`` handles builtins, dataclasses, TypedDict, datetime/date/time, UUID and Enum
    natively, and Decimal (as a string), set/frozenset and NamedTuple (as arrays), timedelta,
    bytes (base64) and msgspec Structs through a fallback. Dicts with int, float, UUID or
    datetime keys are written with string keys.

    ``loads`` without a type returns plain JSON values (so a tuple comes back as a list and a
    Decimal as a string); with a type (a function's return annotation) it returns exactly that
    type, validated. NaN and infinities are written as ``null``, as orjson does, and integers
    must fit in 64 bits. ``@cached`` does not store a result that a hit would give back
    changed (it checks first); the docs' serialization page has the table of every type.
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
        return frame(FORMAT_JSON, _encode(value))

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
        if data.startswith(_JSON_HEAD) and len(data) >= HEADER_SIZE:
            # The common case, checked inline: an uncompressed JSON entry whose checksum
            # holds; a large payload is read in place rather than copied. A frame shorter
            # than its header goes the long way, which refuses it as corrupt.
            payload: bytes | memoryview = (
                data[HEADER_SIZE:] if len(data) < _COPY_LIMIT else memoryview(data)[HEADER_SIZE:]
            )
            if _XXH3_64(payload, _JSON_SEED) & _LOW_32 != _CHECKSUM_FROM(data, 4)[0]:
                _expect(data, (FORMAT_JSON,), "OrjsonSerializer")  # raises, saying why
        else:
            _, payload = _expect(data, (FORMAT_JSON,), "OrjsonSerializer")
        top = None if type is None else _plain_top(type)
        if type is None or top is not None:
            # untyped, or a JSON object or array of anything: orjson gives the same values
            # as msgspec would, faster for large ones; only the top level is checked
            try:
                value = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                msg = f"cached JSON does not decode: {exc}"
                raise CorruptValueError(msg) from exc
            if top is None or value.__class__ is top:
                return value
            msg = f"cached JSON does not decode as {type!r}: it holds a {value.__class__.__name__}"
            raise CorruptValueError(msg)
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

    binds_key: Final = True
    """The signature covers the entry's key too (see ``dumps``)."""

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

    def dumps(self, value: object, *, key: str | None = None) -> bytes:
        """Pickle and sign a value into a frame of format 4.

        Args:
            value: Any picklable value.
            key: The backend key the entry is stored at (the cache passes it): the
                signature covers it, so the bytes read back under another key, swapped or
                replayed there, do not verify.

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
        signature = hmac.digest(self._secrets[0], bound_to(key, pickled), "sha256")
        return frame(FORMAT_PICKLE, signature + pickled)

    def loads(
        self, data: bytes, type: Any = None, *, key: str | None = None, limit: int | None = None
    ) -> Any:
        """Verify the signature, then unpickle.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: Ignored: pickle restores the original type itself.
            key: The key the bytes were read at: the one they were signed for.
            limit: Ignored (a pickle is as large as it was stored).

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a pickle entry, the signature matches none of
                the secrets for this key, or the signed pickle no longer loads (a class was
                renamed).
        """
        _, payload = _expect(data, (FORMAT_PICKLE,), "PickleSerializer")
        signature, pickled = payload[:_MAC_SIZE], payload[_MAC_SIZE:]
        signed = bound_to(key, pickled)
        if len(signature) != _MAC_SIZE or not any(
            hmac.compare_digest(hmac.digest(secret, signed, "sha256"), signature)
            for secret in self._secrets
        ):
            msg = (
                "pickle entry signature does not match: not written with this secret, or "
                "written for another key"
            )
            raise CorruptValueError(msg)
        try:
            return pickle.loads(pickled)  # noqa: S301 - signed by our own secret, checked above
        except Exception as exc:
            msg = f"signed pickle entry no longer loads: {exc!r}"
            raise CorruptValueError(msg) from exc

    def __repr__(self) -> str:
        return f"PickleSerializer(secrets=<{len(self._secrets)} hidden>, protocol={self._protocol})"
