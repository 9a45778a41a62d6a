"""The cache's sync and async driver: they run every operation's steps and own its fault policy.

An operation that takes round trips is written once, as a generator (``Flow[T]``) that
yields ``Io`` steps (``kirocache.backends.Call``s that carry the metrics label) and is sent
their results. ``run`` calls the backend's sync methods, ``arun`` awaits the ``a``-prefixed
twins. They differ from ``run_steps``/``arun_steps`` in one thing, the cache's fault
policy, so an operation never catches an exception itself:

- the breaker is asked first (a refusal answers ``FAILED``, or raises under ``"raise"``);
- an exception is sorted by the guard's one rule (``is_fault``): a bug is raised out of
  the driver, a fault is counted and logged and answered with ``FAILED`` (the operation
  then returns its fail-open default), or raised as ``BackendError`` under ``"raise"``;
- a call that came back closes the breaker and ends a burst of faults, unless a slot of its
  answer says the store is unavailable (``READONLY`` on a write, say).

A step's answer can also be a list of op results whose slots hold exceptions (``execute``);
those are the operation's to sort, with ``Guard.slot_failure``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from kirocache._cache.guard import FAILED, is_outage
from kirocache.backends._steps import Call

if TYPE_CHECKING:
    from kirocache._cache.guard import Guard

__all__ = ["Flow", "Io", "Pages", "arun", "run"]

T = TypeVar("T")


class Io(Call):
    """A step of the cache's own operations: a ``Call`` with what its fault policy needs.

    Attributes:
        op: The operation name counted in metrics (``"set"``, ``"delete"``, ...).
        label: The metrics label (a namespace prefix, ``"default"``, ...).
        started: ``time.perf_counter()`` when the operation started.
    """

    __slots__ = ("label", "op", "started")

    def __init__(
        self, target: Any, method: str, args: tuple[Any, ...], op: str, label: str, started: float
    ) -> None:
        super().__init__(target, method, args)
        self.op = op
        self.label = label
        self.started = started


Flow: TypeAlias = Generator[Io, Any, T]
"""An operation written once: it yields ``Io`` steps, is sent their answers (``FAILED``
for a step that failed open) and returns a ``T``."""


def _came_back(value: object) -> bool:
    """Whether an answer says the store is up: not a list with an outage in a slot.

    Only asked while something is failing, so the common path never scans a list.
    """
    if type(value) is not list:
        return True
    return not any(isinstance(slot, Exception) and is_outage(slot) for slot in value)


class Pages:
    """A SCAN read page by page, as a step target for either driver.

    ``Io(pages, "take", (size,), ...)`` answers the next ``size`` keys (fewer at the end):
    the sync driver calls ``take``, the async one awaits ``atake``. An operation over a
    million keys so holds one page at a time, never the whole key list.

    Args:
        backend: The backend to scan.
        pattern: The glob.
        count: The SCAN batch hint.
    """

    __slots__ = ("_async", "_backend", "_count", "_pattern", "_sync")

    def __init__(self, backend: Any, pattern: str, count: int) -> None:
        self._backend = backend
        self._pattern = pattern
        self._count = count
        self._sync: Iterator[str] | None = None
        self._async: AsyncIterator[str] | None = None

    def take(self, size: int) -> list[str]:
        """The next ``size`` keys, or fewer when the scan ends."""
        if self._sync is None:
            self._sync = iter(self._backend.scan(self._pattern, self._count))
        return list(islice(self._sync, size))

    async def atake(self, size: int) -> list[str]:
        """The next ``size`` keys, or fewer when the scan ends: ``take``'s async twin."""
        if self._async is None:
            self._async = aiter(self._backend.ascan(self._pattern, self._count))
        page: list[str] = []
        async for key in self._async:  # a break leaves the scan open for the next page
            page.append(key)
            if len(page) >= size:
                break
        return page

    def close(self) -> None:
        """End the scan (a listing that stops before the last page)."""
        closing = getattr(self._sync, "close", None)
        if closing is not None:
            closing()

    async def aclose(self) -> None:
        """Async ``close``: finish the async generator in this loop, not at collection."""
        closing = getattr(self._async, "aclose", None)
        if closing is not None:
            await closing()


def run(guard: Guard, steps: Flow[T]) -> T:
    """Drive ``steps`` with the backend's sync methods under the fault policy.

    Returns:
        What the generator returns.

    Raises:
        ConfigurationError: The backend has no sync methods.
        BackendError: A fault, when ``on_error`` is ``"raise"``.
        CircuitOpenError: The breaker refused, when ``on_error`` is ``"raise"``.
        Exception: A programming error, raised where it happened.
    """
    value: Any = None
    try:
        while True:
            try:
                call = steps.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if not guard.sync_ok:
                guard.need_sync()
            breaker = guard.breaker
            if (
                breaker is not None
                and not breaker.healthy
                and not guard.allow(call.op, call.label, call.started)
            ):
                value = FAILED
                continue
            try:
                value = getattr(call.target, call.method)(*call.args, **call.kwargs)
            except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
                value = guard.failed(call.op, call.label, exc, call.started)  # fails open
                continue
            if not guard.settled() and _came_back(value):
                guard.ok()
    finally:
        steps.close()


async def arun(guard: Guard, steps: Flow[T]) -> T:
    """Drive ``steps`` with the backend's async methods: ``run``'s twin.

    Returns:
        What the generator returns.

    Raises:
        ConfigurationError: The backend has no async methods.
        BackendError: A fault, when ``on_error`` is ``"raise"``.
        CircuitOpenError: The breaker refused, when ``on_error`` is ``"raise"``.
        Exception: A programming error, raised where it happened.
    """
    value: Any = None
    try:
        while True:
            try:
                call = steps.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if not guard.async_ok:
                guard.need_async()
            breaker = guard.breaker
            if (
                breaker is not None
                and not breaker.healthy
                and not guard.allow(call.op, call.label, call.started)
            ):
                value = FAILED
                continue
            try:
                value = await getattr(call.target, "a" + call.method)(*call.args, **call.kwargs)
            except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
                value = guard.failed(call.op, call.label, exc, call.started)  # fails open
                continue
            if not guard.settled() and _came_back(value):
                guard.ok()
    finally:
        steps.close()
