"""Which cluster node a command goes to, and which node a failure was (no I/O).

The per-node breakers (``_cluster_breaker``) need both: a call is refused when the node
its key maps to *now* is open, and a connection failure is counted against the node it
happened on. redis-py's slot map answers the first; the failure answers the second,
where redis-py says it (the failed connection or node on the exception), else by the
``host:port`` its message names among the nodes the call went to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kirocache.backends._cluster_plan import slot_of
from kirocache.backends._redis_commands import Command
from kirocache.exceptions import BackendError, NodeUnavailableError

__all__ = ["failed_node", "node_fault", "primaries_of", "route", "target"]

# Commands whose second word is no key: they go to a node chosen otherwise (or to all).
_KEYLESS: Final = frozenset(
    {"PING", "INFO", "DBSIZE", "SCAN", "PUBLISH", "ECHO", "SCRIPT", "CLUSTER", "CLIENT"}
)
_SCRIPTS: Final = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"})
_PRIMARY: Final = "primary"  # redis-py's server_type of a primary, sync and asyncio
_NODE_FAULTS: Final = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


def _key_of(command: Command) -> str | None:
    """The key a command's slot is read from, or ``None`` for a keyless command."""
    name = str(command[0]).upper()
    if name in _SCRIPTS:
        key = command[3] if len(command) > 3 and str(command[2]) != "0" else None
    elif name in _KEYLESS or len(command) < 2:
        key = None
    else:
        key = command[1]
    return key if isinstance(key, str) else None


def target(manager: Any, command: Command) -> Any:
    """The redis-py node ``command``'s slot maps to now, or ``None`` if not known."""
    key = _key_of(command) if manager is not None else None
    if key is None:
        return None
    try:
        return manager.get_node_from_slot(slot_of(key))
    except (RedisClusterException, RedisError, UnicodeEncodeError, LookupError):
        return None  # no map yet, or the slot is not covered: redis-py will say


def route(manager: Any, command: Command) -> str | None:
    """The ``host:port`` of the primary ``command``'s slot maps to now, if known."""
    node = target(manager, command)
    return None if node is None else str(node.name)


def primaries_of(manager: Any) -> list[str]:
    """The primaries of a redis-py slot map (sync or asyncio), by ``host:port``."""
    if manager is None:
        return []
    nodes = list(manager.nodes_cache.values())
    return [str(node.name) for node in nodes if node.server_type == _PRIMARY]


def _handled(cause: BaseException | None) -> BaseException | None:
    """The error behind ``cause``; for "Redis Cluster unreachable", the one redis-py handled.

    That is the error redis-py was handling when it re-read the slot map and found no
    node to answer (a node's connection error, CLUSTERDOWN), or ``None`` when it was
    building its client (no call had failed).
    """
    unreachable = cause.__cause__ if isinstance(cause, RedisConnectionError) else None
    if not isinstance(unreachable, RedisClusterException):
        return cause
    return unreachable.__context__


def node_fault(error: BackendError) -> bool:
    """Whether ``error`` is a node's connection failure (refused, reset, timed out).

    Not: a command the node refused (it answered), a wait for a pooled connection on a
    busy client, a refused password, a call refused by an open breaker (nothing was
    sent). "Redis Cluster unreachable" (redis-py found no node to read the slot map
    from) is one when it happened while redis-py handled a node's connection failure
    (the call's deadline ran out as it re-read the map): that node's. A failure that
    does not say its node (``failed_node``) counts against none, but may still be part
    of a partial outage.
    """
    if not error.outage or isinstance(error, NodeUnavailableError):
        return False
    origin = _handled(error.__cause__)
    if isinstance(origin, RedisAuthenticationError):
        return False
    return isinstance(origin, _NODE_FAULTS)


def failed_node(error: BackendError, among: Iterable[str] = ()) -> str | None:
    """The node a failure happened on, as redis-py tells it or its message names it."""
    cause = error.__cause__
    for each in (cause, _handled(cause)):
        where = getattr(each, "connection", None)
        name = getattr(where, "name", None)
        if isinstance(name, str):
            return name  # a ClusterNode
        host, port = getattr(where, "host", None), getattr(where, "port", None)
        if host is not None and port is not None:
            return f"{host}:{port}"
    text = str(cause)
    named = [node for node in among if node in text]
    return named[0] if len(named) == 1 else None
