"""The I/O-free core of ``@cached``: keys, TTLs, freshness and what to store.

``_cached_sync.py`` and ``_cached_async.py`` hold the sync and async shells; every
decision they make is a method of ``Plan`` so the two cannot drift.
"""

from __future__ import annotations

import math
import random
import time
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

from kirocache._types import Duration, to_seconds, ttl_seconds
from kirocache.exceptions import ConfigurationError, SerializationError
from kirocache.keys import ArgumentKey, KeyTemplate, Namespace

if typing.TYPE_CHECKING:
    from kirocache._cache import Cache

__all__ = ["Freshness", "LockMode", "Plan", "resolve_cache"]

LockMode: TypeAlias = "bool | Literal['local', 'distributed']"
Freshness: TypeAlias = Literal["fresh", "refresh", "stale"]


def _return_type(func: Callable[..., Any]) -> Any:
    """The return annotation, resolved (``from __future__ import annotations`` makes strings)."""
    target = getattr(func, "__func__", func)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an unresolvable annotation means untyped decoding
        return None
    annotation = hints.get("return")
    return None if annotation is None or annotation is Any else annotation


def resolve_cache(cache: Cache | None) -> Cache:
    """``cache``, or the process-wide default as it is now (so later swaps take effect)."""
    if cache is not None:
        return cache
    from kirocache._global import get_cache

    return get_cache()


class Plan:
    """Everything ``@cached`` decides about one function, computed once at decoration."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        prefix: Namespace | str | None,
        key: str | None,
        ttl: Duration | None,
        cache: Cache | None,
        condition: Callable[[Any], bool] | None,
        tags: Sequence[str],
        lock: LockMode,
        lock_timeout: Duration,
        stale_ttl: Duration | None,
        early_refresh: float | bool,
    ) -> None:
        target = getattr(func, "__func__", func)
        self.name = f"{target.__module__}.{target.__qualname__}"
        if prefix is None:
            self.namespace = Namespace(f"{self.name}:", ttl=ttl)
        elif isinstance(prefix, Namespace):
            self.namespace = prefix
        elif isinstance(prefix, str):
            self.namespace = Namespace(prefix, ttl=ttl)
        else:
            msg = f"prefix must be a Namespace or a str, not {type(prefix).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.ttl = ttl_seconds(ttl) if ttl is not None else self.namespace.ttl
        self.arguments = ArgumentKey(func)
        self.template = KeyTemplate(key, func) if key is not None else None
        # The key body of a call, chosen once (see ``body``).
        self.build: Callable[[tuple[Any, ...], dict[str, Any]], str] = (
            self.arguments.build if self.template is None else self.template.build
        )
        self.tags = [KeyTemplate(tag, func) for tag in tags]
        self.cache = cache
        if condition is not None and not callable(condition):
            msg = f"condition must be a callable taking the result, not {condition!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.condition = condition
        if lock not in (True, False, "local", "distributed"):
            msg = f"lock must be True, False, 'local' or 'distributed', not {lock!r}"
            raise ConfigurationError(msg)
        self.lock: LockMode = "local" if lock is True else lock
        self.lock_timeout = to_seconds(lock_timeout, name="lock_timeout")
        self.stale_ttl = to_seconds(stale_ttl, name="stale_ttl") if stale_ttl else 0.0
        if isinstance(early_refresh, bool):
            self.beta = 1.0 if early_refresh else 0.0
        elif early_refresh >= 0:
            self.beta = float(early_refresh)
        else:
            msg = f"early_refresh must be a bool or a factor >= 0, not {early_refresh!r}"
            raise ConfigurationError(msg)
        if (self.stale_ttl or self.beta) and self.ttl is None:
            msg = f"{self.name}: stale_ttl and early_refresh need a ttl (on the call or namespace)"
            raise ConfigurationError(msg)
        self.enveloped = bool(self.stale_ttl or self.beta)
        self._type: Any = _return_type(func)
        value_type = self._type if self._type is not None else Any
        # What a stored entry decodes into: the value, or its freshness envelope.
        self.stored_type: Any = (
            tuple.__class_getitem__((float, float, value_type)) if self.enveloped else self._type
        )

    # -- keys ----------------------------------------------------------------------------

    def body(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key body of a call (the namespace adds its prefix)."""
        if self.template is None:
            return self.arguments.build(args, kwargs)
        return self.template.build(args, kwargs)

    def tag_names(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """The tags of a call, rendered from the templates."""
        if not self.tags:
            return []
        bound = self.arguments.bind(args, kwargs)
        return [tag.render(bound) for tag in self.tags]

    def target(self) -> Cache:
        """The cache to use: the one given, else the default looked up now."""
        return resolve_cache(self.cache)

    # -- values --------------------------------------------------------------------------

    @property
    def stored_ttl(self) -> float | None:
        """How long the backend keeps an entry: fresh time plus stale time."""
        return None if self.ttl is None else self.ttl + self.stale_ttl

    def should_store(self, value: object) -> bool:
        """Whether a computed value goes into the cache (``condition`` decides)."""
        return self.condition is None or bool(self.condition(value))

    def wrap(self, value: object, compute_time: float) -> object:
        """What is stored: the value, or an envelope with its fresh-until time."""
        if not self.enveloped:
            return value
        assert self.ttl is not None
        return (time.time() + self.ttl, compute_time, value)

    def freshness(self, entry: tuple[float, float, Any], now: float | None = None) -> Freshness:
        """Fresh, due for an early refresh (probabilistic, XFetch), or stale.

        A hot key is refreshed a little before it expires, with a probability that grows as
        expiry nears and with the time the value took to compute, so keys written together
        do not all expire together.
        """
        fresh_until, compute_time, _ = entry
        now = time.time() if now is None else now
        if now >= fresh_until:
            return "stale"
        if self.beta and compute_time > 0:
            gap = -compute_time * self.beta * math.log(1.0 - random.random())
            if now + gap >= fresh_until:
                return "refresh"
        return "fresh"

    def unserializable(self, exc: SerializationError) -> SerializationError:
        """The error for a result that cannot be cached, naming this function."""
        error = SerializationError(f"{self.name} returned a value that cannot be cached: {exc}")
        error.__cause__ = exc
        return error
