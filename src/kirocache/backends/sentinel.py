"""RedisSentinelBackend: RedisBackend on the master a set of Redis Sentinels name.

redis-py's ``Sentinel.master_for`` gives a client whose pool asks the Sentinels for the
master's address on every new connection, and drops its connections when the master
it reached turned out to be a replica (after a failover). ``RedisBackend`` runs on that
client unchanged, so every operation, guarantee and error of the single node holds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from kirocache._values.types import option_seconds
from kirocache.backends._cluster_urls import parse_nodes_url, shown_nodes_url
from kirocache.backends._config import ENV_REDIS_URL, settings_from_env, url_keywords
from kirocache.backends._redis_clients import check_pool, timeouts
from kirocache.backends._redis_connections import AsyncRetry, SyncRetry, _DeadlineMixin
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import ConfigurationError

if TYPE_CHECKING:
    import ssl

__all__ = ["RedisSentinelBackend"]

_BACKOFF_BASE: Final = 0.025
_BACKOFF_CAP: Final = 0.5


class _SentinelConnection(_DeadlineMixin, redis.sentinel.SentinelManagedConnection):
    """A connection to the Sentinels' master, bounded by the call's deadline."""


class _SentinelSSLConnection(_DeadlineMixin, redis.sentinel.SentinelManagedSSLConnection):
    """A TLS connection to the Sentinels' master, bounded by the call's deadline."""


class _BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The master's sync pool: a caller finding every connection in use waits its turn.

    redis-py's ``SentinelConnectionPool`` is a plain pool, which refuses a call at once
    ("Too many connections") when ``max_connections`` are checked out: more threads than
    connections failed open under load. This one waits up to ``pool_timeout`` like
    ``RedisBackend``'s sync pool, then fails with redis-py's "No connection available.",
    which the transport reads as a busy client, not a down server. The Sentinel half (the
    master's address per new connection, a connection to a demoted master dropped on its
    release) is ``SentinelConnectionPool``'s, unchanged.
    """


class _Master(redis.Redis):
    """The master's client; closing it also closes the connections to the Sentinels."""

    watchers: list[redis.Redis]

    def close(self) -> None:
        """Close the master's pool and every Sentinel's."""
        super().close()
        for watcher in getattr(self, "watchers", ()):
            watcher.close()


class _AsyncMaster(redis.asyncio.Redis):
    """The asyncio twin of :class:`_Master`."""

    watchers: list[redis.asyncio.Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the master's pool and every Sentinel's."""
        await super().aclose(close_connection_pool)
        for watcher in getattr(self, "watchers", ()):
            await watcher.aclose()


class RedisSentinelBackend(RedisBackend):
    """A :class:`~kirocache.backends.RedisBackend` on the master Redis Sentinels watch.

    Every new connection asks the Sentinels (in the URL's order, the first that answers)
    where the master is; after a failover the connections to the old master fail or are
    told it is a replica now (READONLY), and the next ones reach the new master. The
    calls in between fail as outages, so a ``Cache`` fails open and then follows the
    new master by itself.

    Args:
        url: ``redis+sentinel://[user[:password]@]host:port[,host:port...]/<master>[/<db>]``
            with ``?sentinel_password=``, ``?sentinel_username=``, ``?db=``,
            ``?client_name=``, ``?ssl=true`` (``rediss+sentinel://``: TLS to the data
            nodes and the Sentinels), and the connection options of a ``redis://`` URL
            (``?timeout=0.5&max_connections=20``: a keyword argument left at its
            default takes the URL's value; the others reach the data nodes' connections).
        password: The data nodes' password (overrides the URL's).
        username: The data nodes' ACL user (overrides the URL's).
        db: Database number (overrides the URL's).
        sentinel_password: The Sentinels' password (overrides the URL's).
        sentinel_username: The Sentinels' ACL user (overrides the URL's).
        max_connections: Pool size, for the sync pool and for each event loop's pool.
        pool_timeout: How long an async call waits for its turn at the loop's pool.
        timeout: The deadline of one call on the master, in seconds (``None``:
            ``socket_timeout`` when given, else 0.25 s); also each Sentinel query's.
        connect_timeout: A cap on opening a connection, within the deadline.
        socket_timeout: A cap on each wait for a reply, within the deadline.
        retries: Retries of a refused or reset connection.
        health_check_interval: Seconds a connection may idle before a PING checks it.
        ssl_ca_certs: CA bundle to verify the servers with (TLS).
        ssl_certfile: Client certificate (TLS, mutual).
        ssl_keyfile: Client key (TLS, mutual).
        ssl_cert_reqs: ``"required"``, ``"optional"`` or ``"none"`` (TLS).
        client_name: Name shown by ``CLIENT LIST``.

    Raises:
        ConfigurationError: The URL or an option is invalid.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int | None = None,
        sentinel_password: str | None = None,
        sentinel_username: str | None = None,
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
    ) -> None:
        env = settings_from_env()
        source = "url" if url is not None else ENV_REDIS_URL
        node: dict[str, Any] = {}
        try:
            parsed = parse_nodes_url(url or env.redis_url or "", source=source)
            if parsed.kind != "sentinel":
                msg = "RedisSentinelBackend needs a redis+sentinel:// or rediss+sentinel:// URL"
                raise ConfigurationError(msg)
            chosen, node = url_keywords(
                RedisSentinelBackend, locals(), parsed.options, tls=parsed.tls
            )
            max_connections = chosen["max_connections"]
            check_pool(max_connections, retries)
            deadline, reply, connect = timeouts(
                chosen["timeout"], chosen["connect_timeout"], chosen["socket_timeout"]
            )
            tls: dict[str, Any] = {}
            tls_files = {n: chosen[n] for n in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")}
            if parsed.tls:
                tls = {"ssl": True, **tls_files, "ssl_cert_reqs": chosen["ssl_cert_reqs"]}
                tls.update({n: node.pop(n) for n in list(node) if n.startswith("ssl_")})
            elif any(tls_files.values()):
                msg = (
                    "ssl_ca_certs, ssl_certfile and ssl_keyfile need rediss+sentinel:// or ssl=true"
                )
                raise ConfigurationError(msg)
            secret = password or parsed.password or env.redis_password
            watcher_secret = sentinel_password or parsed.sentinel_password
            number = db if db is not None else parsed.db if parsed.db is not None else env.redis_db
            node.update(
                username=username or parsed.username,
                password=secret,
                db=number or 0,
                client_name=client_name or parsed.client_name,
                socket_timeout=reply,
                socket_connect_timeout=connect,
                health_check_interval=option_seconds(
                    chosen["health_check_interval"], "health_check_interval", allow_zero=True
                ),
                max_connections=max_connections,
            )
            wait = option_seconds(pool_timeout, "pool_timeout")
        except ConfigurationError as exc:
            # Error trackers record the locals of every frame a traceback holds.
            url = password = sentinel_password = None
            node.clear()
            raise exc.with_traceback(None) from None
        user = node["username"]
        watchers = {
            "username": sentinel_username or parsed.sentinel_username,
            "password": watcher_secret,
            "socket_timeout": deadline,
            "socket_connect_timeout": connect,
            **tls,
        }
        backoff = ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE)
        sentinels = list(parsed.nodes)
        master = parsed.master
        connection_class = _SentinelSSLConnection if parsed.tls else _SentinelConnection
        # A Sentinel query is one try per sentinel within the deadline: redis-py's default
        # retry (three tries, backoff up to 10 s each) made a refused sentinel password
        # take over half a minute; the next sentinel is the retry.
        watching = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels,
            sentinel_kwargs={**watchers, "retry": SyncRetry(NoBackoff(), 0)},
        )
        client: _Master = watching.master_for(  # type: ignore[no-untyped-call]
            master,
            redis_class=_Master,
            connection_pool_class=_BlockingSentinelPool,
            timeout=wait,
            connection_class=connection_class,
            retry=SyncRetry(backoff, retries, supported_errors=(RedisConnectionError,)),
            **node,
            **{k: v for k, v in tls.items() if k != "ssl"},
        )

        client.watchers = list(watching.sentinels)

        def async_client() -> redis.asyncio.Redis:
            async_class = (
                redis.asyncio.sentinel.SentinelManagedSSLConnection
                if parsed.tls
                else redis.asyncio.sentinel.SentinelManagedConnection
            )
            watched = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                sentinels,
                sentinel_kwargs={**watchers, "retry": AsyncRetry(NoBackoff(), 0)},
            )
            made: _AsyncMaster = watched.master_for(
                master,
                redis_class=_AsyncMaster,
                connection_class=async_class,
                retry=AsyncRetry(backoff, retries, supported_errors=(RedisConnectionError,)),
                **node,
                **{k: v for k, v in tls.items() if k != "ssl"},
            )
            made.watchers = list(watched.sentinels)
            return made

        self._setup(
            client,
            async_client,
            display_url=shown_nodes_url(parsed, user, secret, watched=bool(watcher_secret)),
            secrets=[s for s in (secret, parsed.password, watcher_secret) if s],
            pool_size=max_connections,
            pool_wait=wait,
            deadline=deadline,
        )
