"""Sync/async drivers for I/O written once, as a generator of ``Call`` steps.

The session store and the cleanup task describe their work as generators that yield
``Call``s and are sent the results; ``run_sync`` calls the sync methods and ``run_async``
awaits the ``a``-prefixed twins, so the two halves cannot drift. A backend fault is thrown
back into the generator (wrapped by ``fault`` when given), so its ``finally`` blocks (lock
releases) and ``except`` blocks still run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from kirocache.exceptions import BackendError

__all__ = ["Call", "Fault", "Steps", "run_async", "run_sync"]


@dataclass(frozen=True, slots=True)
class Call:
    """One I/O step: ``target.method(*args, **kwargs)``.

    The sync driver calls ``method``; the async driver awaits ``"a" + method`` on the same
    target, which backends and ``DistributedLock`` both provide. ``scan`` answers a list.
    """

    target: Any
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Steps: TypeAlias = Generator[Call, Any, Any]
"""Work written once: it yields ``Call``s and is sent their results."""

Fault: TypeAlias = Callable[[Call, BackendError], BackendError]
"""Turns a backend fault of one call into the error thrown back into the steps."""


def _same(_: Call, exc: BackendError) -> BackendError:
    return exc


def run_sync(steps: Steps, fault: Fault = _same) -> Any:
    """Drive ``steps`` with the sync methods; returns what the generator returns.

    Raises:
        BackendError: A backend call failed and the steps did not handle it.
    """
    value: Any = None
    error: BackendError | None = None
    while True:
        try:
            call = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if call.method == "scan":
                value = list(call.target.scan(*call.args, **call.kwargs))
            else:
                value = getattr(call.target, call.method)(*call.args, **call.kwargs)
        except BackendError as exc:
            error = fault(call, exc)


async def run_async(steps: Steps, fault: Fault = _same) -> Any:
    """Drive ``steps`` with the async methods: ``run_sync``'s twin.

    Raises:
        BackendError: A backend call failed and the steps did not handle it.
    """
    value: Any = None
    error: BackendError | None = None
    while True:
        try:
            call = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if call.method == "scan":
                value = [key async for key in call.target.ascan(*call.args, **call.kwargs)]
            else:
                value = await getattr(call.target, "a" + call.method)(*call.args, **call.kwargs)
        except BackendError as exc:
            error = fault(call, exc)
