"""TieredBackend on a Redis Cluster: reads by slot, a subscriber that moves between nodes.

Invalidations travel as plain ``PUBLISH`` messages, which a cluster forwards over its bus
to every node, so the subscriber may listen on any node and move to another when its
node dies (docs/cluster.md, "Near cache on a cluster", argues this against sharded
pub/sub). What differs from one node:

* A write cannot share a pipeline with its ``PUBLISH``: the pipeline is split by node,
  and nothing orders one node's commands against another's. The write runs first (the
  cluster's own rounds), the announcement after it, as one more round, on the node of a
  key just written (it answered a moment ago); failing that, on another healthy primary,
  every try within one deadline (``_tiered_announce``, one generator for both worlds).
* ``get_many`` reads one ``MGET`` per slot, with the ``PTTL``s, in one round.
* The subscriber gets a pool to the next node for every attempt (:class:`NodeRotation`),
  and the slot map is read again after a round of them failed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import redis
from redis.exceptions import RedisClusterException

from kirocache._values.randomness import RANDOM
from kirocache.backends._cluster_clients import refused
from kirocache.backends._cluster_plan import get_many_commands, get_many_values, one_slot, slot_of
from kirocache.backends._cluster_transport import _ERRORS, _closed_under_us, _lost
from kirocache.backends._protocol import Op, OpResult
from kirocache.backends._redis_commands import Command, as_bytes, decode_ttl
from kirocache.backends._redis_connections import begin_call, bounded, end_call
from kirocache.backends._steps import Steps, arun_steps, run_steps
from kirocache.backends._tiered_announce import announce_steps, write_steps
from kirocache.backends._tiered_io import check_announced
from kirocache.backends._tiered_subscriber import subscriber_pool
from kirocache.exceptions import BackendError

if TYPE_CHECKING:
    from kirocache.backends.cluster import RedisClusterBackend

__all__ = ["ClusterRoute", "NodeRotation"]

# The public module's logger, which is the name applications configure.
_log = logging.getLogger("kirocache.backends.tiered")
# What a PUBLISH on one node may raise: the transport's errors, redis-py's cluster errors,
# and a connection closed under the call by another caller (see _cluster_transport).
_PUBLISH_FAULTS: Final = (RedisClusterException, AttributeError, TypeError, *_ERRORS)


def _fetch_commands(keys: Sequence[str]) -> tuple[list[Command], list[list[int]]]:
    mgets, places = get_many_commands(keys)
    return [*mgets, *(("PTTL", key) for key in keys)], places


def _fetched(
    keys: Sequence[str], places: list[list[int]], raw: Sequence[object]
) -> tuple[list[bytes | None], list[float | None]]:
    values = get_many_values(len(keys), raw[: len(places)], places)
    return [as_bytes(v) for v in values], [decode_ttl(t) for t in raw[len(places) :]]


class _Rounds:
    """The I/O of :func:`~kirocache.backends._tiered_announce.write_steps`, both worlds.

    ``run_steps`` calls the sync methods, ``arun_steps`` their ``a`` twins. A ``PUBLISH``
    here is bounded by what is left of the announcement's shared deadline, not by a
    deadline of its own (``RedisClusterBackend``'s per-node call takes its own): the
    rest is that call's bookkeeping, the node's breaker told of the answer or the fault.
    """

    def __init__(self, remote: RedisClusterBackend, channel: str) -> None:
        self._remote = remote
        self._channel = channel
        self.breakers = remote._nodes

    def answers(self, ops: Sequence[Op], raws: list[object]) -> list[OpResult]:
        """Each op's result from its raw answer (no I/O)."""
        return self._remote._answers(ops, raws)

    def _failed(self, operation: str, node: Any, exc: Exception, manager: Any) -> BackendError:
        """``exc`` said as the transport says it, and counted against ``node``'s breaker.

        Raises:
            Exception: ``exc`` itself, an AttributeError or TypeError not raised by a
                connection closed under the call (a bug, not an outage).
        """
        if isinstance(exc, RedisClusterException):
            return self._remote._error(operation, refused(exc))
        if isinstance(exc, (AttributeError, TypeError)):
            if not _closed_under_us(exc):
                raise exc
            exc = _lost(exc)
        error = self._remote._error(operation, exc)
        self._remote._judge(error, str(node.name), manager)
        return error

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def pipe(self, operation: str, commands: Sequence[Command], transaction: bool) -> list[object]:
        """One round of the write, said as ``operation``."""
        return self._remote._pipe(operation, commands, transaction=transaction, strict=False)

    def primaries(self, operation: str, near: str | None) -> tuple[list[Any], str | None]:
        """Every primary, and the name of ``near``'s node (no I/O once the map is read)."""
        primaries = self._remote._primaries(operation)
        return primaries, _node_of(self._remote._lazy.get().nodes_manager, near)

    def publish(self, operation: str, node: Any, data: bytes, seconds: float | None) -> None:
        """PUBLISH ``data`` on ``node``, within ``seconds``."""
        begin_call(seconds)
        try:
            command = ("PUBLISH", self._channel, data)
            self._remote._lazy.get().execute_command(*command, target_nodes=node)  # type: ignore[no-untyped-call]
        except _PUBLISH_FAULTS as exc:
            raise self._failed(operation, node, exc, self._remote._manager()) from exc
        finally:
            end_call()
        self.breakers.success(str(node.name))

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def apipe(
        self, operation: str, commands: Sequence[Command], transaction: bool
    ) -> list[object]:
        """Async :meth:`pipe`."""
        return await self._remote._apipe(operation, commands, transaction=transaction, strict=False)

    async def aprimaries(self, operation: str, near: str | None) -> tuple[list[Any], str | None]:
        """Async :meth:`primaries`."""
        try:
            client: Any = await self._remote._aclient()
            primaries = list(client.get_primaries())
        except (RedisClusterException, *_ERRORS) as exc:
            said = refused(exc) if isinstance(exc, RedisClusterException) else exc
            raise self._remote._error(operation, said) from exc
        return primaries, _node_of(client.nodes_manager, near)

    async def apublish(self, operation: str, node: Any, data: bytes, seconds: float | None) -> None:
        """Async :meth:`publish`."""
        try:
            client: Any = await self._remote._aclient()
            async with bounded(seconds):
                await client.execute_command("PUBLISH", self._channel, data, target_nodes=node)
        except _PUBLISH_FAULTS as exc:
            raise self._failed(operation, node, exc, self._remote._amanager()) from exc
        self.breakers.success(str(node.name))


def _node_of(manager: Any, key: str | None) -> str | None:
    if key is None:
        return None
    with contextlib.suppress(redis.RedisError, RedisClusterException, LookupError):
        return str(manager.get_node_from_slot(slot_of(key)).name)
    return None


class ClusterRoute:
    """How :class:`~kirocache.backends._tiered_io.TieredIO` reaches a Redis Cluster.

    A write and its announcement are one generator (``_tiered_announce``), driven here by
    the sync and the async driver of ``_steps``.
    """

    def __init__(
        self,
        remote: RedisClusterBackend,
        channel: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remote = remote
        self._rounds = _Rounds(remote, channel)
        self._clock = clock

    @staticmethod
    def _transaction(operation: str, ops: Sequence[Op], transaction: bool) -> bool:
        # The backend's own multi-key writes (set_many) are atomic per slot on a cluster, as
        # on the bare cluster backend; a batch's transaction is the caller's (and refused
        # across slots).
        return transaction if operation == "execute" else transaction and one_slot(ops)

    def _write(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], transaction: bool
    ) -> Steps[tuple[list[OpResult], BackendError | None]]:
        return write_steps(
            self._rounds,
            operation,
            ops,
            messages,
            transaction=self._transaction(operation, ops, transaction),
            seconds=self._remote._deadline,
            clock=self._clock,
        )

    def _announce(
        self, operation: str, data: bytes, near: str | None
    ) -> Steps[BackendError | None]:
        return announce_steps(
            self._rounds,
            operation,
            [data],
            near=near,
            seconds=self._remote._deadline,
            clock=self._clock,
        )

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def fetch_many(self, keys: Sequence[str]) -> tuple[list[bytes | None], list[float | None]]:
        """The values (one MGET per slot) and TTLs of ``keys``, in one round."""
        commands, places = _fetch_commands(keys)
        raw = self._remote._pipe("get_many", commands, transaction=False, strict=True)
        return _fetched(keys, places, raw)

    def write(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], *, transaction: bool
    ) -> list[OpResult]:
        """Run ``ops`` (the cluster's rounds), then announce ``messages`` (one more round)."""
        results, error = run_steps(self._write(operation, ops, messages, transaction))
        if error is not None:
            check_announced([error])
        return results

    def publish(self, operation: str, data: bytes, *, near: str | None = None) -> None:
        """PUBLISH on the node of ``near`` if healthy, else on the first primary that answers.

        A node that is down (unreachable, or its breaker open) is passed over for the next;
        every try shares the backend's per-call deadline.

        Raises:
            CommandError: The server refused the PUBLISH (an ACL without the channel).
            BackendError: No primary took the message.
        """
        error = run_steps(self._announce(operation, data, near))
        if error is not None:
            raise error

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def afetch_many(
        self, keys: Sequence[str]
    ) -> tuple[list[bytes | None], list[float | None]]:
        """Async :meth:`fetch_many`."""
        commands, places = _fetch_commands(keys)
        raw = await self._remote._apipe("get_many", commands, transaction=False, strict=True)
        return _fetched(keys, places, raw)

    async def awrite(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], *, transaction: bool
    ) -> list[OpResult]:
        """Async :meth:`write`."""
        results, error = await arun_steps(self._write(operation, ops, messages, transaction))
        if error is not None:
            check_announced([error])
        return results

    async def apublish(self, operation: str, data: bytes, *, near: str | None = None) -> None:
        """Async :meth:`publish`."""
        error = await arun_steps(self._announce(operation, data, near))
        if error is not None:
            raise error


class NodeRotation:
    """The subscriber's pools on a cluster: each attempt to subscribe goes to the next node.

    Any node will do, replicas too: a cluster forwards every ``PUBLISH`` to all its nodes.
    The nodes are those redis-py's slot map knows (the seeds, before the cluster answered
    once), taken in turn from a random start, so the processes of an application spread
    over the nodes and a subscriber whose node died tries another one next.

    The map is the sync client's, which nothing else may refresh (an asyncio application
    reads through its own clients): after a whole round of the map's nodes failed, it is
    read again, so a cluster whose nodes were all replaced (new addresses) is found, and
    a warning says, once per outage, that the subscription is down.
    """

    def __init__(self, remote: RedisClusterBackend, channel: str = "") -> None:
        self._remote = remote
        self._channel = channel
        self._lock = threading.Lock()
        self._turn = RANDOM.randrange(1 << 16)
        self._read_at = 0  # the failures in a row when the map was last read again
        self._warned = False

    def __call__(self, timeout: float, failures: int = 0) -> redis.ConnectionPool:
        """A pool to the next node, its connections without retries (as on one node).

        Args:
            timeout: The pool's socket timeout.
            failures: Failed attempts in a row before this one.

        Raises:
            redis.ConnectionError: No seed node answered.
        """
        client = self._remote._lazy.get()
        nodes = _named(client)
        with self._lock:
            if failures <= 1:  # a new outage (or none)
                self._read_at, self._warned = 0, False
            stale = failures - self._read_at >= len(nodes)
            warn = stale and not self._warned
            if stale:
                self._read_at, self._warned = failures, True
        if warn:
            _log.warning(
                "the invalidation subscription to %r is down: none of the %d nodes the "
                "cluster's map names answered (%s); the local layer stays bypassed while "
                "the cluster's nodes are read again and tried in turn",
                self._channel,
                len(nodes),
                ", ".join(str(node.name) for node in nodes)[:300],
            )
        if stale:
            with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
                client.nodes_manager.initialize()
            nodes = _named(client) or nodes
        with self._lock:
            node = nodes[self._turn % len(nodes)]
            self._turn += 1
        return subscriber_pool(client.get_redis_connection(node))(timeout, failures)

    def close(self) -> None:
        """Close the sync client the subscriber's rotation built (it is rebuilt if used)."""
        self._remote._lazy.close()


def _named(client: Any) -> list[Any]:
    return sorted(client.get_nodes(), key=lambda node: str(node.name))
