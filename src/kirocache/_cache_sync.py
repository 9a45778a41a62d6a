"""The sync half of ``Cache``: thin shells over ``CacheCore`` that call the backend.

Generated from ``_cache_async.py`` by ``tools/unasync.py``; do not edit by hand. Its twin
there is the file to change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kirocache._core import FAILED, CacheCore
from kirocache.exceptions import BackendError, CorruptValueError, KirocacheError

if TYPE_CHECKING:
    from kirocache._types import Duration
    from kirocache.backends._protocol import BackendStats
    from kirocache.keys import Namespace

__all__ = ["SyncCacheMethods"]

R = TypeVar("R")


class SyncCacheMethods(CacheCore):
    """The sync methods of ``Cache`` (see there for the class documentation)."""

    def _run(
        self,
        op: str,
        label: str,
        started: float,
        call: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Call the backend under the breaker; ``FAILED`` when it failed open."""
        if not self._sync_ok:
            self._need_sync()
        if not self._allow(op, label, started):
            return FAILED
        try:
            result = call(*args, **kwargs)
        except BackendError as exc:
            self._fault(op, label, exc, started)
            return FAILED
        except (KirocacheError, TypeError, AttributeError):
            raise  # programming errors (ours or a backend's) are not faults of the store
        except Exception as exc:  # noqa: BLE001 - any fault of a third-party backend fails open
            self._fault(op, label, exc, started)
            return FAILED
        self._ok()
        return result

    def get(
        self, key: str, default: Any = None, *, type: Any = None, namespace: Namespace | None = None
    ) -> Any:
        """Return the value cached at ``key``, or ``default`` on a miss or a backend fault.

        Args:
            key: The key (within ``namespace`` when one is given).
            default: What a miss returns; pass ``MISSING`` to tell a miss from cached ``None``.
            type: Decode into this type (a dataclass, ``list[Profile]``, ...).
            namespace: Resolve ``key`` inside this namespace.

        Returns:
            The cached value, or ``default``. A corrupt entry is a miss and is deleted.
        """
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        raw = self._run("get", label, started, self.backend.get, full)
        if raw is FAILED:
            return default
        if raw is None:
            self._observe("get", label, "miss", started, full)
            return default
        try:
            value = self._loads(raw, type)
        except CorruptValueError:
            self._run("delete", label, started, self.backend.delete, full)
            self._observe("get", label, "miss", started, full)
            return default
        self._observe("get", label, "hit", started, full)
        return value

    def set(
        self,
        key: str,
        value: object,
        ttl: Duration | None = None,
        *,
        nx: bool = False,
        namespace: Namespace | None = None,
        tags: Sequence[str] = (),
    ) -> bool:
        """Store ``value`` at ``key``.

        Args:
            key: The key.
            value: Any value the serializer can encode.
            ttl: Seconds (or a timedelta) to live; ``None``: the namespace's or the cache's
                default; ``NEVER``: no expiry.
            nx: Only store if the key is absent.
            namespace: Resolve ``key`` inside this namespace.
            tags: Tags for the entry; ``invalidate_tags`` removes every entry of a tag.

        Returns:
            Whether the value was stored (``False`` on a backend fault or when ``nx`` found
            the key present).

        Raises:
            SerializationError: The value cannot be serialized.
            ValueTooLargeError: It is larger than ``max_value_size`` once serialized.
            InvalidTTLError: ``ttl`` is not a positive duration.
        """
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        data = self._dumps(full, value)
        stored = self._run("set", label, started, self.backend.set, full, data, seconds, nx=nx)
        if stored is FAILED:
            return False
        for tag in tags if stored else ():
            self._run(
                "tag", label, started, self.backend.tag_add, self._tag_key(tag), [full], seconds
            )
        self._observe("set", label, "set" if stored else "skip", started, full)
        return bool(stored)

    def delete(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Remove ``key``; returns whether it existed (``False`` on a backend fault)."""
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        existed = self._run("delete", label, started, self.backend.delete, full)
        if existed is FAILED:
            return False
        self._observe("delete", label, "delete", started, full)
        return bool(existed)

    def exists(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Whether ``key`` holds a live value (``False`` on a backend fault)."""
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        found = self._run("exists", label, started, self.backend.exists, full)
        if found is FAILED:
            return False
        self._observe("exists", label, "hit" if found else "miss", started, full)
        return bool(found)

    def get_many(
        self, keys: Sequence[str], *, type: Any = None, namespace: Namespace | None = None
    ) -> dict[str, Any]:
        """Values of the keys that are cached, in one round trip.

        Args:
            keys: The keys to read.
            type: Decode every value into this type.
            namespace: Resolve every key inside this namespace.

        Returns:
            A dict from each key that was a hit to its value; misses are left out (as are
            all keys on a backend fault). Corrupt entries are misses and are deleted.
        """
        resolved = [self._key(key, namespace) for key in keys]
        if not resolved:
            return {}
        label = resolved[0][1]
        started = time.perf_counter()
        full_keys = [full for full, _, _ in resolved]
        raws = self._run("get_many", label, started, self.backend.get_many, full_keys)
        if raws is FAILED:
            return {}
        found: dict[str, Any] = {}
        corrupt: list[str] = []
        for key, full, raw in zip(keys, full_keys, raws, strict=True):
            if raw is not None:
                try:
                    found[key] = self._loads(raw, type)
                except CorruptValueError:
                    corrupt.append(full)
        if corrupt:
            self._run("delete_many", label, started, self.backend.delete_many, corrupt)
        self._observe_many("get_many", resolved, found, keys, started)
        return found

    def set_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
    ) -> bool:
        """Store every item of ``mapping``, in one round trip per distinct TTL.

        Returns:
            Whether everything was stored (``False`` on a backend fault).
        """
        groups = self._group_by_ttl(mapping, ttl, namespace)
        started = time.perf_counter()
        stored = True
        for (seconds, label), items in groups.items():
            done = self._run("set_many", label, started, self.backend.set_many, items, seconds)
            if done is FAILED:
                stored = False
            else:
                self._observe("set_many", label, "set", started, count=len(items))
        return stored

    def delete_many(self, keys: Sequence[str], *, namespace: Namespace | None = None) -> int:
        """Remove ``keys``; returns how many existed (0 on a backend fault)."""
        resolved = [self._key(key, namespace) for key in keys]
        if not resolved:
            return 0
        label = resolved[0][1]
        started = time.perf_counter()
        full_keys = [full for full, _, _ in resolved]
        removed = self._run("delete_many", label, started, self.backend.delete_many, full_keys)
        if removed is FAILED:
            return 0
        self._observe("delete_many", label, "delete", started, count=int(removed))
        return int(removed)

    def ttl(self, key: str, *, namespace: Namespace | None = None) -> float | None:
        """Seconds ``key`` has left.

        Returns:
            ``None`` if absent (or on a backend fault), ``math.inf`` if it never expires.
        """
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        left = self._run("ttl", label, started, self.backend.ttl, full)
        if left is FAILED:
            return None
        self._observe("ttl", label, "miss" if left is None else "hit", started, full)
        return left  # type: ignore[no-any-return]

    def expire(self, key: str, ttl: Duration, *, namespace: Namespace | None = None) -> bool:
        """Give ``key`` a new TTL (``NEVER`` removes it); returns whether the key existed."""
        full, label, _ = self._key(key, namespace)
        seconds = self._ttl(ttl, None)
        started = time.perf_counter()
        if seconds is None:
            done = self._run("persist", label, started, self.backend.persist, full)
        else:
            done = self._run("expire", label, started, self.backend.expire, full, seconds)
        if done is FAILED:
            return False
        self._observe("expire", label, "set" if done else "miss", started, full)
        return bool(done)

    def persist(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Remove the TTL of ``key``; returns whether it had one."""
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        done = self._run("persist", label, started, self.backend.persist, full)
        if done is FAILED:
            return False
        self._observe("persist", label, "set" if done else "miss", started, full)
        return bool(done)

    def incr(
        self,
        key: str,
        amount: int = 1,
        *,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> int | None:
        """Add ``amount`` to the counter at ``key`` (created at 0 with the TTL).

        Counters are stored as plain integers so the backend adds atomically; ``get``
        reads them back as ``int``.

        Returns:
            The new value, or ``None`` when the backend failed (with ``on_error="ignore"``).
        """
        if isinstance(amount, bool) or not isinstance(amount, int):
            msg = f"amount must be an int, not {amount!r}"
            raise TypeError(msg)
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        value = self._run("incr", label, started, self.backend.incr, full, amount, seconds)
        if value is FAILED:
            return None
        self._observe("incr", label, "set", started, full)
        return int(value)

    def delete_pattern(self, pattern: str, *, namespace: Namespace | None = None) -> int:
        """Delete the keys matching a glob ``pattern`` under this cache's key prefix.

        Uses SCAN and UNLINK in batches, never KEYS or FLUSHDB; a key outside the cache's
        ``key_prefix`` (and ``namespace``, when given) is never touched.

        Returns:
            How many keys were deleted (0 on a backend fault).

        Raises:
            ConfigurationError: The pattern would match the whole database.
        """
        glob = self._pattern(pattern, namespace)
        label = namespace.prefix if namespace is not None else "default"
        started = time.perf_counter()
        removed = self._run("delete_pattern", label, started, self.backend.delete_pattern, glob)
        if removed is FAILED:
            return 0
        self._observe("delete_pattern", label, "delete", started, glob, count=int(removed))
        return int(removed)

    def invalidate_tags(self, *tags: str) -> int:
        """Remove every entry carrying any of ``tags``, and the tags' indexes.

        Returns:
            How many entries were removed (0 on a backend fault).
        """
        started = time.perf_counter()
        removed = 0
        for tag in tags:
            tag_key = self._tag_key(tag)
            members = self._run(
                "invalidate_tags", "tags", started, self.backend.tag_members, tag_key
            )
            if members is FAILED:
                continue
            count = self._run(
                "invalidate_tags", "tags", started, self.backend.delete_many, [*members, tag_key]
            )
            if count is not FAILED:
                removed += max(0, int(count) - 1) if members else 0
        self._observe("invalidate_tags", "tags", "delete", started, count=removed)
        return removed

    def ping(self) -> float:
        """Round-trip latency to the backend in seconds.

        Raises:
            BackendError: The backend did not answer (a probe never fails open).
        """
        self._need_sync()
        return float(self.backend.ping())

    def stats(self) -> BackendStats:
        """The backend's own figures (memory, clients, keys, evictions...).

        Raises:
            BackendError: The backend did not answer.
        """
        self._need_sync()
        stats: BackendStats = self.backend.stats()
        return stats

    def close(self) -> None:
        """Release the backend's connections (the cache can be used again afterwards)."""
        if self._sync_ok:
            self.backend.close()
