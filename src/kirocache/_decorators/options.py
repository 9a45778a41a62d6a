"""Decorator options: what ``cached(...)`` and ``cached_many(...)`` were given, checked once."""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from kirocache._values.expiry import TtlOption, checked_jitter, expiry_of
from kirocache._values.types import Duration, option_seconds, to_seconds, ttl_seconds
from kirocache.exceptions import ConfigurationError
from kirocache.keys import Namespace

if typing.TYPE_CHECKING:
    from kirocache._cache import Cache

__all__ = ["LockMode", "Options", "Shape", "StampedeGuard", "default_prefix"]

LockMode: TypeAlias = "bool | Literal['local', 'distributed']"
"""What ``lock=`` accepts."""
StampedeGuard: TypeAlias = Literal[False, "local", "distributed"]
"""What ``lock=`` means: none, waiting within this process, or a lock in the backend."""
Shape: TypeAlias = Literal["dict", "list"]
"""What a ``@cached_many`` function returns: a mapping by id, or a list aligned with the ids."""


@dataclass(frozen=True, slots=True)
class Options:
    """The options of one ``@cached`` or ``@cached_many``, checked, durations in seconds.

    ``cached(...)`` and ``cached_many(...)`` build it with :meth:`checked`; the ``Plan``
    reads it when the function is decorated. What needs the function itself (templates
    naming its parameters, a TTL to go stale after, the ids parameter, the return shape) is
    checked by the plan.

    Attributes:
        prefix: A ``Namespace``, a prefix string, or ``None`` for the function's own name.
        key: A key template over the parameters, or ``None`` for all bound arguments.
        ttl: Seconds to keep a result; ``None``: the namespace's; ``math.inf``: no expiry.
        ttl_function: ``f(result)`` giving each result's TTL (``ttl`` is then ``None``).
        none_ttl: Seconds to keep a ``None`` result ("not found"); ``None``: as any other.
        jitter: Up to this many seconds added at random to each TTL; ``None``: the
            namespace's.
        cache: The cache, or ``None`` for the default cache at call time.
        condition: Decides whether a result (per id for ``@cached_many``) is stored.
        tags: Tag templates rendered from each call's arguments.
        lock: The stampede guard.
        lock_timeout: How long a waiting caller waits before it computes by itself.
        stale_ttl: How long a result is served stale while it is refreshed; 0: never.
        early_refresh: The XFetch factor of early refreshes; 0: none.
        ids: The ``@cached_many`` parameter holding the ids (``None``: the first one).
        returns: The ``@cached_many`` result's shape (``None``: from the annotation).
        strict: Raise when a computed result cannot be stored (by default it is returned
            uncached, counted and warned about once).
    """

    prefix: Namespace | str | None = None
    key: str | None = None
    ttl: float | None = None
    ttl_function: Callable[[Any], Duration | None] | None = None
    none_ttl: float | None = None
    jitter: float | None = None
    cache: Cache | None = None
    condition: Callable[[Any], bool] | None = None
    tags: tuple[str, ...] = ()
    lock: StampedeGuard = "local"
    lock_timeout: float = 10.0
    stale_ttl: float = 0.0
    early_refresh: float = 0.0
    ids: str | None = None
    returns: Shape | None = None
    strict: bool = False

    @classmethod
    def checked(
        cls,
        *,
        prefix: Namespace | str | None,
        key: str | None,
        ttl: TtlOption,
        cache: Cache | None,
        condition: Callable[[Any], bool] | None,
        tags: Sequence[str] = (),
        lock: LockMode = False,
        lock_timeout: Duration = 10.0,
        stale_ttl: Duration | None = None,
        early_refresh: float | bool = False,
        ids: str | None = None,
        returns: Shape | None = None,
        strict: bool = False,
        none_ttl: Duration | None = None,
        jitter: Duration | None = None,
    ) -> Options:
        """Check the decorator's arguments and turn durations into seconds.

        Raises:
            ConfigurationError: ``prefix``, ``condition``, ``lock``, ``early_refresh`` or
                ``returns`` is of the wrong kind.
            InvalidTTLError: A duration is negative, NaN or not a duration, or ``ttl`` is 0.
        """
        if prefix is not None and not isinstance(prefix, (Namespace, str)):
            msg = f"prefix must be a Namespace or a str, not {type(prefix).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        seconds, function = expiry_of(ttl)
        never = ttl is not None and function is None and seconds is None
        if condition is not None and not callable(condition):
            msg = f"condition must be a callable taking the result, not {condition!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        if lock not in (True, False, "local", "distributed"):
            msg = f"lock must be True, False, 'local' or 'distributed', not {lock!r}"
            raise ConfigurationError(msg)
        guard: StampedeGuard = (
            "distributed" if lock == "distributed" else "local" if lock else False
        )
        wait = option_seconds(lock_timeout, "lock_timeout")
        stale = to_seconds(stale_ttl, name="stale_ttl") if stale_ttl else 0.0
        if isinstance(early_refresh, bool):
            beta = 1.0 if early_refresh else 0.0
        elif early_refresh >= 0:
            beta = float(early_refresh)
        else:
            msg = f"early_refresh must be a bool or a factor >= 0, not {early_refresh!r}"
            raise ConfigurationError(msg)
        if returns is not None and returns not in ("dict", "list"):
            msg = f"returns must be 'dict' or 'list', not {returns!r}"
            raise ConfigurationError(msg)
        return cls(
            prefix=prefix,
            key=key,
            # NEVER stays infinite here: "no expiry", where None means "the namespace's"
            ttl=float("inf") if never else seconds,
            ttl_function=function,
            none_ttl=None if none_ttl is None else ttl_seconds(none_ttl),
            jitter=None if jitter is None else checked_jitter(jitter),
            cache=cache,
            condition=condition,
            tags=tuple(tags),
            lock=guard,
            lock_timeout=wait,
            stale_ttl=stale,
            early_refresh=beta,
            ids=ids,
            returns=returns,
            strict=bool(strict),
        )


# A qualified name with one of these is not unique in its module: every lambda is
# ``<lambda>``, and each closure a factory makes shares the factory's ``<locals>`` name.
_AMBIGUOUS = ("<lambda>", "<locals>")


def default_prefix(func: Callable[..., Any], decorator: str = "@cached") -> str:
    """The key prefix a function gets without ``prefix=``: ``<module>.<qualname>:``.

    Two functions with one qualified name would share their entries and answer each
    other's calls, so a name that is not unique in its module is refused: two lambdas are
    both ``<lambda>``, and the closures a factory returns all share one
    ``factory.<locals>.inner`` name.

    Args:
        func: The decorated function (a ``classmethod`` or ``staticmethod`` is unwrapped).
        decorator: The decorator's name, for the message.

    Returns:
        The prefix.

    Raises:
        ConfigurationError: The qualified name has ``<lambda>`` or ``<locals>`` in it.
    """
    target = getattr(func, "__func__", func)
    name = f"{target.__module__}.{target.__qualname__}"
    for mark in _AMBIGUOUS:
        if mark in name:
            msg = (
                f"{decorator} cannot derive a key prefix from {name!r}: {mark} is shared by "
                f"other functions (every lambda, every closure of one factory), so their "
                f"cached results would mix. Pass prefix= (a Namespace or a str unique to "
                f'this function, e.g. prefix="report:")'
            )
            raise ConfigurationError(msg)
    return f"{name}:"
