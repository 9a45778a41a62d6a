"""RedisBackend: redis-py's sync and asyncio clients from one URL and one set of options."""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import redis

from kirocache._values.types import option_seconds
from kirocache.backends._config import check_options, mask_url, url_keywords
from kirocache.backends._protocol import BackendStats, Op, OpResult
from kirocache.backends._redis_clients import (
    AsyncClientFactory,
    RedisTransport,
    call_timeouts,
    check_pool,
    open_clients,
    resolve,
    shown_url,
)
from kirocache.backends._redis_commands import (
    as_bool,
    as_bytes,
    as_bytes_list,
    as_int,
    decode_key,
    decode_members,
    decode_ttl,
    exec_deleted,
    expire_commands,
    incr_commands,
    info_of,
    plan,
    scan_page,
    scripts_run,
    set_command,
    stats_from_info,
    tag_add_commands,
    to_px,
    unique_members,
    unloaded,
    with_body,
)
from kirocache.exceptions import BackendError, ConfigurationError, PermissionDeniedError

if TYPE_CHECKING:
    import ssl

    from typing_extensions import Self

__all__ = ["RedisBackend"]


# Defaults a URL's query option replaces when the keyword argument was left at them.
_DEFAULT_MAX_CONNECTIONS: Final = 50
_DEFAULT_HEALTH_CHECK: Final = 30


class RedisBackend(RedisTransport):
    """A backend on Redis through redis-py, serving sync and async code from one object.

    Settings come from the arguments first, then the URL, then the environment
    (``REDIS_URL`` when ``url`` is ``None``, ``REDIS_PASSWORD`` when neither argument nor
    URL gives a password, ``REDIS_DB`` likewise for the database).

    Sync calls share one ``redis.Redis`` and its bounded pool across threads; async calls
    use one ``redis.asyncio.Redis`` per event loop (each with its own bounded pool), so one
    backend works across repeated ``asyncio.run()`` calls and in threads running their own
    loops. A connection refused or reset is retried ``retries`` times with exponential
    backoff and jitter; a refused password and a timeout are not retried.

    Each call has one deadline, ``timeout`` (250 ms by default), covering the connect, the
    handshake (HELLO/AUTH, CLIENT SETINFO, SELECT) and the reply, however many round trips
    they take: a server that accepts connections and never answers costs one deadline, and
    the cache's circuit breaker opens after it (see :attr:`BackendError.timed_out`).

    Async callers of one event loop take turns at its pool first come, first served, each
    waiting up to ``pool_timeout`` (redis-py's own pool lets a task that has just released a
    connection take it back ahead of those already waiting).

    Every redis-py error is raised as :class:`~kirocache.exceptions.BackendError`, chained
    from the original: an outage (``outage`` true: refused, reset, timed out, READONLY,
    LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, BUSY, MISCONF), an
    :class:`~kirocache.exceptions.AuthenticationError` (a wrong or missing password, in
    plain words), or a :class:`~kirocache.exceptions.CommandError` when the server refused
    one command (WRONGTYPE, OOM, a script error; NOPERM as its subclass
    :class:`~kirocache.exceptions.PermissionDeniedError`). A key with a lone surrogate
    raises ``InvalidKeyError`` and a TTL over 100 years ``InvalidTTLError``, before anything
    is sent. No message, repr or log line contains the password, and the tracebacks of the
    errors it raises stop before any frame whose local variables hold it.

    Args:
        url: ``redis://[user[:password]@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix://[user[:password]@]/path/to.sock[?db=N]``.
        password: Password (overrides the URL's).
        username: ACL user name (overrides the URL's).
        db: Database number (overrides the URL's).
        max_connections: Pool size, for the sync pool and for each event loop's pool.
        pool_timeout: How long a call waits for a free pooled connection (its turn, for
            async callers); a call that waits it out fails, but does not count toward
            opening the circuit breaker.
        timeout: The deadline of one call, in seconds (or a timedelta): connect,
            handshake and reply together. ``None``: ``socket_timeout`` when that is given,
            else 0.25 s.
        connect_timeout: A cap on opening a connection, within the deadline (``None``:
            the deadline).
        socket_timeout: A cap on each wait for a reply, within the deadline (``None``:
            the deadline).
        retries: Retries of a refused or reset connection.
        health_check_interval: Seconds a connection may idle before a PING checks it.
        ssl_ca_certs: CA bundle to verify the server with (``rediss://``).
        ssl_certfile: Client certificate (``rediss://``, mutual TLS).
        ssl_keyfile: Client key (``rediss://``, mutual TLS).
        ssl_cert_reqs: ``"required"``, ``"optional"`` or ``"none"`` (``rediss://``).
        client_name: Name shown by ``CLIENT LIST``.

    Raises:
        ConfigurationError: The URL, an option or ``REDIS_URL``/``REDIS_DB`` is invalid.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int | None = None,
        max_connections: int = _DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float | timedelta = 1.0,
        timeout: float | timedelta | None = None,
        connect_timeout: float | timedelta | None = None,
        socket_timeout: float | timedelta | None = None,
        retries: int = 2,
        health_check_interval: float | timedelta = _DEFAULT_HEALTH_CHECK,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: ssl.VerifyMode | Literal["required", "optional", "none"] = "required",
        client_name: str | None = None,
    ) -> None:
        settings: dict[str, Any] = {}
        try:
            parsed, settings = resolve(url, password, username, db, client_name)
            # the URL's query options, where the keyword arguments were left as they are
            chosen, given = url_keywords(RedisBackend, locals(), parsed.options, tls=parsed.tls)
            timeout, connect_timeout, socket_timeout = (
                chosen["timeout"],
                chosen["connect_timeout"],
                chosen["socket_timeout"],
            )
            max_connections = chosen["max_connections"]
            health_check_interval = chosen["health_check_interval"]
            ssl_ca_certs, ssl_certfile = chosen["ssl_ca_certs"], chosen["ssl_certfile"]
            ssl_keyfile, ssl_cert_reqs = chosen["ssl_keyfile"], chosen["ssl_cert_reqs"]
            settings.update(given)
            check_pool(max_connections, retries)
            deadline = call_timeouts(settings, parsed, timeout, connect_timeout, socket_timeout)
            settings["health_check_interval"] = option_seconds(
                health_check_interval, "health_check_interval", allow_zero=True
            )
            if parsed.tls:
                settings.update(
                    ssl_ca_certs=ssl_ca_certs,
                    ssl_certfile=ssl_certfile,
                    ssl_keyfile=ssl_keyfile,
                    ssl_cert_reqs=ssl_cert_reqs,
                )
            elif ssl_ca_certs or ssl_certfile or ssl_keyfile:
                msg = "ssl_ca_certs, ssl_certfile and ssl_keyfile need a rediss:// URL"
                raise ConfigurationError(msg)
            wait = option_seconds(pool_timeout, "pool_timeout")
        except ConfigurationError as exc:
            # Error trackers record the locals of every frame a traceback holds: this one's
            # and those of the parsers below it hold the URL and the password.
            url = password = None
            settings.clear()
            raise exc.with_traceback(None) from None
        client, async_client = open_clients(
            parsed.scheme,
            settings,
            max_connections=max_connections,
            wait=wait,
            retries=retries,
            deadline=deadline,
        )
        secret = settings["password"]
        self._setup(
            client,
            async_client,
            display_url=shown_url(parsed, settings["username"], secret, settings["db"]),
            secrets=[s for s in (secret, parsed.password) if s],
            pool_size=max_connections,
            pool_wait=wait,
            deadline=deadline,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build a backend from a URL and the keyword options of :class:`RedisBackend`.

        Args:
            url: ``redis://``, ``rediss://`` or ``unix://`` URL.
            **options: Any keyword argument of the constructor.

        Returns:
            The backend.

        Raises:
            ConfigurationError: The URL or an option is invalid, or an option is unknown
                (the message lists the known ones).
        """
        check_options(cls, options, "RedisBackend.from_url")
        return cls(url, **options)

    @classmethod
    def from_clients(
        cls,
        client: redis.Redis,
        async_client_factory: AsyncClientFactory,
        *,
        name: str = "redis://(injected client)",
    ) -> Self:
        """Wrap clients built elsewhere (fakeredis, a custom pool); the backend owns them.

        Args:
            client: The sync client, shared by all threads.
            async_client_factory: Makes a new asyncio client; called once per event loop,
                from inside that loop.
            name: What ``repr()`` shows in place of the URL.

        Returns:
            The backend; its ``close()``/``aclose()`` close these clients.
        """
        backend = cls.__new__(cls)
        backend._setup(client, async_client_factory, display_url=mask_url(name), secrets=[])
        return backend

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None`` (GET)."""
        return as_bytes(self._call("get", ("GET", key)))

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (``SET [PX] [NX]``); returns whether it was stored."""
        return as_bool(self._call("set", set_command(key, value, ttl, nx=nx)))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (UNLINK); returns whether it existed."""
        return as_bool(self._call("delete", ("UNLINK", key)))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (EXISTS)."""
        return as_bool(self._call("exists", ("EXISTS", key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` where absent (MGET)."""
        if not keys:
            return []
        return as_bytes_list(self._call("get_many", ("MGET", *keys)))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item (MSET, or one MULTI of SET PX when there is a TTL)."""
        if not items:
            return
        if to_px(ttl) is None:
            self._call("set_many", ("MSET", *(x for item in items.items() for x in item)))
            return
        commands = [set_command(key, value, ttl, nx=False) for key, value in items.items()]
        self._pipe("set_many", commands, transaction=True, strict=True)

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` (UNLINK); returns how many existed."""
        if not keys:
            return 0
        return as_int(self._call("delete_many", ("UNLINK", *keys)))

    def ttl(self, key: str) -> float | None:
        """Seconds left (PTTL): ``None`` if absent, ``math.inf`` without expiry."""
        return decode_ttl(self._call("ttl", ("PTTL", key)))

    def expire(self, key: str, ttl: float) -> bool:
        """Set a new TTL (PEXPIRE); returns whether the key existed."""
        return as_bool(self._run("expire", expire_commands(key, ttl)))

    def persist(self, key: str) -> bool:
        """Remove the TTL of ``key`` (PERSIST); returns whether one was removed."""
        return as_bool(self._call("persist", ("PERSIST", key)))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """INCRBY ``amount``; with ``ttl``, in one MULTI with PEXPIRE NX."""
        return as_int(self._run("incr", incr_commands(key, amount, ttl)))

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield keys matching ``pattern`` (SCAN MATCH COUNT)."""
        cursor = 0
        while True:
            raw = self._call("scan", ("SCAN", cursor, "MATCH", pattern, "COUNT", count))
            cursor, keys = scan_page(raw)
            for key in keys:
                yield decode_key(key)
            if cursor == 0:
                return

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete keys matching ``pattern``, SCAN page by page with UNLINK; returns the count."""
        cursor, deleted = 0, 0
        while True:
            raw = self._call(
                "delete_pattern", ("SCAN", cursor, "MATCH", pattern, "COUNT", batch_size)
            )
            cursor, keys = scan_page(raw)
            if keys:
                deleted += as_int(self._call("delete_pattern", ("UNLINK", *keys)))
            if cursor == 0:
                return deleted

    def tag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Add ``members`` to the set at ``key`` (SADD); its TTL becomes at least ``ttl``.

        One MULTI: a new set gets ``ttl``, an existing one keeps a longer TTL (PEXPIRE GT),
        and ``ttl=None`` makes the set persistent.
        """
        commands = tag_add_commands(key, members, ttl)
        if commands:
            self._pipe("tag_add", commands, transaction=True, strict=True)

    def tag_members(self, key: str) -> list[str]:
        """The members of the set at ``key`` (SMEMBERS), decoded and sorted."""
        return decode_members(self._call("tag_members", ("SMEMBERS", key)))

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """Remove ``members`` from the set at ``key`` (SREM); returns how many were in it."""
        unique = unique_members(members)
        if not unique:
            return 0
        return as_int(self._call("tag_remove", ("SREM", key, *unique)))

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``: WATCH and GET, then MULTI/UNLINK/EXEC.

        A transaction rather than a Lua script, so it runs wherever EVAL is missing or
        disabled (fakeredis without lupa, locked-down servers); a write to ``key`` between
        GET and EXEC aborts the EXEC and redis-py runs the check again.
        """
        return exec_deleted(self._compare_and_delete(key, value))

    def _loaded_scripts(self) -> builtins.set[str]:
        """The digests of the scripts the server is known to hold (see ``plan``)."""
        loaded: builtins.set[str] | None = self.__dict__.get("_scripts")
        if loaded is None:
            loaded = self.__dict__.setdefault("_scripts", builtins.set())
        return loaded

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in one pipeline (MULTI/EXEC with ``transaction``).

        A failing op leaves a ``BackendError`` in its slot and the others still run.
        """
        loaded = self._loaded_scripts()
        # in a MULTI transaction a missing script could not be sent again within it
        commands, answers = plan(ops, loaded=frozenset() if transaction else loaded)
        if not commands:
            return []
        try:
            raw = None if transaction else self._pipe_held("execute", commands)
            if raw is None:
                raw = self._pipe("execute", commands, transaction=transaction, strict=False)
        except BackendError:
            loaded.clear()  # a new connection may reach a server without them
            raise
        loaded |= scripts_run(commands, raw)
        if missing := unloaded(commands, raw):
            # The server lost its scripts without a reconnect (SCRIPT FLUSH): those send
            # their bodies in a second round trip, after the pipeline's other commands.
            loaded.clear()
            again = [with_body(commands[at]) for at in missing]
            raw = _merged(
                raw, missing, self._pipe("execute", again, transaction=False, strict=False)
            )
        return [self._slot(op, raw[at]) for op, at in zip(ops, answers, strict=True)]

    def ping(self) -> float:
        """PING; returns the round trip in seconds."""
        start = time.perf_counter()
        self._call("ping", ("PING",))
        return time.perf_counter() - start

    def stats(self) -> BackendStats:
        """INFO and DBSIZE as :class:`BackendStats` (``backend="redis"``).

        An ACL that refuses INFO leaves the fields INFO fills unknown, and says so in
        ``extra["info_error"]`` (health checks report it).
        """
        info, keys = self._pipe("stats", [("INFO",), ("DBSIZE",)], transaction=False, strict=False)
        return self._stats(info, keys)

    def close(self) -> None:
        """Close the sync client's pool; the backend reconnects if used again."""
        self._close_client()

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        return as_bytes(await self._acall("get", ("GET", key)))

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async :meth:`set`."""
        return as_bool(await self._acall("set", set_command(key, value, ttl, nx=nx)))

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return as_bool(await self._acall("delete", ("UNLINK", key)))

    async def aexists(self, key: str) -> bool:
        """Async :meth:`exists`."""
        return as_bool(await self._acall("exists", ("EXISTS", key)))

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        if not keys:
            return []
        return as_bytes_list(await self._acall("get_many", ("MGET", *keys)))

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async :meth:`set_many`."""
        if not items:
            return
        if to_px(ttl) is None:
            await self._acall("set_many", ("MSET", *(x for item in items.items() for x in item)))
            return
        commands = [set_command(key, value, ttl, nx=False) for key, value in items.items()]
        await self._apipe("set_many", commands, transaction=True, strict=True)

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async :meth:`delete_many`."""
        if not keys:
            return 0
        return as_int(await self._acall("delete_many", ("UNLINK", *keys)))

    async def attl(self, key: str) -> float | None:
        """Async :meth:`ttl`."""
        return decode_ttl(await self._acall("ttl", ("PTTL", key)))

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async :meth:`expire`."""
        return as_bool(await self._arun("expire", expire_commands(key, ttl)))

    async def apersist(self, key: str) -> bool:
        """Async :meth:`persist`."""
        return as_bool(await self._acall("persist", ("PERSIST", key)))

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async :meth:`incr`."""
        return as_int(await self._arun("incr", incr_commands(key, amount, ttl)))

    async def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async :meth:`scan`."""
        cursor = 0
        while True:
            raw = await self._acall("scan", ("SCAN", cursor, "MATCH", pattern, "COUNT", count))
            cursor, keys = scan_page(raw)
            for key in keys:
                yield decode_key(key)
            if cursor == 0:
                return

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async :meth:`delete_pattern`."""
        cursor, deleted = 0, 0
        while True:
            raw = await self._acall(
                "delete_pattern", ("SCAN", cursor, "MATCH", pattern, "COUNT", batch_size)
            )
            cursor, keys = scan_page(raw)
            if keys:
                deleted += as_int(await self._acall("delete_pattern", ("UNLINK", *keys)))
            if cursor == 0:
                return deleted

    async def atag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Async :meth:`tag_add`."""
        commands = tag_add_commands(key, members, ttl)
        if commands:
            await self._apipe("tag_add", commands, transaction=True, strict=True)

    async def atag_members(self, key: str) -> list[str]:
        """Async :meth:`tag_members`."""
        return decode_members(await self._acall("tag_members", ("SMEMBERS", key)))

    async def atag_remove(self, key: str, members: Sequence[str]) -> int:
        """Async :meth:`tag_remove`."""
        unique = unique_members(members)
        if not unique:
            return 0
        return as_int(await self._acall("tag_remove", ("SREM", key, *unique)))

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""
        return exec_deleted(await self._acompare_and_delete(key, value))

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async :meth:`execute`."""
        loaded = self._loaded_scripts()
        # in a MULTI transaction a missing script could not be sent again within it
        commands, answers = plan(ops, loaded=frozenset() if transaction else loaded)
        if not commands:
            return []
        try:
            raw = await self._apipe("execute", commands, transaction=transaction, strict=False)
        except BackendError:
            loaded.clear()
            raise
        loaded |= scripts_run(commands, raw)
        if missing := unloaded(commands, raw):
            loaded.clear()
            again = [with_body(commands[at]) for at in missing]
            replies = await self._apipe("execute", again, transaction=False, strict=False)
            raw = _merged(raw, missing, replies)
        return [self._slot(op, raw[at]) for op, at in zip(ops, answers, strict=True)]

    async def aping(self) -> float:
        """Async :meth:`ping`."""
        start = time.perf_counter()
        await self._acall("ping", ("PING",))
        return time.perf_counter() - start

    async def astats(self) -> BackendStats:
        """Async :meth:`stats`."""
        info, keys = await self._apipe(
            "stats", [("INFO",), ("DBSIZE",)], transaction=False, strict=False
        )
        return self._stats(info, keys)

    # ---- shared by both halves ------------------------------------------------------------

    def _stats(self, info: object, keys: object) -> BackendStats:
        stats = stats_from_info(info_of(info), self._checked("stats", keys))
        if isinstance(info, BaseException):
            refused = self._error("stats", info)
            if isinstance(refused, PermissionDeniedError):
                return replace(stats, extra={**stats.extra, "info_error": str(refused)})
        return stats

    async def aclose(self) -> None:
        """Close the running event loop's client and its pool."""
        await self._aclose_client()


def _merged(raw: Sequence[object], at: Sequence[int], again: Sequence[object]) -> list[object]:
    """``raw`` with the replies ``again`` put in the slots ``at``."""
    merged = list(raw)
    for slot, reply in zip(at, again, strict=True):
        merged[slot] = reply
    return merged
