"""The plan of a cached function: keys, tags, TTLs, freshness and what to store; no I/O.

One ``Plan`` serves ``@cached`` and ``@cached_many`` (which adds a ``Bulk``, ``bulk.py``),
sync and async: every decision the wrappers make is a method here, so they cannot drift.
"""

from __future__ import annotations

import logging
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from kirocache._cache import UNREAD
from kirocache._cache.resolved import areader, reader
from kirocache._decorators.options import Options
from kirocache._values.expiry import Expiry
from kirocache._values.faithful import Check, packed_reason, speaks_json, speaks_msgpack
from kirocache._values.randomness import RANDOM
from kirocache.backends._lock import DistributedLock
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
    ValueTooLargeError,
)
from kirocache.keys import ArgumentKey, KeyTemplate, Namespace
from kirocache.metrics import Outcome

if typing.TYPE_CHECKING:
    from kirocache._cache import Cache, Seen
    from kirocache._values.clock import Clock

__all__ = ["Freshness", "Job", "Plan", "Route", "Unstorable", "resolve_cache", "return_type"]

Freshness: TypeAlias = Literal["fresh", "refresh", "stale"]
Unstorable: TypeAlias = "SerializationError | ValueTooLargeError"
"""What storing a computed value can raise when the value, not the backend, is the problem."""
_NO_TAGS: tuple[str, ...] = ()
# The fresh time in an envelope whose result never expires (a JSON number, unlike inf).
_FOREVER: Final = 100 * 365 * 24 * 3600.0
_log = logging.getLogger("kirocache")


def return_type(func: Callable[..., Any]) -> Any:
    """The return annotation, resolved (``from __future__ import annotations`` makes strings)."""
    target = getattr(func, "__func__", func)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an unresolvable annotation means untyped decoding
        return None
    annotation = hints.get("return")
    return None if annotation is None or annotation is Any else annotation


def _written_return(func: Callable[..., Any]) -> str | None:
    """The return annotation as written, when it is a string (it did not resolve)."""
    written = getattr(func, "__annotations__", {}).get("return")
    return written if isinstance(written, str) else None


def resolve_cache(cache: Cache | None) -> Cache:
    """``cache``, or the process-wide default as it is now (so later swaps take effect)."""
    if cache is not None:
        return cache
    from kirocache._cache.default import get_cache

    return get_cache()


NOT_READ: Seen = ("", UNREAD, ())
"""The ``Job.seen`` of a job whose read has not happened yet: a write on it never lands."""


class Route:
    """Where a plan's keys live in one cache, resolved once rather than on every call.

    A key body ``b`` of the plan's namespace resolves to ``head + b`` with the metrics
    label ``label`` (what ``KeySpace.resolve`` gives, checks included) while the cache's
    key prefix stays the same object: outside a bumpable namespace, the namespace and the
    key prefix are all a resolve depends on (registered namespaces only name the plain
    keys of ``cache.get``). ``Plan.route_for`` makes one when the plan's keys can take it.

    Attributes:
        cache: The cache it was resolved in.
        key_prefix: That cache's key prefix when it was.
        head: The full key of the empty body: key prefix, namespace prefix and version.
        label: The metrics label of the plan's keys.
        inline: The cache's backend if it answers its sync methods without waiting
            (``answers_inline``), so an async hit may read it with the sync ``read``,
            which a coroutine would only wrap; else ``None``.
        read: The hit's read of a key body, ``read(body, started)`` (``reader``), with
            the route's constants bound once: the value of a plain hit, else a ``Looked``.
        aread: Its async twin (``areader``).
    """

    __slots__ = ("aread", "cache", "head", "inline", "key_prefix", "label", "read")

    def __init__(self, cache: Cache, head: str, label: str, plan: Plan) -> None:
        self.cache = cache
        self.key_prefix = cache.keyspace.key_prefix
        self.head = head
        self.label = label
        # a plain hit is answered with its value alone, unless the plan's envelope needs
        # what was seen (a refresh's write is conditional on it)
        bound = (
            cache,
            head,
            label,
            plan.stored_type,
            plan.namespace,
            plan.counts_hits,
            not plan.enveloped,
        )
        self.read = reader(*bound)
        self.aread = areader(*bound)
        # asked of its class: a wrapper passing attributes on to a MemoryBackend does not
        # answer inline (its own ``get`` may wait), nor does a class whose ``aget`` is not
        # MemoryBackend's (a mixin's, or one patched onto the class)
        backend = cache.backend
        kind = type(backend)
        inline = getattr(kind, "answers_inline", False) and _memory_aget(kind)
        self.inline = backend if inline else None


@dataclass(slots=True)
class Job:
    """One computation to run and store: a call's key, tags and arguments, and its read.

    Attributes:
        cache: The cache the call reads and writes.
        body: The key body (the namespace adds its prefix).
        tags: The call's tags, rendered once from its arguments.
        args: The positional arguments (``self`` included for a method).
        kwargs: The keyword arguments.
        seen: What the read before the computation saw, for the conditional write that
            keeps a value loaded before an invalidation from landing after it (see
            ``Cache._store``); ``NOT_READ`` until a read fills it in (nothing is stored
            on it).
        read_at: When that read started (``time.perf_counter``).
    """

    cache: Cache
    body: str
    tags: Sequence[str]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    seen: Seen
    read_at: float


class Plan:
    """Everything a cached function's calls share, decided once at decoration.

    Args:
        func: The decorated function (a ``classmethod`` or ``staticmethod`` is unwrapped).
        options: The decorator's checked options.

    Raises:
        ConfigurationError: A template names an unknown parameter, or ``stale_ttl`` or
            ``early_refresh`` is given without a TTL.
    """

    __slots__ = (
        "_warned",
        "arguments",
        "build",
        "cache",
        "check",
        "counts_hits",
        "enveloped",
        "expiry",
        "function",
        "name",
        "namespace",
        "options",
        "routable",
        "route",
        "stored_type",
        "tags",
        "template",
        "ttl",
        "value_type",
    )

    def __init__(self, func: Callable[..., Any], options: Options) -> None:
        target = getattr(func, "__func__", func)
        self.function: Callable[..., Any] = target
        self.options = options
        self.name = f"{target.__module__}.{target.__qualname__}"
        prefix = options.prefix
        if isinstance(prefix, Namespace):
            self.namespace = prefix
        else:
            self.namespace = Namespace(
                f"{self.name}:" if prefix is None else prefix, ttl=options.ttl
            )
        ttl = options.ttl
        self.ttl = self.namespace.ttl if ttl is None else None if math.isinf(ttl) else ttl
        # how long each result lives: a fixed TTL, or one read from the result (the
        # decorator's function, else the namespace's), for None results too, jittered
        function = options.ttl_function
        if ttl is None and function is None:
            function = self.namespace.ttl_function
        jitter = self.namespace.jitter if options.jitter is None else options.jitter
        self.expiry = Expiry(self.ttl, function, options.none_ttl, jitter)
        self.arguments = ArgumentKey(func)
        self.template = KeyTemplate(options.key, func) if options.key is not None else None
        # The key body of a call: the template's, else every bound argument's.
        self.build: Callable[[tuple[Any, ...], dict[str, Any]], str] = (
            self.arguments.builder() if self.template is None else self.template.build
        )
        self.tags = tuple(KeyTemplate(tag, func) for tag in options.tags)
        # the namespace resolved once per cache (see ``Route``), for keys read without
        # tags outside a bumpable namespace (whose keys carry a generation read per call)
        self.routable = not self.tags and not self.namespace.bumpable
        self.route: Route | None = None
        self.cache = options.cache
        if (options.stale_ttl or options.early_refresh) and self.ttl is None and not function:
            msg = f"{self.name}: stale_ttl and early_refresh need a ttl (on the call or namespace)"
            raise ConfigurationError(msg)
        self.enveloped = bool(options.stale_ttl or options.early_refresh)
        # whether a read counts its hit: an envelope's is counted once judged (``due``)
        self.counts_hits = not self.enveloped
        self.value_type: Any = return_type(func)
        value_type = self.value_type if self.value_type is not None else Any
        # What a stored entry decodes into: the value, or its freshness envelope.
        self.stored_type: Any = (
            tuple.__class_getitem__((float, float, value_type))
            if self.enveloped
            else self.value_type
        )
        # whether a value reads back from a JSON entry as it is, judged before it is stored
        self.check = Check(self.value_type)
        self._warned: set[str] = set()

    # -- keys ----------------------------------------------------------------------------

    def keys(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Sequence[str]]:
        """The key body and the tags of a call, from one binding of its arguments."""
        if not self.tags:
            return self.build(args, kwargs), _NO_TAGS
        bound = self.arguments.bind(args, kwargs)
        template = self.template if self.template is not None else self.arguments
        return template.render(bound), [tag.render(bound) for tag in self.tags]

    def route_for(self, cache: Cache) -> Route | None:
        """Resolve the namespace in ``cache`` once: the ``Route`` of the next calls.

        ``None`` when every call resolves its key: a plan with tags or a bumpable
        namespace, or a namespace whose keys need checking one by one (not ASCII, or a
        prefix that could lead into the reserved key space).
        """
        namespace = self.namespace
        if not self.routable or namespace._near_reserved:
            return None
        try:
            head, label, _ = cache.keyspace.resolve("", namespace)
        except InvalidKeyError:  # every call says so, through the usual resolve
            return None
        if not head.isascii():
            return None
        route = self.route = Route(cache, head, label, self)
        return route

    def body(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key body of a call (the namespace adds its prefix)."""
        return self.build(args, kwargs)

    def target(self) -> Cache:
        """The cache to use: the one given, else the default looked up now."""
        return resolve_cache(self.cache)

    def lock_for(self, cache: Cache, body: str) -> DistributedLock:
        """The distributed lock of one key: beside the entry, held for one computation."""
        full = cache.full_key(body, self.namespace) + ":lock"
        return DistributedLock(cache.backend, full, wait=self.options.lock_timeout)

    # -- values --------------------------------------------------------------------------

    def stored(self, value: object, compute_time: float, clock: Clock) -> tuple[object, float]:
        """What is stored for a computed result, and for how long.

        The TTL is the result's own (``Expiry``: fixed, read from the result, the
        ``None`` result's, plus jitter) and the stale time after it; ``math.inf`` for no
        expiry. With stale-while-revalidate or early refresh the result goes in an
        envelope with its fresh-until time.

        Args:
            value: The computed value.
            compute_time: How long the computation took (early refreshes weigh it).
            clock: The cache's clock; an envelope's stamp is its wall time.
        """
        fresh = self.expiry.seconds(value)
        keep = math.inf if fresh is None else fresh + self.options.stale_ttl
        if not self.enveloped:
            return value, keep
        until = clock.time() + (_FOREVER if fresh is None else fresh)
        return (until, compute_time, value), keep

    def invalidate_all(self, cache: Cache) -> int:
        """Every entry under the prefix: a bump (O(1)) or a prefix-bounded pattern delete."""
        if self.namespace.bumpable:
            cache.bump(self.namespace)
            return 0
        return cache.invalidate_pattern("*", namespace=self.namespace)

    async def ainvalidate_all(self, cache: Cache) -> int:
        """Async ``invalidate_all``."""
        if self.namespace.bumpable:
            await cache.abump(self.namespace)
            return 0
        return await cache.ainvalidate_pattern("*", namespace=self.namespace)

    def ttls(self, entries: dict[str, object]) -> float | dict[str, float]:
        """The TTLs of many results at once (``@cached_many``, which has no envelopes)."""
        expiry = self.expiry
        if expiry.fixed:
            return math.inf if expiry.ttl is None else expiry.ttl
        return {
            key: math.inf if (seconds := expiry.seconds(value)) is None else seconds
            for key, value in entries.items()
        }

    def should_store(self, value: object) -> bool:
        """Whether a computed value goes into the cache (``condition`` decides)."""
        condition = self.options.condition
        return condition is None or bool(condition(value))

    def freshness(self, entry: tuple[float, float, Any], now: float) -> Freshness:
        """Fresh, due for an early refresh (probabilistic, XFetch), or stale.

        A hot key is refreshed a little before it expires, with a probability that grows as
        expiry nears and with the time the value took to compute, so keys written together
        do not all expire together. ``now`` is the cache clock's wall time.
        """
        fresh_until, compute_time, _ = entry
        if now >= fresh_until:
            return "stale"
        beta = self.options.early_refresh
        if beta and compute_time > 0:
            gap = -compute_time * beta * math.log(1.0 - RANDOM.random())
            if now + gap >= fresh_until:
                return "refresh"
        return "fresh"

    def due(
        self, cache: Cache, entry: tuple[float, float, Any], started: float, seen: Seen
    ) -> bool:
        """Whether a hit's envelope asks for a background refresh; the serve is counted.

        A read of an envelope is counted here, once judged: ``stale`` when its value is
        past its fresh time (served while a refresh runs), else ``hit``; ``started`` is
        when the read started (``time.perf_counter``), for its latency. A fail-safe copy
        served while the backend did not answer (``seen`` marks it ``UNREAD``) was counted
        as ``stale`` when it was read, and is not counted again.
        """
        state = self.freshness(entry, cache.clock.time())
        if seen[1] is not UNREAD:
            outcome: Outcome = "stale" if state == "stale" else "hit"
            cache.guard.observe("get", self.namespace.prefix, outcome, started)
        return state != "fresh"

    def unserializable(self, exc: Exception) -> SerializationError:
        """The error for a result that cannot be cached, naming this function."""
        error = SerializationError(f"{self.name} returned a value that cannot be cached: {exc}")
        error.__cause__ = exc
        return error

    def storable(self, cache: Cache, value: object, check: Check | None = None) -> bool | bytes:
        """Whether a computed value may be stored: a hit would give it back as it is.

        With a serializer that stores JSON, a value that would not read back equal and of
        the same type (``None`` from a function annotated ``-> Profile``, a tuple where the
        annotation says ``list``, ``inf``; a dataclass from an unannotated function) is not
        stored: it is counted as a ``decode`` error, warned about once per function and
        returned uncached (see ``refused``). Other serializers give back what they stored.

        Args:
            cache: The cache the value would go to (its serializer decides).
            value: The computed value.
            check: The check of one value (``@cached_many``'s per id); the plan's by default.

        Returns:
            ``False``: not to be stored. Else ``True``, or the value's JSON payload when
            the check encoded it on the way (``store``'s ``payload``: it is not encoded
            twice).

        Raises:
            SerializationError: The value cannot be cached and the function is ``strict``.
        """
        serializer = cache.codec.serializer
        check = self.check if check is None else check
        if not speaks_json(serializer):
            return not speaks_msgpack(serializer) or self._packs(cache, check, value)
        try:
            reason, payload = check.judge(value)
        except SerializationError as exc:  # no JSON form at all: the store would say the same
            self.refused(cache, exc)
            return False
        except RecursionError:  # a cycle, or nesting deeper than JSON entries allow
            self.refused(cache, SerializationError("it is nested too deeply (or holds itself)"))
            return False
        if reason is None:
            return True if payload is None else payload
        return self._changed(cache, check, reason)

    def _packs(self, cache: Cache, check: Check, value: object) -> bool:
        """``storable`` for MessagePack: the round trip a hit makes must give ``value`` back."""
        try:
            reason = packed_reason(value, check.annotation)
        except SerializationError as exc:  # no MessagePack form at all
            self.refused(cache, exc)
            return False
        return reason is None or self._changed(cache, check, reason)

    def _changed(self, cache: Cache, check: Check, reason: str) -> bool:
        """Refuse a value a hit would give back changed, saying why; always ``False``."""
        annotation = check.annotation
        if annotation is None:
            written = _written_return(self.function)
            said = (
                "no return annotation"
                if written is None
                else f"return annotation {written!r}, which does not resolve at run time"
            )
        else:
            said = annotation.__qualname__ if isinstance(annotation, type) else str(annotation)
        msg = (
            f"{self.name} returned a value that would not read back from the cache as it is "
            f"({said}): {reason}"
        )
        self.refused(cache, SerializationError(msg), operation="decode")
        return False

    def refused(self, cache: Cache, exc: Unstorable, operation: str = "set") -> None:
        """A computed value that cannot be stored: the caller gets it, uncached.

        It is counted (``operation`` with outcome ``error`` in the metrics: ``decode`` for
        a value that would not read back as it is, ``set`` for one that cannot be
        serialized or is too large) and logged as a warning the first time for this
        function, so a result the cache cannot hold does not cost the caller its answer.

        Raises:
            SerializationError: ``strict=True``: the error, naming the function.
            ValueTooLargeError: ``strict=True`` and the value is over ``max_value_size``.
        """
        if self.options.strict:
            if isinstance(exc, SerializationError) and operation == "set":
                raise self.unserializable(exc) from exc
            raise exc
        if cache.metrics is not None:
            cache.metrics.record(operation, self.namespace.prefix, "error", 0.0)
        if operation not in self._warned:  # a race may warn twice, never a flood
            self._warned.add(operation)
            text = str(exc) if operation == "decode" else str(self.unserializable(exc))
            _log.warning(
                "%s; returned uncached (counted as a %s error, warned once per function; "
                "strict=True raises instead)",
                text,
                operation,
            )


def _memory_aget(kind: type) -> bool:
    """Whether ``kind``'s ``aget`` is ``MemoryBackend``'s own (which only calls ``get``)."""
    return getattr(kind, "aget", None) is MemoryBackend.aget
