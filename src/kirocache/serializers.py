"""Serializers: values to framed bytes and back, with compression, encryption and signing.

Every stored value starts with an 8-byte header (see :func:`frame`): magic byte ``0xC5``,
header version, format id, flags and a checksum, so a foreign, truncated or corrupt value is
detected (:class:`~kirocache.exceptions.CorruptValueError`, which the cache treats as a miss)
and never returned. Format ids 1 to 5 are kirocache's (JSON, raw bytes, raw str, signed
pickle, MessagePack), up to 127 are reserved for it, and 128 to 255 are free for
third-party serializers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kirocache._values.formats import OrjsonSerializer, PickleSerializer, RawSerializer
from kirocache._values.framing import (
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FORMAT_JSON,
    FORMAT_MSGPACK,
    FORMAT_PICKLE,
    FORMAT_RAW_BYTES,
    FORMAT_RAW_STR,
    HEADER_SIZE,
    Serializer,
    frame,
    unframe,
)
from kirocache._values.packed import MsgpackSerializer
from kirocache._values.wrappers import CompressedSerializer, EncryptedSerializer
from kirocache.exceptions import ConfigurationError

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FORMAT_JSON",
    "FORMAT_MSGPACK",
    "FORMAT_PICKLE",
    "FORMAT_RAW_BYTES",
    "FORMAT_RAW_STR",
    "HEADER_SIZE",
    "CompressedSerializer",
    "EncryptedSerializer",
    "MsgpackSerializer",
    "OrjsonSerializer",
    "PickleSerializer",
    "RawSerializer",
    "Serializer",
    "frame",
    "resolve_serializer",
    "unframe",
]


# The serializers, their protocol and the framing functions are written in private modules but
# documented and imported from here, so they name this module as theirs (as httpx does): reprs
# and pickles see kirocache.serializers.
for _public in (
    Serializer,
    OrjsonSerializer,
    RawSerializer,
    PickleSerializer,
    MsgpackSerializer,
    CompressedSerializer,
    EncryptedSerializer,
    frame,
    unframe,
):
    _public.__module__ = __name__
del _public


_NAMED: Final[dict[str, Callable[[], Serializer]]] = {
    "json": OrjsonSerializer,
    "orjson": OrjsonSerializer,
    "msgpack": MsgpackSerializer,
    "raw": RawSerializer,
}


def resolve_serializer(spec: Serializer | str | None) -> Serializer:
    """Turn a serializer, a serializer name or None into a serializer.

    Args:
        spec: A serializer instance (returned as is), ``None``, ``"json"`` or ``"orjson"``
            (:class:`OrjsonSerializer`), ``"msgpack"`` (:class:`MsgpackSerializer`), or
            ``"raw"`` (:class:`RawSerializer`).

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
