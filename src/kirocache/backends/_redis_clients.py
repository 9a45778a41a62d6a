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
from datetime import timedelta
from typing import Any, Final, NoReturn

import redis
import redis.asyncio
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from kirocache._values.types import option_seconds
from kirocache.backends._config import (
    ENV_REDIS_URL,
    RedisURL,
    parse_db,
    parse_redis_url,
    settings_from_env,
)
from kirocache.backends._limits import not_text
from kirocache.backends._protocol import Op, OpResult
from kirocache.backends._redis_commands import Command, as_int, op_result
from kirocache.backends._redis_connections import (
    CONNECTION_CLASSES,
    AsyncHeld,
    AsyncPool,
    AsyncRetry,
    HeldConnections,
    SyncPool,
    SyncRetry,
    begin_call,
    bounded,
    end_call,
    packed,
    packed_many,
    turn_within,
)
from kirocache.backends._redis_errors import forget_secret_frames, is_outage, refusal, scrub
from kirocache.exceptions import (
    BackendError,
    CommandError,
    ConfigurationError,
)

__all__ = [
    "AsyncClientFactory",
    "RedisTransport",
    "call_timeouts",
    "check_pool",
    "open_clients",
    "resolve",
    "shown_url",
    "timeouts",
]

AsyncClientFactory = Callable[[], "redis.asyncio.Redis"]

_DEFAULT_URL: Final = "redis://localhost:6379/0"
# One call's deadline by default: connect, handshake and reply together.
DEFAULT_DEADLINE: Final = 0.25
# Backoff between retries of a refused or reset connection: a few tens of milliseconds, so
# a restarting server is ridden over without stacking seconds of sleep under a request.
_BACKOFF_BASE: Final = 0.025
_BACKOFF_CAP: Final = 0.5
# Errors of the store or the network; asyncio.TimeoutError is not an OSError before 3.11.
# UnicodeEncodeError: redis-py encodes a key with a lone surrogate while packing the
# command, before anything is sent; it is the caller's InvalidKeyError.
_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError, UnicodeEncodeError)
# What redis-py's blocking pools raise when no connection came free in time.
_POOL_WAIT: Final = "No connection available."
# The reads sent on held connections (see HeldConnections): read-only, so one sent again
# the usual way after its connection broke does no harm.
_HOT_READS: Final = frozenset({"GET", "MGET"})
# What an async hot read returns when no held connection was free: take the usual way.
_NOT_HELD: Final = object()


# ---- settings: arguments, then the URL, then the environment (no I/O) -----------------------


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


def call_timeouts(
    settings: dict[str, Any],
    parsed: RedisURL,
    timeout: float | timedelta | None,
    connect_timeout: float | timedelta | None,
    socket_timeout: float | timedelta | None,
) -> float:
    """A call's deadline; the steps' own timeouts go into ``settings`` (capped by it).

    The deadline is ``timeout``; without one, ``socket_timeout`` (what bounded a call
    before there was a deadline), else 0.25 s. A step without its own timeout waits at most
    the deadline, and never beyond what is left of it (see ``_redis_connections``).

    Raises:
        ConfigurationError: A timeout is not a positive number of seconds.
    """
    deadline, reply, connect = timeouts(timeout, connect_timeout, socket_timeout)
    settings["socket_timeout"] = reply
    if parsed.scheme != "unix":
        settings["socket_connect_timeout"] = connect
    return deadline


def timeouts(
    timeout: float | timedelta | None,
    connect_timeout: float | timedelta | None,
    socket_timeout: float | timedelta | None,
) -> tuple[float, float, float]:
    """``(deadline, reply cap, connect cap)`` in seconds, for every Redis backend.

    The deadline is ``timeout``; without one, ``socket_timeout`` (what bounded a call
    before there was a deadline), else 0.25 s. A cap not given is the deadline.

    Raises:
        ConfigurationError: A timeout is not a positive number of seconds.
    """
    reply = None if socket_timeout is None else option_seconds(socket_timeout, "socket_timeout")
    if timeout is not None:
        deadline = option_seconds(timeout, "timeout")
    else:
        deadline = reply if reply is not None else DEFAULT_DEADLINE
    connect = (
        deadline if connect_timeout is None else option_seconds(connect_timeout, "connect_timeout")
    )
    return deadline, (deadline if reply is None else reply), connect


def check_pool(max_connections: object, retries: int) -> None:
    """Refuse a pool size or retry count no Redis backend can use.

    Raises:
        ConfigurationError: ``max_connections`` is not an int >= 1, or ``retries`` < 0.
    """
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        msg = f"max_connections must be an int, got {max_connections!r}"
        raise ConfigurationError(msg)
    if max_connections < 1 or isinstance(retries, bool) or retries < 0:
        msg = "max_connections must be >= 1 and retries >= 0"
        raise ConfigurationError(msg)


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
    scheme: str,
    settings: Mapping[str, Any],
    *,
    max_connections: int,
    wait: float,
    retries: int,
    deadline: float | None = None,
) -> tuple[redis.Redis, AsyncClientFactory]:
    """The sync client, and a factory of asyncio clients; each with its own bounded pool.

    Args:
        scheme: The URL's scheme, which picks the connection class.
        settings: The connection's options, as redis-py's pools take them.
        max_connections: Pool size, for the sync pool and for each event loop's pool.
        wait: Seconds a call waits for a free pooled connection.
        retries: Retries of a refused or reset connection.
        deadline: The call's deadline, which bounds every async call as a whole.

    Returns:
        The sync client and the factory.
    """
    async_settings = dict(settings)
    if deadline is not None:
        # redis-py bounds each asyncio step with its own asyncio timeout, which cancels a
        # read whose reply arrived while the loop was held up; a step's cap no shorter than
        # the deadline adds nothing but that race, so the deadline alone bounds it.
        for name in ("socket_timeout", "socket_connect_timeout"):
            cap = async_settings.get(name)
            if cap is not None and cap >= deadline:
                async_settings[name] = None
    sync_class, async_class = CONNECTION_CLASSES[scheme]
    backoff = ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE)
    sync_pool = SyncPool(  # type: ignore[no-untyped-call]
        max_connections=max_connections,
        timeout=wait,
        connection_class=sync_class,
        retry=SyncRetry(backoff, retries, supported_errors=(RedisConnectionError,)),
        **settings,
    )

    def async_client() -> redis.asyncio.Redis:
        # Built inside the loop that will use it: asyncio pools bind to their loop. A plain
        # pool: the transport's gate (one per loop, ``max_connections`` turns, FIFO) admits
        # no more callers than it has connections, so its checkout never waits, and costs
        # a list pop where the blocking pool's costs an asyncio.Condition and a timeout.
        pool = AsyncPool(
            max_connections=max_connections,
            connection_class=async_class,
            retry=AsyncRetry(backoff, retries, supported_errors=(RedisConnectionError,)),
            **async_settings,
        )
        return redis.asyncio.Redis.from_pool(pool)

    return redis.Redis.from_pool(sync_pool), async_client


# ---- one asyncio client per event loop ------------------------------------------------------


@dataclass(slots=True)
class _LoopClient:
    client: redis.asyncio.Redis
    keeper: AsyncGenerator[None, None]
    # The loop's queue for pooled connections (None for injected clients): FIFO, where
    # redis-py's pool lets a task that just released a connection take it back before the
    # tasks already waiting, so that under load some callers wait out the whole timeout.
    gate: asyncio.Semaphore | None
    # The hot reads' held connections (see AsyncHeld), and how many callers the gate let in.
    held: AsyncHeld | None = None
    admitted: int = 0


class _LoopClients:
    """One ``redis.asyncio.Redis`` per running event loop, closed when the loop shuts down.

    An asyncio client's connections belong to the loop that opened them. Each loop gets
    its own client, and beside it an async generator started on that loop: asyncio.run()
    and Runner.close() call ``loop.shutdown_asyncgens()`` before closing the loop, which
    runs the generator's ``finally`` and so closes the client's connections on its loop.
    """

    def __init__(self, factory: AsyncClientFactory, gate_size: int | None) -> None:
        self._factory = factory
        self._gate_size = gate_size
        self._lock = threading.Lock()
        # Keyed strongly: the client's connections reference their loop, so a weak key
        # would never die anyway. Entries leave when their loop shuts down or is closed.
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopClient] = {}

    def current(self) -> _LoopClient | None:
        """The running loop's client if it has one yet: the hot path, without an await."""
        return self._by_loop.get(asyncio.get_running_loop())

    async def get(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is not None:
            return entry
        with self._lock:
            self._drop_closed_loops()
            client = self._factory()
            size = self._gate_size
            gate = None if size is None else asyncio.Semaphore(size)
            entry = _LoopClient(client, self._keep(loop, client), gate)
            pool = client.connection_pool if type(client) is redis.asyncio.Redis else None
            if size is not None and isinstance(pool, AsyncPool):
                entry.held = AsyncHeld(pool, size)
            self._by_loop[loop] = entry
        # Nothing in the generator awaits before its yield, so no task can slip in here.
        await anext(entry.keeper)
        return entry

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
        pool_size: int | None = None,
        pool_wait: float = 0.0,
        deadline: float | None = None,
    ) -> None:
        self._client = client
        pool = client.connection_pool if type(client) is redis.Redis else None
        # The hot reads hold up to half the pool's connections (see HeldConnections).
        self._held = (
            HeldConnections(pool, pool_size)
            if isinstance(pool, SyncPool) and pool_size is not None and pool_size >= 2
            else None
        )
        self._async_clients = _LoopClients(async_client_factory, pool_size)
        self._pool_wait = pool_wait
        self._deadline = deadline
        self._display_url = display_url
        self._secrets = secrets

    def __repr__(self) -> str:
        # never raises, even on a backend whose __init__ failed half way
        shown = getattr(self, "_display_url", None)
        return f"{type(self).__name__}({shown!r})" if shown else f"<{type(self).__name__}>"

    def _error(self, operation: str, exc: BaseException) -> BackendError:
        """``exc`` as the error a caller sees: an outage, a refused command, or a bad key.

        Raises:
            InvalidKeyError: ``exc`` is redis-py failing to encode a key (nothing was sent).
        """
        if isinstance(exc, UnicodeEncodeError):
            raise not_text(exc.object, exc) from None
        forget_secret_frames(exc, self._secrets)
        where = f"Redis {operation} on {self._display_url}"
        error = refusal(exc, where)
        if error is None:
            timed_out = isinstance(exc, (RedisTimeoutError, asyncio.TimeoutError))
            detail = scrub(f"{type(exc).__name__}: {exc}", self._secrets)[:500]
            if timed_out and self._deadline is not None and "deadline" not in detail:
                detail = f"{detail.rstrip(': ')} (the call's deadline is {self._deadline:g} s)"
            message = f"Redis {operation} failed on {self._display_url}: {detail}"
            error = BackendError(message) if is_outage(exc) else CommandError(message)
            error.timed_out = timed_out
        if isinstance(exc, RedisConnectionError) and str(exc) == _POOL_WAIT:
            # A busy client, not a down server: every pooled connection was in use for the
            # whole wait. That call fails; the breaker does not count it.
            error.outage = False
        error.__cause__ = exc
        return error

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def _call(self, operation: str, command: Command) -> object:
        held = self._held
        if held is not None and command[0] in _HOT_READS:
            begin_call(self._deadline)  # a connection opened for it is within the deadline
            try:
                connection = held.take()
            except _ERRORS as exc:
                end_call()
                raise self._error(operation, exc) from exc
            if connection is not None:
                return self._read_on(held, connection, operation, command)
            end_call()
        return self._call_pooled(operation, command)

    def _read_on(
        self, held: HeldConnections, connection: Any, operation: str, command: Command
    ) -> object:
        """A hot read on a held connection, in the call begun; a broken one goes the usual way."""
        try:
            connection.send_packed_command(packed(connection, command))
            reply = connection.read_response()
        except ResponseError as exc:  # the server's answer: the connection is sound
            held.put(connection)
            raise self._error(operation, exc) from exc
        except RedisConnectionError:
            # reset or closed while idle (a restarted server): redis-py's retries take over
            connection.disconnect()
            held.give_back(connection)
            return self._call_pooled(operation, command)
        except BaseException as exc:  # noqa: BLE001 - _drop raises it again
            self._drop(held, connection, operation, exc)
        finally:
            end_call()
        held.put(connection)
        return reply

    def _call_pooled(self, operation: str, command: Command) -> object:
        client, held = self._client, self._held
        if held is not None:
            held.enter_pooled()
        begin_call(self._deadline)
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()
            if held is not None:
                held.leave_pooled()

    def _pipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        client, held = self._client, self._held
        if held is not None:
            held.enter_pooled()
        begin_call(self._deadline)
        try:
            if len(commands) == 1 and not transaction and not strict:
                # One command needs no pipeline (a third of a cache write's cost); the
                # server's refusal of it is its slot's answer, as raise_on_error=False gives.
                try:
                    return [client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
                except ResponseError as exc:
                    return [exc]
            with client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                return list(pipe.execute(raise_on_error=strict))
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            end_call()
            if held is not None:
                held.leave_pooled()

    def _pipe_held(self, operation: str, commands: Sequence[Command]) -> list[object] | None:
        """Commands (no transaction) in one packed write on a held connection.

        Their replies as the server gave them (a refused command's ``ResponseError`` in its
        slot), without redis-py's pipeline: its bookkeeping and its reply callbacks per
        command were the larger part of a small batch's time. ``None``: no held connection
        was free; the caller then sends them the usual way (``_pipe``).

        A held connection the server closed or reset while it was idle (a restart) reads
        as EOF before anything is sent, and is opened afresh for the batch. Once the write
        has started, a broken connection fails the batch whatever was answered: the server
        may have run some or all of the commands without a reply getting back, so they are
        never sent again (an ``INCRBY`` would run twice).

        Raises:
            BackendError: The round trip failed (the connection is disconnected).
        """
        held = self._held
        if held is None:
            return None
        begin_call(self._deadline)
        try:
            connection = held.take()
        except _ERRORS as exc:
            end_call()
            raise self._error(operation, exc) from exc
        if connection is None:
            end_call()
            return None
        try:
            stale = connection.can_read(timeout=0)  # EOF, a reset or stray bytes: not sound
        except RedisConnectionError:
            stale = True
        except BaseException as exc:  # noqa: BLE001 - _drop raises it again
            end_call()
            self._drop(held, connection, operation, exc)
        if stale:
            connection.disconnect()  # the send below connects it again
        replies: list[object] = []
        try:
            connection.send_packed_command(packed_many(connection, commands))
            read = connection.read_response
            for _ in commands:
                try:
                    replies.append(read())
                except ResponseError as exc:  # noqa: PERF203 - that command's answer: the others still run
                    replies.append(exc)
        except BaseException as exc:  # noqa: BLE001 - _drop raises it again
            self._drop(held, connection, operation, exc)
        finally:
            end_call()
        held.put(connection)
        return replies

    def _drop(
        self, held: HeldConnections, connection: Any, operation: str, exc: BaseException
    ) -> NoReturn:
        """A held connection a call broke: disconnected, given back, and ``exc`` raised.

        Raised as the backend's error when it is a Redis or socket error, else as it is.
        """
        connection.disconnect()
        held.give_back(connection)
        if isinstance(exc, _ERRORS):
            raise self._error(operation, exc) from exc
        raise exc

    def _run(self, operation: str, commands: Sequence[Command]) -> object:
        if len(commands) == 1:
            return self._call(operation, commands[0])
        return self._pipe(operation, commands, transaction=True, strict=True)[-1]

    def _compare_and_delete(self, key: str, value: bytes) -> object:
        def compare_and_delete(pipe: redis.client.Pipeline) -> None:
            if pipe.execute_command("GET", key) == value:  # type: ignore[no-untyped-call]
                pipe.multi()
                pipe.execute_command("UNLINK", key)  # type: ignore[no-untyped-call]

        held = self._held
        if held is not None:
            held.enter_pooled()
        begin_call(self._deadline)
        try:
            return self._client.transaction(compare_and_delete, key)
        except _ERRORS as exc:
            raise self._error("delete_if_equals", exc) from exc
        finally:
            end_call()
            if held is not None:
                held.leave_pooled()

    def _close_client(self) -> None:
        if self._held is not None:
            self._held.release_all()
        try:
            self._client.close()
        except _ERRORS as exc:
            raise self._error("close", exc) from exc

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def _aentry(self) -> _LoopClient:
        entry = self._async_clients.current()
        return entry if entry is not None else await self._async_clients.get()

    async def _admit(self, entry: _LoopClient, operation: str) -> None:
        """Wait for a turn at the loop's connections, first come first served, bounded.

        Raises:
            BackendError: No turn within the pool wait (``outage`` false: the client is
                busy, the server is not down).
        """
        gate = entry.gate
        if gate is None:
            return
        if gate.locked():
            try:
                await turn_within(gate, self._pool_wait)
            except asyncio.TimeoutError as exc:
                pool_wait = RedisConnectionError(_POOL_WAIT)
                pool_wait.__cause__ = exc
                raise self._error(operation, pool_wait) from exc
        else:
            await gate.acquire()  # a free turn: taken at once, without suspending
        entry.admitted += 1

    @staticmethod
    def _leave(entry: _LoopClient) -> None:
        gate = entry.gate
        if gate is not None:
            entry.admitted -= 1
            gate.release()

    async def _pooled(self, entry: _LoopClient) -> None:
        """Make room in the pool for an admitted caller taking the usual way."""
        held = entry.held
        if held is not None:
            await held.make_room(entry.admitted)

    async def _acall(self, operation: str, command: Command) -> object:
        entry = await self._aentry()
        await self._admit(entry, operation)
        try:
            held = entry.held
            if held is not None and command[0] in _HOT_READS:
                reply = await self._aread_held(held, operation, command)
                if reply is not _NOT_HELD:
                    return reply
            await self._pooled(entry)
            async with bounded(self._deadline):
                return await entry.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise self._error(operation, exc) from exc
        finally:
            self._leave(entry)

    async def _aread_held(self, held: AsyncHeld, operation: str, command: Command) -> object:
        """A hot read on a held connection (the twin of ``_read_on``); ``_NOT_HELD``: none.

        Raises:
            BackendError: The read failed (a connection broken while idle is not a failure:
                the read then takes the usual way, with redis-py's retries).
        """
        connection = None
        try:
            async with bounded(self._deadline):
                connection = await held.take()
                if connection is None:
                    return _NOT_HELD
                await connection.send_packed_command(packed(connection, command))
                reply = await connection.read_response()
        except ResponseError as exc:  # the server's answer: the connection is sound
            held.put(connection)
            raise self._error(operation, exc) from exc
        except BaseException as exc:
            if connection is not None:
                await connection.disconnect(nowait=True)
                await held.give_back(connection)
                if isinstance(exc, RedisConnectionError) and not isinstance(exc, RedisTimeoutError):
                    return _NOT_HELD  # reset or closed while idle (a restarted server)
            if isinstance(exc, _ERRORS):
                raise self._error(operation, exc) from exc
            raise
        held.put(connection)
        return reply

    async def _apipe(
        self, operation: str, commands: Sequence[Command], *, transaction: bool, strict: bool
    ) -> list[object]:
        entry = await self._aentry()
        await self._admit(entry, operation)
        try:
            await self._pooled(entry)
            return await self._apipe_on(entry.client, operation, commands, transaction, strict)
        finally:
            self._leave(entry)

    async def _apipe_on(
        self,
        client: redis.asyncio.Redis,
        operation: str,
        commands: Sequence[Command],
        transaction: bool,
        strict: bool,
    ) -> list[object]:
        try:
            async with bounded(self._deadline):
                if len(commands) == 1 and not transaction and not strict:
                    # as in _pipe: one command needs no pipeline
                    try:
                        return [await client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
                    except ResponseError as exc:
                        return [exc]
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

        entry = await self._aentry()
        await self._admit(entry, "delete_if_equals")
        try:
            await self._pooled(entry)
            async with bounded(self._deadline):
                return await entry.client.transaction(compare_and_delete, key)
        except _ERRORS as exc:
            raise self._error("delete_if_equals", exc) from exc
        finally:
            self._leave(entry)

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
