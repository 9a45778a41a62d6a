"""The codec: values to bytes and back, within the size limit, counters as integers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from kirocache._values.formats import OrjsonSerializer
from kirocache._values.framing import FORMAT_JSON, frame
from kirocache._values.stamped import is_stamped
from kirocache._values.wrappers import binds_key
from kirocache.exceptions import ConfigurationError, CorruptValueError, ValueTooLargeError
from kirocache.serializers import Serializer, resolve_serializer

if TYPE_CHECKING:
    from kirocache._cache.decoding import Memo

__all__ = ["DEFAULT_MAX_VALUE_SIZE", "Codec", "parse_counter"]

DEFAULT_MAX_VALUE_SIZE: Final = 16 * 1024 * 1024
_COUNTER: Final = re.compile(rb"-?[0-9]+")


def parse_counter(raw: object) -> int | None:
    """The integer a counter (``incr``, a generation) holds, or ``None`` if ``raw`` is none."""
    return int(raw) if isinstance(raw, bytes) and _COUNTER.fullmatch(raw) else None


class Codec:
    """Turns values into stored bytes and back: the one owner of encoding.

    It owns the serializer, the ``max_value_size`` limit, typed decoding (the serializer
    decodes into the type asked for) and the counter rule: bytes that are a plain integer
    and no serializer frame are a counter written by ``incr``, read back as ``int``.

    Args:
        serializer: A ``Serializer``, or a name ``resolve_serializer`` knows.
        max_value_size: Largest serialized value accepted, in bytes.

    Raises:
        ConfigurationError: ``max_value_size`` is not a whole number >= 1.
    """

    def __init__(self, serializer: Serializer | str | None, max_value_size: int) -> None:
        if isinstance(max_value_size, bool) or not isinstance(max_value_size, int):
            msg = f"max_value_size must be a whole number of bytes, not {max_value_size!r}"
            raise ConfigurationError(msg)
        if max_value_size < 1:
            msg = f"max_value_size must be at least 1 byte, got {max_value_size}"
            raise ConfigurationError(msg)
        self.serializer: Serializer = resolve_serializer(serializer)
        self.max_value_size = max_value_size
        # a signing or encrypting serializer binds each entry to its key (and a compressing
        # one inflates within max_value_size); others are called as the protocol says
        self._binds = binds_key(self.serializer)
        # what the hit path decoded, per full key (see ``decoding.decode``)
        self.decoded: Memo = {}

    def dumps(self, key: str, value: object, payload: bytes | None = None) -> bytes:
        """Serialize ``value`` for ``key`` (named in the error).

        ``payload``: the value's JSON as ``OrjsonSerializer`` encodes it, made already (by
        ``@cached``'s check before a store); the plain ``OrjsonSerializer`` frames it
        rather than encode the value again, other serializers ignore it.

        Raises:
            SerializationError: The value cannot be serialized.
            ValueTooLargeError: It is larger than ``max_value_size`` once serialized.
        """
        if payload is not None and self.serializer.__class__ is OrjsonSerializer:
            data = frame(FORMAT_JSON, payload)
        elif self._binds:
            data = self.serializer.dumps(value, key=key)  # type: ignore[call-arg]
        else:
            data = self.serializer.dumps(value)
        if len(data) > self.max_value_size:
            msg = (
                f"value for key {key!r} is {len(data)} bytes serialized, over "
                f"max_value_size={self.max_value_size}; store less or raise max_value_size"
            )
            raise ValueTooLargeError(msg)
        return data

    def loads(self, raw: bytes, type: Any, key: str | None = None) -> Any:
        """Decode stored bytes into ``type``; counters written by ``incr`` read back as ``int``.

        ``key`` is the backend key the bytes were read at: a serializer that binds entries
        to their keys refuses bytes written for another.

        Raises:
            CorruptValueError: The bytes are not a valid entry for this serializer.
        """
        # b"\xc5" starts every framed value, so a frame is never mistaken for a counter
        if not raw.startswith(b"\xc5"):
            if _COUNTER.fullmatch(raw):
                return int(raw)
            if is_stamped(raw):
                # the cache opens a tagged entry's envelope once its tags' stamps are checked
                msg = "a tagged entry must be checked against its tags' stamps first"
                raise CorruptValueError(msg)
        if self._binds:
            return self.serializer.loads(  # type: ignore[call-arg]
                raw, type, key=key, limit=self.max_value_size
            )
        return self.serializer.loads(raw, type)
