"""The invalidator: tombstones, guarded writes, tag stamps, dependencies, rules and the log."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

from kirocache._cache.driver import Flow, Io
from kirocache._cache.guard import FAILED
from kirocache._cache.pending import Pending
from kirocache._values.stamped import is_stamped, unwrap, wrap
from kirocache._values.types import to_seconds
from kirocache.backends import TOMBSTONE_PREFIX, Op
from kirocache.exceptions import ConfigurationError, CorruptValueError, InvalidKeyError
from kirocache.invalidation import (
    KEYS_PER_RECORD,
    InvalidationLog,
    InvalidationRecord,
    InvalidationRules,
)

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache._cache.guard import Guard
    from kirocache._cache.keyspace import KeySpace
    from kirocache._values.clock import Clock
    from kirocache._values.types import Duration

__all__ = [
    "DEFAULT_TOMBSTONE_TTL",
    "TOMBSTONE",
    "UNREAD",
    "WRITTEN_STAMP",
    "Cascade",
    "Guards",
    "Invalidator",
    "Seen",
    "is_tombstone",
]

_log = logging.getLogger("kirocache")

DEFAULT_TOMBSTONE_TTL: Final = 60.0
# What an invalidated key holds for ``tombstone_ttl``: this prefix (no serializer header
# starts so) and a random token, so every invalidation leaves a different tombstone.
TOMBSTONE: Final = TOMBSTONE_PREFIX

WRITTEN_STAMP: Final = b"\xc5\xfestamp:"
"""How a tag stamp that a write created starts (an invalidation's starts with ``TOMBSTONE``).

A tagged entry carries the stamps of its tags (``kirocache._values.stamped``) and is valid
only while each still holds them. The first write of a tag creates its stamp (``SET NX``,
no expiry); an invalidation replaces it with a tombstone-like stamp that lives
``tombstone_ttl``, so a write loaded before it fails its guard. Only stamps a write created
are ever pruned (``prune_indexes``): an invalidation's must outlive the writes it defeats.
"""

Guards: TypeAlias = "tuple[tuple[str, bytes | None], ...]"
"""The stamps of an entry's tags as a read found them: ``(stamp key, bytes)`` pairs."""
Seen: TypeAlias = "tuple[str, bytes | None, Guards]"
"""What a read before a computation found: the full key, its bytes (``None``: absent), and
the stamps of the entry's tags (``Guards``), which a tag invalidation changes."""
UNREAD: Final = b""
"""The bytes of a ``Seen`` whose read failed: nothing computed after it is stored (a real
entry is never empty: values carry a header, counters at least one digit)."""


class Cascade(NamedTuple):
    """What ``Invalidator.cascade`` did."""

    removed: int
    """How many live values were removed."""
    erased: list[str]
    """Every full key invalidated."""
    direct: int
    """How many of the keys given held a live value."""
    complete: bool
    """Whether every level and every slot was applied (else the rest is pending, unless
    ``pend=False``)."""


def is_tombstone(raw: object) -> bool:
    """Whether stored bytes are a tombstone (an invalidated key: absent to every reader)."""
    return type(raw) is bytes and raw.startswith(TOMBSTONE)


def _next_level(found: list[str], visited: set[str]) -> tuple[list[str], list[str]]:
    """The keys and tags among the dependents ``found`` that were not visited yet."""
    fresh = [node for node in dict.fromkeys(found) if node not in visited]
    keys = [node[2:] for node in fresh if node.startswith("k:")]
    return keys, [node[2:] for node in fresh if node.startswith("t:")]


class Invalidator:
    """Makes entries stale, safely: the one owner of how an invalidation is written.

    It owns tombstones (``tombstone_ttl``, the erase ops that leave them), the guarded
    writes that a tombstone or a tag stamp defeats (``store_ops``, ``too_late``), the tag
    op recipes (index entries, stamps), dependency edges and the cascade that follows them,
    the invalidation rules (``rules``), the invalidation log (``log``) and what could not be
    applied yet (``pending``, see ``kirocache._cache.pending``).

    Args:
        keyspace: Where the index, stamp and dependency keys live.
        guard: Sorts the faults the cascade meets and observes it.
        backend: What the cascade's steps call.
        tombstone_ttl: How long a tombstone lives; ``None``: plain deletes.
        log_size: How many records the log keeps.
        clock: Where a record's time is read.
        debug: Log every record at DEBUG level.

    Raises:
        ConfigurationError: ``tombstone_ttl`` is not a finite duration.
    """

    def __init__(
        self,
        keyspace: KeySpace,
        guard: Guard,
        backend: Any,
        *,
        tombstone_ttl: Duration | None,
        log_size: int,
        clock: Clock,
    ) -> None:
        seconds = 0.0 if tombstone_ttl is None else to_seconds(tombstone_ttl, name="tombstone_ttl")
        if seconds == float("inf"):
            msg = "tombstone_ttl must be finite (tombstones must expire); use None to turn them off"
            raise ConfigurationError(msg)
        self.tombstone_ttl: float | None = seconds or None
        self.rules = InvalidationRules()
        self.log = InvalidationLog(log_size)
        self._keys = keyspace
        self._guard = guard
        self._backend = backend
        self._clock = clock
        self.pending = Pending(guard, clock)

    # -- tombstones and guarded writes ---------------------------------------------------

    def erase_ops(self, fulls: Iterable[str]) -> list[Op]:
        """Ops that invalidate ``fulls``: each gets a fresh tombstone (or is deleted).

        A tombstone, unlike a delete, changes what a key holds even when it was absent, so
        a conditional write of a value loaded before this invalidation fails (see
        ``store_ops``). It reads as a miss and expires after ``tombstone_ttl``.
        """
        if self.tombstone_ttl is None:
            return [Op("delete", full) for full in fulls]
        tomb = TOMBSTONE + os.urandom(8)
        return [Op("swap", full, tomb, ttl=self.tombstone_ttl) for full in fulls]

    @staticmethod
    def erased(results: Iterable[object]) -> tuple[int, Exception | None]:
        """How many live values ``erase_ops`` removed, and the first error among them."""
        count, error = 0, None
        for result in results:
            if isinstance(result, Exception):
                error = error or result
            elif result is True or (type(result) is bytes and not result.startswith(TOMBSTONE)):
                count += 1
        return count, error

    def tag_add_ops(self, tags: Sequence[str], full: str, ttl: float | None) -> list[Op]:
        """Ops that put ``full`` in the indexes of ``tags`` (living at least ``ttl``)."""
        return [Op("tag_add", self._keys.tag_key(tag), ttl=ttl, members=(full,)) for tag in tags]

    def store_ops(
        self,
        full: str,
        data: bytes,
        ttl: float | None,
        seen: bytes | None,
        tags: Sequence[str] = (),
        guards: Guards = (),
    ) -> list[Op]:
        """A write that lands only if nothing changed since the read, and its tag entries.

        ``seen`` is what the read before the computation found at ``full``: ``None``
        (absent), a tombstone or the stale entry being refreshed; ``guards`` are the
        stamps of the entry's tags as read then. A key or tag invalidation in between
        changed one of them, so a value computed from data older than the invalidation is
        never stored. A tagged value is stored in an envelope that carries those stamps
        (see ``stamped_ops``). The write's answer is the last slot.
        """
        # The index entries go first: a tag invalidation that reads the index between them
        # and the write has already changed the stamp the write checks.
        ops = self.tag_add_ops(tags, full, ttl)
        if tags:
            made, data, guards = self.stamped_ops(tags, dict(guards), data)
            ops += made
        ops.append(Op("set_if", full, data, ttl=ttl, expected=seen, guards=guards))
        return ops

    def stamped_ops(
        self, tags: Sequence[str], held: dict[str, bytes | None], data: bytes
    ) -> tuple[list[Op], bytes, Guards]:
        """The envelope of a tagged value, the ops that create missing stamps, its guards.

        ``held`` maps stamp keys to what a read found there. A stamp found absent (never
        written, expired or evicted) is created with ``SET NX`` before the value; when
        another writer or an invalidation got there first, the guard on it fails and the
        value is not stored, so no entry ever carries a stamp its tag does not hold.
        """
        ops: list[Op] = []
        pairs: list[tuple[str, bytes]] = []
        guards: list[tuple[str, bytes | None]] = []
        for tag in dict.fromkeys(tags):
            key = self._keys.stamp_key(tag)
            stamp = held.get(key)
            if stamp is None:
                stamp = WRITTEN_STAMP + os.urandom(8)
                ops.append(Op("set", key, stamp, nx=True))
            pairs.append((tag, stamp))
            guards.append((key, stamp))
        return ops, wrap(pairs, data), tuple(guards)

    def stamp_ops(self, tags: Sequence[str]) -> list[Op]:
        """Ops that change the stamps of ``tags``: their entries and guarded writes fail."""
        stamp = TOMBSTONE + os.urandom(8)
        ttl = self.tombstone_ttl or DEFAULT_TOMBSTONE_TTL
        return [Op("swap", self._keys.stamp_key(tag), stamp, ttl=ttl) for tag in tags]

    def unstamped(
        self, raws: Sequence[bytes], held: dict[str, bytes | None], label: str, started: float
    ) -> Flow[list[bytes | None]]:
        """The frames inside tagged entries' envelopes; ``None`` for each that is stale.

        An entry is stale when a stamp it carries is no longer what its tag's stamp key
        holds: replaced by an invalidation, or gone (expired, evicted). ``held`` has the
        stamps already read (a decorator reads its tags' stamps with the key); the others
        are read in one round trip. When that read fails, every entry counts as stale: a
        value that cannot be checked is not served.
        """
        parsed: list[tuple[list[tuple[str, bytes]], bytes]] = []
        wanted: dict[str, None] = {}
        for raw in raws:
            try:
                pairs, data = unwrap(raw)
                stamps = [(self._keys.stamp_key(tag), stamp) for tag, stamp in pairs]
            except (CorruptValueError, InvalidKeyError):
                # a corrupt envelope is answered as it is: the codec refuses it as corrupt
                stamps, data = [], raw
            parsed.append((stamps, data))
            wanted.update((key, None) for key, _ in stamps if key not in held)
        if wanted:
            keys = list(wanted)
            found = yield Io(self._backend, "get_many", (keys,), "get", label, started)
            if found is FAILED:
                return [None] * len(raws)
            held = {**held, **dict(zip(keys, found, strict=True))}
        return [
            None if any(held.get(key) != stamp for key, stamp in stamps) else data
            for stamps, data in parsed
        ]

    def absent(self, raw: object, label: str, started: float) -> Flow[bool]:
        """Whether stored bytes read as absent: none, a tombstone or a stale tagged entry."""
        if raw is None or is_tombstone(raw):
            return True
        if type(raw) is bytes and is_stamped(raw):
            [data] = yield from self.unstamped([raw], {}, label, started)
            return data is None
        return False

    def too_late(self, read_at: float) -> bool:
        """Whether a tombstone seen (or not) at ``read_at`` may have expired since."""
        # Real time, not the cache's clock: the server expires the tombstone.
        ttl = self.tombstone_ttl
        return ttl is not None and time.perf_counter() - read_at >= ttl

    def written(self, fulls: Iterable[str]) -> None:
        """Tell the pending invalidations that ``fulls`` were written (see ``Pending.written``).

        Every write path calls it after its write came back, so a replay never erases a
        value stored after the invalidation it replays.
        """
        if self.pending.active:
            self.pending.written(fulls)

    # -- the log ---------------------------------------------------------------------------

    def record(
        self,
        source: str,
        started: float,
        *,
        removed: int,
        fulls: Sequence[str] = (),
        tags: Sequence[str] = (),
        patterns: Sequence[str] = (),
        namespaces: Sequence[str] = (),
        event: str | None = None,
        rules: Sequence[str] = (),
    ) -> InvalidationRecord:
        """Log one invalidation (the metrics hook has it from the operation itself)."""
        record = InvalidationRecord(
            at=self._clock.time(),
            source=source,
            event=event,
            rules=tuple(rules),
            keys=tuple(self._keys.unprefix(full) for full in fulls[:KEYS_PER_RECORD]),
            tags=tuple(tags),
            patterns=tuple(patterns),
            namespaces=tuple(namespaces),
            removed=removed,
            duration=time.perf_counter() - started,
        )
        self.log.add(record)
        if self._guard.debug:
            _log.debug("invalidation %s", record)
        return record

    # -- the cascade ---------------------------------------------------------------------------

    def cascade(
        self,
        cache: Cache,
        op: str,
        label: str,
        started: float,
        fulls: Sequence[str],
        tags: Sequence[str],
        *,
        pend: bool = True,
        spared: Sequence[str] = (),
    ) -> Flow[Cascade]:
        """Invalidate keys and tags, then their dependents, level by level, once each.

        Per level: one round trip reads the tags' members and dependents (when there are
        tags), one tombstones the keys, deletes the tag indexes and reads the keys'
        dependents. A node already visited is never visited again, so cycles end.

        What a fault keeps from being applied -- the level under way, whose dependents
        were not read yet -- is kept pending (``pend``), also when the driver raises
        (``on_error="raise"``) and closes the steps: ``finally`` runs on the close. A
        failed slot (OOM on one tombstone) keeps that level pending but goes on.

        ``spared`` keys (a replay's keys written since their invalidation was kept) are not
        erased; their dependents are followed.
        """
        visited: set[str] = set()
        removed, erased, direct = 0, [], -1
        keys, tag_list = list(dict.fromkeys(fulls)), list(dict.fromkeys(tags))
        follow = [full for full in dict.fromkeys(spared) if full not in keys]
        complete, whole = False, True
        try:
            while keys or tag_list or follow:
                visited.update("k:" + key for key in keys)
                visited.update("t:" + tag for tag in tag_list)
                found: list[str] = []
                lists: list[list[str]] = [[] for _ in tag_list]
                if tag_list:
                    read = yield from self._read_tags(op, label, started, tag_list)
                    if read is None:
                        break
                    lists, found, read_whole = read
                    if not read_whole:
                        whole = False
                        if pend:
                            self.pending.add(cache, tags=tag_list)
                    members = dict.fromkeys(m for listed in lists for m in listed)
                    keys += [m for m in members if "k:" + m not in visited]
                    visited.update("k:" + key for key in keys)
                ops = self.erase_ops(keys)
                # Only the members read leave the index: an entry added since (a value stored
                # under the new stamp) stays, so the next invalidation of the tag finds it.
                ops += [
                    Op("tag_remove", self._keys.tag_key(tag), members=tuple(listed))
                    for tag, listed in zip(tag_list, lists, strict=True)
                ]
                reads = [*keys, *follow]
                visited.update("k:" + key for key in follow)
                follow = []
                ops += [Op("tag_members", self._keys.dep_key("k:" + key)) for key in reads]
                results = yield Io(self._backend, "execute", (ops,), op, label, started)
                if results is FAILED:
                    break
                count, failure = self.erased(results[: len(keys)])
                if failure is not None:
                    whole = False
                    if pend:
                        self.pending.add(cache, keys=keys)
                    self._guard.fault("invalidate", label, failure, started)
                removed += count
                direct = count if direct < 0 else direct
                erased += keys
                found += [
                    n
                    for r in results[len(keys) + len(tag_list) :]
                    if isinstance(r, list)
                    for n in r
                ]
                keys, tag_list = _next_level(found, visited)
            else:
                complete = True
        finally:
            # A level cut short is pending; a failed slot was kept where it happened.
            if not complete and pend:
                self.pending.add(cache, keys=keys, tags=tag_list)
        self._guard.observe(op, label, "delete", started, count=removed)
        return Cascade(removed, erased, max(direct, 0), complete and whole)

    def _read_tags(
        self, op: str, label: str, started: float, tags: list[str]
    ) -> Flow[tuple[list[list[str]], list[str], bool] | None]:
        """Change the stamps of ``tags``, read their members and dependents (one round trip).

        Returns:
            The members of each tag's index, the dependents of all the tags, and whether
            every slot succeeded (a failed one, OOM say, leaves a stamp as it was or an
            index unread); ``None``
            when the backend failed.
        """
        # The stamps change first, so a write guarded by them (a value loading now) fails
        # even when its key is not in the tag's index yet.
        stamps = self.stamp_ops(tags)
        ops = [*stamps, *(Op("tag_members", self._keys.tag_key(tag)) for tag in tags)]
        ops += [Op("tag_members", self._keys.dep_key("t:" + tag)) for tag in tags]
        results = yield Io(self._backend, "execute", (ops,), op, label, started)
        if results is FAILED:
            return None
        # a failed slot, a stamp or an index read, leaves the tags to be invalidated again
        whole = not any(isinstance(r, Exception) for r in results)
        self._guard.slot_failure(op, label, results, started)  # stamps included
        lists = [r if isinstance(r, list) else [] for r in results[len(stamps) :]]
        found = [node for dependents in lists[len(tags) :] for node in dependents]
        return lists[: len(tags)], found, whole
