"""What ``@cached_many`` adds to the plan: the ids parameter, the shape, each call's keys.

``many.py`` holds the sync and async wrappers; every decision they make is a method of
``Bulk`` or ``BulkCall`` here (keys, TTL, namespace and condition are the ``Plan``'s, the same
one ``@cached`` builds), so the two cannot drift.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import (
    Callable,
    Iterable,
    Mapping,
    MutableMapping,
    MutableSequence,
    Sequence,
)
from collections.abc import Set as AbstractSet
from typing import Any

from kirocache._decorators.options import Shape
from kirocache._decorators.plan import Plan, return_type
from kirocache._values.faithful import Check
from kirocache.exceptions import ConfigurationError, InvalidKeyError

if typing.TYPE_CHECKING:
    from kirocache._cache import Cache

__all__ = ["Bulk", "BulkCall"]

_MAPPINGS = (dict, Mapping, MutableMapping)
_SEQUENCES = (list, Sequence, MutableSequence)
_NOT_IDS = (str, bytes, bytearray, Mapping)
_MAPPING_NAMES = frozenset({"dict", "Dict", "Mapping", "MutableMapping"})
_SEQUENCE_NAMES = frozenset({"list", "List", "Sequence", "MutableSequence"})


def _shape_of(annotation: Any) -> tuple[Shape, Any] | None:
    """The shape and value type a return annotation promises, if ``@cached_many`` knows it."""
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if origin in _MAPPINGS:
        value = args[1] if len(args) == 2 else None
        return "dict", None if value is Any else value
    if origin in _SEQUENCES:
        value = args[0] if len(args) == 1 else None
        return "list", None if value is Any else value
    return None


def _shape_of_text(func: Callable[..., Any]) -> tuple[Shape, Any] | None:
    """The shape of an annotation that does not resolve (a name imported for type checking).

    Values are then decoded untyped, as ``@cached`` does with such an annotation.
    """
    annotation = getattr(getattr(func, "__func__", func), "__annotations__", {}).get("return")
    if not isinstance(annotation, str):
        return None
    head = annotation.partition("[")[0].strip().rpartition(".")[2]
    if head in _MAPPING_NAMES:
        return "dict", None
    if head in _SEQUENCE_NAMES:
        return "list", None
    return None


class Bulk:
    """What ``@cached_many`` decides about one function beyond its ``Plan``, once.

    The key, TTL, namespace and condition come from the plan, the same one ``@cached``
    builds, so that an id's key is the key ``@cached`` gives the single-id call.

    Raises:
        ConfigurationError: No parameter for the ids, an unknown ``ids``, or a shape that
            cannot be told or contradicts the annotation.
    """

    def __init__(self, func: Callable[..., Any], plan: Plan) -> None:
        self.plan = plan
        self.name = plan.name
        self.ids = self._ids_parameter(plan.options.ids)
        self.shape, self.value_type = self._shape(func, plan.options.returns)
        # each id's value is checked as a hit will decode it: into the value type
        self.check = Check(self.value_type)

    def _ids_parameter(self, ids: str | None) -> str:
        arguments = self.plan.arguments
        parameters = arguments.signature.parameters
        if ids is None:
            names = [name for name in parameters if name != arguments.skipped]
            ids = names[0] if names else None
            if ids is None:
                msg = f"@cached_many on {self.name}: the function has no parameter for the ids"
                raise ConfigurationError(msg)
        elif ids not in parameters:
            known = ", ".join(parameters) or "(none)"
            msg = (
                f"@cached_many on {self.name}: ids={ids!r} is not a parameter; "
                f"its parameters are: {known}"
            )
            raise ConfigurationError(msg)
        if parameters[ids].kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            msg = (
                f"@cached_many on {self.name}: the ids must be one parameter holding a "
                f"collection, not *args or **kwargs ({ids!r}); pass ids= to name it"
            )
            raise ConfigurationError(msg)
        return ids

    def _shape(self, func: Callable[..., Any], returns: Shape | None) -> tuple[Shape, Any]:
        found = _shape_of(return_type(func)) or _shape_of_text(func)
        if returns is None:
            if found is None:
                msg = (
                    f"@cached_many cannot tell whether {self.name} returns a mapping or a "
                    "list: annotate its return (-> dict[int, Profile] or -> list[Profile]) "
                    "or pass returns='dict' or returns='list'"
                )
                raise ConfigurationError(msg)
            return found
        if found is not None and found[0] != returns:
            msg = (
                f"@cached_many on {self.name}: returns={returns!r}, but it is annotated {found[0]}"
            )
            raise ConfigurationError(msg)
        return returns, None if found is None else found[1]

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BulkCall:
        """One call's ids and keys, from one binding of its arguments."""
        return BulkCall(self, args, kwargs)

    def empty(self) -> Any:
        """The answer to a call without ids."""
        return {} if self.shape == "dict" else []


class BulkCall:
    """One call's ids and keys, and the pure steps between its two round trips."""

    __slots__ = ("args", "bodies", "bulk", "given", "ids", "kwargs")

    def __init__(self, bulk: Bulk, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.bulk, self.args, self.kwargs = bulk, args, kwargs
        inner = bulk.plan
        bound = inner.arguments.bind(args, kwargs)
        self.given: Any = bound[bulk.ids]
        if isinstance(self.given, _NOT_IDS) or not isinstance(self.given, Iterable):
            msg = (
                f"{bulk.name}: argument {bulk.ids!r} must be a collection of ids (a list, "
                f"tuple or set), not {type(self.given).__name__}"
            )
            raise InvalidKeyError(msg)
        self.ids: list[Any] = list(self.given)
        # Each id is keyed as the single-id call would be: the same bound arguments with
        # the collection replaced by that one id.
        render = inner.template.render if inner.template is not None else inner.arguments.render
        self.bodies: list[str] = []
        for item in self.ids:
            bound[bulk.ids] = item
            self.bodies.append(render(bound))

    def unique(self) -> list[str]:
        """The keys to read, each once, in the caller's order."""
        return list(dict.fromkeys(self.bodies))

    def missing(self, found: Mapping[str, object]) -> dict[str, Any]:
        """The keys that missed, each with the first id that asked for it."""
        missing: dict[str, Any] = {}
        for item, body in zip(self.ids, self.bodies, strict=True):
            if body not in found and body not in missing:
                missing[body] = item
        return missing

    def call_for(self, missing: dict[str, Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """The ids to pass (the caller's kind of collection) and the call's arguments."""
        given, ids = self.given, list(missing.values())
        passed: Any
        if isinstance(given, tuple):
            passed = tuple(ids)
        elif isinstance(given, frozenset):
            passed = frozenset(ids)
        elif isinstance(given, AbstractSet):
            passed = set(ids)
        else:
            passed = ids
        bound = self.bulk.plan.arguments.signature.bind(*self.args, **self.kwargs)
        bound.apply_defaults()
        bound.arguments[self.bulk.ids] = passed
        return passed, bound.args, bound.kwargs

    def computed(self, missing: dict[str, Any], passed: Any, result: object) -> dict[str, Any]:
        """The function's values by key; ids it left out of a mapping are left out here."""
        bulk = self.bulk
        if bulk.shape == "dict":
            if not isinstance(result, Mapping):
                msg = (
                    f"{bulk.name} must return a mapping of id to value, not {type(result).__name__}"
                )
                raise ConfigurationError(msg)
            return {body: result[item] for body, item in missing.items() if item in result}
        if not isinstance(result, Sequence) or isinstance(result, (str, bytes, bytearray)):
            msg = (
                f"{bulk.name} must return a list aligned with its ids, not {type(result).__name__}"
            )
            raise ConfigurationError(msg)
        if len(result) != len(missing):
            msg = (
                f"{bulk.name} returned {len(result)} values for {len(missing)} ids; a list "
                "result must hold one value per id, in the order of the ids it was given"
            )
            raise ConfigurationError(msg)
        order = list(missing)
        if isinstance(passed, AbstractSet):
            # A set is passed on as a set: the list follows the set's own order.
            by_id = {item: body for body, item in missing.items()}
            order = [by_id[item] for item in passed]
        return dict(zip(order, result, strict=True))

    def storable(self, computed: Mapping[str, object], cache: Cache) -> dict[str, object]:
        """The computed values that go into the cache.

        ``condition`` decides, and a value a hit would not give back as it is stays out
        (counted and warned about: see ``Plan.storable``).
        """
        plan, check = self.bulk.plan, self.bulk.check
        return {
            body: value
            for body, value in computed.items()
            if plan.should_store(value) and plan.storable(cache, value, check)
        }

    def answer(self, values: Mapping[str, object]) -> Any:
        """The merged answer in the caller's order: a dict by id, or a list aligned with the ids."""
        if self.bulk.shape == "dict":
            return {
                item: values[body]
                for item, body in zip(self.ids, self.bodies, strict=True)
                if body in values
            }
        return [values[body] for body in self.bodies]
