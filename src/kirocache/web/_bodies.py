"""Request bodies and query strings of the admin API, checked before anything is done."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from kirocache import InvalidationEvent

__all__ = [
    "MAX_BODY",
    "BadRequest",
    "InvalidationRequest",
    "parse_invalidation",
    "query_int",
]

MAX_BODY: Final = 64 * 1024
_MAX_TEXT: Final = 1024
_LIMITS: Final = {"keys": 1000, "tags": 100, "patterns": 10, "namespaces": 20}
_SINGULAR: Final = {"key": "keys", "tag": "tags", "pattern": "patterns", "namespace": "namespaces"}
_FIELDS: Final = frozenset({*_LIMITS, *_SINGULAR, "event", "page_size"})
_EVENT_FIELDS: Final = frozenset({"type", "entity_id", "user_id", "timestamp", "data"})
_GLOB: Final = frozenset("*?[")
MAX_PAGE_SIZE: Final = 5000


class BadRequest(Exception):  # noqa: N818 - an answer, not a failure of the API
    """A request the API refuses: its status, a stable code and a message.

    The message names fields and limits, never a header's or a secret's value.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class InvalidationRequest:
    """What ``POST /api/cache/invalidate`` asked for, checked."""

    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    event: InvalidationEvent | None = None
    page_size: int = 500

    def kinds(self) -> list[str]:
        """The kinds of target asked for, for the log line."""
        kinds = [name for name in _LIMITS if getattr(self, name)]
        return [*kinds, "event"] if self.event is not None else kinds


def _invalid(detail: str) -> BadRequest:
    return BadRequest(422, "invalid_body", detail)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"{where} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise _invalid(f"{where} is longer than {_MAX_TEXT} characters")
    return value


def _texts(body: Mapping[str, object], name: str) -> tuple[str, ...]:
    found: list[str] = []
    single = next(one for one, many in _SINGULAR.items() if many == name)
    if single in body:
        found.append(_text(body[single], single))
    if name in body:
        values = body[name]
        if not isinstance(values, list):
            raise _invalid(f"{name} must be a list of strings")
        found += [_text(value, f"{name}[{i}]") for i, value in enumerate(values)]
    if len(found) > _LIMITS[name]:
        raise _invalid(f"at most {_LIMITS[name]} {name} per request, got {len(found)}")
    return tuple(dict.fromkeys(found))


def _scalar(value: object, where: str) -> object:
    if value is None or (isinstance(value, (str, int)) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _invalid(f"{where} must be a string, a number or null")


def _event(value: object) -> InvalidationEvent:
    if not isinstance(value, dict):
        raise _invalid('event must be an object such as {"type": "user.updated", "entity_id": 42}')
    unknown = sorted(set(value) - _EVENT_FIELDS)
    if unknown:
        raise _invalid(f"event has unknown fields {unknown}; known: {sorted(_EVENT_FIELDS)}")
    kind = _text(value.get("type"), "event.type")
    data = value.get("data", {})
    if not isinstance(data, dict) or len(data) > 50:
        raise _invalid("event.data must be an object of at most 50 fields")
    fields = {
        str(_text(k, "event.data key")): _scalar(v, f"event.data.{k}") for k, v in data.items()
    }
    stamp = value.get("timestamp")
    extra = {}
    if stamp is not None:
        if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
            raise _invalid("event.timestamp must be a number of Unix seconds")
        extra["timestamp"] = float(stamp)
    return InvalidationEvent(
        kind,
        entity_id=_scalar(value.get("entity_id"), "event.entity_id"),
        user_id=_scalar(value.get("user_id"), "event.user_id"),
        data=fields,
        **extra,
    )


def parse_invalidation(body: object, *, key_prefix: str) -> InvalidationRequest:
    """Check an invalidation body (parsed JSON) and say what it asks for.

    Args:
        body: The parsed JSON.
        key_prefix: The cache's key prefix: without one, a pattern must start with a
            literal part, so it cannot reach every key of the database.

    Raises:
        BadRequest: 400 when the body is not an object, 422 when a field is wrong.
    """
    if not isinstance(body, dict):
        raise BadRequest(400, "invalid_json", "the body must be a JSON object")
    unknown = sorted(str(name)[:40] for name in set(body) - _FIELDS)
    if unknown:
        raise _invalid(f"unknown fields {unknown}; known: {sorted(_FIELDS)}")
    lists = {name: _texts(body, name) for name in _LIMITS}
    for pattern in lists["patterns"]:
        if not key_prefix and (pattern[0] in _GLOB or pattern.strip("*") == ""):
            raise _invalid(
                "a pattern must start with a literal part (such as 'user:*') when the cache "
                "has no key_prefix: it would reach every key of the database"
            )
    event = _event(body["event"]) if "event" in body else None
    page_size = body.get("page_size", 500)
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise _invalid("page_size must be an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise _invalid(f"page_size must be from 1 to {MAX_PAGE_SIZE}")
    request = InvalidationRequest(**lists, event=event, page_size=page_size)
    if not request.kinds():
        raise _invalid(
            "nothing to invalidate: give key, keys, tag, tags, pattern, patterns, "
            "namespace, namespaces or event"
        )
    return request


def query_int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``.

    Raises:
        BadRequest: 422 when it is not such an integer.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(422, "invalid_query", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(422, "invalid_query", f"{name} must be from {low} to {high}")
    return value
