"""RedisBackend: redis-py's sync and asyncio clients from one URL and one set of options."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from kirocache._config import (
    ENV_REDIS_URL,
    RedisURL,
    mask_url,
    parse_db,
    parse_redis_url,
    settings_from_env,
)
from kirocache._types import to_seconds, ttl_seconds
from kirocache.backends._protocol import BackendStats, Op, OpResult
from kirocache.exceptions import BackendError, ConfigurationError, InvalidTTLError

if TYPE_CHECKING:
    import ssl

    from typing_extensions import Self

__all__ = ["RedisBackend"]

Command = tuple[Any, ...]
AsyncClientFactory = Callable[[], "redis.asyncio.Redis"]

_DEFAULT_URL: Final = "redis://localhost:6379/0"
# Backoff between retries of a refused or reset connection: a few tens of milliseconds, so
# a restarting server is ridden over without stacking seconds of sleep under a request.
_BACKOFF_BASE: Final = 0.025
_BACKOFF_CAP: Final = 0.5
# Errors of the store or the network; asyncio.TimeoutError is not an OSError before 3.11.
_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)


# ---- pure helpers shared by the sync and async halves (no I/O) ----------------------------


def _px(ttl: float | None) -> int | None:
    """Milliseconds for a TTL in seconds (at least 1), ``None`` for no expiry."""
    seconds = ttl_seconds(ttl)
    return None if seconds is None else max(1, round(seconds * 1000))


def _decode_ttl(pttl: object) -> float | None:
    """PTTL's answer as the protocol's TTL: ``None`` absent, ``inf`` no expiry, else seconds."""
    millis = _as_int(pttl)
    if millis == -2:
        return None
    if millis == -1:
        return math.inf
    return millis / 1000


def _as_int(raw: object) -> int:
    if isinstance(raw, (int, bytes, str)):
        return int(raw)
    msg = f"unexpected reply from Redis: {raw!r:.80}"
    raise BackendError(msg)


def _as_bool(raw: object) -> bool:
    # redis-py answers SET with True/None, PEXPIRE with a bool and EXISTS/UNLINK with counts.
    return bool(raw)


def _as_bytes(raw: object) -> bytes | None:
    if raw is None or isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode()
    msg = f"unexpected reply from Redis: {raw!r:.80}"
    raise BackendError(msg)


def _decode_key(raw: object) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _scan_page(raw: object) -> tuple[int, list[bytes]]:
    cursor, keys = cast("tuple[int, list[bytes]]", raw)  # redis-py parses SCAN so
    return int(cursor), list(keys)


def _set_command(key: str, value: bytes, ttl: float | None, *, nx: bool) -> Command:
    px = _px(ttl)
    command: Command = ("SET", key, value) if px is None else ("SET", key, value, "PX", px)
    return (*command, "NX") if nx else command


def _incr_commands(key: str, amount: int, ttl: float | None) -> list[Command]:
    px = _px(ttl)
    if px is None:
        return [("INCRBY", key, amount)]
    # SET NX creates the counter with its TTL only when absent; INCRBY keeps that TTL. Run
    # in MULTI, so a TTL applies on create only (PEXPIRE NX would also hit old counters).
    return [("SET", key, b"0", "PX", px, "NX"), ("INCRBY", key, amount)]


def _expire_commands(key: str, ttl: float) -> list[Command]:
    px = _px(ttl)
    if px is None:
        return [("PERSIST", key), ("EXISTS", key)]
    return [("PEXPIRE", key, px)]


def _members(members: Sequence[str]) -> list[str]:
    if isinstance(members, str):
        msg = "members must be a sequence of str, not a single str; wrap it in a list"
        raise TypeError(msg)
    return list(dict.fromkeys(members))


def _tag_add_commands(key: str, members: Sequence[str], ttl: float | None) -> list[Command]:
    """One MULTI adding ``members`` to the set at ``key`` whose TTL only grows.

    PEXPIRE GT alone cannot tell a set just created by SADD (no TTL yet) from an older set
    that never expires. So the members first go to a scratch set with the TTL, which
    RENAMENX moves to ``key`` only if ``key`` is absent; otherwise SADD adds them and
    PEXPIRE GT extends a shorter TTL. Inside MULTI no client ever sees the scratch key.
    """
    px = _px(ttl)
    unique = _members(members)
    if not unique:
        return []
    if px is None:
        return [("SADD", key, *unique), ("PERSIST", key)]
    scratch = f"{key}:~tag-add:{secrets.token_hex(8)}"
    return [
        ("SADD", scratch, *unique),
        ("PEXPIRE", scratch, px),
        ("RENAMENX", scratch, key),
        ("SADD", key, *unique),
        ("PEXPIRE", key, px, "GT"),
        ("UNLINK", scratch),
    ]


def _decode_members(raw: object) -> list[str]:
    if not isinstance(raw, (set, list)):
        msg = f"unexpected reply from Redis: {raw!r:.80}"
        raise BackendError(msg)
    return sorted(_decode_key(member) for member in raw)


def _deleted(replies: object) -> bool:
    """EXEC's replies of ``delete_if_equals``: ``[]`` when the value differed, else UNLINK's."""
    return isinstance(replies, list) and bool(replies) and _as_bool(replies[0])


# set_if: store ARGV[1] (PX ARGV[2], "" for none) if every key KEYS[i] holds what ARGV
# says: ARGV[2i+1] == "1" and its bytes ARGV[2i+2], or ARGV[2i+1] == "0" and absent. KEYS[1]
# is the key written, the others its guards. A script, so the compare and the write are
# one step and the op can share a pipeline with others (a WATCH transaction could not).
_SET_IF: Final = """
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if ARGV[2 * i + 1] == '1' then
    if held ~= ARGV[2 * i + 2] then return 0 end
  elseif held then
    return 0
  end
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""
# swap: SET ... GET, answering the old value (false when absent).
_SWAP: Final = """
if ARGV[2] == '' then
  return redis.call('SET', KEYS[1], ARGV[1], 'GET')
end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'GET')
"""
# tag_add as one step: SADD, then a new set gets the TTL (ARGV[1], "" for none) and an
# existing set's TTL only grows.
_TAG_ADD: Final = """
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
if ARGV[1] == '' then
  redis.call('PERSIST', KEYS[1])
else
  local left = redis.call('PTTL', KEYS[1])
  if created or (left >= 0 and left < tonumber(ARGV[1])) then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
end
return 1
"""


def _set_if_command(op: Op) -> Command:
    px = _px(op.ttl)
    checks = ((op.key, op.expected), *op.guards)
    keys = [key for key, _ in checks]
    states = [
        part
        for _, expected in checks
        for part in ((b"0", b"") if expected is None else (b"1", expected))
    ]
    return ("EVAL", _SET_IF, len(keys), *keys, op.value, b"" if px is None else px, *states)


def _swap_command(op: Op) -> Command:
    # SET ... GET as a script: redis-py's SET reply parser would turn the old value into a
    # bool unless it was called through its own set(get=True).
    px = _px(op.ttl)
    return ("EVAL", _SWAP, 1, op.key, op.value, b"" if px is None else px)


def _tag_add_op(op: Op) -> list[Command]:
    unique = _members(op.members)
    if not unique:
        return [("ECHO", b"1")]
    px = _px(op.ttl)
    return [("EVAL", _TAG_ADD, 1, op.key, b"" if px is None else px, *unique)]


_OP_COMMANDS: Final[Mapping[str, Callable[[Op], list[Command]]]] = {
    "set_if": lambda op: [_set_if_command(op)],
    "swap": lambda op: [_swap_command(op)],
    "tag_add": _tag_add_op,
    "tag_members": lambda op: [("SMEMBERS", op.key)],
    "get": lambda op: [("GET", op.key)],
    "set": lambda op: [_set_command(op.key, op.value, op.ttl, nx=op.nx)],
    "delete": lambda op: [("UNLINK", op.key)],
    "exists": lambda op: [("EXISTS", op.key)],
    "expire": lambda op: _expire_commands(op.key, math.inf if op.ttl is None else op.ttl),
    "incr": lambda op: _incr_commands(op.key, op.amount, op.ttl),
    "ttl": lambda op: [("PTTL", op.key)],
    "persist": lambda op: [("PERSIST", op.key)],
}


def _op_commands(op: Op) -> list[Command]:
    """The commands one ``Op`` becomes; the last one's reply is the op's answer."""
    build = _OP_COMMANDS.get(op.name)
    if build is None:
        msg = f"unknown operation {op.name!r}; expected one of {', '.join(_OP_COMMANDS)}"
        raise ConfigurationError(msg)
    return build(op)


def _op_result(op: Op, raw: object) -> OpResult:
    if op.name == "tag_members":
        return _decode_members(raw)
    if op.name in ("get", "swap"):
        return _as_bytes(raw)
    if op.name == "incr":
        return _as_int(raw)
    if op.name == "ttl":
        return _decode_ttl(raw)
    return _as_bool(raw)


def _plan(ops: Sequence[Op]) -> tuple[list[Command], list[int]]:
    """All commands of ``ops`` in order, and where each op's answering command sits."""
    commands: list[Command] = []
    answers: list[int] = []
    for op in ops:
        commands.extend(_op_commands(op))
        answers.append(len(commands) - 1)
    return commands, answers


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float, str)) else None


def _stats_from_info(info: Mapping[str, Any], keys: int) -> BackendStats:
    uptime = info.get("uptime_in_seconds")
    return BackendStats(
        backend="redis",
        keys=keys,
        used_memory=_int_or_none(info.get("used_memory")),
        max_memory=_int_or_none(info.get("maxmemory")),
        connected_clients=_int_or_none(info.get("connected_clients")),
        evictions=_int_or_none(info.get("evicted_keys")),
        expired=_int_or_none(info.get("expired_keys")),
        hits=_int_or_none(info.get("keyspace_hits")),
        misses=_int_or_none(info.get("keyspace_misses")),
        uptime_seconds=None if uptime is None else float(uptime),
        extra={k: info[k] for k in ("redis_version", "maxmemory_policy", "role") if k in info},
    )


def _info_of(raw: object) -> Mapping[str, Any]:
    # fakeredis has no INFO: its error leaves the fields unknown instead of failing stats().
    return raw if isinstance(raw, Mapping) else {}


def _duration(value: float | timedelta, name: str, *, allow_zero: bool = False) -> float:
    try:
        seconds = to_seconds(value, name=name)
    except InvalidTTLError as exc:
        raise ConfigurationError(str(exc)) from None
    if (seconds == 0 and not allow_zero) or math.isinf(seconds):
        msg = f"{name} must be a finite number of seconds greater than 0, got {value!r}"
        raise ConfigurationError(msg)
    return seconds


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


_CONNECTION_CLASSES: Final[Mapping[str, tuple[type[Any], type[Any]]]] = {
    "redis": (redis.Connection, redis.asyncio.Connection),
    "rediss": (redis.SSLConnection, redis.asyncio.SSLConnection),
    "unix": (redis.UnixDomainSocketConnection, redis.asyncio.UnixDomainSocketConnection),
}


def _resolve(
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


def _display_url(parsed: RedisURL, username: str | None, password: str | None, db: int) -> str:
    userinfo = ""
    if username or password:
        userinfo = f"{username or ''}{':***' if password else ''}@"
    if parsed.scheme == "unix":
        return f"unix://{userinfo}{parsed.path}?db={db}"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{userinfo}{host}:{parsed.port}/{db}"


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


# ---- the backend ----------------------------------------------------------------------------


class RedisBackend:
    """A backend on Redis through redis-py, serving sync and async code from one object.

    Settings come from the arguments first, then the URL, then the environment
    (``REDIS_URL`` when ``url`` is ``None``, ``REDIS_PASSWORD`` when neither argument nor
    URL gives a password, ``REDIS_DB`` likewise for the database).

    Sync calls share one ``redis.Redis`` and its bounded pool across threads; async calls
    use one ``redis.asyncio.Redis`` per event loop (each with its own bounded pool), so one
    backend works across repeated ``asyncio.run()`` calls and in threads running their own
    loops. A connection refused or reset is retried ``retries`` times with exponential
    backoff and jitter; a timeout is not retried, so a hanging server costs one timeout per
    call (the cache's circuit breaker takes it from there).

    Every redis-py error is raised as :class:`~kirocache.exceptions.BackendError`, chained
    from the original; no message, repr or log line contains the password.

    Args:
        url: ``redis://[user[:password]@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix://[user[:password]@]/path/to.sock[?db=N]``.
        password: Password (overrides the URL's).
        username: ACL user name (overrides the URL's).
        db: Database number (overrides the URL's).
        max_connections: Pool size, for the sync pool and for each event loop's pool.
        pool_timeout: How long a call waits for a free pooled connection.
        connect_timeout: Seconds (or a timedelta) to open a connection.
        socket_timeout: Seconds (or a timedelta) to wait for a reply.
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
        max_connections: int = 50,
        pool_timeout: float | timedelta = 1.0,
        connect_timeout: float | timedelta = 0.25,
        socket_timeout: float | timedelta = 0.5,
        retries: int = 2,
        health_check_interval: float | timedelta = 30,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: ssl.VerifyMode | Literal["required", "optional", "none"] = "required",
        client_name: str | None = None,
    ) -> None:
        parsed, settings = _resolve(url, password, username, db, client_name)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            msg = f"max_connections must be an int, got {max_connections!r}"
            raise ConfigurationError(msg)
        if max_connections < 1 or isinstance(retries, bool) or retries < 0:
            msg = "max_connections must be >= 1 and retries >= 0"
            raise ConfigurationError(msg)
        settings["socket_timeout"] = _duration(socket_timeout, "socket_timeout")
        settings["health_check_interval"] = _duration(
            health_check_interval, "health_check_interval", allow_zero=True
        )
        if parsed.scheme != "unix":
            settings["socket_connect_timeout"] = _duration(connect_timeout, "connect_timeout")
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
        sync_class, async_class = _CONNECTION_CLASSES[parsed.scheme]
        wait = _duration(pool_timeout, "pool_timeout")
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

        secret = settings["password"]
        self._setup(
            redis.Redis.from_pool(sync_pool),
            async_client,
            display_url=_display_url(parsed, settings["username"], secret, settings["db"]),
            secrets=[s for s in (secret, parsed.password) if s],
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
            ConfigurationError: The URL or an option is invalid.
        """
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

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None`` (GET)."""
        return _as_bytes(self._call("get", ("GET", key)))

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (``SET [PX] [NX]``); returns whether it was stored."""
        return _as_bool(self._call("set", _set_command(key, value, ttl, nx=nx)))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (UNLINK); returns whether it existed."""
        return _as_bool(self._call("delete", ("UNLINK", key)))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (EXISTS)."""
        return _as_bool(self._call("exists", ("EXISTS", key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` where absent (MGET)."""
        if not keys:
            return []
        raw = self._call("get_many", ("MGET", *keys))
        return [_as_bytes(value) for value in raw]  # type: ignore[attr-defined]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item (MSET, or one MULTI of SET PX when there is a TTL)."""
        if not items:
            return
        if _px(ttl) is None:
            self._call("set_many", ("MSET", *(x for item in items.items() for x in item)))
            return
        commands = [_set_command(key, value, ttl, nx=False) for key, value in items.items()]
        self._pipe("set_many", commands, transaction=True, strict=True)

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` (UNLINK); returns how many existed."""
        if not keys:
            return 0
        return _as_int(self._call("delete_many", ("UNLINK", *keys)))

    def ttl(self, key: str) -> float | None:
        """Seconds left (PTTL): ``None`` if absent, ``math.inf`` without expiry."""
        return _decode_ttl(self._call("ttl", ("PTTL", key)))

    def expire(self, key: str, ttl: float) -> bool:
        """Set a new TTL (PEXPIRE); returns whether the key existed."""
        return _as_bool(self._run("expire", _expire_commands(key, ttl)))

    def persist(self, key: str) -> bool:
        """Remove the TTL of ``key`` (PERSIST); returns whether one was removed."""
        return _as_bool(self._call("persist", ("PERSIST", key)))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """INCRBY ``amount``; with ``ttl``, in one MULTI with PEXPIRE NX."""
        return _as_int(self._run("incr", _incr_commands(key, amount, ttl)))

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield keys matching ``pattern`` (SCAN MATCH COUNT)."""
        cursor = 0
        while True:
            raw = self._call("scan", ("SCAN", cursor, "MATCH", pattern, "COUNT", count))
            cursor, keys = _scan_page(raw)
            for key in keys:
                yield _decode_key(key)
            if cursor == 0:
                return

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete keys matching ``pattern``, SCAN page by page with UNLINK; returns the count."""
        cursor, deleted = 0, 0
        while True:
            raw = self._call(
                "delete_pattern", ("SCAN", cursor, "MATCH", pattern, "COUNT", batch_size)
            )
            cursor, keys = _scan_page(raw)
            if keys:
                deleted += _as_int(self._call("delete_pattern", ("UNLINK", *keys)))
            if cursor == 0:
                return deleted

    def tag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Add ``members`` to the set at ``key`` (SADD); its TTL becomes at least ``ttl``.

        One MULTI: a new set gets ``ttl``, an existing one keeps a longer TTL (PEXPIRE GT),
        and ``ttl=None`` makes the set persistent.
        """
        commands = _tag_add_commands(key, members, ttl)
        if commands:
            self._pipe("tag_add", commands, transaction=True, strict=True)

    def tag_members(self, key: str) -> list[str]:
        """The members of the set at ``key`` (SMEMBERS), decoded and sorted."""
        return _decode_members(self._call("tag_members", ("SMEMBERS", key)))

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """Remove ``members`` from the set at ``key`` (SREM); returns how many were in it."""
        unique = _members(members)
        if not unique:
            return 0
        return _as_int(self._call("tag_remove", ("SREM", key, *unique)))

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``: WATCH and GET, then MULTI/UNLINK/EXEC.

        A transaction rather than a Lua script, so it runs wherever EVAL is missing or
        disabled (fakeredis without lupa, locked-down servers); a write to ``key`` between
        GET and EXEC aborts the EXEC and redis-py runs the check again.
        """

        def compare_and_delete(pipe: redis.client.Pipeline) -> None:
            if pipe.execute_command("GET", key) == value:  # type: ignore[no-untyped-call]
                pipe.multi()
                pipe.execute_command("UNLINK", key)  # type: ignore[no-untyped-call]

        try:
            replies = self._client.transaction(compare_and_delete, key)
        except _ERRORS as exc:
            raise self._error("delete_if_equals", exc) from exc
        return _deleted(replies)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in one pipeline (MULTI/EXEC with ``transaction``).

        A failing op leaves a ``BackendError`` in its slot and the others still run.
        """
        commands, answers = _plan(ops)
        if not commands:
            return []
        raw = self._pipe("execute", commands, transaction=transaction, strict=False)
        return [self._slot(op, raw[at]) for op, at in zip(ops, answers, strict=True)]

    def ping(self) -> float:
        """PING; returns the round trip in seconds."""
        start = time.perf_counter()
        self._call("ping", ("PING",))
        return time.perf_counter() - start

    def stats(self) -> BackendStats:
        """INFO and DBSIZE as :class:`BackendStats` (``backend="redis"``)."""
        info, keys = self._pipe("stats", [("INFO",), ("DBSIZE",)], transaction=False, strict=False)
        return _stats_from_info(_info_of(info), self._checked("stats", keys))

    def close(self) -> None:
        """Close the sync client's pool; the backend reconnects if used again."""
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

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        return _as_bytes(await self._acall("get", ("GET", key)))

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async :meth:`set`."""
        return _as_bool(await self._acall("set", _set_command(key, value, ttl, nx=nx)))

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return _as_bool(await self._acall("delete", ("UNLINK", key)))

    async def aexists(self, key: str) -> bool:
        """Async :meth:`exists`."""
        return _as_bool(await self._acall("exists", ("EXISTS", key)))

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        if not keys:
            return []
        raw = await self._acall("get_many", ("MGET", *keys))
        return [_as_bytes(value) for value in raw]  # type: ignore[attr-defined]

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async :meth:`set_many`."""
        if not items:
            return
        if _px(ttl) is None:
            await self._acall("set_many", ("MSET", *(x for item in items.items() for x in item)))
            return
        commands = [_set_command(key, value, ttl, nx=False) for key, value in items.items()]
        await self._apipe("set_many", commands, transaction=True, strict=True)

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async :meth:`delete_many`."""
        if not keys:
            return 0
        return _as_int(await self._acall("delete_many", ("UNLINK", *keys)))

    async def attl(self, key: str) -> float | None:
        """Async :meth:`ttl`."""
        return _decode_ttl(await self._acall("ttl", ("PTTL", key)))

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async :meth:`expire`."""
        return _as_bool(await self._arun("expire", _expire_commands(key, ttl)))

    async def apersist(self, key: str) -> bool:
        """Async :meth:`persist`."""
        return _as_bool(await self._acall("persist", ("PERSIST", key)))

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async :meth:`incr`."""
        return _as_int(await self._arun("incr", _incr_commands(key, amount, ttl)))

    async def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async :meth:`scan`."""
        cursor = 0
        while True:
            raw = await self._acall("scan", ("SCAN", cursor, "MATCH", pattern, "COUNT", count))
            cursor, keys = _scan_page(raw)
            for key in keys:
                yield _decode_key(key)
            if cursor == 0:
                return

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async :meth:`delete_pattern`."""
        cursor, deleted = 0, 0
        while True:
            raw = await self._acall(
                "delete_pattern", ("SCAN", cursor, "MATCH", pattern, "COUNT", batch_size)
            )
            cursor, keys = _scan_page(raw)
            if keys:
                deleted += _as_int(await self._acall("delete_pattern", ("UNLINK", *keys)))
            if cursor == 0:
                return deleted

    async def atag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Async :meth:`tag_add`."""
        commands = _tag_add_commands(key, members, ttl)
        if commands:
            await self._apipe("tag_add", commands, transaction=True, strict=True)

    async def atag_members(self, key: str) -> list[str]:
        """Async :meth:`tag_members`."""
        return _decode_members(await self._acall("tag_members", ("SMEMBERS", key)))

    async def atag_remove(self, key: str, members: Sequence[str]) -> int:
        """Async :meth:`tag_remove`."""
        unique = _members(members)
        if not unique:
            return 0
        return _as_int(await self._acall("tag_remove", ("SREM", key, *unique)))

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""

        async def compare_and_delete(pipe: redis.asyncio.client.Pipeline) -> None:
            if await pipe.execute_command("GET", key) == value:
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.execute_command("UNLINK", key)

        client = await self._async_clients.get()
        try:
            replies = await client.transaction(compare_and_delete, key)
        except _ERRORS as exc:
            raise self._error("delete_if_equals", exc) from exc
        return _deleted(replies)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async :meth:`execute`."""
        commands, answers = _plan(ops)
        if not commands:
            return []
        raw = await self._apipe("execute", commands, transaction=transaction, strict=False)
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
        return _stats_from_info(_info_of(info), self._checked("stats", keys))

    async def aclose(self) -> None:
        """Close the running event loop's client and its pool."""
        try:
            await self._async_clients.aclose()
        except _ERRORS as exc:
            raise self._error("close", exc) from exc

    # ---- shared by both halves ------------------------------------------------------------

    def _slot(self, op: Op, raw: object) -> OpResult:
        if isinstance(raw, BaseException):
            return self._error(op.name, raw)
        try:
            return _op_result(op, raw)
        except BackendError as exc:
            return exc

    def _checked(self, operation: str, raw: object) -> int:
        if isinstance(raw, BaseException):
            raise self._error(operation, raw) from raw
        return _as_int(raw)
