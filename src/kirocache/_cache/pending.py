"""Pending invalidations: what could not reach the backend, kept until it is replayed.

Faults fail open for data and fail safe for invalidation. An invalidation whose steps got
``FAILED`` (a fault, an open breaker, a failed slot such as OOM) or raised under
``on_error="raise"`` leaves here what it could not apply: keys, tags, pattern globs and
namespace bumps. From that moment this process treats what they reach as invalid
(``blocks``), a daemon thread retries them with backoff, and the read path replays them
before it serves anything from the recovered backend (``invalidations.replay``).

The reach of a key or tag invalidation is not known here: a key's dependents and a tag's
members live only in the backend. So while one is pending, every read of this process is
a miss and no computed value is stored. A pattern or a bump has a known reach (a glob, a
namespace), so only the keys it matches are misses.

The set is bounded (``limit`` entries). Past it, the entries collapse into one: "the whole
cache", replayed as a delete of everything under the key prefix; the overflow is logged
and counted (``overflows``).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from kirocache.backends import escape_glob
from kirocache.backends._glob import glob_to_regex
from kirocache.metrics import PENDING

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache._cache.guard import Guard
    from kirocache._values.clock import Clock
    from kirocache.keys import Namespace

__all__ = ["DEFAULT_PENDING_LIMIT", "Pending", "Work"]

_log = logging.getLogger("kirocache")

DEFAULT_PENDING_LIMIT: Final = 100_000
"""Pending entries (keys, tags, globs, bumps) kept before they collapse into "everything".
A key costs about its length plus 100 bytes: the default is about 15 MB at most."""

# The background retry's backoff: first try soon after the fault, then doubling, capped so
# a backend that comes back is replayed within a few seconds even after a long outage.
_FIRST_RETRY: Final = 0.05
_MAX_RETRY: Final = 2.0


@dataclass
class Work:
    """A snapshot of the pending set, for one replay.

    Each entry carries the sequence number it was added with, so ``Pending.settle`` drops
    only what has not been added again since the snapshot (an invalidation that failed
    again during the replay stays pending).
    """

    keys: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    globs: dict[str, tuple[Namespace | None, int]] = field(default_factory=dict)
    bumps: dict[str, tuple[Namespace, int]] = field(default_factory=dict)
    spared: dict[str, int] = field(default_factory=dict)
    """Keys written by this process after their invalidation was kept: the replay leaves
    their new value alone and follows only their dependents."""
    everything: int = 0
    collapsed: int = 0
    """How many entries an overflow collapsed into ``everything``."""

    def __len__(self) -> int:
        sizes = (self.keys, self.spared, self.tags, self.globs, self.bumps)
        return sum(len(entries) for entries in sizes)


class Pending:
    """The invalidations of one cache that are not applied yet (owned by its invalidator).

    ``active`` is the one attribute the hot read path checks: ``False`` while nothing is
    pending. The rest is read and changed under a lock (invalidations, reads and the retry
    thread run at once).

    Args:
        guard: Where replays are observed (metrics) and whose backend halves decide
            whether a retry thread can run (sync) or the next calls retry (async only).
        limit: Entries kept before they collapse into "the whole cache".

    Attributes:
        active: Whether anything is pending.
        replayed: Invalidations replayed since the cache was made (keys, tags, globs,
            bumps, each counted once; a collapsed "everything" counts what it collapsed).
        overflows: How many times the set overflowed into "the whole cache".
    """

    def __init__(self, guard: Guard, clock: Clock, limit: int = DEFAULT_PENDING_LIMIT) -> None:
        self.active = False
        self.limit = limit
        self.replayed = 0
        self.overflows = 0
        self._guard = guard
        self._work = Work()
        self._seq = 0
        self._regexes: list[re.Pattern[str]] = []
        self._lock = threading.Lock()
        self._replaying = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache: weakref.ReferenceType[Cache] | None = None
        self._clock = clock
        self._delay = _FIRST_RETRY
        self._next_try = 0.0

    # -- what is pending ---------------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many invalidations are pending (``invalidations_pending``)."""
        with self._lock:
            return len(self._work) + self._work.collapsed

    def figures(self) -> dict[str, int]:
        """``invalidations_pending``, ``invalidations_replayed``, ``invalidations_overflowed``."""
        return {
            "invalidations_pending": self.count,
            "invalidations_replayed": self.replayed,
            "invalidations_overflowed": self.overflows,
        }

    def add(
        self,
        cache: Cache,
        *,
        keys: tuple[str, ...] | list[str] = (),
        tags: tuple[str, ...] | list[str] = (),
        globs: tuple[tuple[str, Namespace | None], ...] | list[tuple[str, Namespace | None]] = (),
        bumps: tuple[Namespace, ...] | list[Namespace] = (),
    ) -> None:
        """Keep what an invalidation could not apply; this process treats it as invalid now."""
        if not (keys or tags or globs or bumps):
            return
        with self._lock:
            self._seq += 1
            seq, work = self._seq, self._work
            first, before = not self.active, len(work) + work.collapsed
            if work.everything:
                # Already "the whole cache": a count is enough (and keeps memory bounded);
                # the new number makes a replay under way clear again.
                work.everything = seq
                work.collapsed += len(keys) + len(tags) + len(globs) + len(bumps)
                keys, tags, globs, bumps = (), (), (), ()
            for key in keys:
                work.keys[key] = seq
            for tag in tags:
                work.tags[tag] = seq
            for glob, namespace in globs:
                work.globs[glob] = (namespace, seq)
            for namespace in bumps:
                work.bumps[namespace.prefix] = (namespace, seq)
            size = len(work) + work.collapsed
            overflowed = len(work) > self.limit
            if overflowed:
                # Collapsed into one: clearing the whole cache covers every entry.
                self._work = Work(everything=seq, collapsed=size)
                self.overflows += 1
            self._regexes = self._compile(cache)
            self.active = True
            self._cache = weakref.ref(cache)
            self._delay, self._next_try = _FIRST_RETRY, 0.0
            added = size - before
        if overflowed:
            _log.error(
                "%d pending invalidations overflowed the limit of %d: the whole cache reads "
                "as invalid in this process until it is cleared when the backend is back",
                size,
                self.limit,
            )
        elif first:  # once per burst, as the guard logs faults
            _log.warning(
                "invalidations kept pending: the backend failed; this process reads what "
                "they reach as misses and replays them when the backend is back"
            )
        self._observe("invalidate_pending", added)
        self._start(cache)

    def _compile(self, cache: Cache) -> list[re.Pattern[str]]:
        """The regexes of the pending globs and bumped namespaces (under the lock)."""
        work = self._work
        globs = list(work.globs)
        prefix = cache.keyspace.key_prefix
        globs += [escape_glob(prefix + space) + "*" for space in work.bumps]
        return [glob_to_regex(glob) for glob in globs]

    def blocks(self, full: str) -> bool:
        """Whether a read of ``full`` must be a miss (and its computed value not stored).

        Every key while a key or tag invalidation (or an overflow) is pending, whose reach
        only the backend knows; else the keys a pending pattern or bump reaches.
        """
        with self._lock:
            work = self._work
            if work.everything or work.keys or work.spared or work.tags:
                return bool(self.active)
            return any(regex.match(full) for regex in self._regexes)

    def written(self, fulls: Iterable[str]) -> None:
        """``fulls`` were written (a ``set`` that came back) after their invalidation was kept.

        The write replaced the old value, so the replay must not erase the new one: the key
        moves to ``spared``, whose dependents the replay still follows. A key of an
        overflowed set cannot be told apart: the clear still removes it (a miss, never a
        stale value).
        """
        with self._lock:
            work = self._work
            for full in fulls:
                seq = work.keys.pop(full, None)
                if seq is not None:
                    work.spared[full] = seq

    # -- replaying -----------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether a call may try a replay now although the guard is not settled.

        The calls retry with the same backoff as the thread (the only retry an async-only
        backend has), so a dead backend is not asked once per read.
        """
        return self._clock.monotonic() >= self._next_try

    def snapshot(self) -> Work | None:
        """What to replay now, or ``None`` when another replay is running or nothing is."""
        if not self.active or not self._replaying.acquire(blocking=False):
            return None
        with self._lock:
            work = self._work
            keys, tags = dict(work.keys), dict(work.tags)
            globs, bumps = dict(work.globs), dict(work.bumps)
            spared = dict(work.spared)
            return Work(keys, tags, globs, bumps, spared, work.everything, work.collapsed)

    def settle(self, work: Work, *, applied: bool) -> None:
        """End a replay begun by ``snapshot``: drop what it applied unless added again."""
        try:
            if not applied:
                self._next_try = self._clock.monotonic() + self._delay
                self._delay = min(self._delay * 2, _MAX_RETRY)
                return
            with self._lock:
                current = self._work
                done = 0
                if work.everything and current.everything == work.everything:
                    done, current.everything, current.collapsed = current.collapsed, 0, 0
                done += _drop(current.keys, work.keys, lambda seq: seq)
                done += _drop(current.spared, work.spared, lambda seq: seq)
                done += _drop(current.tags, work.tags, lambda seq: seq)
                done += _drop(current.globs, work.globs, lambda entry: entry[1])
                done += _drop(current.bumps, work.bumps, lambda entry: entry[1])
                self.replayed += done
                self.active = bool(len(current) or current.everything)
                cache = self._cache() if self._cache is not None else None
                if cache is not None:
                    self._regexes = self._compile(cache)
            if done:
                _log.warning("replayed %d pending invalidations", done)
                self._observe("invalidate_replay", done)
        finally:
            self._replaying.release()

    def _observe(self, op: str, count: int) -> None:
        metrics = self._guard.metrics
        if metrics is not None and count:
            metrics.record(op, PENDING, "delete", 0.0, count)

    # -- the retry thread ------------------------------------------------------------------------

    def _start(self, cache: Cache) -> None:
        """Start the retry thread when the backend has a sync half (else the next calls retry)."""
        if not self._guard.sync_ok or self._stop.is_set():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            # A daemon, holding the cache weakly: it never keeps a process (or a cache) alive.
            self._thread = threading.Thread(
                target=_retry,
                args=(self, weakref.ref(cache)),
                name="kirocache-pending-replay",
                daemon=True,
            )
            self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        """The retry thread while one runs (a daemon named ``kirocache-pending-replay``)."""
        return self._thread

    def close(self, timeout: float = 1.0) -> None:
        """Stop the retry thread for good; what is pending stays, and the next calls replay it.

        For ``Cache.close``: a cache used after it still keeps and replays invalidations,
        through its calls only (as with an async-only backend). Waits up to ``timeout``
        seconds for a replay under way (``Cache.aclose`` waits for none: it must not block
        the event loop).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and timeout > 0:
            thread.join(timeout)

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` unless closed; whether it was closed."""
        return self._stop.wait(timeout)


def _drop(current: dict[str, Any], done: dict[str, Any], seq: Callable[[Any], int]) -> int:
    """Remove from ``current`` the entries of ``done`` not added again since; how many."""
    count = 0
    for name, entry in done.items():
        if name in current and seq(current[name]) == seq(entry):
            del current[name]
            count += 1
    return count


def _retry(pending: Pending, ref: weakref.ReferenceType[Cache]) -> None:
    """Replay with backoff until nothing is pending, the cache is closed or collected."""
    # The drivers and the replay import the invalidator, which imports this module.
    from kirocache._cache.driver import run
    from kirocache._cache.invalidations import replay

    delay = _FIRST_RETRY
    while not pending.wait(delay):
        cache: Any = ref()
        if cache is None:
            break
        with pending._lock:
            if not pending.active:
                # Under the lock: an ``add`` after this starts a new thread.
                pending._thread = None
                return
        try:
            run(cache.guard, replay(cache))
        except Exception as exc:  # noqa: BLE001 - a background thread must not die of a fault
            _log.debug("pending invalidations: replay failed (%s)", type(exc).__name__)
        del cache
        delay = min(delay * 2, _MAX_RETRY)
    with pending._lock:
        pending._thread = None
