"""MessagePack through msgspec: format 5, typed decoding like the JSON serializer's.

It is documented and imported from `kirocache.serializers`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from kirocache._values.framing import FORMAT_MSGPACK, _expect, frame
from kirocache._values.typed_decode import cached_decoder
from kirocache.exceptions import CorruptValueError, SerializationError

__all__ = ["MsgpackSerializer"]

_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
_ENCODER: Final = msgspec.msgpack.Encoder()
_UNTYPED: Final = msgspec.msgpack.Decoder()


def _decoder(annotation: Any) -> msgspec.msgpack.Decoder[Any]:
    """The cached msgspec MessagePack decoder for ``annotation``, built on first use."""
    return cached_decoder(_DECODERS, annotation, _build)


def _build(annotation: Any) -> msgspec.msgpack.Decoder[Any]:
    try:
        return msgspec.msgpack.Decoder(annotation)
    except TypeError as exc:
        msg = (
            f"cannot decode cached MessagePack into {annotation!r}: {exc}. Annotate the "
            "function with a type msgspec supports (builtins, dataclass, TypedDict, "
            "NamedTuple, msgspec.Struct, datetime, UUID, Decimal, Enum, unions of these)"
        )
        raise SerializationError(msg) from exc


class MsgpackSerializer:
    """MessagePack through ``msgspec.msgpack``: compact, fast, and typed on the way back.

    Next to JSON it keeps more as it is without an annotation: ``bytes`` stay bytes,
    ``inf`` and ``nan`` stay floats, integer dict keys stay integers, timezone-aware
    datetimes come back as datetimes (the timestamp extension type; naive ones as text).
    Tuples and sets come back as lists, Decimal and UUID as text, dataclasses as dicts,
    unless a type is given (a function's return annotation), which msgspec decodes into
    exactly. The same 8-byte header (format 5), checksum and size limits as every
    kirocache entry.
    """

    __slots__ = ()

    def dumps(self, value: object) -> bytes:
        """Serialize a value as MessagePack in a frame of format 5.

        Args:
            value: The value to store.

        Returns:
            The framed MessagePack.

        Raises:
            SerializationError: The value, or something inside it, has no MessagePack form;
                the message names its type.
        """
        try:
            return frame(FORMAT_MSGPACK, _ENCODER.encode(value))
        except (TypeError, OverflowError, ValueError) as exc:
            tp = type(value)
            msg = (
                f"cannot serialize a value of type {tp.__module__}.{tp.__qualname__} as "
                f"MessagePack: {exc}; return builtins, a dataclass, TypedDict, NamedTuple, "
                "msgspec.Struct, datetime, UUID, Decimal or Enum"
            )
            raise SerializationError(msg) from exc

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Decode a format-5 frame, into ``type`` when one is given.

        Args:
            data: Bytes produced by :meth:`dumps`.
            type: A type annotation to decode and validate into, or ``None``.

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a valid MessagePack entry or do not match
                ``type``.
            SerializationError: ``type`` is an annotation msgspec cannot decode into.
        """
        _, payload = _expect(data, (FORMAT_MSGPACK,), "MsgpackSerializer")
        decoder = _UNTYPED if type is None else _decoder(type)
        try:
            return decoder.decode(payload)
        except msgspec.DecodeError as exc:
            where = "" if type is None else f" as {type!r}"
            msg = f"cached MessagePack does not decode{where}: {exc}"
            raise CorruptValueError(msg) from exc

    def __repr__(self) -> str:
        return "MsgpackSerializer()"
