"""The sync half of ``Cache``'s invalidation.

Generated from ``_invalidation_async.py`` by ``tools/unasync.py``; do not edit by hand. Its twin
there is the file to change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kirocache._cache_sync import SyncCacheMethods
from kirocache._core import DEFAULT_LABEL, FAILED
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import Op
from kirocache.exceptions import ConfigurationError
from kirocache.invalidation import InvalidationEvent, InvalidationRecord, Tag

if TYPE_CHECKING:
    from kirocache._types import Duration
    from kirocache.keys import Namespace

__all__ = ["SyncInvalidationMethods"]


class SyncInvalidationMethods(SyncCacheMethods):
    """The async invalidation methods of ``Cache`` (see there for the class documentation)."""

    def delete(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Invalidate ``key`` and its dependents; returns whether it held a value.

        The key keeps a tombstone for ``tombstone_ttl`` (it reads as absent), so a value
        computed before this call can no longer be stored by ``@cached``.
        """
        self._refresh_generations((key,), namespace)
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        removed, erased, direct = self._cascade("delete", label, started, [full], [])
        self._record("delete", started, removed=removed, fulls=erased)
        return direct > 0

    def delete_many(self, keys: Sequence[str], *, namespace: Namespace | None = None) -> int:
        """Invalidate ``keys`` and their dependents; returns how many of ``keys`` held a value."""
        if not keys:
            return 0
        self._refresh_generations(keys, namespace)
        resolved = [self._key(key, namespace) for key in keys]
        started = time.perf_counter()
        fulls = [full for full, _, _ in resolved]
        removed, erased, direct = self._cascade("delete_many", resolved[0][1], started, fulls, [])
        self._record("delete", started, removed=removed, fulls=erased)
        return direct

    def invalidate_tags(self, *tags: str) -> int:
        """Invalidate every entry carrying any of ``tags`` (and their dependents).

        Returns:
            How many entries were removed (0 on a backend fault).
        """
        started = time.perf_counter()
        removed, erased, _ = self._cascade("invalidate_tags", "tags", started, [], list(tags))
        self._record("tags", started, removed=removed, fulls=erased, tags=tags)
        return removed

    def delete_pattern(
        self, pattern: str, *, namespace: Namespace | None = None, batch_size: int = 500
    ) -> int:
        """Delete the keys matching a glob ``pattern`` under this cache's key prefix.

        Uses SCAN and UNLINK in batches, never KEYS or FLUSHDB; a key outside the cache's
        ``key_prefix`` (and ``namespace``, when given) is never touched. Each SCAN reads
        about ``batch_size`` keys and each UNLINK frees its batch off the server's main
        thread, so other clients wait at most one batch (a million keys: see the docs'
        invalidation design page). Unlike a key or tag invalidation it leaves no tombstones,
        so a value being computed meanwhile may still be stored; a bumpable namespace
        (``bump``) has no such window.

        Returns:
            How many keys were deleted (0 on a backend fault), tombstones of recent
            invalidations included.

        Raises:
            ConfigurationError: The pattern would match the whole database, or
                ``batch_size`` is not an int >= 1.
        """
        if type(batch_size) is not int or batch_size < 1:
            msg = f"batch_size must be an int >= 1, got {batch_size!r}"
            raise ConfigurationError(msg)
        self._refresh_generations((pattern,), namespace)
        started = time.perf_counter()
        glob = self._pattern(pattern, namespace)
        removed = self._delete_glob(glob, namespace, started, batch_size)
        scope = namespace.full_key(pattern) if namespace is not None else pattern
        self._record("pattern", started, removed=removed, patterns=[scope])
        return removed

    def invalidate_pattern(
        self, pattern: str, *, namespace: Namespace | None = None, batch_size: int = 500
    ) -> int:
        """The pattern delete (SCAN + UNLINK in batches) under its invalidation name."""
        return self.delete_pattern(pattern, namespace=namespace, batch_size=batch_size)

    def _delete_glob(
        self, glob: str, namespace: Namespace | None, started: float, batch_size: int = 500
    ) -> int:
        """Delete the keys matching ``glob`` (see ``_pattern``), page by page."""
        label = namespace.prefix if namespace is not None else DEFAULT_LABEL
        removed = self._run("delete_pattern", label, started, self._purge, glob, batch_size)
        if removed is FAILED:
            return 0
        self._observe("delete_pattern", label, "delete", started, glob, count=int(removed))
        return int(removed)

    def _purge(self, glob: str, batch_size: int) -> int:
        """SCAN ``glob`` and UNLINK each page; the cache's own keys are skipped.

        Indexes, stamps and namespace generations live under the key prefix too, and a
        pattern must not reach them (a generation deleted would bring old entries back),
        unless it clears the whole cache (``*`` with no namespace).
        """
        everything = glob == escape_glob(self.key_prefix) + "*"
        removed, page = 0, []
        for full in self.backend.scan(glob, batch_size):
            if everything or not self._internal(full):
                page.append(full)
            if len(page) >= batch_size:
                removed += self.backend.delete_many(page)
                page = []
        if page:
            removed += self.backend.delete_many(page)
        return removed

    def bump(self, namespace: Namespace) -> int:
        """Invalidate every entry of a bumpable ``namespace`` in O(1): raise its generation.

        Keys carry the generation, so old entries are never read again and expire by their
        TTL; a value computed before the bump lands under the old generation, unread.

        Returns:
            The new generation (0 on a backend fault).

        Raises:
            ConfigurationError: The namespace was not made with ``bumpable=True``.
        """
        if not namespace.bumpable:
            msg = (
                f"namespace {namespace.prefix!r} is not bumpable: make it with "
                "Namespace(..., bumpable=True), or use invalidate_namespace()"
            )
            raise ConfigurationError(msg)
        started = time.perf_counter()
        generation = self._bump_generation(namespace, started)
        self._record("namespace", started, removed=0, namespaces=[namespace.prefix])
        return generation

    def _bump_generation(self, namespace: Namespace, started: float) -> int:
        self.register(namespace)
        generation = self._run(
            "bump", namespace.prefix, started, self.backend.incr, self._generation_key(namespace)
        )
        if generation is FAILED:
            return 0
        self._generations[namespace.prefix] = int(generation)
        self._observe("bump", namespace.prefix, "delete", started)
        return int(generation)

    def invalidate_namespace(self, namespace: Namespace) -> int:
        """Invalidate a whole namespace: a ``bump`` if it is bumpable, else a pattern delete.

        Returns:
            How many keys the pattern delete removed (0 for a bump, which removes nothing).
        """
        if namespace.bumpable:
            self.bump(namespace)
            return 0
        started = time.perf_counter()
        removed = self._delete_glob(self._pattern("*", namespace), namespace, started)
        self._record("namespace", started, removed=removed, namespaces=[namespace.prefix])
        return removed

    def depends(
        self,
        dependent: str | Tag,
        *,
        on: str | Tag,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> bool:
        """Record that ``dependent`` is derived from ``on``: invalidating ``on`` removes it.

        Both are keys (in ``namespace`` when given) or ``Tag``s. Invalidation follows
        dependencies transitively and stops at cycles. Record the dependency when you store
        the dependent; the edge lives ``ttl`` (by default the dependent's TTL) and the
        cleanup task prunes edges whose dependent is gone.

        Returns:
            Whether the edge was recorded (``False`` on a backend fault).

        Raises:
            ConfigurationError: ``dependent`` and ``on`` are the same.
        """
        keys = [target for target in (dependent, on) if isinstance(target, str)]
        self._refresh_generations(keys, namespace)
        node, source = self._node(dependent, namespace), self._node(on, namespace)
        if node == source:
            msg = f"{dependent!r} cannot depend on itself"
            raise ConfigurationError(msg)
        if ttl is None and isinstance(dependent, str):
            seconds = self._key(dependent, namespace)[2]
        else:
            seconds = self._ttl(ttl, self.default_ttl)
        started = time.perf_counter()
        op = Op("tag_add", self._dep_key(source), ttl=seconds, members=(node,))
        results = self._run("depends", "dependencies", started, self.backend.execute, [op])
        return results is not FAILED and not self._slot_failure(
            "depends", "dependencies", results, started
        )

    def invalidate(self, event: InvalidationEvent, *, source: str = "event") -> InvalidationRecord:
        """Invalidate what the rules (``cache.rules``) say ``event`` makes stale.

        Keys and tags of every matching rule are invalidated with their dependents, its
        patterns deleted and its namespaces invalidated whole; one record of it all goes to
        the invalidation log and the metrics hook.

        Returns:
            The log record: rules applied, keys removed, duration.

        Raises:
            InvalidKeyError: A rule's template reads a field the event does not carry.
        """
        if not isinstance(event, InvalidationEvent):
            msg = f"invalidate() takes an InvalidationEvent, not {type(event).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        started = time.perf_counter()
        rules = self.rules.matching(event.type)
        keys: dict[str, None] = {}
        tags: dict[str, None] = {}
        patterns: dict[str, None] = {}
        spaces: dict[Namespace, None] = {}
        for rule in rules:
            rule_keys, rule_tags, rule_patterns = rule.render(event)
            keys.update(dict.fromkeys(rule_keys))
            tags.update(dict.fromkeys(rule_tags))
            patterns.update(dict.fromkeys(rule_patterns))
            spaces.update(dict.fromkeys(rule.namespaces))
        self._refresh_generations([*keys, *patterns], None)
        # Everything is resolved and checked before the first change, so a bad key or
        # pattern leaves nothing half done.
        fulls = [self._key(key, None)[0] for key in keys]
        globs = [self._pattern(pattern, None) for pattern in patterns]
        for tag in tags:
            self._tag_key(tag)
        removed, erased, _ = self._cascade("invalidate", "events", started, fulls, list(tags))
        for glob in globs:
            removed += self._delete_glob(glob, None, started)
        for space in spaces:
            if space.bumpable:
                self._bump_generation(space, started)
            else:
                removed += self._delete_glob(self._pattern("*", space), space, started)
        return self._record(
            source,
            started,
            removed=removed,
            fulls=erased,
            tags=list(tags),
            patterns=list(patterns),
            namespaces=[space.prefix for space in spaces],
            event=event.type,
            rules=[rule.name for rule in rules],
        )

    def _cascade(
        self, op: str, label: str, started: float, fulls: Sequence[str], tags: Sequence[str]
    ) -> tuple[int, list[str], int]:
        """Invalidate keys and tags, then their dependents, level by level, once each.

        Per level: one round trip reads the tags' members and dependents (when there are
        tags), one tombstones the keys, deletes the tag indexes and reads the keys'
        dependents. A node already visited is never visited again, so cycles end.

        Returns:
            How many live values were removed, every full key invalidated, and how many of
            the ``fulls`` given held a live value.
        """
        visited: set[str] = set()
        removed, erased, direct = 0, [], -1
        keys, tag_list = list(dict.fromkeys(fulls)), list(dict.fromkeys(tags))
        while keys or tag_list:
            visited.update("k:" + key for key in keys)
            visited.update("t:" + tag for tag in tag_list)
            found: list[str] = []
            lists: list[list[str]] = [[] for _ in tag_list]
            if tag_list:
                # The stamps change first, so a write guarded by them (a value loading now)
                # fails even when its key is not in the tag's index yet.
                stamps = self._stamp_ops(tag_list)
                ops = [*stamps, *(Op("tag_members", self._tag_key(tag)) for tag in tag_list)]
                ops += [Op("tag_members", self._dep_key("t:" + tag)) for tag in tag_list]
                results = self._run(op, label, started, self.backend.execute, ops)
                if results is FAILED:
                    break
                self._slot_failure(op, label, results, started)  # stamps included
                results = results[len(stamps) :]
                lists = [r if isinstance(r, list) else [] for r in results]
                members = [
                    member for found_members in lists[: len(tag_list)] for member in found_members
                ]
                keys += [m for m in dict.fromkeys(members) if "k:" + m not in visited]
                visited.update("k:" + key for key in keys)
                found = [node for dependents in lists[len(tag_list) :] for node in dependents]
            ops = self._erase_ops(keys)
            # Only the members read leave the index: an entry added since (a value stored
            # under the new stamp) stays, so the next invalidation of the tag finds it.
            ops += [
                Op("tag_remove", self._tag_key(tag), members=tuple(read))
                for tag, read in zip(tag_list, lists, strict=False)
            ]
            ops += [Op("tag_members", self._dep_key("k:" + key)) for key in keys]
            results = self._run(op, label, started, self.backend.execute, ops)
            if results is FAILED:
                break
            count, failed = self._erased(results[: len(keys)])
            if failed is not None:
                self._fault("invalidate", label, failed, started)
            removed += count
            direct = count if direct < 0 else direct
            erased += keys
            found += [
                node
                for r in results[len(keys) + len(tag_list) :]
                if isinstance(r, list)
                for node in r
            ]
            fresh = [node for node in dict.fromkeys(found) if node not in visited]
            keys = [node[2:] for node in fresh if node.startswith("k:")]
            tag_list = [node[2:] for node in fresh if node.startswith("t:")]
        self._observe(op, label, "delete", started, count=removed)
        return removed, erased, max(direct, 0)
