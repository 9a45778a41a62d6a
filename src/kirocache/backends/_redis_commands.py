"""The commands RedisBackend sends for each operation, and its replies decoded (no I/O).

The sync and async halves of ``RedisBackend`` (and ``TieredBackend`` on top of it) build
their commands and read their replies here, so the two halves cannot drift.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, cast

from redis.exceptions import NoScriptError

from kirocache._values.types import ttl_seconds
from kirocache.backends._limits import longest_ttl
from kirocache.backends._protocol import TOMBSTONE_PREFIX, BackendStats, Op, OpResult
from kirocache.exceptions import BackendError, ConfigurationError

__all__ = [
    "Command",
    "as_bool",
    "as_bytes",
    "as_bytes_list",
    "as_int",
    "decode_key",
    "decode_members",
    "decode_ttl",
    "digest",
    "exec_deleted",
    "expire_commands",
    "incr_commands",
    "info_of",
    "op_result",
    "plan",
    "scan_page",
    "scripts_run",
    "set_command",
    "stats_from_info",
    "tag_add_commands",
    "to_px",
    "unique_members",
    "unloaded",
    "with_body",
]

Command = tuple[Any, ...]


def to_px(ttl: float | None) -> int | None:
    """Milliseconds for a TTL in seconds (at least 1), ``None`` for no expiry.

    Raises:
        InvalidTTLError: Not a TTL, or longer than ``MAX_TTL`` (before anything is sent).
    """
    seconds = ttl_seconds(ttl)
    return None if seconds is None else max(1, round(longest_ttl(seconds) * 1000))


def decode_ttl(pttl: object) -> float | None:
    """PTTL's answer as the protocol's TTL: ``None`` absent, ``inf`` no expiry, else seconds."""
    millis = as_int(pttl)
    if millis == -2:
        return None
    if millis == -1:
        return math.inf
    return millis / 1000


def as_int(raw: object) -> int:
    """An integer reply as an ``int``."""
    if isinstance(raw, (int, bytes, str)):
        return int(raw)
    msg = f"unexpected reply from Redis: {raw!r:.80}"
    raise BackendError(msg)


def as_bool(raw: object) -> bool:
    """A reply as whether the command did something."""
    # redis-py answers SET with True/None, PEXPIRE with a bool and EXISTS/UNLINK with counts.
    return bool(raw)


def as_bytes(raw: object) -> bytes | None:
    """A bulk reply as ``bytes``, ``None`` for nil."""
    if raw is None or isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode()
    msg = f"unexpected reply from Redis: {raw!r:.80}"
    raise BackendError(msg)


# What a bulk reply is when redis-py does not decode responses: ``MGET``'s list is handed
# on as it came when every item is one of these (one pass in C, not a call per item).
_BULK: Final = frozenset((bytes, type(None)))


def as_bytes_list(raw: object) -> list[bytes | None]:
    """A multi-bulk reply (``MGET``'s) as ``bytes`` or ``None`` per item.

    Raises:
        BackendError: An item is not a bulk string (a client decoding responses to
            something other than ``str``).
    """
    if type(raw) is list and _BULK.issuperset(map(type, raw)):
        return raw
    return [as_bytes(value) for value in raw]  # type: ignore[attr-defined]


def decode_key(raw: object) -> str:
    """A key as Redis returned it, as ``str``."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def scan_page(raw: object) -> tuple[int, list[bytes]]:
    """SCAN's reply: the next cursor and this page's keys."""
    cursor, keys = cast("tuple[int, list[bytes]]", raw)  # redis-py parses SCAN so
    return int(cursor), list(keys)


def set_command(key: str, value: bytes, ttl: float | None, *, nx: bool) -> Command:
    """``SET key value [PX ms] [NX]``."""
    px = to_px(ttl)
    command: Command = ("SET", key, value) if px is None else ("SET", key, value, "PX", px)
    return (*command, "NX") if nx else command


def incr_commands(key: str, amount: int, ttl: float | None) -> list[Command]:
    """INCRBY, preceded by a SET NX with the TTL when there is one (run in MULTI)."""
    px = to_px(ttl)
    if px is None:
        return [("INCRBY", key, amount)]
    # SET NX creates the counter with its TTL only when absent; INCRBY keeps that TTL. Run
    # in MULTI, so a TTL applies on create only (PEXPIRE NX would also hit old counters).
    return [("SET", key, b"0", "PX", px, "NX"), ("INCRBY", key, amount)]


def expire_commands(key: str, ttl: float) -> list[Command]:
    """PEXPIRE, or PERSIST then EXISTS for no expiry; the last reply answers."""
    px = to_px(ttl)
    if px is None:
        return [("PERSIST", key), ("EXISTS", key)]
    return [("PEXPIRE", key, px)]


def unique_members(members: Sequence[str]) -> list[str]:
    """``members`` without repeats, in order; a lone ``str`` is refused."""
    if isinstance(members, str):
        msg = "members must be a sequence of str, not a single str; wrap it in a list"
        raise TypeError(msg)
    return list(dict.fromkeys(members))


def tag_add_commands(key: str, members: Sequence[str], ttl: float | None) -> list[Command]:
    """One MULTI adding ``members`` to the set at ``key`` whose TTL only grows.

    PEXPIRE GT alone cannot tell a set just created by SADD (no TTL yet) from an older set
    that never expires. So the members first go to a scratch set with the TTL, which
    RENAMENX moves to ``key`` only if ``key`` is absent; otherwise SADD adds them and
    PEXPIRE GT extends a shorter TTL. Inside MULTI no client ever sees the scratch key.
    """
    px = to_px(ttl)
    unique = unique_members(members)
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


def decode_members(raw: object) -> list[str]:
    """SMEMBERS' reply, decoded and sorted."""
    if not isinstance(raw, (set, list)):
        msg = f"unexpected reply from Redis: {raw!r:.80}"
        raise BackendError(msg)
    return sorted(decode_key(member) for member in raw)


def exec_deleted(replies: object) -> bool:
    """EXEC's replies of ``delete_if_equals``: ``[]`` when the value differed, else UNLINK's."""
    return isinstance(replies, list) and bool(replies) and as_bool(replies[0])


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


# delete_if: UNLINK KEYS[1] only if it holds ARGV[1]; GET fails on a tag set (WRONGTYPE).
_DELETE_IF: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('UNLINK', KEYS[1])
end
return 0
"""


def _set_if_command(op: Op) -> Command:
    px = to_px(op.ttl)
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
    px = to_px(op.ttl)
    return ("EVAL", _SWAP, 1, op.key, op.value, b"" if px is None else px)


# tag_prune: SREM each ARGV[i] from KEYS[1] whose probe KEYS[i + 1] is gone (absent, or a
# string starting with the tombstone prefix); answers how many were removed.
_TAG_PRUNE: Final = """
local removed = 0
for i, member in ipairs(ARGV) do
  local probe = KEYS[i + 1]
  local kind = redis.call('TYPE', probe)['ok']
  local gone = kind == 'none'
  if kind == 'string' then
    gone = string.sub(redis.call('GET', probe), 1, PREFIX_LENGTH) == 'PREFIX'
  end
  if gone then
    removed = removed + redis.call('SREM', KEYS[1], member)
  end
end
return removed
""".replace("PREFIX_LENGTH", str(len(TOMBSTONE_PREFIX))).replace(
    "PREFIX", "".join(f"\\{byte}" for byte in TOMBSTONE_PREFIX)
)


def _expected_bytes(op: Op) -> bytes:
    if not isinstance(op.expected, (bytes, bytearray, memoryview)):
        msg = f"delete_if needs the expected value as bytes, got {type(op.expected).__name__}"
        raise ConfigurationError(msg)
    return bytes(op.expected)


def _tag_prune_op(op: Op) -> list[Command]:
    if len(op.probes) != len(op.members):
        msg = "tag_prune needs one probe key per member"
        raise ConfigurationError(msg)
    if not op.members:
        return [("ECHO", b"0")]
    return [("EVAL", _TAG_PRUNE, 1 + len(op.probes), op.key, *op.probes, *op.members)]


def _tag_add_op(op: Op) -> list[Command]:
    unique = unique_members(op.members)
    if not unique:
        return [("ECHO", b"1")]
    px = to_px(op.ttl)
    return [("EVAL", _TAG_ADD, 1, op.key, b"" if px is None else px, *unique)]


_OP_COMMANDS: Final[Mapping[str, Callable[[Op], list[Command]]]] = {
    "set_if": lambda op: [_set_if_command(op)],
    "swap": lambda op: [_swap_command(op)],
    "tag_add": _tag_add_op,
    "tag_members": lambda op: [("SMEMBERS", op.key)],
    "tag_remove": lambda op: (
        [("SREM", op.key, *unique_members(op.members))] if op.members else [("ECHO", b"0")]
    ),
    "tag_prune": _tag_prune_op,
    "get": lambda op: [("GET", op.key)],
    "set": lambda op: [set_command(op.key, op.value, op.ttl, nx=op.nx)],
    "delete": lambda op: [("UNLINK", op.key)],
    "delete_if": lambda op: [("EVAL", _DELETE_IF, 1, op.key, _expected_bytes(op))],
    "exists": lambda op: [("EXISTS", op.key)],
    "expire": lambda op: expire_commands(op.key, math.inf if op.ttl is None else op.ttl),
    "incr": lambda op: incr_commands(op.key, op.amount, op.ttl),
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


def op_result(op: Op, raw: object) -> OpResult:
    """The answer of ``op`` from the reply of its answering command."""
    if op.name == "tag_members":
        return decode_members(raw)
    if op.name in ("get", "swap"):
        return as_bytes(raw)
    if op.name in ("incr", "tag_remove", "tag_prune"):
        return as_int(raw)
    if op.name == "ttl":
        return decode_ttl(raw)
    return as_bool(raw)


# Scripts go by their SHA1 digest (EVALSHA) once the server is known to hold them: the
# body goes with the first use (EVAL loads it), later uses send only the digest. What the
# server holds is tracked by the backend (``loaded``), forgotten when a connection fails.
_BODIES: Final[dict[str, str]] = {}


def digest(body: str) -> str:
    """The SHA1 digest EVALSHA names a script by."""
    found = hashlib.sha1(body.encode("utf-8"), usedforsecurity=False).hexdigest()
    _BODIES.setdefault(found, body)
    return found


def plan(
    ops: Sequence[Op], *, loaded: AbstractSet[str] = frozenset()
) -> tuple[list[Command], list[int]]:
    """All commands of ``ops`` in order, and where each op's answering command sits.

    A script whose digest is in ``loaded`` goes as EVALSHA, any other as EVAL.
    """
    commands: list[Command] = []
    answers: list[int] = []
    for op in ops:
        commands.extend(_op_commands(op))
        answers.append(len(commands) - 1)
    if loaded:
        commands = [
            ("EVALSHA", found, *command[2:])
            if command[0] == "EVAL" and (found := digest(command[1])) in loaded
            else command
            for command in commands
        ]
    return commands, answers


def scripts_run(commands: Sequence[Command], raw: Sequence[object]) -> set[str]:
    """The digests of the scripts an EVAL of ``commands`` loaded (it answered)."""
    return {
        digest(command[1])
        for command, reply in zip(commands, raw, strict=True)
        if command[0] == "EVAL"
        and not isinstance(reply, NoScriptError)
        and not (isinstance(reply, Exception) and str(reply).startswith("NOPERM"))
    }


def unloaded(commands: Sequence[Command], raw: Sequence[object]) -> list[int]:
    """Where an EVALSHA found its script missing (NOSCRIPT): to send again as EVAL."""
    return [
        at
        for at, (command, reply) in enumerate(zip(commands, raw, strict=True))
        if command[0] == "EVALSHA"
        and (isinstance(reply, NoScriptError) or str(reply).startswith("NOSCRIPT"))
    ]


def with_body(command: Command) -> Command:
    """An EVALSHA command as the EVAL of its script, which also loads it on the server."""
    return ("EVAL", _BODIES[cast("str", command[1])], *command[2:])


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float, str)) else None


def stats_from_info(info: Mapping[str, Any], keys: int) -> BackendStats:
    """INFO's fields and DBSIZE's count as :class:`BackendStats`."""
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


def info_of(raw: object) -> Mapping[str, Any]:
    """INFO's reply as a mapping; empty where the server has no INFO."""
    # fakeredis has no INFO: its error leaves the fields unknown instead of failing stats().
    return raw if isinstance(raw, Mapping) else {}
