"""RedisClusterBackend's clients: redis-py's RedisCluster, sync and one per event loop.

The sync client is built on first use, not in the constructor: redis-py's ``RedisCluster``
reads the slot map from a seed node as it is built, and a cache must start (and fail
open) while its cluster is down. A seed list nobody answers is raised as a connection
error, which the transport turns into an outage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from kirocache.backends._cluster_plan import slot_of
from kirocache.backends._cluster_urls import NodesURL
from kirocache.backends._redis_commands import Command
from kirocache.backends._redis_connections import CONNECTION_CLASSES

__all__ = [
    "LazyCluster",
    "arouted_pipe",
    "async_cluster_factory",
    "cluster_settings",
    "refused",
    "routed_pipe",
]

# As the single node's backoff: tens of milliseconds, so a failover is ridden over without
# stacking seconds of sleep under a request (redis-py's default waits up to 10 s).
_BACKOFF_BASE: Final = 0.025
_BACKOFF_CAP: Final = 0.5


def cluster_settings(parsed: NodesURL, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments both RedisCluster clients share (no I/O)."""
    settings = {key: value for key, value in options.items() if value is not None}
    settings.update(
        username=options.get("username"),
        password=options.get("password"),
        client_name=options.get("client_name"),
        require_full_coverage=False,
    )
    if parsed.tls:
        settings["ssl"] = True
    return settings


# What redis-py quotes, inside "cannot be connected", when every seed refused the login.
_AUTH_WORDS: Final = ("invalid username-password pair", "WRONGPASS", "NOAUTH", "Authentication")


def refused(exc: RedisClusterException) -> RedisError:
    """A RedisClusterException said as the redis error it stands for.

    RedisClusterException is no RedisError: said as a connection error, it reads as the
    outage it is ("cannot be connected") wherever the transport catches redis errors; when
    the seeds refused the login, as the authentication error it is.
    """
    text = str(exc)
    error: RedisError = (
        RedisAuthenticationError(text)
        if any(words in text for words in _AUTH_WORDS)
        else RedisConnectionError(f"Redis Cluster unreachable: {text}")
    )
    error.__cause__ = exc
    return error


class LazyCluster:
    """A sync ``RedisCluster`` built on first use, rebuilt after ``close``.

    It forwards the three things the transport calls: ``execute_command``, ``pipeline``
    and ``close``; :meth:`get` gives the client itself (nodes, per-node commands).
    """

    def __init__(
        self, parsed: NodesURL, settings: dict[str, Any], retries: int, pool_wait: float
    ) -> None:
        self._pool_wait = pool_wait
        self._nodes = parsed.nodes
        self._settings = settings
        self._retries = retries
        self._tls = parsed.tls
        self._lock = threading.Lock()
        self._client: RedisCluster | None = None

    def _build(self) -> RedisCluster:
        backoff = ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE)
        connection_class = CONNECTION_CLASSES["rediss" if self._tls else "redis"][0]
        (host, port), *others = self._nodes
        # Built "from a URL" (of the first seed, no secret in it): only then does redis-py
        # give each node a pool of our choosing, with the deadline-bound connections and a
        # bounded wait for a free connection.
        # "redis://" even for TLS: a "rediss://" URL would replace our connection class
        # with redis-py's own, which knows nothing of the call's deadline.
        settings = {k: v for k, v in self._settings.items() if k != "ssl"}
        return RedisCluster(
            url=f"redis://{f'[{host}]' if ':' in host else host}:{port}",
            startup_nodes=[ClusterNode(h, p) for h, p in others],  # type: ignore[no-untyped-call]
            retry=Retry(backoff, self._retries),
            connection_class=connection_class,
            connection_pool_class=redis.BlockingConnectionPool,
            timeout=self._pool_wait,
            **settings,
        )

    def get(self) -> RedisCluster:
        """The client, built now if it is not yet.

        Raises:
            redis.ConnectionError: No seed node answered.
        """
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._build()
                except RedisClusterException as exc:
                    raise refused(exc) from exc
            return self._client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """``RedisCluster.execute_command``."""
        try:
            return self.get().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise refused(exc) from exc

    def pipeline(self, transaction: bool = False) -> Any:
        """``RedisCluster.pipeline``."""
        return self.get().pipeline(transaction=transaction)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close every node's pool; the next call builds a new client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            nodes = client.get_nodes()  # type: ignore[no-untyped-call]
            client.close()
            for node in nodes:
                # the pools were handed to redis-py, which closes only pools it made
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect()


def async_cluster_factory(
    parsed: NodesURL, settings: dict[str, Any], retries: int
) -> Callable[[], redis.asyncio.cluster.RedisCluster]:
    """A factory of asyncio ``RedisCluster`` clients, one per event loop (built inside it)."""
    nodes = [(host, port) for host, port in parsed.nodes]
    backoff = ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE)
    options = {k: v for k, v in settings.items() if k != "connection_pool_class"}

    def make() -> redis.asyncio.cluster.RedisCluster:
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in nodes],
            retry=redis.asyncio.retry.Retry(backoff, retries),
            **options,
        )

    return make


def _key(command: Command) -> str:
    """The key a planned command works on (``EVAL script numkeys key ...``: the first)."""
    return str(command[3] if command[0] == "EVAL" else command[1])


def routed_pipe(client: RedisCluster, commands: Sequence[Command], *, strict: bool) -> list[object]:
    """One cluster pipeline with each command's node given, as ``mget_nonatomic`` does.

    The slot of every planned command is known (its one key, or keys of one slot), so
    redis-py need not parse each command for its keys: a third of a 1,000-command
    pipeline's time. MOVED and ASK replies are still followed by redis-py.
    """
    nodes = client.nodes_manager
    pipe = client.pipeline()  # type: ignore[no-untyped-call]
    for command in commands:
        node = nodes.get_node_from_slot(slot_of(_key(command)))
        pipe.execute_command(*command, target_nodes=[node])
    return list(pipe.execute(raise_on_error=strict))


async def arouted_pipe(
    client: redis.asyncio.cluster.RedisCluster, commands: Sequence[Command], *, strict: bool
) -> list[object]:
    """The asyncio twin of :func:`routed_pipe` (the nodes are sent to concurrently)."""
    if client._initialize:
        await client.initialize()
    nodes = client.nodes_manager
    pipe = client.pipeline()
    for command in commands:
        node = nodes.get_node_from_slot(slot_of(_key(command)))
        pipe.execute_command(*command, target_nodes=[node])
    return list(await pipe.execute(raise_on_error=strict))
