"""The one sync/async mechanism: I/O written once, as a generator of ``Call`` steps.

Work that takes several round trips (a session's create, a lock's wait, a cleanup's
pruning) is a generator that yields ``Call``s and is sent their results; ``run_steps``
calls the sync methods and ``arun_steps`` awaits the ``a``-prefixed twins, so the two
halves cannot drift. A backend fault is thrown back into the generator (translated by
``fault`` when given), and so is anything else a call raises, a cancellation included, so
the generator's ``finally`` blocks (lock releases) and ``except`` blocks run at once. It is
tested by sending it results, with no server. ``PAUSE`` is the step that waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import Any, TypeAlias, TypeVar

from kirocache.exceptions import BackendError

__all__ = ["PAUSE", "Call", "Fault", "Pause", "Steps", "arun_steps", "run_steps"]

T = TypeVar("T")


class Call:
    """One I/O step: ``target.method(*args, **kwargs)``.

    The sync driver calls ``method``; the async driver awaits ``"a" + method`` on the same
    target, which backends, ``DistributedLock`` and ``PAUSE`` all provide. ``scan`` answers
    a list. A plain slotted class rather than a dataclass: steps are built on the cache's
    multi-key reads, where a frozen dataclass's construction is a measurable share.

    Attributes:
        target: The object called (a backend, a lock).
        method: The sync method's name.
        args: Positional arguments.
        kwargs: Keyword arguments.
    """

    __slots__ = ("args", "kwargs", "method", "target")

    def __init__(
        self,
        target: Any,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.target = target
        self.method = method
        self.args = args
        self.kwargs: dict[str, Any] = _NO_KWARGS if kwargs is None else kwargs

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _all_slots(self))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _all_slots(self))
        return f"{type(self).__name__}({fields})"


_NO_KWARGS: dict[str, Any] = {}


def _all_slots(call: Call) -> list[str]:
    return [name for cls in type(call).__mro__ for name in getattr(cls, "__slots__", ())]


Steps: TypeAlias = Generator[Call, Any, T]
"""Work written once: it yields ``Call``s, is sent their results and returns a ``T``."""

Fault: TypeAlias = Callable[[Call, BackendError], BackendError]
"""Turns a backend fault of one call into the error thrown back into the steps."""


def _same(_: Call, exc: BackendError) -> BackendError:
    return exc


def run_steps(steps: Steps[T], fault: Fault = _same) -> T:
    """Drive ``steps`` with the sync methods; returns what the generator returns.

    Args:
        steps: The generator.
        fault: Translates a ``BackendError`` before it is thrown into the generator.

    Returns:
        The generator's return value.

    Raises:
        Exception: A call failed (a ``BackendError`` after ``fault``) and the steps did not
            handle it.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            if call.method == "scan":
                value = list(call.target.scan(*call.args, **call.kwargs))
            else:
                value = getattr(call.target, call.method)(*call.args, **call.kwargs)
        except BackendError as exc:
            error = fault(call, exc)
        except BaseException as exc:  # noqa: BLE001 - thrown back in, so the steps' finally runs now
            # a cancellation or an interrupt too: the steps' release runs, then it re-raises
            error = exc


async def arun_steps(steps: Steps[T], fault: Fault = _same) -> T:
    """Drive ``steps`` with the async methods: ``run_steps``'s twin.

    Args:
        steps: The generator.
        fault: Translates a ``BackendError`` before it is thrown into the generator.

    Returns:
        The generator's return value.

    Raises:
        Exception: A call failed (a ``BackendError`` after ``fault``) and the steps did not
            handle it.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            if call.method == "scan":
                value = [key async for key in call.target.ascan(*call.args, **call.kwargs)]
            else:
                value = await getattr(call.target, "a" + call.method)(*call.args, **call.kwargs)
        except BackendError as exc:
            error = fault(call, exc)
        except BaseException as exc:  # noqa: BLE001 - thrown back in, so the steps' finally runs now
            # a cancellation or an interrupt too: the steps' release runs, then it re-raises
            error = exc


class Pause:
    """The pause between two tries of a lock, as a step target (``Call(PAUSE, "sleep")``).

    The sync driver calls ``sleep``, which blocks the thread; the async driver awaits
    ``asleep``, which lets the loop run.
    """

    __slots__ = ()

    def sleep(self, seconds: float) -> None:
        """Block this thread for ``seconds``."""
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Suspend this task for ``seconds``."""
        await asyncio.sleep(seconds)


PAUSE = Pause()
"""The step that waits: ``Call(PAUSE, "sleep", (seconds,))``."""
