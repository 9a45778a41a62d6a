"""RedisClusterBackend's transport: redis-py's cluster clients, their errors as outages.

:class:`ClusterTransport` is the single node's transport (one deadline per call, every
error a ``BackendError``) over ``RedisCluster`` clients, with what a cluster adds: a
pipeline names each command's node, a call may target one node or every primary, and
redis-py's cluster-only failures (no seed answers, a connection it closed under a call)
are said as the outages they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, cast

import redis
import redis.asyncio.cluster
from redis.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from kirocache.backends._cluster_clients import LazyCluster, arouted_pipe, refused, routed_pipe
from kirocache.backends._redis_clients import RedisTransport
from kirocache.backends._redis_commands import Command, scan_page
from kirocache.backends._redis_connections import begin_call, bounded, end_call

__all__ = ["ClusterTransport", "page"]

# asyncio.TimeoutError is not an OSError before 3.11 (as in the single node's transport)
_ERRORS: Final = (redis.RedisError, OSError, asyncio.TimeoutError, UnicodeEncodeError)


def page(raw: object) -> tuple[int, list[bytes]]:
    """SCAN's reply on one node (redis-py's asyncio cluster keys the cursor by node)."""
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], dict):
        (cursor,) = raw[0].values()
        raw = (cursor, raw[1])
    return scan_page(raw)


def _closed_under_us(exc: AttributeError) -> bool:
    """An AttributeError raised inside redis-py: a connection it closed under this call.

    redis-py's asyncio cluster disconnects every connection of a node that failed, also
    those other tasks are using at that moment; their next step then finds the stream
    gone (``'NoneType' object has no attribute 'writelines'``). That is a lost connection.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("redis.")


def _lost(exc: AttributeError) -> RedisConnectionError:
    error = RedisConnectionError(f"Connection closed by the client during the call: {exc}")
    error.__cause__ = exc
    return error


_unreachable: Final = refused


class ClusterTransport(RedisTransport):
    """The clients under ``RedisClusterBackend`` and the one way its commands reach them."""

    _lazy: LazyCluster

    def _call(self, operation: str, command: Command) -> object:
        try:
            return super()._call(operation, command)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc

    def _pipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        if transaction or len(commands) == 1:
            try:
                return super()._pipe(operation, commands, transaction=transaction, strict=strict)
            except RedisClusterException as exc:
                raise self._error(operation, _unreachable(exc)) from exc
        begin_call(self._deadline)
        try:
            return routed_pipe(self._lazy.get(), commands, strict=strict)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()

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

    async def _acall(self, operation: str, command: Command) -> object:
        try:
            return await super()._acall(operation, command)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except AttributeError as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc

    async def _apipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        try:
            return await super()._apipe(operation, commands, transaction=transaction, strict=strict)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except AttributeError as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc

    def _on_node(self, operation: str, node: ClusterNode | str, command: Command) -> object:
        """One command on one node (or on a node group such as ``primaries``)."""
        begin_call(self._deadline)
        try:
            return self._lazy.get().execute_command(*command, target_nodes=node)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()

    def _primaries(self, operation: str) -> list[ClusterNode]:
        begin_call(self._deadline)
        try:
            return list(self._lazy.get().get_primaries())  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()

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
        try:
            client = await self._aclient()
            async with bounded(self._deadline):
                return await client.execute_command(*command, target_nodes=node)
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except AttributeError as exc:
            if not _closed_under_us(exc):
                raise
            raise self._error(operation, _lost(exc)) from exc
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc

    async def _aprimaries(self, operation: str) -> list[Any]:
        try:
            client = await self._aclient()
            async with bounded(self._deadline):
                await client.initialize()
            return list(client.get_primaries())
        except RedisClusterException as exc:
            raise self._error(operation, _unreachable(exc)) from exc
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
