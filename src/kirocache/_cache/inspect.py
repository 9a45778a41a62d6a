"""The operator's view of a cache: list keys a page at a time, inspect one, invalidate by hand.

``scan_keys`` and ``inspect`` are steps for the public drivers (``run_steps``/``arun_steps``):
an operator asking what is there wants to hear that the backend failed, so they raise
``BackendError`` instead of failing open. ``invalidate_targets`` is a cache operation like
``invalidate`` (it fails safe: what the backend refuses is kept pending), for callers who
name keys, tags, patterns and namespaces themselves -- an admin API, a CLI -- and want one
log record with their own ``source``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from kirocache._cache.driver import Pages
from kirocache._cache.invalidations import _bump_generation, _delete_glob
from kirocache._cache.keyspace import DEFAULT_LABEL
from kirocache._cache.writes import refresh_generations
from kirocache._values.stamped import is_stamped, unwrap
from kirocache.backends import TOMBSTONE_PREFIX, Call, Op, Steps
from kirocache.exceptions import ConfigurationError, CorruptValueError
from kirocache.invalidation import KEYS_PER_RECORD, InvalidationEvent, InvalidationRecord
from kirocache.keys import Namespace
from kirocache.serializers import (
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FORMAT_JSON,
    FORMAT_PICKLE,
    FORMAT_RAW_BYTES,
    FORMAT_RAW_STR,
    HEADER_SIZE,
)

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache._cache.driver import Flow

__all__ = ["MAX_PAGE", "EntryInfo", "KeyPage", "invalidate_targets"]

MAX_PAGE: Final = 10_000
"""The largest ``count`` of one ``scan_keys`` page."""
_SKIP_CHUNK: Final = 1000
_MARK: Final = re.compile(r"~g([0-9]+):")
_FORMATS: Final = {
    FORMAT_JSON: "json",
    FORMAT_RAW_BYTES: "bytes",
    FORMAT_RAW_STR: "text",
    FORMAT_PICKLE: "pickle",
}


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPage:
    """One page of ``Cache.scan_keys``.

    Attributes:
        keys: The keys, as the caller names them (no key prefix, no generation mark).
        cursor: Where the next page starts; ``0`` when the listing is done.
        pattern: The glob the keys matched (relative to the key prefix).
    """

    keys: tuple[str, ...]
    cursor: int
    pattern: str

    def to_dict(self) -> dict[str, object]:
        """The page as JSON-ready data."""
        return {"keys": list(self.keys), "cursor": self.cursor, "pattern": self.pattern}


@dataclasses.dataclass(frozen=True, slots=True)
class EntryInfo:
    """What ``Cache.inspect`` found at a key, without decoding its value.

    Attributes:
        key: The key as the caller names it.
        full_key: The key as the backend sees it.
        namespace: The metrics label of its namespace (``"default"`` outside any).
        ttl: Seconds left, ``None`` when it never expires.
        size: Bytes stored (tag envelope included).
        format: ``json``, ``bytes``, ``text``, ``pickle``, ``counter`` (written by
            ``incr``), ``tombstone`` (invalidated: absent to every reader),
            ``format-<id>`` (a third-party serializer) or ``unknown`` (not a kirocache
            frame).
        compressed: The frame's compression flag.
        encrypted: The frame's encryption flag.
        serializer: The class name of the cache's serializer.
        tags: The tags the entry was written with (``set(..., tags=...)``, ``@cached``).
        dependents: How many keys and tags depend on it (``Cache.depends``).
        tombstone: It was invalidated recently: readers see it as absent.
        pending: An invalidation this process keeps pending reaches it: reads here miss.
    """

    key: str
    full_key: str
    namespace: str
    ttl: float | None
    size: int
    format: str
    compressed: bool
    encrypted: bool
    serializer: str
    tags: tuple[str, ...] = ()
    dependents: int = 0
    tombstone: bool = False
    pending: bool = False

    def to_dict(self) -> dict[str, object]:
        """The entry as JSON-ready data."""
        data = dataclasses.asdict(self)
        data["tags"] = list(self.tags)
        return data


def format_of(raw: bytes) -> tuple[str, bool, bool]:
    """The format name of stored bytes, and their compressed and encrypted flags."""
    if raw.startswith(TOMBSTONE_PREFIX):
        return "tombstone", False, False
    if len(raw) >= HEADER_SIZE and raw[0] == 0xC5:
        format_id, flags = raw[2], raw[3]
        name = _FORMATS.get(format_id, f"format-{format_id}")
        return name, bool(flags & FLAG_COMPRESSED), bool(flags & FLAG_ENCRYPTED)
    if raw.lstrip(b"-").isdigit():
        return "counter", False, False
    return "unknown", False, False


def _count(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{name} must be an int from {low} to {high}, got {value!r}"
        raise ConfigurationError(msg)
    return value


def _generations(cache: Cache, keys: Sequence[str], namespace: Namespace | None) -> Steps[None]:
    """Learn the generations of the bumpable namespaces of ``keys`` (one round trip)."""
    space = cache.keyspace
    spaces = space.bumpables(keys, namespace)
    if spaces:
        raws = yield Call(cache.backend, "get_many", ([space.generation_key(s) for s in spaces],))
        for found, raw in zip(spaces, raws, strict=True):
            space.learn_generation(found, raw)


def scan_keys(
    cache: Cache, pattern: str, cursor: int, count: int, namespace: Namespace | None
) -> Steps[KeyPage]:
    """``Cache.scan_keys``: one page of the keys matching ``pattern`` under the key prefix.

    The cursor counts the backend keys the listing has passed, so it needs no state
    between calls (any process can serve the next page) and a page re-reads the SCAN up
    to it. As with SCAN, keys written or removed between pages may be missed or repeated.
    """
    _count(cursor, "cursor", 0, 2**63)
    _count(count, "count", 1, MAX_PAGE)
    keys = cache.keyspace
    yield from _generations(cache, [pattern], namespace)
    scope = keys.key_prefix + (namespace.full_key("") if namespace is not None else "")
    if not scope and pattern.strip("*") == "":
        keys.check(pattern, namespace)  # reading the whole database is allowed; deleting is not
        glob = pattern
    else:
        glob = keys.pattern(pattern, namespace)
    scan = Pages(cache.backend, glob, max(count, 100))
    try:
        skipped = 0
        while skipped < cursor:
            chunk = yield Call(scan, "take", (min(cursor - skipped, _SKIP_CHUNK),))
            if not chunk:
                return KeyPage((), 0, pattern)
            skipped += len(chunk)
        found: dict[str, None] = {}
        known: set[str] = set()
        passed, budget = 0, 10 * count  # a stretch of internal keys only is not read forever
        while len(found) < count and passed < budget:
            want = count - len(found)
            chunk = yield Call(scan, "take", (want,))
            passed += len(chunk)
            mine = yield from _current(cache, [k for k in chunk if not keys.internal(k)], known)
            found.update((keys.unprefix(full), None) for full in mine)
            if len(chunk) < want:
                return KeyPage(tuple(found), 0, pattern)
        return KeyPage(tuple(found), cursor + passed, pattern)
    finally:
        yield Call(scan, "close")


def _current(cache: Cache, fulls: list[str], known: set[str]) -> Steps[list[str]]:
    """``fulls`` without the entries of a bumpable namespace's past generations.

    Those are never read again (they wait for their TTL), so they are not listed. The
    generations of the namespaces met are read once per call (``known``).
    """
    keys = cache.keyspace
    head = len(keys.key_prefix)
    spaces = {}
    for full in fulls:
        space = keys.find(full[head:])
        if space is not None and space.bumpable:
            spaces[full] = space
    fresh = list({space.prefix: space for space in spaces.values() if space.prefix not in known})
    if fresh:
        unread = [s for s in dict.fromkeys(spaces.values()) if s.prefix in fresh]
        raws = yield Call(cache.backend, "get_many", ([keys.generation_key(s) for s in unread],))
        for space, raw in zip(unread, raws, strict=True):
            keys.learn_generation(space, raw)
        known.update(fresh)
    kept = []
    for full in fulls:
        space = spaces.get(full)
        if space is not None:
            mark = _MARK.match(full, head + len(space.prefix))
            if (int(mark.group(1)) if mark else 0) != keys.generations.get(space.prefix, 0):
                continue
        kept.append(full)
    return kept


def inspect(cache: Cache, key: str, namespace: Namespace | None) -> Steps[EntryInfo | None]:
    """``Cache.inspect``: TTL, size, format, tags, dependents of one key; ``None`` if absent."""
    keys = cache.keyspace
    keys.check(key, namespace)
    yield from _generations(cache, [key], namespace)
    full, label, _ = keys.resolve(key, namespace)
    ops = [Op("get", full), Op("ttl", full), Op("tag_members", keys.dep_key("k:" + full))]
    raw, ttl, dependents = yield Call(cache.backend, "execute", (ops,))
    for slot in (raw, ttl, dependents):
        if isinstance(slot, BaseException):
            raise slot
    if raw is None:
        return None
    size = len(raw)
    tags: tuple[str, ...] = ()
    if is_stamped(raw):
        try:
            stamps, raw = unwrap(raw)
        except CorruptValueError:
            stamps = []
        tags = tuple(tag for tag, _ in stamps)
    name, compressed, encrypted = format_of(raw)
    pending = cache.invalidator.pending
    return EntryInfo(
        key=keys.unprefix(full),
        full_key=full,
        namespace=label,
        ttl=None if ttl is None or math.isinf(ttl) else float(ttl),
        size=size,
        format=name,
        compressed=compressed,
        encrypted=encrypted,
        serializer=type(cache.serializer).__name__,
        tags=tags,
        dependents=len(dependents),
        tombstone=name == "tombstone",
        pending=pending.active and pending.blocks(full),
    )


def invalidate_targets(
    cache: Cache,
    keys: Sequence[str],
    tags: Sequence[str],
    patterns: Sequence[str],
    namespaces: Sequence[Namespace | str],
    event: InvalidationEvent | None,
    source: str,
    batch_size: int,
    log: bool,
) -> Flow[InvalidationRecord]:
    """``Cache.invalidate_targets``: keys, tags, patterns, namespaces and an event's rules.

    Everything is resolved and checked before the first change, as ``invalidate`` does.
    """
    _count(batch_size, "batch_size", 1, MAX_PAGE)
    space, invalidator = cache.keyspace, cache.invalidator
    names = dict.fromkeys(_texts(keys, "keys"))
    tag_set = dict.fromkeys(_texts(tags, "tags"))
    globs_of = dict.fromkeys(_texts(patterns, "patterns"))
    spaces = dict.fromkeys(_namespace(cache, ns) for ns in namespaces)
    rules: list[str] = []
    if event is not None:
        if not isinstance(event, InvalidationEvent):
            msg = f"event must be an InvalidationEvent, not {type(event).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        for rule in cache.rules.matching(event.type):
            rule_keys, rule_tags, rule_patterns = rule.render(event)
            names.update(dict.fromkeys(rule_keys))
            tag_set.update(dict.fromkeys(rule_tags))
            globs_of.update(dict.fromkeys(rule_patterns))
            spaces.update(dict.fromkeys(rule.namespaces))
            rules.append(rule.name)
    yield from refresh_generations(cache, [*names, *globs_of], None)
    resolved = [space.resolve(key, None) for key in names]
    globs = [space.pattern(pattern, None) for pattern in globs_of]
    for tag in tag_set:
        space.tag_key(tag)
    started = time.perf_counter()
    label = resolved[0][1] if resolved else DEFAULT_LABEL
    removed, erased, _, _ = yield from invalidator.cascade(
        cache, "invalidate", label, started, [full for full, _, _ in resolved], list(tag_set)
    )
    for glob in globs:
        removed += yield from _delete_glob(cache, glob, None, started, batch_size)
    for ns in spaces:
        if ns.bumpable:
            yield from _bump_generation(cache, ns, started)
        else:
            glob = space.pattern("*", ns)
            removed += yield from _delete_glob(cache, glob, ns, started, batch_size)
    record = InvalidationRecord(
        at=cache.clock.time(),
        source=source,
        event=event.type if event is not None else None,
        rules=tuple(rules),
        keys=tuple(space.unprefix(full) for full in erased[:KEYS_PER_RECORD]),
        tags=tuple(tag_set),
        patterns=tuple(globs_of),
        namespaces=tuple(ns.prefix for ns in spaces),
        removed=removed,
        duration=time.perf_counter() - started,
    )
    if log:
        invalidator.log.add(record)
    return record


def _texts(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str):
        msg = f"{what} must be a list of str, not a single str; wrap it in a list"
        raise ConfigurationError(msg)
    return list(values)


def _namespace(cache: Cache, namespace: Namespace | str) -> Namespace:
    """A namespace given by itself or by the prefix of a registered one."""
    if isinstance(namespace, Namespace):
        return namespace
    found = cache.keyspace.find(namespace) if type(namespace) is str else None
    if found is None or found.prefix != namespace:
        msg = (
            f"namespace {namespace!r} is not registered with this cache; register it "
            "(Cache(namespaces=...) or cache.register) or pass the Namespace itself"
        )
        raise ConfigurationError(msg)
    return found
