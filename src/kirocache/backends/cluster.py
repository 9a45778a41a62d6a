"""RedisClusterBackend: the backend protocol on a Redis Cluster, through redis-py's RedisCluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import redis
from redis.cluster import RedisCluster

from kirocache._values.types import option_seconds
from kirocache.backends._cluster_breaker import (
    DEFAULT_NODE_FAILURES,
    DEFAULT_NODE_RETRY,
    node_breakers,
)
from kirocache.backends._cluster_clients import LazyCluster, async_cluster_factory, cluster_settings
from kirocache.backends._cluster_plan import (
    Flow,
    answered,
    execute_flow,
    get_many_commands,
    get_many_values,
    one_slot,
    transaction_commands,
)
from kirocache.backends._cluster_stats import summed
from kirocache.backends._cluster_transport import ClusterTransport, page
from kirocache.backends._cluster_urls import (
    CLUSTER_SCHEMES,
    NodesURL,
    parse_nodes_url,
    shown_nodes_url,
)
from kirocache.backends._config import (
    ENV_REDIS_URL,
    check_options,
    settings_from_env,
    url_keywords,
)
from kirocache.backends._conveniences import AsyncConvenientBackend, ConvenientBackend
from kirocache.backends._derive import DualConveniences
from kirocache.backends._protocol import BackendStats, Op, OpResult
from kirocache.backends._redis_clients import check_pool, timeouts
from kirocache.backends._redis_commands import (
    as_bytes,
    as_bytes_list,
    decode_key,
    info_of,
    stats_from_info,
)
from kirocache.exceptions import ConfigurationError

if TYPE_CHECKING:
    import ssl

    import redis.asyncio.cluster
    from typing_extensions import Self

__all__ = ["RedisClusterBackend", "multi_node_backend"]

# URL options of a redis:// URL that redis-py's cluster clients do not hand to the nodes.
_NOT_FOR_A_CLUSTER: Final = dict.fromkeys(
    ("ssl_ca_path", "ssl_ciphers", "ssl_min_version"),
    "redis-py's cluster clients do not pass it to the nodes",
)


# The convenience methods (set, delete, set_many, delete_pattern, tag_add, ...), derived
# from the small protocol as for any backend; reached through __getattr__.
_CONVENIENCES: Final = frozenset(
    name
    for protocol in (ConvenientBackend, AsyncConvenientBackend)
    for name in vars(protocol)
    if not name.startswith("_")
)


class _PerSlot:
    """The backend as its derived conveniences see it: transactions within one slot.

    ``set_many`` asks for a transaction, which a cluster gives only within one slot;
    across slots it runs as a plain batch.
    """

    def __init__(self, backend: RedisClusterBackend) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        return self._backend.execute(ops, transaction=transaction and one_slot(ops))

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        return await self._backend.aexecute(ops, transaction=transaction and one_slot(ops))


class RedisClusterBackend(ClusterTransport):
    """A backend on a Redis Cluster, serving sync and async code from one object.

    Reads and batches are grouped by hash slot: ``get_many`` sends one ``MGET`` per slot
    and ``execute`` one pipeline per node, written to every node before any reply is read
    (asyncio: the nodes concurrently), so a batch costs one round of the slowest node. An
    op whose keys span slots (a ``set_if`` guarded by keys elsewhere, a ``tag_prune``
    with probes elsewhere) reads those keys first, one more round (see docs/cluster.md
    for why that stays safe). A transactional batch must keep its keys in one slot; one
    that does not is refused with a ``ConfigurationError`` naming hash tags. ``scan``
    walks every primary; ``stats`` sums them (each node's figures in
    ``extra["nodes"]``). MOVED and ASK are followed by redis-py; CLUSTERDOWN, TRYAGAIN, a
    node that cannot be reached and a cluster with no reachable node are outages
    (``BackendError.outage``), so a ``Cache`` fails open and its breaker counts them.

    Settings come from the arguments first, then the URL, then ``REDIS_URL`` (when it is
    a ``redis+cluster://`` URL) and ``REDIS_PASSWORD``. The options are
    :class:`~kirocache.backends.RedisBackend`'s, but for ``db`` (a cluster has only 0),
    and the URL's query takes the same connection options (``?timeout=0.5``), plus
    ``node_failure_threshold`` and ``node_retry_interval``; a keyword argument left at
    its default takes the URL's value.

    Args:
        url: ``redis+cluster://[user[:password]@]host:port[,host:port...][?options]``
            (seed nodes; any reachable one is enough), ``rediss+cluster://...`` or
            ``?ssl=true`` for TLS.
        password: Password (overrides the URL's).
        username: ACL user name (overrides the URL's).
        max_connections: Connections per node, and concurrent async calls per event loop.
        pool_timeout: How long a call waits for a free connection to a node (async: for
            its turn at the loop's connections); a call that waits it out fails, but does
            not count toward opening the circuit breaker.
        timeout: The deadline of one call, in seconds (or a timedelta), redirects and
            retries included. ``None``: ``socket_timeout`` when given, else 0.25 s.
        connect_timeout: A cap on opening a connection, within the deadline.
        socket_timeout: A cap on each wait for a reply, within the deadline.
        retries: Retries of a call whose node could not be reached (redis-py re-reads the
            slot map between them).
        health_check_interval: Seconds a connection may idle before a PING checks it.
        ssl_ca_certs: CA bundle to verify the nodes with (TLS).
        ssl_certfile: Client certificate (TLS, mutual).
        ssl_keyfile: Client key (TLS, mutual).
        ssl_cert_reqs: ``"required"``, ``"optional"`` or ``"none"`` (TLS).
        client_name: Name shown by ``CLIENT LIST``.
        node_failure_threshold: Connection failures in a row that open one node's
            circuit breaker: calls for its slots then fail at once, while the other
            primaries serve theirs (docs/faults.md). ``node_states()`` shows each node's.
        node_retry_interval: Seconds an open node waits before one call tries it again.

    Raises:
        ConfigurationError: The URL or an option is invalid (the message names it).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        password: str | None = None,
        username: str | None = None,
        max_connections: int = 50,
        pool_timeout: float | timedelta = 1.0,
        timeout: float | timedelta | None = None,
        connect_timeout: float | timedelta | None = None,
        socket_timeout: float | timedelta | None = None,
        retries: int = 2,
        health_check_interval: float | timedelta = 30,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: ssl.VerifyMode | Literal["required", "optional", "none"] = "required",
        client_name: str | None = None,
        node_failure_threshold: int = DEFAULT_NODE_FAILURES,
        node_retry_interval: float | timedelta = DEFAULT_NODE_RETRY,
    ) -> None:
        env = settings_from_env()
        source = "url" if url is not None else ENV_REDIS_URL
        options: dict[str, Any] = {}
        try:
            parsed = parse_nodes_url(url or env.redis_url or "", source=source)
            if parsed.kind != "cluster":
                msg = f"RedisClusterBackend needs a {' or '.join(CLUSTER_SCHEMES)} URL"
                raise ConfigurationError(msg)
            chosen, options = url_keywords(
                RedisClusterBackend,
                locals(),
                parsed.options,
                tls=parsed.tls,
                refused=_NOT_FOR_A_CLUSTER,
            )
            max_connections = chosen["max_connections"]
            check_pool(max_connections, retries)
            deadline, reply, connect = timeouts(
                chosen["timeout"], chosen["connect_timeout"], chosen["socket_timeout"]
            )
            breakers = node_breakers(
                chosen["node_failure_threshold"], chosen["node_retry_interval"]
            )
            secret = password or parsed.password or env.redis_password
            user = username or parsed.username
            options.update(
                username=user,
                password=secret,
                client_name=client_name or parsed.client_name,
                max_connections=max_connections,
                socket_timeout=reply,
                socket_connect_timeout=connect,
                health_check_interval=option_seconds(
                    chosen["health_check_interval"], "health_check_interval", allow_zero=True
                ),
            )
            tls_files = {n: chosen[n] for n in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")}
            if parsed.tls:
                options.update(tls_files, ssl_cert_reqs=chosen["ssl_cert_reqs"])
            elif any(tls_files.values()):
                msg = (
                    "ssl_ca_certs, ssl_certfile and ssl_keyfile need rediss+cluster:// or ssl=true"
                )
                raise ConfigurationError(msg)
            wait = option_seconds(pool_timeout, "pool_timeout")
        except ConfigurationError as exc:
            # Error trackers record the locals of every frame a traceback holds.
            url = password = None
            options.clear()
            raise exc.with_traceback(None) from None
        settings = cluster_settings(parsed, options)
        self._parsed = parsed
        self._lazy = LazyCluster(parsed, settings, retries, wait)
        self._setup(
            cast("redis.Redis", self._lazy),
            cast("Any", async_cluster_factory(parsed, settings, retries)),
            display_url=shown_nodes_url(parsed, user, secret),
            secrets=[s for s in (secret, parsed.password) if s],
            pool_size=max_connections,
            pool_wait=wait,
            deadline=deadline,
            node_breakers=breakers,
        )

        self._conveniences = DualConveniences(_PerSlot(self))

    def __getattr__(self, name: str) -> Any:
        # Only the conveniences land here (real attributes are found first); during a
        # failed __init__ there are none yet.
        conveniences = self.__dict__.get("_conveniences")
        if name in _CONVENIENCES and conveniences is not None:
            return getattr(conveniences, name)
        msg = f"{type(self).__name__!r} object has no attribute {name!r}"
        raise AttributeError(msg)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build a backend from a ``redis+cluster://`` URL and the constructor's options.

        Args:
            url: The cluster URL.
            **options: Any keyword argument of the constructor.

        Returns:
            The backend.

        Raises:
            ConfigurationError: The URL or an option is invalid, or an option is unknown.
        """
        check_options(cls, options, "RedisClusterBackend.from_url")
        return cls(url, **options)

    @property
    def seeds(self) -> NodesURL:
        """The parsed URL: the seed nodes, TLS, the user (the password hidden from repr)."""
        return self._parsed

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None`` (GET on its node)."""
        return as_bytes(self._call("get", ("GET", key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order (one MGET per slot, one pipeline per node)."""
        if not keys:
            return []
        commands, places = get_many_commands(keys)
        replies = self._pipe("get_many", commands, transaction=False, strict=False)
        return self._values(keys, replies, places)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` grouped by node; with ``transaction``, in one slot's MULTI/EXEC.

        Raises:
            ConfigurationError: An op kind is unknown, or ``transaction`` is asked of ops
                whose keys span hash slots (nothing runs).
        """
        if transaction:
            commands, ends = transaction_commands(ops)
            replies = (
                self._pipe("execute", commands, transaction=True, strict=False) if commands else []
            )
            return self._answers(ops, answered(ends, replies))
        flow = execute_flow(ops)
        try:
            commands = next(flow)
            while True:
                commands = flow.send(
                    self._pipe("execute", commands, transaction=False, strict=False)
                )
        except StopIteration as done:
            return self._answers(ops, done.value)

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield keys matching ``pattern`` on every primary (SCAN MATCH COUNT per node)."""
        for node in self._primaries("scan"):
            cursor = 0
            while True:
                raw = self._on_node(
                    "scan", node, ("SCAN", cursor, "MATCH", pattern, "COUNT", count)
                )
                cursor, keys = page(raw)
                for key in keys:
                    yield decode_key(key)
                if cursor == 0:
                    break

    def ping(self) -> float:
        """PING every primary; returns the round trip in seconds."""
        start = time.perf_counter()
        self._on_node("ping", RedisCluster.PRIMARIES, ("PING",))
        return time.perf_counter() - start

    def stats(self) -> BackendStats:
        """INFO and DBSIZE of every primary, summed (each node's in ``extra["nodes"]``)."""
        nodes = {}
        for node in self._primaries("stats"):
            info = self._on_node("stats", node, ("INFO",))
            keys = self._on_node("stats", node, ("DBSIZE",))
            nodes[node.name] = stats_from_info(info_of(info), self._checked("stats", keys))
        return summed(nodes, self.node_states())

    def close(self) -> None:
        """Close every node's pool; the backend reconnects if used again."""
        self._close_client()

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        return as_bytes(await self._acall("get", ("GET", key)))

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        if not keys:
            return []
        commands, places = get_many_commands(keys)
        replies = await self._apipe("get_many", commands, transaction=False, strict=False)
        return self._values(keys, replies, places)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async :meth:`execute`."""
        if transaction:
            commands, ends = transaction_commands(ops)
            replies = (
                await self._apipe("execute", commands, transaction=True, strict=False)
                if commands
                else []
            )
            return self._answers(ops, answered(ends, replies))
        flow: Flow = execute_flow(ops)
        try:
            commands = next(flow)
            while True:
                replies = await self._apipe("execute", commands, transaction=False, strict=False)
                commands = flow.send(replies)
        except StopIteration as done:
            return self._answers(ops, done.value)

    async def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async :meth:`scan`."""
        for node in await self._aprimaries("scan"):
            cursor = 0
            while True:
                raw = await self._aon_node(
                    "scan", node, ("SCAN", cursor, "MATCH", pattern, "COUNT", count)
                )
                cursor, keys = page(raw)
                for key in keys:
                    yield decode_key(key)
                if cursor == 0:
                    break

    async def aping(self) -> float:
        """Async :meth:`ping`."""
        start = time.perf_counter()
        client = await self._aclient()
        await self._aon_node("ping", client.PRIMARIES, ("PING",))
        return time.perf_counter() - start

    async def astats(self) -> BackendStats:
        """Async :meth:`stats`."""
        nodes = {}
        for node in await self._aprimaries("stats"):
            info = await self._aon_node("stats", node, ("INFO",))
            keys = await self._aon_node("stats", node, ("DBSIZE",))
            nodes[node.name] = stats_from_info(info_of(info), self._checked("stats", keys))
        return summed(nodes, self.node_states())

    async def aclose(self) -> None:
        """Close the running event loop's client and its pools."""
        await self._aclose_client()

    # ---- shared by both halves ------------------------------------------------------------

    def _values(
        self, keys: Sequence[str], replies: list[object], places: list[list[int]]
    ) -> list[bytes | None]:
        try:
            values = get_many_values(len(keys), replies, places)
        except Exception as exc:
            raise self._error("get_many", exc) from exc
        return as_bytes_list(values)

    def _answers(self, ops: Sequence[Op], raws: list[object]) -> list[OpResult]:
        return [self._slot(op, raw) for op, raw in zip(ops, raws, strict=True)]


def multi_node_backend(url: str, options: dict[str, Any], *, also: frozenset[str]) -> Any:
    """The backend a ``redis+cluster://`` or ``redis+sentinel://`` URL names (``Cache.from_url``).

    Args:
        url: The URL; ``rediss+`` schemes speak TLS.
        options: The backend's keyword options (``also`` names others the caller takes).
        also: Option names the caller handles itself, listed as known in errors.

    Returns:
        A :class:`RedisClusterBackend`, or a
        :class:`~kirocache.backends.sentinel.RedisSentinelBackend`.

    Raises:
        ConfigurationError: The URL or an option is invalid or unknown.
    """
    scheme = url.partition("://")[0].lower()
    target: type[Any] = RedisClusterBackend
    if scheme not in CLUSTER_SCHEMES:
        from kirocache.backends.sentinel import RedisSentinelBackend

        target = RedisSentinelBackend
    check_options(target, options, f"{scheme}://", also=also)
    return target(url, **{k: v for k, v in options.items() if k not in also})
