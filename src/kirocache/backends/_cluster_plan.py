"""How RedisClusterBackend spreads reads and op batches over hash slots (no I/O).

A batch becomes rounds of commands, each round one cluster pipeline (redis-py groups it by
node and writes to every node before reading any reply). Most batches are one round. An op
whose keys span slots cannot be one Lua script on a cluster, so it is split:

* ``set_if`` with guards in other slots: the guards are read first (``GET``), then the
  write runs as ``set_if`` on its key alone (with the guards that share its slot), or is
  answered ``False`` without being sent when a guard no longer holds.
* ``tag_prune`` with probes in other slots: the probes are read first, then ``SREM``
  removes the members whose probe was gone.

A read round before the writes must not miss a write the same batch makes earlier, so a
split op whose reads touch a key an earlier op writes starts a new segment: the ops before
it run first. The flow is a generator run by the backend's sync and async drivers.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Final, cast

from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from kirocache.backends._protocol import TOMBSTONE_PREFIX, Op
from kirocache.backends._redis_commands import Command, plan
from kirocache.exceptions import ConfigurationError

__all__ = [
    "Flow",
    "answered",
    "execute_flow",
    "get_many_commands",
    "get_many_values",
    "one_slot",
    "op_keys",
    "single_slot",
    "slot_of",
    "transaction_commands",
]

Flow = Generator[list[Command], list[object], list[object]]
"""Yields a round of commands, receives their replies, returns each op's raw answer."""


_SLOTS: Final = REDIS_CLUSTER_HASH_SLOTS


def slot_of(key: str) -> int:
    """The hash slot of ``key`` (its ``{hash tag}`` only, when it has one).

    ``redis.crc.key_slot`` inlined, looking for the tag in the ``str`` (braces are single
    bytes in UTF-8, never inside another character's bytes): called once or twice per key
    of every cluster ``get_many`` and batch.
    """
    start = key.find("{")
    if start > -1:
        end = key.find("}", start + 1)
        if end > -1 and end != start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key.encode("utf-8", "surrogatepass"), 0) % _SLOTS


def op_keys(op: Op) -> list[str]:
    """Every key ``op`` touches: its own, its guards' and its probes'."""
    return [op.key, *(key for key, _ in op.guards), *op.probes]


def one_slot(ops: Sequence[Op]) -> bool:
    """Whether every key of ``ops`` is in one hash slot."""
    return len({slot_of(key) for op in ops for key in op_keys(op)}) <= 1


def single_slot(ops: Sequence[Op]) -> None:
    """Refuse a transaction whose keys span hash slots: a cluster cannot run it atomically.

    Raises:
        ConfigurationError: The keys span slots; the message names two of them and the
            ways out (one hash tag for the batch's keys, or ``transaction=False``).
    """
    first: tuple[str, int] | None = None
    for op in ops:
        for key in op_keys(op):
            slot = slot_of(key)
            if first is None:
                first = (key, slot)
            elif slot != first[1]:
                msg = (
                    f"a transactional batch on a Redis Cluster must keep all its keys in one "
                    f"hash slot, but {first[0]!r} is in slot {first[1]} and {key!r} in slot "
                    f"{slot}; give the keys one hash tag (a key_prefix or namespace prefix "
                    f"such as '{{orders}}:' puts every key under it in one slot), or run the "
                    f"batch with transaction=False"
                )
                raise ConfigurationError(msg)


def get_many_commands(keys: Sequence[str]) -> tuple[list[Command], list[list[int]]]:
    """One ``MGET`` per slot, and for each the positions of its keys in ``keys``."""
    by_slot: dict[int, list[int]] = {}
    for at, key in enumerate(keys):
        by_slot.setdefault(slot_of(key), []).append(at)
    places = list(by_slot.values())
    return [("MGET", *(keys[at] for at in where)) for where in places], places


def get_many_values(count: int, replies: Sequence[object], places: list[list[int]]) -> list[object]:
    """The per-slot ``MGET`` replies put back in the order of the keys asked for.

    Raises:
        BaseException: The error a slot's ``MGET`` answered (the read fails as a whole).
    """
    values: list[object] = [None] * count
    for reply, where in zip(replies, places, strict=True):
        if isinstance(reply, BaseException):
            raise reply
        for at, value in zip(where, reply, strict=True):  # type: ignore[call-overload]
            values[at] = value
    return values


@dataclass(slots=True)
class _Split:
    """An op whose keys span slots: the keys it reads first, and how it answers then."""

    op: Op
    reads: list[str]

    def commands(self, found: dict[str, object]) -> list[Command] | object:
        """The op's commands after its reads, or its answer when there is nothing to send."""
        op = self.op
        failed = next((found[k] for k in self.reads if isinstance(found[k], BaseException)), None)
        if op.name == "set_if":
            if failed is not None:
                return failed
            foreign = set(self.reads)
            if any(found[key] != expected for key, expected in op.guards if key in foreign):
                return 0
            local = tuple((key, held) for key, held in op.guards if key not in foreign)
            return plan([op._replace(guards=local)])[0]
        gone = [
            member
            for member, probe in zip(op.members, op.probes, strict=True)
            if _gone(found[probe])
        ]
        return [("SREM", op.key, *dict.fromkeys(gone))] if gone else 0


def _gone(held: object) -> bool:
    """A probe that is absent or a tombstone (a set, WRONGTYPE to GET, is not gone)."""
    if isinstance(held, BaseException):
        return False
    return held is None or (isinstance(held, bytes) and held.startswith(TOMBSTONE_PREFIX))


def _split(op: Op) -> _Split | None:
    home = slot_of(op.key)
    if op.name == "set_if":
        foreign = [key for key, _ in op.guards if slot_of(key) != home]
        return _Split(op, list(dict.fromkeys(foreign))) if foreign else None
    pruned = op.name == "tag_prune" and len(op.probes) == len(op.members) and op.members
    if pruned and any(slot_of(probe) != home for probe in op.probes):
        return _Split(op, list(dict.fromkeys(op.probes)))
    return None


def _segments(ops: Sequence[Op]) -> list[list[tuple[Op, _Split | None]]]:
    """The ops cut where a split op reads a key that an earlier op of its segment writes."""
    segments: list[list[tuple[Op, _Split | None]]] = [[]]
    written: set[str] = set()
    for op in ops:
        split = _split(op)
        if split is not None and written.intersection(split.reads):
            segments.append([])
            written = set()
        segments[-1].append((op, split))
        written.add(op.key)
    return segments


def execute_flow(ops: Sequence[Op]) -> Flow:
    """Run ``ops`` as rounds of non-transactional cluster pipelines; each op's raw answer.

    Every op's answer is the reply of its last command, a local answer (``0`` for a
    guarded write refused or nothing pruned), or the error it met.

    Raises:
        ConfigurationError: An op kind is unknown (before anything runs).
    """

    def build(op: Op) -> list[Command]:
        return plan([op])[0]

    for op in ops:
        build(op)  # refuse an unknown op kind, or a malformed op, before any round
    answers: list[object] = []
    for segment in _segments(ops):
        reads = list(dict.fromkeys(k for _, split in segment if split for k in split.reads))
        found: dict[str, object] = {}
        if reads:
            replies = yield [("GET", key) for key in reads]
            found = dict(zip(reads, replies, strict=True))
        made = [build(op) if split is None else split.commands(found) for op, split in segment]
        commands, ends = _placed(made)
        replies = (yield commands) if commands else []
        answers += answered(ends, replies)
    return answers


Ends = list[tuple[bool, object]]
"""Per op: ``(True, index of its last command)`` if sent, else ``(False, its answer)``."""


def _placed(made: Sequence[list[Command] | object]) -> tuple[list[Command], Ends]:
    commands: list[Command] = []
    ends: Ends = []
    for each in made:
        if not isinstance(each, list):
            ends.append((False, each))
        elif each and each[0][0] == "ECHO":  # a keyless no-op: answered here, not routed
            ends.append((False, each[0][1]))
        else:
            commands.extend(each)
            ends.append((True, len(commands) - 1))
    return commands, ends


def transaction_commands(ops: Sequence[Op]) -> tuple[list[Command], Ends]:
    """The commands of a one-slot transaction, and where each op's answer will be.

    Raises:
        ConfigurationError: An op kind is unknown, or the keys span slots.
    """
    made = [plan([op])[0] for op in ops]
    single_slot(ops)
    return _placed(made)


def answered(ends: Ends, replies: Sequence[object]) -> list[object]:
    """Each op's raw answer: its last command's reply, or the answer given here."""
    return [replies[cast("int", at)] if sent else at for sent, at in ends]
