"""RedisBackend's clients: settings from URL and environment, pools, one client per loop.

:class:`RedisTransport` is the base ``RedisBackend`` stands on: its clients, and how one
command or a pipeline reaches them with every error raised as ``BackendError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from kirocache.backends._config import (
    ENV_REDIS_URL,
    RedisURL,
    parse_db,
    parse_redis_url,
    settings_from_env,
)
from kirocache.backends._protocol import Op, OpResult
from kirocache.backends._redis_commands import Command, as_int, op_result
from kirocache.exceptions import BackendError

__all__ = [
    "AsyncClientFactory",
    "RedisTransport",
    "open_clients",
    "resolve",
    "shown_url",
]

AsyncClientFactory = Callable[[], "redis.asyncio.Redis"]

_DEFAULT_URL: Final = "redis://localhost:6379/0"
# Backoff between retries of a refused or reset connection: a few tens of milliseconds, so
# a restarting server is ridden over without stacking seconds of sleep under a request.
_BACKOFF_BASE: Final = 0.025
_BACKOFF_CAP: Final = 0.5
# Errors of the store or the network; asyncio.TimeoutError is not an OSError before 3.11.
_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)


# ---- settings: arguments, then the URL, then the environment (no I/O) -----------------------


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


_CONNECTION_CLASSES: Final[Mapping[str, tuple[type[Any], type[Any]]]] = {
    "redis": (redis.Connection, redis.asyncio.Connection),
    "rediss": (redis.SSLConnection, redis.asyncio.SSLConnection),
    "unix": (redis.UnixDomainSocketConnection, redis.asyncio.UnixDomainSocketConnection),
}


def resolve(
    url: str | None,
    password: str | None,
    username: str | None,
    db: int | None,
    client_name: str | None,
) -> tuple[RedisURL, dict[str, Any]]:
    """Arguments first, then the URL, then the environment; the connection's identity."""
    env = settings_from_env()
    source = "url" if url is not None else ENV_REDIS_URL
    parsed = parse_redis_url(url or env.redis_url or _DEFAULT_URL, source=source)
    number = (
        parse_db(db, source="db")
        if db is not None
        else next((n for n in (parsed.db, env.redis_db) if n is not None), 0)
    )
    settings: dict[str, Any] = {
        "db": number,
        "username": username or parsed.username,
        "password": next((p for p in (password, parsed.password, env.redis_password) if p), None),
        "client_name": client_name or parsed.client_name,
    }
    if parsed.scheme == "unix":
        settings["path"] = parsed.path
    else:
        settings.update(host=parsed.host, port=parsed.port)
    return parsed, settings


def shown_url(parsed: RedisURL, username: str | None, password: str | None, db: int) -> str:
    """The URL as ``repr()`` and error messages show it, the password masked."""
    userinfo = ""
    if username or password:
        userinfo = f"{username or ''}{':***' if password else ''}@"
    if parsed.scheme == "unix":
        return f"unix://{userinfo}{parsed.path}?db={db}"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{userinfo}{host}:{parsed.port}/{db}"


def open_clients(
    scheme: str, settings: Mapping[str, Any], *, max_connections: int, wait: float, retries: int
) -> tuple[redis.Redis, AsyncClientFactory]:
    """The sync client, and a factory of asyncio clients; each with its own bounded pool.

    Args:
        scheme: The URL's scheme, which picks the connection class.
        settings: The connection's options, as redis-py's pools take them.
        max_connections: Pool size, for the sync pool and for each event loop's pool.
        wait: Seconds a call waits for a free pooled connection.
        retries: Retries of a refused or reset connection.

    Returns:
        The sync client and the factory.
    """
    sync_class, async_class = _CONNECTION_CLASSES[scheme]
    backoff = ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE)
    sync_pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
        max_connections=max_connections,
        timeout=wait,
        connection_class=sync_class,
        retry=Retry(backoff, retries, supported_errors=(RedisConnectionError,)),
        **settings,
    )

    def async_client() -> redis.asyncio.Redis:
        # Built inside the loop that will use it: asyncio pools bind to their loop.
        pool = redis.asyncio.BlockingConnectionPool(
            max_connections=max_connections,
            timeout=wait,
            connection_class=async_class,
            retry=redis.asyncio.retry.Retry(
                backoff, retries, supported_errors=(RedisConnectionError,)
            ),
            **settings,
        )
        return redis.asyncio.Redis.from_pool(pool)

    return redis.Redis.from_pool(sync_pool), async_client


# ---- one asyncio client per event loop ------------------------------------------------------


@dataclass(slots=True)
class _LoopClient:
    client: redis.asyncio.Redis
    keeper: AsyncGenerator[None, None]


class _LoopClients:
    """One ``redis.asyncio.Redis`` per running event loop, closed when the loop shuts down.

    An asyncio client's connections belong to the loop that opened them. Each loop gets
    its own client, and beside it an async generator started on that loop: asyncio.run()
    and Runner.close() call ``loop.shutdown_asyncgens()`` before closing the loop, which
    runs the generator's ``finally`` and so closes the client's connections on its loop.
    """

    def __init__(self, factory: AsyncClientFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        # Keyed strongly: the client's connections reference their loop, so a weak key
        # would never die anyway. Entries leave when their loop shuts down or is closed.
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopClient] = {}

    def current(self) -> redis.asyncio.Redis | None:
        """The running loop's client if it has one yet: the hot path, without an await."""
        entry = self._by_loop.get(asyncio.get_running_loop())
        return None if entry is None else entry.client

    async def get(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is not None:
            return entry.client
        with self._lock:
            self._drop_closed_loops()
            client = self._factory()
            entry = _LoopClient(client, self._keep(loop, client))
            self._by_loop[loop] = entry
        # Nothing in the generator awaits before its yield, so no task can slip in here.
        await anext(entry.keeper)
        return client

    async def aclose(self) -> None:
        with self._lock:
            entry = self._by_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.keeper.aclose()

    def _drop_closed_loops(self) -> None:
        for loop in [loop for loop in self._by_loop if loop.is_closed()]:
            del self._by_loop[loop]

    async def _keep(
        self, loop: asyncio.AbstractEventLoop, client: redis.asyncio.Redis
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._by_loop.get(loop)
                if entry is not None and entry.client is client:
                    del self._by_loop[loop]
            with contextlib.suppress(*_ERRORS):
                await client.aclose()


# ---- how a command reaches the server -------------------------------------------------------


class RedisTransport:
    """The clients under ``RedisBackend``, and the one way its commands reach them.

    Sync calls share one ``redis.Redis`` across threads; async calls use the running
    loop's client. Every error of the store or the network is raised as ``BackendError``,
    naming the operation and the URL, never the password.
    """

    def _setup(
        self,
        client: redis.Redis,
        async_client_factory: AsyncClientFactory,
        *,
        display_url: str,
        secrets: list[str],
    ) -> None:
        self._client = client
        self._async_clients = _LoopClients(async_client_factory)
        self._display_url = display_url
        self._secrets = secrets

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._display_url!r})"

    def _error(self, operation: str, exc: BaseException) -> BackendError:
        detail = _scrub(f"{type(exc).__name__}: {exc}", self._secrets)[:500]
        message = f"Redis {operation} failed on {self._display_url}: {detail}"
        error = BackendError(message)
        error.__cause__ = exc
        return error

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def _call(self, operation: str, command: Command) -> object:
        client = self._client
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc

    def _pipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        client = self._client
        if len(commands) == 1 and not transaction and not strict:
            # One command needs no pipeline (a third of a cache write's cost); the server's
            # refusal of it is its slot's answer, as raise_on_error=False gives.
            try:
                return [client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return [exc]
            except _ERRORS as exc:
                raise self._error(operation, exc) from exc
        try:
            with client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                return list(pipe.execute(raise_on_error=strict))
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc

    def _run(self, operation: str, commands: Sequence[Command]) -> object:
        if len(commands) == 1:
            return self._call(operation, commands[0])
        return self._pipe(operation, commands, transaction=True, strict=True)[-1]

    def _compare_and_delete(self, key: str, value: bytes) -> object:
        def compare_and_delete(pipe: redis.client.Pipeline) -> None:
            if pipe.execute_command("GET", key) == value:  # type: ignore[no-untyped-call]
                pipe.multi()
                pipe.execute_command("UNLINK", key)  # type: ignore[no-untyped-call]

        try:
            return self._client.transaction(compare_and_delete, key)
        except _ERRORS as exc:
            raise self._error("delete_if_equals", exc) from exc

    def _close_client(self) -> None:
        try:
            self._client.close()
        except _ERRORS as exc:
            raise self._error("close", exc) from exc

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def _acall(self, operation: str, command: Command) -> object:
        client = self._async_clients.current()
        if client is None:
            client = await self._async_clients.get()
        try:
            return await client.execute_command(*command)  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc

    async def _apipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        client = self._async_clients.current()
        if client is None:
            client = await self._async_clients.get()
        if len(commands) == 1 and not transaction and not strict:
            # as in _pipe: one command needs no pipeline
            try:
                return [await client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return [exc]
            except _ERRORS as exc:
                raise self._error(operation, exc) from exc
        try:
            async with client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=strict))
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc

    async def _arun(self, operation: str, commands: Sequence[Command]) -> object:
        if len(commands) == 1:
            return await self._acall(operation, commands[0])
        return (await self._apipe(operation, commands, transaction=True, strict=True))[-1]

    async def _acompare_and_delete(self, key: str, value: bytes) -> object:
        async def compare_and_delete(pipe: redis.asyncio.client.Pipeline) -> None:
            if await pipe.execute_command("GET", key) == value:
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.execute_command("UNLINK", key)

        client = await self._async_clients.get()
        try:
            return await client.transaction(compare_and_delete, key)
        except _ERRORS as exc:
            raise self._error("delete_if_equals", exc) from exc

    async def _aclose_client(self) -> None:
        try:
            await self._async_clients.aclose()
        except _ERRORS as exc:
            raise self._error("close", exc) from exc

    # ---- shared by both halves ------------------------------------------------------------

    def _slot(self, op: Op, raw: object) -> OpResult:
        if isinstance(raw, BaseException):
            return self._error(op.name, raw)
        try:
            return op_result(op, raw)
        except BackendError as exc:
            return exc

    def _checked(self, operation: str, raw: object) -> int:
        if isinstance(raw, BaseException):
            raise self._error(operation, raw) from raw
        return as_int(raw)
