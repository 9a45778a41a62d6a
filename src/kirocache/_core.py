"""The I/O-free core of ``Cache``: keys, TTLs, encoding, metrics and fault policy.

``_cache_sync.py`` and ``_cache_async.py`` are thin shells over this class: they only
call the backend, and every decision they make is a method here, so the sync and async
paths cannot drift.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from kirocache._breaker import CircuitBreaker
from kirocache._clock import SYSTEM_CLOCK, Clock
from kirocache._config import settings_from_env
from kirocache._types import check_key, to_seconds, ttl_seconds
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import TOMBSTONE_PREFIX, Op
from kirocache.exceptions import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    KirocacheError,
    ValueTooLargeError,
)
from kirocache.invalidation import (
    DEFAULT_LOG_SIZE,
    KEYS_PER_RECORD,
    InvalidationLog,
    InvalidationRecord,
    InvalidationRules,
    Tag,
)
from kirocache.metrics import InMemoryMetrics, MetricsHook, Outcome
from kirocache.serializers import Serializer, resolve_serializer

if TYPE_CHECKING:
    from kirocache._types import Duration
    from kirocache.backends._protocol import AsyncBackend, Backend
    from kirocache.keys import Namespace

__all__ = ["FAILED", "TOMBSTONE", "UNREAD", "CacheCore", "Guards", "OnError", "Seen"]

OnError: TypeAlias = Literal["ignore", "raise"]

_log = logging.getLogger("kirocache")

DEFAULT_LABEL: Final = "default"
TAG_PREFIX: Final = "kirocache:tag:"
DEFAULT_MAX_VALUE_SIZE: Final = 16 * 1024 * 1024
DEFAULT_TOMBSTONE_TTL: Final = 60.0
# What an invalidated key holds for ``tombstone_ttl``: this prefix (no serializer header
# starts so) and a random token, so every invalidation leaves a different tombstone.
TOMBSTONE: Final = TOMBSTONE_PREFIX
INTERNAL_PREFIX: Final = "kirocache:"
DEP_PREFIX: Final = "kirocache:dep:"
_GENERATION_MARK: Final = re.compile(r"~g[0-9]+:")
GEN_PREFIX: Final = "kirocache:gen:"

STAMP_PREFIX: Final = "kirocache:tagstamp:"

Guards: TypeAlias = "tuple[tuple[str, bytes | None], ...]"
Seen: TypeAlias = "tuple[str, bytes | None, Guards]"
UNREAD: Final = b""
"""The bytes of a ``Seen`` whose read failed: nothing computed after it is stored (a real
entry is never empty: values carry a header, counters at least one digit)."""
"""What a read before a computation found: the full key, its bytes (``None``: absent), and
the stamps of the entry's tags (``(stamp key, bytes)``), which a tag invalidation changes."""
_COUNTER = re.compile(rb"-?[0-9]+")


class _Failed:
    """The type of ``FAILED``: a backend call that did not happen or did not come back."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final = _Failed()


class _DefaultBreaker:
    """Marker for "build the default circuit breaker"."""


class CacheCore:
    """Configuration and pure decisions shared by the sync and async halves of ``Cache``."""

    def __init__(  # noqa: PLR0915 - validates every option in one place
        self,
        backend: Backend | AsyncBackend,
        *,
        serializer: Serializer | str | None = None,
        metrics: MetricsHook | bool = True,
        key_prefix: str = "",
        namespaces: Iterable[Namespace] = (),
        default_ttl: Duration | None = None,
        on_error: OnError = "ignore",
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        breaker: CircuitBreaker | type[_DefaultBreaker] | None = _DefaultBreaker,
        debug: bool | None = None,
        tombstone_ttl: Duration | None = DEFAULT_TOMBSTONE_TTL,
        invalidation_log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock | None = None,
    ) -> None:
        from kirocache.backends._protocol import AsyncBackend, Backend

        self._sync_ok = isinstance(backend, Backend)
        self._async_ok = isinstance(backend, AsyncBackend)
        if not (self._sync_ok or self._async_ok):
            msg = (
                f"{type(backend).__name__} is not a kirocache backend: it must have the "
                "methods of kirocache.backends.Backend and/or AsyncBackend"
            )
            raise ConfigurationError(msg)
        if on_error not in ("ignore", "raise"):
            msg = f"on_error must be 'ignore' or 'raise', not {on_error!r}"
            raise ConfigurationError(msg)
        if not isinstance(key_prefix, str):
            msg = f"key_prefix must be a str, not {type(key_prefix).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        if isinstance(max_value_size, bool) or not isinstance(max_value_size, int):
            msg = f"max_value_size must be a whole number of bytes, not {max_value_size!r}"
            raise ConfigurationError(msg)
        if max_value_size < 1:
            msg = f"max_value_size must be at least 1 byte, got {max_value_size}"
            raise ConfigurationError(msg)
        self.backend: Any = backend
        self.serializer: Serializer = resolve_serializer(serializer)
        if metrics is True:
            self.metrics: MetricsHook | None = InMemoryMetrics()
        elif metrics is False:
            self.metrics = None
        else:
            self.metrics = metrics
        self.key_prefix = key_prefix
        self.default_ttl = ttl_seconds(default_ttl)
        self.on_error: OnError = on_error
        self.max_value_size = max_value_size
        if clock is None:
            clock = SYSTEM_CLOCK
        elif not isinstance(clock, Clock):
            msg = f"clock must have time() and monotonic() methods, not {clock!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.clock: Clock = clock
        self.breaker: CircuitBreaker | None = (
            CircuitBreaker(clock=clock.monotonic) if breaker is _DefaultBreaker else breaker  # type: ignore[assignment]
        )
        self.debug = settings_from_env().debug if debug is None else debug
        tomb_seconds = (
            0.0 if tombstone_ttl is None else to_seconds(tombstone_ttl, name="tombstone_ttl")
        )
        if tomb_seconds == float("inf"):
            msg = "tombstone_ttl must be finite (tombstones must expire); use None to turn them off"
            raise ConfigurationError(msg)
        self.tombstone_ttl: float | None = tomb_seconds or None
        self._namespaces: list[Namespace] = []
        self._bumpable_known = False
        self._generations: dict[str, int] = {}
        self.rules = InvalidationRules()
        self.invalidation_log = InvalidationLog(invalidation_log_size)
        for namespace in namespaces:
            self.register(namespace)
        self._fault_lock = threading.Lock()
        self._failing = False
        self._burst_errors = 0
        self.errors_total = 0

    # -- namespaces and keys ---------------------------------------------------------------

    def register(self, namespace: Namespace) -> None:
        """Make ``namespace`` known, so plain keys under its prefix get its TTL and label.

        Args:
            namespace: The namespace; the longest matching prefix wins.
        """
        if namespace not in self._namespaces:
            self._namespaces.append(namespace)
            self._namespaces.sort(key=lambda ns: len(ns.prefix), reverse=True)
            self._bumpable_known = self._bumpable_known or namespace.bumpable

    def _find(self, key: str) -> Namespace | None:
        for namespace in self._namespaces:
            if key.startswith(namespace.prefix):
                return namespace
        return None

    def _key(
        self,
        key: str,
        namespace: Namespace | None,
        generations: Mapping[str, int] | None = None,
    ) -> tuple[str, str, float | None]:
        """The backend key, the metrics label and the default TTL of a caller's key.

        A key of a bumpable namespace carries the namespace's generation: from
        ``generations`` when given (a read builds its keys from the generations it is
        checking), else the last one this cache learned.
        """
        if namespace is None:
            check_key(key)
            namespace = self._find(key)
            if namespace is None:
                return self.key_prefix + key, DEFAULT_LABEL, self.default_ttl
            full = self.key_prefix + key
        else:
            if type(key) is not str:
                check_key(key)  # raises; an empty key is the body of a call without arguments
            full = self.key_prefix + namespace.full_key(key)
        if namespace.bumpable:
            known = self._generations if generations is None else generations
            generation = known.get(namespace.prefix, 0)
            if generation:
                at = len(self.key_prefix) + len(namespace.prefix)
                full = f"{full[:at]}~g{generation}:{full[at:]}"
        return full, namespace.prefix, namespace.ttl

    def full_key(self, key: str, namespace: Namespace | None = None) -> str:
        """The key as the backend sees it: key prefix, namespace prefix, then ``key``."""
        return self._key(key, namespace)[0]

    # -- bumpable namespaces ------------------------------------------------------------------

    def _bumpable(self, key: str, namespace: Namespace | None) -> Namespace | None:
        """The bumpable namespace ``key`` lives in, if any (its generation is in the key).

        A bumpable namespace met here is registered, so plain keys under its prefix get its
        generation too.
        """
        if namespace is not None:
            if not namespace.bumpable:
                return None
            if namespace not in self._namespaces:
                self.register(namespace)
            return namespace
        if not self._bumpable_known:
            return None
        found = self._find(key)
        return found if found is not None and found.bumpable else None

    def _generation_key(self, namespace: Namespace) -> str:
        return f"{self.key_prefix}{GEN_PREFIX}{namespace.prefix}"

    def _learn_generation(self, namespace: Namespace, raw: object) -> int:
        """Parse a generation read from the backend and remember it; returns it.

        What is remembered is only a hint for building the next keys: every read checks
        the generation it used against the one it read, and reads again when they differ.
        """
        generation = int(raw) if isinstance(raw, bytes) and _COUNTER.fullmatch(raw) else 0
        self._generations[namespace.prefix] = generation
        return generation

    # -- dependencies and the invalidation log ------------------------------------------------

    def _node(self, target: str | Tag, namespace: Namespace | None) -> str:
        """A dependency graph node: ``k:<full key>`` or ``t:<tag>``."""
        if isinstance(target, Tag):
            check_key(target.name)
            return "t:" + target.name
        return "k:" + self._key(target, namespace)[0]

    def _dep_key(self, node: str) -> str:
        return f"{self.key_prefix}{DEP_PREFIX}{node}"

    def _record(
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
        duration = time.perf_counter() - started
        record = InvalidationRecord(
            at=self.clock.time(),
            source=source,
            event=event,
            rules=tuple(rules),
            keys=tuple(self._unprefix(full) for full in fulls[:KEYS_PER_RECORD]),
            tags=tuple(tags),
            patterns=tuple(patterns),
            namespaces=tuple(namespaces),
            removed=removed,
            duration=duration,
        )
        self.invalidation_log.add(record)
        if self.debug:
            _log.debug("invalidation %s", record)
        return record

    def _tag_key(self, tag: str) -> str:
        check_key(tag)
        return f"{self.key_prefix}{TAG_PREFIX}{tag}"

    def _pattern(self, pattern: str, namespace: Namespace | None) -> str:
        """A glob restricted to this cache's key prefix (and the namespace, if given).

        In a bumpable namespace the glob matches the keys of its current generation.
        """
        check_key(pattern)
        scope = self.key_prefix + (namespace.full_key("") if namespace is not None else "")
        if not scope and pattern.strip("*") == "":
            msg = (
                f"pattern {pattern!r} would match every key in the database; give the cache "
                "a key_prefix or use a narrower pattern"
            )
            raise ConfigurationError(msg)
        glob = escape_glob(scope) + pattern
        space = namespace if namespace is not None else self._find(pattern)
        generation = self._generations.get(space.prefix, 0) if space is not None else 0
        if space is not None and space.bumpable and generation:
            if namespace is not None:
                head = escape_glob(self.key_prefix + space.prefix)
                return f"{head}~g{generation}:{glob[len(head) :]}"
            at = len(escape_glob(self.key_prefix)) + len(escape_glob(space.prefix))
            return f"{glob[:at]}~g{generation}:{glob[at:]}"
        return glob

    def _internal(self, full: str) -> bool:
        """Whether a backend key is one of the cache's own (indexes, stamps, generations)."""
        return full.startswith(self.key_prefix + INTERNAL_PREFIX)

    def _unprefix(self, full: str) -> str:
        """A backend key as the caller names it: no key prefix, no generation marker."""
        return _GENERATION_MARK.sub("", full[len(self.key_prefix) :], count=1)

    @staticmethod
    def _ttl(ttl: Duration | None, default: float | None) -> float | None:
        return default if ttl is None else ttl_seconds(ttl)

    # -- values ----------------------------------------------------------------------------

    def _dumps(self, key: str, value: object) -> bytes:
        data = self.serializer.dumps(value)
        if len(data) > self.max_value_size:
            msg = (
                f"value for key {key!r} is {len(data)} bytes serialized, over "
                f"max_value_size={self.max_value_size}; store less or raise max_value_size"
            )
            raise ValueTooLargeError(msg)
        return data

    def _loads(self, raw: bytes, type: Any) -> Any:
        """Decode stored bytes; counters written by ``incr`` read back as ``int``.

        Raises:
            CorruptValueError: The bytes are not a valid entry for this serializer.
        """
        if not raw.startswith(b"\xc5") and _COUNTER.fullmatch(raw):
            return int(raw)
        return self.serializer.loads(raw, type)

    def _group_by_ttl(
        self, mapping: Mapping[str, object], ttl: Duration | None, namespace: Namespace | None
    ) -> dict[tuple[float | None, str], dict[str, bytes]]:
        """Serialize a ``set_many`` mapping, grouped by (TTL, label): one backend call each."""
        groups: dict[tuple[float | None, str], dict[str, bytes]] = {}
        for key, value in mapping.items():
            full, label, default_ttl = self._key(key, namespace)
            seconds = self._ttl(ttl, default_ttl)
            groups.setdefault((seconds, label), {})[full] = self._dumps(full, value)
        return groups

    # -- invalidation: tombstones and conditional writes --------------------------------------

    def _erase_ops(self, fulls: Iterable[str]) -> list[Op]:
        """Ops that invalidate ``fulls``: each gets a fresh tombstone (or is deleted).

        A tombstone, unlike a delete, changes what a key holds even when it was absent, so
        a conditional write of a value loaded before this invalidation fails (see
        ``_store_ops``). It reads as a miss and expires after ``tombstone_ttl``.
        """
        if self.tombstone_ttl is None:
            return [Op("delete", full) for full in fulls]
        tomb = TOMBSTONE + os.urandom(8)
        return [Op("swap", full, tomb, ttl=self.tombstone_ttl) for full in fulls]

    @staticmethod
    def _erased(results: Iterable[object]) -> tuple[int, Exception | None]:
        """How many live values ``_erase_ops`` removed, and the first error among them."""
        count, error = 0, None
        for result in results:
            if isinstance(result, Exception):
                error = error or result
            elif result is True or (type(result) is bytes and not result.startswith(TOMBSTONE)):
                count += 1
        return count, error

    def _store_ops(
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
        never stored. The tag index entries ride in the same pipeline, before the write;
        the write's answer is the last slot.
        """
        # The index entries go first: a tag invalidation that reads the index between them
        # and the write has already changed the stamp the write checks.
        ops = [Op("tag_add", self._tag_key(tag), ttl=ttl, members=(full,)) for tag in tags]
        ops.append(Op("set_if", full, data, ttl=ttl, expected=seen, guards=guards))
        return ops

    def _stamp_key(self, tag: str) -> str:
        """Where a tag's invalidations leave their mark (see ``Seen``)."""
        return f"{self.key_prefix}{STAMP_PREFIX}{tag}"

    def _stamp_ops(self, tags: Sequence[str]) -> list[Op]:
        """Ops that change the stamps of ``tags``, so writes guarded by them fail."""
        if self.tombstone_ttl is None:
            return []
        stamp = TOMBSTONE + os.urandom(8)
        return [Op("swap", self._stamp_key(tag), stamp, ttl=self.tombstone_ttl) for tag in tags]

    def _too_late(self, read_at: float) -> bool:
        """Whether a tombstone seen (or not) at ``read_at`` may have expired since."""
        ttl = self.tombstone_ttl
        return ttl is not None and time.perf_counter() - read_at >= ttl

    # -- metrics and faults ----------------------------------------------------------------

    def _observe(
        self, op: str, label: str, outcome: Outcome, started: float, key: str = "", count: int = 1
    ) -> None:
        if self.metrics is not None or self.debug:
            latency = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.record(op, label, outcome, latency, count)
            if self.debug:
                _log.debug("%s %s -> %s in %.3f ms", op, key, outcome, latency * 1000)

    def _observe_many(
        self,
        op: str,
        resolved: Sequence[tuple[str, str, float | None]],
        found: Mapping[str, object],
        keys: Sequence[str],
        started: float,
    ) -> None:
        """Record a multi-key read as hits and misses per namespace."""
        tallies: dict[tuple[str, Outcome], int] = {}
        for key, (_, label, _) in zip(keys, resolved, strict=True):
            outcome: Outcome = "hit" if key in found else "miss"
            tallies[label, outcome] = tallies.get((label, outcome), 0) + 1
        for (label, outcome), count in tallies.items():
            self._observe(op, label, outcome, started, count=count)

    def _allow(self, op: str, label: str, started: float) -> bool:
        """Whether the breaker lets a call through; a refusal counts as an error."""
        breaker = self.breaker
        if breaker is None or breaker.allow():
            return True
        self.errors_total += 1
        self._observe(op, label, "error", started)
        if self.on_error == "raise":
            msg = "the cache backend is failing; calls are refused until it recovers"
            raise CircuitOpenError(msg)
        return False

    def _failed(self, op: str, label: str, exc: Exception, started: float) -> _Failed:
        """Sort an exception a backend call raised: a fault fails open, a bug is raised.

        Returns:
            ``FAILED``, after counting and logging the fault (see ``_fault``).

        Raises:
            Exception: ``exc`` itself when it is a programming error (ours or a backend's),
                or ``BackendError`` when the cache has ``on_error="raise"``.
        """
        if not isinstance(exc, BackendError) and isinstance(
            exc, (KirocacheError, TypeError, AttributeError)
        ):
            raise exc
        self._fault(op, label, exc, started)
        return FAILED

    def _slot_failure(self, op: str, label: str, results: Sequence[object], started: float) -> bool:
        """Sort the errors a pipeline left in its slots, as ``_failed`` does; any?

        Raises:
            Exception: A programming error in a slot (a value too large for the backend,
                say), which is the caller's to see, not a fault of the store.
        """
        failed = next((r for r in results if isinstance(r, Exception)), None)
        if failed is None:
            return False
        self._failed(op, label, failed, started)
        return True

    def _fault(self, op: str, label: str, exc: Exception, started: float) -> None:
        """Count, log once per burst, and fail open or raise, for a backend failure."""
        if self.breaker is not None:
            self.breaker.failure()
        with self._fault_lock:
            self.errors_total += 1
            self._burst_errors += 1
            first = not self._failing
            self._failing = True
        if first:
            _log.warning(
                "cache backend failed during %s (%s: %s); %s",
                op,
                type(exc).__name__,
                exc,
                "raising" if self.on_error == "raise" else "failing open until it recovers",
            )
        self._observe(op, label, "error", started)
        if self.on_error == "raise":
            if isinstance(exc, BackendError):
                raise exc
            msg = f"cache backend failed during {op}: {type(exc).__name__}: {exc}"
            raise BackendError(msg) from exc

    def _ok(self) -> None:
        """A backend call came back: close the breaker, end a burst of failures."""
        if self.breaker is not None:
            self.breaker.success()
        if self._failing:
            with self._fault_lock:
                count, self._burst_errors, self._failing = self._burst_errors, 0, False
            _log.warning("cache backend recovered after %d failed calls", count)

    def _need_sync(self) -> None:
        if not self._sync_ok:
            msg = f"{type(self.backend).__name__} has no sync methods; use the a-prefixed ones"
            raise ConfigurationError(msg)

    def _need_async(self) -> None:
        if not self._async_ok:
            msg = f"{type(self.backend).__name__} has no async methods; use the sync ones"
            raise ConfigurationError(msg)
