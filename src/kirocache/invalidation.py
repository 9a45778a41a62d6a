"""Invalidation by event: events, the rules that say what they remove, and the log of it all.

An :class:`InvalidationEvent` says what happened (``"user.profile.updated"`` for user 42);
:class:`InvalidationRules` say what each kind of event removes (keys, tags, patterns, whole
namespaces), with templates that read the event's fields; ``cache.invalidate(event)`` does
it; and the :class:`InvalidationLog` keeps a bounded record of every invalidation, so "why
did this key disappear?" has an answer.

Examples:
    >>> from kirocache import Cache
    >>> from kirocache.invalidation import InvalidationEvent
    >>> cache = Cache.from_url("memory://")
    >>> _ = cache.rules.on("user.profile.updated", keys=["user:profile:{entity_id}"])
    >>> cache.set("user:profile:42", {"name": "Ada"})
    True
    >>> record = cache.invalidate(InvalidationEvent("user.profile.updated", entity_id=42))
    >>> record.removed, cache.get("user:profile:42")
    (1, None)
"""

from __future__ import annotations

import dataclasses
import string
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Final

from kirocache.backends._glob import escape_glob
from kirocache.exceptions import ConfigurationError, InvalidKeyError
from kirocache.keys import Namespace

__all__ = [
    "InvalidationEvent",
    "InvalidationLog",
    "InvalidationRecord",
    "InvalidationRules",
    "Rule",
    "Tag",
]

DEFAULT_LOG_SIZE: Final = 1000
# Keys kept per log record; the count of removed entries stays exact beyond it.
KEYS_PER_RECORD: Final = 100
_FORMATTER: Final = string.Formatter()


@dataclasses.dataclass(frozen=True, slots=True)
class Tag:
    """A tag, where a key or a tag may be given (``cache.depends(Tag("user:42"), on=...)``).

    Attributes:
        name: The tag, as given to ``@cached(tags=...)``.
    """

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidationEvent:
    """Something happened that makes cached data stale.

    Attributes:
        type: A dotted event name such as ``"user.profile.updated"``.
        entity_id: The entity that changed, if any.
        user_id: The user concerned, if any.
        timestamp: When it happened (Unix seconds); now by default.
        data: Any other fields rule templates may read (``{course_id}``).
    """

    type: str
    entity_id: object = None
    user_id: object = None
    timestamp: float = dataclasses.field(default_factory=time.time)
    data: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type:  # type: ignore[redundant-expr]
            msg = f"an event type must be a non-empty str such as 'user.updated', not {self.type!r}"
            raise ConfigurationError(msg)

    def fields(self) -> dict[str, object]:
        """What templates can read: ``type``, ``entity_id``, ``user_id``, ``timestamp``, data."""
        present = {"entity_id": self.entity_id, "user_id": self.user_id}
        return {
            **{name: value for name, value in present.items() if value is not None},
            "type": self.type,
            "timestamp": self.timestamp,
            **self.data,
        }


def _fields_of(template: str, where: str) -> tuple[str, ...]:
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        msg = f"{where}: template {template!r} is malformed: {exc}"
        raise ConfigurationError(msg) from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            msg = f"{where}: template {template!r} may only hold plain {{field}} names"
            raise ConfigurationError(msg)
        names.append(name)
    return tuple(names)


def _texts(values: Iterable[str], what: str, where: str) -> tuple[str, ...]:
    if isinstance(values, str):
        msg = f"{where}: {what} must be a list of str, not a single str; wrap it in a list"
        raise ConfigurationError(msg)
    out = []
    for value in values:
        if not isinstance(value, str) or not value:  # type: ignore[redundant-expr]
            msg = f"{where}: every item of {what} must be a non-empty str, not {value!r}"
            raise ConfigurationError(msg)
        _fields_of(value, where)
        out.append(value)
    return tuple(out)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What one kind of event removes (built by :meth:`InvalidationRules.on`).

    Attributes:
        event: The event type or glob (``"user.*"``) it answers.
        keys: Key templates (full keys, namespace prefix included).
        tags: Tag templates.
        patterns: Glob templates, restricted to the cache's key prefix.
        namespaces: Namespaces invalidated whole (a version bump when they are bumpable,
            else a pattern delete of their prefix).
        name: A label for the log (the event pattern by default).
    """

    event: str
    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    name: str = ""

    def matches(self, event_type: str) -> bool:
        """Whether this rule answers events of ``event_type`` (globs: ``*``, ``?``, ``[]``)."""
        return self.event == event_type or fnmatchcase(event_type, self.event)

    def render(self, event: InvalidationEvent) -> tuple[list[str], list[str], list[str]]:
        """The keys, tags and patterns this rule removes for ``event``.

        Raises:
            InvalidKeyError: A template reads a field the event does not have.
        """
        fields = event.fields()
        # In a pattern an event's values are literal text, never globs of their own.
        literal = {name: escape_glob(str(value)) for name, value in fields.items()}

        def fill(templates: tuple[str, ...], values: Mapping[str, object] = fields) -> list[str]:
            try:
                return [template.format_map(values) for template in templates]
            except KeyError as exc:
                field = exc.args[0]
                template = next(t for t in templates if field in _fields_of(t, self.name))
                msg = (
                    f"rule {self.name!r}: template {template!r} needs the field "
                    f"{field!r}, which event {event.type!r} does not carry"
                )
                raise InvalidKeyError(msg) from None

        return fill(self.keys), fill(self.tags), fill(self.patterns, literal)


class InvalidationRules:
    """The rules of a cache (``cache.rules``): which event removes what.

    Examples:
        >>> rules = InvalidationRules()
        >>> rules.on("user.profile.updated", keys=["user:profile:{entity_id}"],
        ...          tags=["user:{entity_id}"]).on("user.*", patterns=["search:*"])
        InvalidationRules(2 rules)
        >>> tuple(rule.name for rule in rules.matching("user.profile.updated"))
        ('user.profile.updated', 'user.*')
    """

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def on(
        self,
        event: str,
        *,
        keys: Sequence[str] = (),
        tags: Sequence[str] = (),
        patterns: Sequence[str] = (),
        namespaces: Sequence[Namespace] = (),
        name: str | None = None,
    ) -> InvalidationRules:
        """Register what events of type ``event`` (or matching the glob) remove.

        Templates read the event's fields: ``"user:profile:{entity_id}"``,
        ``"user:{user_id}"``, ``"{course_id}"`` from ``data``.

        Returns:
            The rules, so registrations chain.

        Raises:
            ConfigurationError: An empty event, a rule that removes nothing, a malformed
                template or a namespace that is not a ``Namespace``.
        """
        if not isinstance(event, str) or not event:  # type: ignore[redundant-expr]
            msg = f"an event type or glob must be a non-empty str, not {event!r}"
            raise ConfigurationError(msg)
        where = f"rule for {event!r}"
        for namespace in namespaces:
            if not isinstance(namespace, Namespace):
                msg = f"{where}: namespaces must be Namespace objects, not {namespace!r}"  # type: ignore[unreachable]
                raise ConfigurationError(msg)
        rule = Rule(
            event,
            keys=_texts(keys, "keys", where),
            tags=_texts(tags, "tags", where),
            patterns=_texts(patterns, "patterns", where),
            namespaces=tuple(namespaces),
            name=name or event,
        )
        if not (rule.keys or rule.tags or rule.patterns or rule.namespaces):
            msg = f"{where} removes nothing: give keys, tags, patterns or namespaces"
            raise ConfigurationError(msg)
        with self._lock:
            self._rules.append(rule)
        return self

    def matching(self, event_type: str) -> list[Rule]:
        """The rules that answer ``event_type``, in the order they were registered."""
        with self._lock:
            return [rule for rule in self._rules if rule.matches(event_type)]

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(list(self._rules))

    def __repr__(self) -> str:
        return f"InvalidationRules({len(self._rules)} rules)"


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidationRecord:
    """One invalidation, as the log keeps it.

    Attributes:
        at: When it finished (Unix seconds).
        source: What caused it: ``"event"``, ``"delete"``, ``"tags"``, ``"pattern"``,
            ``"namespace"``, ``"dependency"``, or what the caller passed.
        event: The event type, for event invalidations.
        rules: The names of the rules that applied.
        keys: The keys invalidated (the first ``KEYS_PER_RECORD``), without key prefix.
        tags: The tags invalidated.
        patterns: The patterns deleted.
        namespaces: The prefixes of the namespaces invalidated whole.
        removed: How many live entries were removed (dependents included).
        duration: Seconds it took.
    """

    at: float
    source: str
    event: str | None = None
    rules: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    removed: int = 0
    duration: float = 0.0

    def mentions(self, key: str) -> bool:
        """Whether this invalidation named ``key`` or a pattern or namespace covering it."""
        return (
            key in self.keys
            or any(fnmatchcase(key, pattern) for pattern in self.patterns)
            or any(key.startswith(prefix) for prefix in self.namespaces)
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data."""
        return dataclasses.asdict(self)


class InvalidationLog:
    """A bounded, thread-safe log of invalidations (``cache.invalidation_log``).

    Args:
        maxlen: How many records it keeps; the oldest go first.
    """

    def __init__(self, maxlen: int = DEFAULT_LOG_SIZE) -> None:
        if type(maxlen) is not int or maxlen < 1:
            msg = f"maxlen must be an int >= 1, got {maxlen!r}"
            raise ConfigurationError(msg)
        self._records: deque[InvalidationRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, record: InvalidationRecord) -> None:
        """Append ``record``, dropping the oldest when full."""
        with self._lock:
            self._records.append(record)

    def query(
        self,
        *,
        event: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        key: str | None = None,
    ) -> list[InvalidationRecord]:
        """Records matching every filter given, oldest first.

        Args:
            event: An event type or glob (``"user.*"``).
            source: What caused them (``"event"``, ``"delete"``, ...).
            since: Only records at or after this Unix time.
            until: Only records at or before this Unix time.
            key: Only records that removed this key (by name, pattern or namespace).
        """
        with self._lock:
            records = list(self._records)
        return [
            record
            for record in records
            if (event is None or (record.event is not None and fnmatchcase(record.event, event)))
            and (source is None or record.source == source)
            and (since is None or record.at >= since)
            and (until is None or record.at <= until)
            and (key is None or record.mentions(key))
        ]

    def why(self, key: str) -> InvalidationRecord | None:
        """The latest invalidation that removed ``key``, or ``None``."""
        found = self.query(key=key)
        return found[-1] if found else None

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[InvalidationRecord]:
        with self._lock:
            return iter(list(self._records))

    def __repr__(self) -> str:
        return f"InvalidationLog({len(self._records)}/{self._records.maxlen} records)"
