"""TieredBackend on a Redis Cluster: reads by slot, a subscriber that moves between nodes.

Invalidations travel as plain ``PUBLISH`` messages, which a cluster forwards over its bus
to every node, so the subscriber may listen on any node and move to another when its
node dies (docs/cluster.md, "Near cache on a cluster", argues this against sharded
pub/sub). What differs from one node:

* A write cannot share a pipeline with its ``PUBLISH``: the pipeline is split by node,
  and nothing orders one node's commands against another's. The write runs first (the
  cluster's own rounds), the announcement after it, as one more round, on the node of a
  key just written (it answered a moment ago); failing that, on any other primary.
* ``get_many`` reads one ``MGET`` per slot, with the ``PTTL``s, in one round.
* The subscriber gets a pool to the next node for every attempt (:class:`NodeRotation`).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisClusterException

from kirocache.backends._cluster_plan import get_many_commands, get_many_values, one_slot, slot_of
from kirocache.backends._protocol import Op, OpResult
from kirocache.backends._redis_commands import Command, as_bytes, decode_ttl
from kirocache.backends._tiered_io import changed_keys, check_announced
from kirocache.backends._tiered_subscriber import subscriber_pool
from kirocache.exceptions import BackendError, CommandError

if TYPE_CHECKING:
    from kirocache.backends.cluster import RedisClusterBackend

__all__ = ["ClusterRoute", "NodeRotation"]


def _fetch_commands(keys: Sequence[str]) -> tuple[list[Command], list[list[int]]]:
    mgets, places = get_many_commands(keys)
    return [*mgets, *(("PTTL", key) for key in keys)], places


def _fetched(
    keys: Sequence[str], places: list[list[int]], raw: Sequence[object]
) -> tuple[list[bytes | None], list[float | None]]:
    values = get_many_values(len(keys), raw[: len(places)], places)
    return [as_bytes(v) for v in values], [decode_ttl(t) for t in raw[len(places) :]]


def _first_near(nodes: list[Any], near: Any) -> list[Any]:
    random.shuffle(nodes)  # spread the announcements of many processes
    if near is None:
        return nodes
    return [near, *(node for node in nodes if node.name != near.name)]


class ClusterRoute:
    """How :class:`~kirocache.backends._tiered_io.TieredIO` reaches a Redis Cluster."""

    def __init__(self, remote: RedisClusterBackend, channel: str) -> None:
        self._remote = remote
        self._channel = channel

    @staticmethod
    def _transaction(operation: str, ops: Sequence[Op], transaction: bool) -> bool:
        # The backend's own multi-key writes (set_many) are atomic per slot on a cluster, as
        # on the bare cluster backend; a batch's transaction is the caller's (and refused
        # across slots).
        return transaction if operation == "execute" else transaction and one_slot(ops)

    def _near(self, client: Any, key: str | None) -> Any:
        if key is None:
            return None
        with contextlib.suppress(redis.RedisError, RedisClusterException):
            return client.nodes_manager.get_node_from_slot(slot_of(key))
        return None

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
        near = next(iter(changed_keys(ops)), None)
        try:
            results = self._remote.execute(
                ops, transaction=self._transaction(operation, ops, transaction)
            )
        except BackendError:
            # Some nodes may have taken their writes: say so all the same, with one try
            # (not one per primary: the call has already cost its deadline).
            with contextlib.suppress(BackendError):
                for data in messages:
                    self.publish(operation, data, near=near, tries=1)
            raise
        try:
            for data in messages:
                self.publish(operation, data, near=near)
        except BackendError as exc:
            check_announced([exc])
        return results

    def publish(
        self, operation: str, data: bytes, *, near: str | None = None, tries: int | None = None
    ) -> None:
        """PUBLISH on the node of ``near``, else on the first primary that answers.

        A node that is down (unreachable, or its breaker open) is passed over for the next,
        up to ``tries`` nodes (``None``: every primary).

        Raises:
            CommandError: The server refused the PUBLISH (an ACL without the channel).
            BackendError: No primary took the message.
        """
        primaries = self._remote._primaries(operation)
        targets = _first_near(primaries, self._near(self._remote._lazy.get(), near))[:tries]
        error: BackendError | None = None
        for node in targets:
            try:
                self._remote._on_node(operation, node, ("PUBLISH", self._channel, data))
            # the next node is the retry; a refusal (an ACL) no node will take
            except CommandError:  # noqa: PERF203
                raise
            except BackendError as exc:
                error = exc
            else:
                return
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
        near = next(iter(changed_keys(ops)), None)
        try:
            results = await self._remote.aexecute(
                ops, transaction=self._transaction(operation, ops, transaction)
            )
        except BackendError:
            with contextlib.suppress(BackendError):
                for data in messages:
                    await self.apublish(operation, data, near=near, tries=1)
            raise
        try:
            for data in messages:
                await self.apublish(operation, data, near=near)
        except BackendError as exc:
            check_announced([exc])
        return results

    async def apublish(
        self, operation: str, data: bytes, *, near: str | None = None, tries: int | None = None
    ) -> None:
        """Async :meth:`publish`."""
        client = await self._remote._aclient()
        targets = _first_near(list(client.get_primaries()), self._near(client, near))[:tries]
        error: BackendError | None = None
        for node in targets:
            try:
                await self._remote._aon_node(operation, node, ("PUBLISH", self._channel, data))
            # the next node is the retry; a refusal (an ACL) no node will take
            except CommandError:  # noqa: PERF203
                raise
            except BackendError as exc:
                error = exc
            else:
                return
        if error is not None:
            raise error


class NodeRotation:
    """The subscriber's pools on a cluster: each attempt to subscribe goes to the next node.

    Any node will do, replicas too: a cluster forwards every ``PUBLISH`` to all its nodes.
    The nodes are those redis-py's slot map knows (the seeds, before the cluster answered
    once), taken in turn from a random start, so the processes of an application spread
    over the nodes and a subscriber whose node died tries another one next.
    """

    def __init__(self, remote: RedisClusterBackend) -> None:
        self._remote = remote
        self._lock = threading.Lock()
        self._turn = random.randrange(1 << 16)

    def __call__(self, timeout: float) -> redis.ConnectionPool:
        """A pool to the next node, its connections without retries (as on one node).

        Raises:
            redis.ConnectionError: No seed node answered.
        """
        client = self._remote._lazy.get()
        nodes = sorted(client.get_nodes(), key=lambda node: str(node.name))  # type: ignore[no-untyped-call]
        with self._lock:
            node = nodes[self._turn % len(nodes)]
            self._turn += 1
        return subscriber_pool(client.get_redis_connection(node))(timeout)
