"""RedisClusterBackend's transport: redis-py's cluster clients, their errors as outages.

:class:`ClusterTransport` is the single node's transport (one deadline per call, every
error a ``BackendError``) over ``RedisCluster`` clients, with what a cluster adds: a
pipeline names each command's node, a call may target one node or every primary, and
redis-py's cluster-only failures (no seed answers, a connection it closed under a call)
are said as the outages they are. Every call also passes the circuit breaker of the node
its key maps to (``_cluster_breaker``): a dead primary costs only its own slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast

import redis
import redis.asyncio.cluster
from redis.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from kirocache.backends._cluster_breaker import NodeBreakers
from kirocache.backends._cluster_clients import LazyCluster, arouted_pipe, refused, routed_pipe
from kirocache.backends._cluster_faults import NodeFaults
from kirocache.backends._cluster_nodes import route, target
from kirocache.backends._redis_clients import RedisTransport
from kirocache.backends._redis_commands import Command, scan_page
from kirocache.backends._redis_connections import begin_call, bounded, end_call
from kirocache.exceptions import BackendError, CommandError

__all__ = ["ClusterTransport", "page"]

# asyncio.TimeoutError is not an OSError before 3.11 (as in the single node's transport)
_ERRORS: Final = (redis.RedisError, OSError, asyncio.TimeoutError, UnicodeEncodeError)
_T = TypeVar("_T")


def page(raw: object) -> tuple[int, list[bytes]]:
    """SCAN's reply on one node (redis-py's asyncio cluster keys the cursor by node)."""
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], dict):
        (cursor,) = raw[0].values()
        raw = (cursor, raw[1])
    return scan_page(raw)


def _closed_under_us(exc: Exception) -> bool:
    """An AttributeError or TypeError raised inside redis-py: a connection closed under us.

    redis-py disconnects the connections of a node that failed, also those other callers
    are using or taking from the pool at that moment; their next step then finds the
    socket gone (asyncio: ``'NoneType' object has no attribute 'writelines'``; threads,
    with hiredis: ``TypeError: argument must be an int, or have a fileno() method``
    when it polls the socket of a connection it just took). That is a lost connection.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("redis.")


def _lost(exc: Exception) -> RedisConnectionError:
    error = RedisConnectionError(f"Connection closed by the client during the call: {exc}")
    error.__cause__ = exc
    return error


_unreachable: Final = refused


class ClusterTransport(RedisTransport):
    """The clients under ``RedisClusterBackend`` and the one way its commands reach them.

    Every call passes its node's breaker (``_cluster_breaker``): while every node is
    healthy that is one attribute read; once a node has failed, each call looks up the
    node its key maps to, a call for an open node fails at once, and a batch sends only
    the commands of the other nodes (the open node's get its error in their slots).
    """

    _lazy: LazyCluster
    _nodes: NodeBreakers
    _faults: NodeFaults

    def _setup(self, *args: Any, node_breakers: NodeBreakers | None = None, **kwargs: Any) -> None:
        super()._setup(*args, **kwargs)
        self._nodes = node_breakers if node_breakers is not None else NodeBreakers()
        self._faults = NodeFaults(self._nodes, self._display_url, self._managers, super()._error)

    # ---- what operators see -----------------------------------------------------------------

    def node_states(self) -> dict[str, dict[str, object]]:
        """Each primary's circuit breaker, by ``host:port``, without I/O.

        Returns:
            Per node: ``role`` (``"primary"``), ``state`` (``closed``, ``open``,
            ``half_open``), ``failures`` (connection failures in a row), ``faults``
            (counted in all), ``rejected`` (calls failed fast while open) and
            ``openings``. Empty before the slot map was first read.
        """
        return self._faults.states()

    def _managers(self) -> list[Any]:
        """The slot maps of the clients built so far (the sync one, one per event loop)."""
        found = [self._manager()]
        loops = getattr(self._async_clients, "_by_loop", {})
        found += [cast("Any", entry.client).nodes_manager for entry in list(loops.values())]
        return [manager for manager in found if manager is not None]

    # ---- the breakers' bookkeeping, both halves ---------------------------------------------

    def _error(self, operation: str, exc: BaseException) -> BackendError:
        # An op's slot may already hold the error said for its node (see _judged_slots).
        if isinstance(exc, BackendError):
            return exc
        return super()._error(operation, exc)

    def _manager(self) -> Any:
        """The sync client's slot map if the client is built (reading it costs no I/O)."""
        client = getattr(self._lazy, "_client", None)
        return None if client is None else client.nodes_manager

    def _amanager(self) -> Any:
        entry = self._async_clients.current()
        return None if entry is None else cast("Any", entry.client).nodes_manager

    # ---- sync half: its twin is the async half below ---------------------------------------

    def _sent(self, operation: str, command: Command, send: Callable[[], _T]) -> _T:
        """``send()`` a call to ``command``'s node, through that node's breaker."""
        nodes = self._nodes
        if nodes.healthy:
            try:
                return send()
            except BackendError as error:
                manager = self._manager()
                self._faults.judge(error, route(manager, command), manager)
                raise
        manager = self._manager()
        node = route(manager, command)
        if node is not None and not nodes.allow(node):
            raise self._faults.refusal(operation, node, manager)
        try:
            answer = send()
        except BackendError as error:
            self._faults.judge(error, node, manager)
            raise
        if node is not None:
            self._faults.answered(node, command, manager)
        return answer

    def _call(self, operation: str, command: Command) -> object:
        return self._sent(operation, command, lambda: self._call_cluster(operation, command))

    def _call_cluster(self, operation: str, command: Command) -> object:
        try:
            return super()._call(operation, command)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc

    def _pipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        if transaction or len(commands) == 1:
            return self._sent(
                operation,
                commands[0],
                lambda: self._pipe_one(operation, commands, transaction, strict),
            )
        if self._nodes.healthy:
            try:
                replies = self._routed(operation, commands, strict)
            except BackendError as error:
                self._faults.multi_failed(error, commands, self._manager())
                raise
            return self._faults.judged_slots(operation, commands, replies, self._manager())
        manager = self._manager()
        names, refused = self._faults.refusals(operation, commands, manager)
        if refused and strict:
            raise next(iter(refused.values()))
        sending = [at for at, name in enumerate(names) if name not in refused]
        answers: list[object] = [refused.get(name or "") for name in names]
        if sending:
            sent = [commands[at] for at in sending]
            try:
                got = self._routed(operation, sent, strict)
            except BackendError as error:
                self._faults.multi_failed(error, sent, manager)
                raise
            got = self._faults.judged_slots(
                operation, sent, got, manager, [names[at] for at in sending]
            )
            for at, reply in zip(sending, got, strict=True):
                answers[at] = reply
        return answers

    def _pipe_one(
        self, operation: str, commands: Sequence[Command], transaction: bool, strict: bool
    ) -> list[object]:
        try:
            return super()._pipe(operation, commands, transaction=transaction, strict=strict)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc

    def _routed(self, operation: str, commands: Sequence[Command], strict: bool) -> list[object]:
        begin_call(self._deadline)
        try:
            return routed_pipe(self._lazy.get(), commands, strict=strict)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()

    def _on_node(self, operation: str, node: ClusterNode | str, command: Command) -> object:
        """One command on one node, or on every primary (a node group such as ``primaries``).

        On every primary (``ping``), each is asked in turn, open or not (a node that
        answers closes its breaker at once), and the call fails only if none answers.
        """
        if not isinstance(node, str):
            return self._on_one(operation, node, command, probe=False)
        primaries = self._primaries(operation)
        failure: BackendError | None = None
        for each in primaries:
            try:
                answer = self._on_one(operation, each, command, probe=True)
            except BackendError as error:  # noqa: PERF203 - one try per primary, by design
                failure = failure or error
            else:
                return answer
        raise _none_answered(failure, self._error(operation, _no_primary()))

    def _on_one(
        self, operation: str, node: ClusterNode, command: Command, *, probe: bool
    ) -> object:
        name = node.name
        if not probe and not self._nodes.healthy and not self._nodes.allow(name):
            raise self._faults.refusal(operation, name, self._manager())
        begin_call(self._deadline)
        try:
            answer = self._lazy.get().execute_command(*command, target_nodes=node)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc
        except _ERRORS as exc:
            error = self._error(operation, exc)
            self._faults.judge(error, name, self._manager())
            raise error from exc
        finally:
            end_call()
        self._nodes.success(name)
        return answer

    def _primaries(self, operation: str) -> list[ClusterNode]:
        """Every primary; for ``stats``, those whose breaker is not open."""
        begin_call(self._deadline)
        try:
            found = list(self._lazy.get().get_primaries())  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()
        if operation == "stats":
            found = [node for node in found if self._nodes.state(node.name) != "open"] or found
        return found

    # ---- async half: its twin is the sync half above ---------------------------------------

    async def _asent(
        self, operation: str, command: Command, send: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Async :meth:`_sent`."""
        nodes = self._nodes
        if nodes.healthy:
            try:
                return await send()
            except BackendError as error:
                manager = self._amanager()
                self._faults.judge(error, route(manager, command), manager)
                raise
        manager = self._amanager()
        node = route(manager, command)
        if node is not None and not nodes.allow(node):
            raise self._faults.refusal(operation, node, manager)
        try:
            answer = await send()
        except BackendError as error:
            self._faults.judge(error, node, manager)
            raise
        if node is not None:
            self._faults.answered(node, command, manager)
        return answer

    async def _acall(self, operation: str, command: Command) -> object:
        return await self._asent(
            operation, command, lambda: self._acall_cluster(operation, command)
        )

    async def _acall_cluster(self, operation: str, command: Command) -> object:
        # The single node's _acall, but sent to the node the key maps to (as the sync
        # pipelines do): redis-py then raises a dead node's connection error at once,
        # saying the node, instead of re-reading the slot map and retrying within the
        # call until the deadline cuts it short, with nothing said of where it stalled.
        try:
            entry = await self._aentry()
            await self._admit(entry, operation)
            try:
                await self._pooled(entry)
                client: Any = entry.client
                async with bounded(self._deadline):
                    if client._initialize:
                        # another task's failure made it re-read the map: read it before
                        # picking the node, or the node picked may be one the re-reading
                        # drops (its connections would then be nobody's to close)
                        await client.initialize()
                    node = target(client.nodes_manager, command)
                    if node is None:
                        return await client.execute_command(*command)
                    return await client.execute_command(*command, target_nodes=node)
            except _ERRORS as exc:
                raise self._error(operation, exc) from exc
            finally:
                self._leave(entry)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc

    async def _apipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        if transaction or len(commands) == 1:
            return await self._asent(
                operation,
                commands[0],
                lambda: self._apipe_cluster(operation, commands, transaction, strict),
            )
        if self._nodes.healthy:
            try:
                replies = await self._apipe_cluster(operation, commands, transaction, strict)
            except BackendError as error:
                self._faults.multi_failed(error, commands, self._amanager())
                raise
            return self._faults.judged_slots(operation, commands, replies, self._amanager())
        manager = self._amanager()
        names, refused = self._faults.refusals(operation, commands, manager)
        if refused and strict:
            raise next(iter(refused.values()))
        sending = [at for at, name in enumerate(names) if name not in refused]
        answers: list[object] = [refused.get(name or "") for name in names]
        if sending:
            sent = [commands[at] for at in sending]
            try:
                got = await self._apipe_cluster(operation, sent, transaction, strict)
            except BackendError as error:
                self._faults.multi_failed(error, sent, manager)
                raise
            got = self._faults.judged_slots(
                operation, sent, got, manager, [names[at] for at in sending]
            )
            for at, reply in zip(sending, got, strict=True):
                answers[at] = reply
        return answers

    async def _apipe_cluster(
        self, operation: str, commands: Sequence[Command], transaction: bool, strict: bool
    ) -> list[object]:
        try:
            return await super()._apipe(operation, commands, transaction=transaction, strict=strict)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc

    async def _apipe_on(
        self,
        client: Any,
        operation: str,
        commands: Sequence[Command],
        transaction: bool,
        strict: bool,
    ) -> list[object]:
        if transaction or len(commands) == 1:
            return await super()._apipe_on(client, operation, commands, transaction, strict)
        try:
            async with bounded(self._deadline):
                return await arouted_pipe(client, commands, strict=strict)
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc

    async def _aentry(self) -> Any:
        entry = await super()._aentry()
        client = cast("redis.asyncio.cluster.RedisCluster", entry.client)
        if client._initialize:
            # Read the slot map before this loop's first calls go out together: left to
            # redis-py's first commands, a burst of them races its own initialization
            # (connections closed under other tasks, "NoneType has no writelines").
            try:
                async with bounded(self._deadline):
                    await client.initialize()
            except RedisClusterException as exc:
                raise self._error("connect", _unreachable(exc)) from exc
            except _ERRORS as exc:
                raise self._error("connect", exc) from exc
        return entry

    async def _aclient(self) -> redis.asyncio.cluster.RedisCluster:
        entry = await self._aentry()
        return cast("redis.asyncio.cluster.RedisCluster", entry.client)

    async def _aon_node(self, operation: str, node: Any, command: Command) -> object:
        """Async :meth:`_on_node`."""
        if not isinstance(node, str):
            return await self._aon_one(operation, node, command, probe=False)
        primaries = await self._aprimaries(operation)
        failure: BackendError | None = None
        for each in primaries:
            try:
                answer = await self._aon_one(operation, each, command, probe=True)
            except BackendError as error:  # noqa: PERF203 - one try per primary, by design
                failure = failure or error
            else:
                return answer
        raise _none_answered(failure, self._error(operation, _no_primary()))

    async def _aon_one(self, operation: str, node: Any, command: Command, *, probe: bool) -> object:
        name = str(node.name)
        if not probe and not self._nodes.healthy and not self._nodes.allow(name):
            raise self._faults.refusal(operation, name, self._amanager())
        try:
            client = await self._aclient()
            async with bounded(self._deadline):
                answer = await client.execute_command(*command, target_nodes=node)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            error = self._error(operation, _lost(exc))
            self._faults.judge(error, name, self._amanager())
            raise error from exc
        except _ERRORS as exc:
            error = self._error(operation, exc)
            self._faults.judge(error, name, self._amanager())
            raise error from exc
        self._nodes.success(name)
        return answer

    async def _aprimaries(self, operation: str) -> list[Any]:
        try:
            client = await self._aclient()
            async with bounded(self._deadline):
                await client.initialize()
            found = list(client.get_primaries())
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        if operation == "stats":
            found = [node for node in found if self._nodes.state(node.name) != "open"] or found
        return found


def _no_primary() -> RedisConnectionError:
    return RedisConnectionError("no primary is known: the slot map lists none")


def _none_answered(failure: BackendError | None, otherwise: BackendError) -> BackendError:
    """The error of a call to every primary that none answered: an outage of the cluster."""
    error = failure if failure is not None else otherwise
    if not isinstance(error, CommandError):
        error.outage = True
    return error
