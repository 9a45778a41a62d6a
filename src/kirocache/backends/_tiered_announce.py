"""A near cache's write on a cluster, written once as steps: the write, then its announcement.

:func:`write_steps` yields ``Call`` steps on a ``rounds`` object (``_tiered_cluster``'s,
whose sync and async methods reach the cluster) and is sent their results; ``run_steps``
and ``arun_steps`` drive it, so the sync and async writes cannot drift. No I/O here: the
tests send it results.

The announcement (one ``PUBLISH`` per message) goes to one primary at a time, and every
try shares one deadline, the backend's per-call one: a write whose announcement meets a
dead node costs at most one more deadline, not one per primary. Nodes whose breaker is
open, and nodes a failed write names, are passed over; healthy nodes go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Protocol

from kirocache._values.randomness import RANDOM
from kirocache.backends._cluster_nodes import failed_node
from kirocache.backends._cluster_plan import answered, execute_flow, transaction_commands
from kirocache.backends._protocol import Op, OpResult
from kirocache.backends._steps import Call, Steps
from kirocache.backends._tiered_io import changed_keys
from kirocache.exceptions import BackendError, CommandError, NodeUnavailableError

__all__ = ["Breakers", "announce_steps", "write_steps"]


class Breakers(Protocol):
    """What the steps read of the cluster's per-node breakers (``NodeBreakers``)."""

    def state(self, node: str) -> str:
        """``closed``, ``open`` or ``half_open``."""
        ...

    def failing(self, node: str) -> bool:
        """Whether ``node`` failed since it last answered."""
        ...


def _down(errors: Iterable[BaseException], names: Sequence[str]) -> set[str]:
    """The nodes the failures of a write name (an open breaker's, a connection's)."""
    found: set[str] = set()
    for error in errors:
        if isinstance(error, NodeUnavailableError) and error.node:
            found.add(error.node)
        elif isinstance(error, BackendError):
            name = failed_node(error, names)
            if name is not None:
                found.add(name)
    return found


def targets(
    primaries: Sequence[Any], near: str | None, skip: set[str], nodes: Breakers
) -> list[Any]:
    """The primaries to try, in order: healthy ones first (``near``'s first of all).

    Nodes in ``skip`` and nodes whose breaker is open are left out; the rest are shuffled
    first, so that the announcements of many processes spread over the nodes.
    """
    usable = [node for node in primaries if node.name not in skip]
    usable = [node for node in usable if nodes.state(node.name) != "open"]
    RANDOM.shuffle(usable)
    usable.sort(key=lambda node: (nodes.failing(node.name), node.name != near))
    return usable


def announce_steps(
    rounds: Any,
    operation: str,
    messages: Sequence[bytes],
    *,
    near: str | None = None,
    failed: Sequence[BaseException] = (),
    tries: int | None = None,
    seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Steps[BackendError | None]:
    """PUBLISH each message on one primary; returns the error that stopped it, else ``None``.

    Args:
        rounds: The target of the steps' calls (``primaries``, ``publish``).
        operation: The operation's name, for errors and metrics.
        messages: The messages.
        near: A key whose node just answered (its node goes first if healthy).
        failed: The errors of a write that failed: the nodes they name are passed over.
        tries: Most nodes tried in all (``None``: every usable primary).
        seconds: The deadline every try shares (``None``: each try its own).
        clock: Monotonic seconds; injectable for tests.
    """
    if not messages:
        return None
    due = None if seconds is None else clock() + seconds
    try:
        primaries, near_node = yield Call(rounds, "primaries", (operation, near))
    except BackendError as exc:
        return exc
    names = [str(node.name) for node in primaries]
    order = targets(primaries, near_node, _down(failed, names), rounds.breakers)[:tries]
    error: BackendError | None = None
    for data in messages:
        while True:
            if not order:
                return error or BackendError(
                    f"Redis {operation}: no primary left to announce the write on "
                    f"(every one failed, or its circuit breaker is open)"
                )
            left = None if due is None else due - clock()
            if left is not None and left <= 0:
                return error or BackendError(
                    f"Redis {operation}: the announcement's deadline ran out"
                )
            try:
                yield Call(rounds, "publish", (operation, order[0], data, left))
            except CommandError as exc:
                return exc  # a refusal (an ACL without the channel) no node will reverse
            except BackendError as exc:
                error = exc
                del order[0]  # the next node is the retry, for this message and the rest
            else:
                error = None
                break
    return None


def _write_rounds(
    rounds: Any, operation: str, ops: Sequence[Op], transaction: bool
) -> Generator[Call, Any, list[object]]:
    """Each op's raw answer, as ``RedisClusterBackend.execute`` gets it, named ``operation``."""
    if transaction:
        commands, ends = transaction_commands(ops)
        replies = (yield Call(rounds, "pipe", (operation, commands, True))) if commands else []
        return answered(ends, replies)
    flow = execute_flow(ops)
    try:
        commands = next(flow)
        while True:
            commands = flow.send((yield Call(rounds, "pipe", (operation, commands, False))))
    except StopIteration as done:
        raws: list[object] = done.value
        return raws


def write_steps(
    rounds: Any,
    operation: str,
    ops: Sequence[Op],
    messages: Sequence[bytes],
    *,
    transaction: bool,
    seconds: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> Steps[tuple[list[OpResult], BackendError | None]]:
    """Run ``ops`` (the cluster's rounds), then announce ``messages`` (one more round).

    Returns:
        Each op's result, and the error of an announcement no primary took (``None``
        when it was made).

    Raises:
        BackendError: The write failed as a whole. Some nodes may have taken their part,
            so it is announced all the same, with one try, on a healthy primary other than
            the one that failed (any error of that try is dropped: the write's is raised).
    """
    try:
        raws = yield from _write_rounds(rounds, operation, ops, transaction)
    except BackendError as exc:
        yield from announce_steps(
            rounds, operation, messages, failed=[exc], tries=1, seconds=seconds, clock=clock
        )
        raise
    results: list[OpResult] = rounds.answers(ops, raws)
    failed = [result for result in results if isinstance(result, BaseException)]
    landed = [
        op for op, result in zip(ops, results, strict=True) if not isinstance(result, BaseException)
    ]
    error = yield from announce_steps(
        rounds,
        operation,
        messages,
        near=next(iter(changed_keys(landed)), None),
        failed=failed,
        seconds=seconds,
        clock=clock,
    )
    return results, error
