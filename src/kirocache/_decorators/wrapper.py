"""What every cached-function wrapper shares: the function, its plan, binding to instances."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from typing_extensions import ParamSpec, Self

from kirocache._decorators.plan import Plan
from kirocache._values.types import MISSING

__all__ = ["Wrapper", "argument_sets"]

P = ParamSpec("P")
R = TypeVar("R")


class Wrapper(Generic[P, R]):
    """The base of ``CachedFunction``, ``CachedManyFunction`` and their async twins.

    It holds the decorated function and its plan, and binds to an instance the way a
    function does, so ``self`` (or ``cls``) is passed on and left out of keys.
    """

    _kind: ClassVar[str] = "cached"

    def __init__(self, func: Callable[P, Any], plan: Plan) -> None:
        self.__wrapped__ = func
        self._func: Callable[..., Any] = getattr(func, "__func__", func)
        self._plan = plan
        self._instance: Any = MISSING
        functools.update_wrapper(cast("Callable[..., Any]", self), self._func)

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The call's positional arguments, the bound instance first."""
        return args if self._instance is MISSING else (self._instance, *args)

    def _bind_to(self, instance: object) -> Self:
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound._instance = instance
        return bound

    def __repr__(self) -> str:
        return f"<{self._kind} {self._plan.name} prefix={self._plan.namespace.prefix!r}>"


def argument_sets(
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
