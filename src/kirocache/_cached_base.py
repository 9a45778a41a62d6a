"""What the two ``@cached`` shells share: the plan, instance binding, ``cache_key``.

The shells are ``CachedFunction`` (``_cached_sync.py``) and ``AsyncCachedFunction``
(``_cached_async.py``); ``_calls`` reads the argument sets of their ``warm`` and ``awarm``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from typing_extensions import ParamSpec, Self

from kirocache._core import Seen
from kirocache._plan import Plan
from kirocache._types import MISSING

__all__ = ["_Base", "_Read", "_calls"]

P = ParamSpec("P")
R = TypeVar("R")


# What the read before a computation saw, and when: the bytes a conditional write of the
# result compares with (see Cache._store). ``None`` in their place writes unconditionally.
_Read = tuple[Seen, float]
# How long a finished computation is remembered for callers whose read came before it.
_LANDED_FOR = 5.0


class _Base(Generic[P, R]):
    """What both wrappers share: the plan, binding to instances, ``cache_key``."""

    def __init__(self, func: Callable[P, Any], plan: Plan) -> None:
        self.__wrapped__ = func
        self._func: Callable[..., Any] = getattr(func, "__func__", func)
        self._plan = plan
        self._instance: Any = MISSING
        # When each key's last computation finished, for a few seconds (see _land).
        self._landed: OrderedDict[tuple[object, ...], float] = OrderedDict()
        self._landed_lock = threading.Lock()
        functools.update_wrapper(cast("Callable[..., Any]", self), self._func)

    def _land(self, slot: tuple[object, ...]) -> None:
        """Note that a computation of ``slot`` just finished (see ``_landed_after``)."""
        now = time.perf_counter()
        with self._landed_lock:
            landed = self._landed
            landed.pop(slot, None)
            landed[slot] = now
            while landed and next(iter(landed.values())) < now - _LANDED_FOR:
                del landed[next(iter(landed))]

    def _landed_after(self, slot: tuple[object, ...], read_at: float) -> bool:
        """Whether a computation of ``slot`` finished after a read at ``read_at``.

        A caller whose miss was read just before another caller stored the value, and who
        arrives once that flight has ended, would otherwise call the function again.
        """
        landed = self._landed.get(slot)
        return landed is not None and landed >= read_at

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return args if self._instance is MISSING else (self._instance, *args)

    def _bind_to(self, instance: object) -> Self:
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound._instance = instance
        return bound

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key a call with these arguments is cached under (namespace prefix included)."""
        return self._plan.namespace.full_key(self._plan.body(self._args(args), kwargs))

    def __repr__(self) -> str:
        return f"<cached {self._plan.name} prefix={self._plan.namespace.prefix!r}>"


def _calls(
    arguments: Sequence[tuple[Any, ...] | dict[str, Any]],
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Normalise ``warm``'s argument sets: a tuple is positional, a dict is keywords."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for item in arguments:
        if isinstance(item, dict):
            calls.append(((), item))
        elif isinstance(item, tuple):
            calls.append((item, {}))
        else:
            calls.append(((item,), {}))  # type: ignore[unreachable]
    return calls
