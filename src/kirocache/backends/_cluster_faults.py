"""How a cluster transport's calls pass their nodes' breakers (no I/O).

:class:`NodeFaults` is the policy around ``NodeBreakers``: which node a failure is
counted against (``_cluster_nodes``), when a node's failure is a partial outage rather
than the cache's (``outage=False``), the error of a call an open breaker refuses, the
errors of a batch's slots said once per node, and which nodes' records a failover
makes obsolete. ``ClusterTransport`` holds one and asks it around every call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kirocache.backends._cluster_breaker import NodeBreakers, unavailable
from kirocache.backends._cluster_nodes import failed_node, node_fault, primaries_of, route
from kirocache.backends._redis_commands import Command
from kirocache.exceptions import BackendError, CommandError, NodeUnavailableError

__all__ = ["NodeFaults"]

# What a pipeline leaves in a command's slot when the command's node could not be reached.
_SLOT_FAULTS: Final = (RedisConnectionError, RedisTimeoutError, OSError)


class NodeFaults:
    """The per-node breakers of one cluster backend, and how its calls are judged by them.

    Args:
        breakers: The breakers (shared by the sync and async halves).
        where: The backend as its errors name it (the masked URL).
        maps: The slot maps of the clients built so far (redis-py's nodes managers).
        said: The transport's way of saying a redis-py error as a ``BackendError``.
    """

    def __init__(
        self,
        breakers: NodeBreakers,
        where: str,
        maps: Callable[[], list[Any]],
        said: Callable[[str, BaseException], BackendError],
    ) -> None:
        self.breakers = breakers
        self._where = where
        self._maps = maps
        self._said = said
        self._known: list[str] = []  # the primaries of the last slot map read

    def states(self) -> dict[str, dict[str, object]]:
        """Each primary's breaker by ``host:port`` (see ``ClusterTransport.node_states``)."""
        primaries = self.forget_moved()
        states = self.breakers.snapshot(primaries)
        for node, entry in states.items():
            entry["role"] = "primary" if node in primaries else "unknown"
        return states

    def learn(self, manager: Any) -> list[str]:
        """The primaries ``manager`` maps slots to (else those of the last map read)."""
        primaries = primaries_of(manager)
        if primaries:
            self._known = primaries
        return primaries or self._known

    def forget_moved(self) -> list[str]:
        """Drop the breakers of nodes no client's slot map lists as a primary any more.

        A failover moved their slots: calls go to the promoted replica. While one
        client (an event loop's) still maps them, they are kept, so that its calls to
        the dead node keep failing fast until its own map is read again.
        """
        primaries = list(dict.fromkeys(p for m in self._maps() for p in primaries_of(m)))
        if primaries:
            self._known = primaries
            self.breakers.keep(primaries)
        return primaries or self._known

    def judge(
        self, error: BackendError, node: str | None, manager: Any, among: Sequence[str] = ()
    ) -> None:
        """Count a node's connection failure; while other primaries answer, no outage.

        ``node`` is where the call was sent. A failure that says where it happened (the
        connection on redis-py's exception, or the ``host:port`` in its message) counts
        against that node. One that does not (an event loop's call whose deadline ran
        out while every task waited for redis-py to re-read the slot map, a connection
        closed under the call) counts against none. Either way, while some node is
        failing and another primary's breaker is closed, it is a partial outage: not an
        outage of the cache, and no reason to open the cache's breaker.
        """
        if not node_fault(error):
            if node is not None and isinstance(error, CommandError):
                self.breakers.success(node)  # it answered, refusing one command
            return
        nodes = self.breakers
        primaries = self.learn(manager)
        name = failed_node(error, among or ([node] if node else []))
        if name is not None and (not primaries or name in primaries):
            nodes.failure(name)
        subject = name or node
        if subject is None or nodes.healthy or not nodes.partial(subject, primaries):
            return
        error.outage = False
        if name is None:
            error.timed_out = False  # where it stalled is unknown: not the node's deadline

    def refusal(self, operation: str, node: str, manager: Any) -> NodeUnavailableError:
        """The error of a call ``node``'s open breaker refuses (an outage if all are open)."""
        error = unavailable(operation, node, self._where, self.breakers)
        error.outage = not self.breakers.partial(node, self.learn(manager))
        return error

    def answered(self, node: str, command: Command, manager: Any) -> None:
        """A call sent to ``node`` came back: its breaker closes, unless its slot moved."""
        if route(manager, command) == node:
            self.breakers.success(node)
        else:
            self.forget_moved()  # the slot moved (a failover): the old node may be gone

    def refusals(
        self, operation: str, commands: Sequence[Command], manager: Any
    ) -> tuple[list[str | None], dict[str, NodeUnavailableError]]:
        """Each command's node, and an error for each node whose breaker refuses the call."""
        names = [route(manager, command) for command in commands]
        refused = {}
        for node in dict.fromkeys(name for name in names if name is not None):
            if not self.breakers.allow(node):
                refused[node] = self.refusal(operation, node, manager)
        return names, refused

    def judged_slots(
        self,
        operation: str,
        commands: Sequence[Command],
        replies: list[object],
        manager: Any,
        names: Sequence[str | None] | None = None,
    ) -> list[object]:
        """Replies with each node's connection failures said once per node; answers counted."""
        if names is None:
            # the hot path of a healthy cluster: the kinds of reply, not each reply, looked at
            kinds = set(map(type, replies))
            if self.breakers.healthy and not any(issubclass(k, _SLOT_FAULTS) for k in kinds):
                return replies
            names = [route(manager, command) for command in commands]
        failed: dict[str | None, BackendError] = {}
        for at, reply in enumerate(replies):
            if isinstance(reply, _SLOT_FAULTS):
                node = names[at]
                error = self._said(operation, reply)
                if node not in failed:
                    self.judge(error, node, manager)
                    failed[node] = error
                error.outage = failed[node].outage
                replies[at] = error
        for node in dict.fromkeys(names):
            if node is not None and node not in failed:
                self.breakers.success(node)
        return replies

    def multi_failed(self, error: BackendError, commands: Sequence[Command], manager: Any) -> None:
        """Judge the failure of a whole batch, against the node it names among its nodes."""
        among = [name for name in dict.fromkeys(route(manager, c) for c in commands) if name]
        self.judge(error, among[0] if len(among) == 1 else None, manager, among)
