"""Typed reads of JSON: msgspec decoders for return annotations, built once and cached."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import msgspec

from kirocache.exceptions import SerializationError

_MAX_CACHED_DECODERS: Final = 1024

_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
D = TypeVar("D")


def cached_decoder(cache: dict[Any, D], annotation: Any, build: Callable[[Any], D]) -> D:
    """The decoder ``cache`` holds for ``annotation``, built with ``build`` on first use.

    At most ``_MAX_CACHED_DECODERS`` are kept; an unhashable annotation is built each time.
    """
    try:
        return cache[annotation]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation is decoded without caching its decoder
        return build(annotation)
    decoder = build(annotation)
    if len(cache) < _MAX_CACHED_DECODERS:
        cache[annotation] = decoder
    return decoder


def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    """Return the cached msgspec JSON decoder for ``annotation``, building it on first use."""
    return cached_decoder(_DECODERS, annotation, _build_decoder)


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
