"""The key space: key prefix, namespaces, generations and the cache's own internal keys."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from kirocache._cache.codec import parse_counter
from kirocache._values.expiry import NO_VALUE, Expiry
from kirocache._values.types import RESERVED_PREFIX, check_key, reserved_key_error, ttl_seconds
from kirocache.backends import escape_glob
from kirocache.backends._limits import check_text
from kirocache.exceptions import ConfigurationError, InvalidKeyError
from kirocache.invalidation import Tag

if TYPE_CHECKING:
    from kirocache._values.types import Duration
    from kirocache.keys import Namespace

__all__ = [
    "DEFAULT_LABEL",
    "DEP_PREFIX",
    "GEN_PREFIX",
    "INTERNAL_PREFIX",
    "SEPARATORS",
    "STAMP_PREFIX",
    "TAG_PREFIX",
    "KeySpace",
    "Resolved",
]

DEFAULT_LABEL: Final = "default"
# The cache's own keys live under ``<key_prefix>kirocache:``; ``resolve`` and ``pattern``
# refuse every user key and pattern there, so none reaches them.
INTERNAL_PREFIX: Final = RESERVED_PREFIX
# The strings that start with INTERNAL_PREFIX are exactly those in [INTERNAL_PREFIX, _PAST):
# two string comparisons cost half a ``startswith`` call on the hit path.
_PAST: Final = INTERNAL_PREFIX[:-1] + chr(ord(INTERNAL_PREFIX[-1]) + 1)
# What a key prefix must end with: without one, ``app``'s ``*`` would match ``app2:x``.
SEPARATORS: Final = (":", ".", "/", "|")
TAG_PREFIX: Final = "kirocache:tag:"
STAMP_PREFIX: Final = "kirocache:tagstamp:"
DEP_PREFIX: Final = "kirocache:dep:"
GEN_PREFIX: Final = "kirocache:gen:"
LOCK_PREFIX: Final = "kirocache:lock:"
_GENERATION_MARK: Final = re.compile(r"~g[0-9]+:")
# What ``resolve_many`` joins keys with to check them all at once: a key holding one is
# resolved on its own.
_SEP: Final = "\x00"
_FOREVER: Final = float("inf")

Resolved = tuple[str, str, "float | Expiry | None"]
"""A caller's key resolved: ``(full backend key, metrics label, default TTL)``; the TTL is
an ``Expiry`` when it depends on the value or is jittered (see ``KeySpace.ttl``)."""


def _marked(text: str, at: int, generation: int) -> str:
    """``text`` with the generation mark ``~g<n>:`` inserted at ``at``: the one place it is made."""
    return f"{text[:at]}~g{generation}:{text[at:]}"


class KeySpace:
    """Where every key lives: the one owner of how a caller's key becomes a backend key.

    It owns the application ``key_prefix`` and ``default_ttl``, the registered namespaces
    (longest prefix wins), the generations of bumpable namespaces and the ``~g<n>:`` mark
    that puts a generation into a key or a glob, the internal key space (tag indexes, tag
    stamps, dependency sets and generations under ``<key_prefix>kirocache:``), the scoping
    of patterns to the prefix, and the way back from a backend key to the caller's name.

    Attributes:
        key_prefix: Prepended to every backend key.
        default_ttl: The TTL of keys outside any namespace with a TTL.
        generations: The last generation learned per bumpable namespace prefix: a hint
            for building keys; every read checks the one it used.
        version: Moves whenever a namespace is registered, so a caller keeping what it
            resolved (a decorator's namespace and label) knows when to resolve again.
    """

    def __init__(
        self, key_prefix: str, default_ttl: Duration | None, namespaces: Iterable[Namespace]
    ) -> None:
        if not isinstance(key_prefix, str):
            msg = f"key_prefix must be a str, not {type(key_prefix).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        if key_prefix and not key_prefix.endswith(SEPARATORS):
            msg = (
                f"key_prefix {key_prefix!r} must end with a separator ({' '.join(SEPARATORS)}), "
                f"such as {key_prefix + ':'!r}: without one its keys and patterns would reach "
                f"another cache's (a pattern {key_prefix + '*'!r} matches {key_prefix + '2:x'!r})"
            )
            raise ConfigurationError(msg)
        if not key_prefix.isascii():
            try:
                check_text(key_prefix)
            except InvalidKeyError as exc:
                raise ConfigurationError(f"key_prefix: {exc}") from None
        self.key_prefix = key_prefix
        self.default_ttl = ttl_seconds(default_ttl)
        self.generations: dict[str, int] = {}
        self._namespaces: list[Namespace] = []
        self._bumpable_known = False
        self.version = 0
        for namespace in namespaces:
            self.register(namespace)

    # -- namespaces and keys -------------------------------------------------------------

    def register(self, namespace: Namespace) -> None:
        """Make ``namespace`` known, so plain keys under its prefix get its TTL and label."""
        if namespace not in self._namespaces:
            self._namespaces.append(namespace)
            self._namespaces.sort(key=lambda ns: len(ns.prefix), reverse=True)
            self._bumpable_known = self._bumpable_known or namespace.bumpable
            self.version += 1

    def find(self, key: str) -> Namespace | None:
        """The registered namespace whose prefix ``key`` starts with (the longest)."""
        for namespace in self._namespaces:
            if key.startswith(namespace.prefix):
                return namespace
        return None

    def resolve(
        self,
        key: str,
        namespace: Namespace | None,
        generations: Mapping[str, int] | None = None,
    ) -> Resolved:
        """The backend key, the metrics label and the default TTL of a caller's key.

        A key of a bumpable namespace carries the namespace's generation: from
        ``generations`` when given (a read builds its keys from the generations it is
        checking), else the last one learned.

        Every caller's key comes through here (reads, writes, deletes, batches, the
        decorators), so this is the one place a key is checked, the reserved internal key
        space included: one ``startswith`` on the hit path.

        Raises:
            InvalidKeyError: The key is not a valid key (not a non-empty ``str``, or a lone
                surrogate that no backend can encode), or it is in the reserved key space
                (``kirocache:``, within the namespace's prefix when there is one).
        """
        if namespace is None:
            check_key(key)
            if INTERNAL_PREFIX <= key < _PAST:  # key.startswith(INTERNAL_PREFIX), cheaper
                raise reserved_key_error(key)
            if not key.isascii():  # O(1) for the usual ASCII key
                check_text(key)  # before anything is recorded: an invalidation is kept pending
            namespace = self.find(key)
            if namespace is None:
                return self.key_prefix + key, DEFAULT_LABEL, self.default_ttl
            full = self.key_prefix + key
        else:
            if type(key) is not str:
                check_key(key)  # raises; an empty key is the body of a call without arguments
            body = namespace.full_key(key)
            # a namespace's prefix is never reserved, but one such as "kiro" may still lead
            # in: only those are checked (a flag read, not a ``startswith``, on the hit path)
            if namespace._near_reserved and body.startswith(INTERNAL_PREFIX):
                raise reserved_key_error(body)
            if not body.isascii():
                check_text(body)
            full = self.key_prefix + body
        if namespace.bumpable:
            known = self.generations if generations is None else generations
            generation = known.get(namespace.prefix, 0)
            if generation:
                full = _marked(full, len(self.key_prefix) + len(namespace.prefix), generation)
        return full, namespace.prefix, namespace._expiry

    def resolve_many(
        self,
        keys: Sequence[str],
        namespace: Namespace | None,
        generations: Mapping[str, int] | None = None,
    ) -> tuple[list[str], list[str]]:
        """The backend keys and the metrics labels of many caller's keys, as ``resolve`` makes.

        The checks ``resolve`` makes per key are made once over all of them (the keys
        joined by a NUL): their type, the reserved key space, ASCII, and whether any
        starts with a registered namespace's prefix. Only when one of those finds something
        (or a key holds a NUL, or the namespace is bumpable) is each key resolved on its
        own, which raises for the bad one. Same keys, same answers, same errors.

        Raises:
            InvalidKeyError: As ``resolve``, for the first bad key.
        """
        count = len(keys)
        try:
            joined = _SEP.join(keys)  # a TypeError when one is not a str
        except TypeError:
            joined = None
        if (
            joined is None
            or not joined.isascii()
            or joined.count(_SEP) != count - 1  # a key holds a NUL: the checks below would err
        ):
            return self._resolve_each(keys, namespace, generations)
        if namespace is not None:
            head = self.key_prefix + namespace.full_key("")
            if namespace.bumpable or namespace._near_reserved or not head.isascii():
                return self._resolve_each(keys, namespace, generations)
            return [head + key for key in keys], [namespace.prefix] * count
        if (
            not joined
            or joined[0] == _SEP
            or joined[-1] == _SEP
            or _SEP + _SEP in joined  # an empty key
            or joined.startswith(INTERNAL_PREFIX)
            or _SEP + INTERNAL_PREFIX in joined
            or any(
                joined.startswith(ns.prefix) or _SEP + ns.prefix in joined
                for ns in self._namespaces
            )
        ):
            return self._resolve_each(keys, namespace, generations)
        prefix = self.key_prefix
        return [prefix + key for key in keys], [DEFAULT_LABEL] * count

    def _resolve_each(
        self,
        keys: Sequence[str],
        namespace: Namespace | None,
        generations: Mapping[str, int] | None,
    ) -> tuple[list[str], list[str]]:
        """``resolve_many`` one key at a time."""
        resolved = [self.resolve(key, namespace, generations) for key in keys]
        return [full for full, _, _ in resolved], [label for _, label, _ in resolved]

    def full_key(self, key: str, namespace: Namespace | None = None) -> str:
        """The key as the backend sees it: key prefix, namespace prefix, then ``key``."""
        return self.resolve(key, namespace)[0]

    @staticmethod
    def check(key: str, namespace: Namespace | None) -> str:
        """``key`` if it is a valid caller's key (see ``resolve``), without building it.

        For the steps that look at keys before resolving them (the generations a write
        reads first), so a bad or reserved key is refused before anything is sent.

        Raises:
            InvalidKeyError: The key is not a valid key or is in the reserved key space.
        """
        if namespace is None:
            check_key(key)
            body = key
        else:
            if type(key) is not str:
                check_key(key)
            body = namespace.full_key(key)
        if body.startswith(INTERNAL_PREFIX):
            raise reserved_key_error(body)
        check_text(body)
        return key

    @staticmethod
    def ttl(
        ttl: Duration | None, default: float | Expiry | None, value: Any = NO_VALUE
    ) -> float | None:
        """``ttl`` in seconds, or the ``default`` for ``value`` when it is ``None``.

        A namespace whose TTL is a function of the value, or jittered, has an ``Expiry``
        as its default: it is asked for this value's TTL.

        Raises:
            InvalidTTLError: ``ttl`` is not a positive duration or ``NEVER``, or the
                namespace's TTL function returned something that is not.
        """
        if ttl is not None:
            if (ttl.__class__ is int or ttl.__class__ is float) and 0 < ttl < _FOREVER:
                return float(ttl)  # what ttl_seconds makes of it, without its checks' calls
            return ttl_seconds(ttl)
        if type(default) is Expiry:
            return default.seconds(value)
        return default  # type: ignore[return-value]

    def unprefix(self, full: str) -> str:
        """A backend key as the caller names it: no key prefix, no generation mark."""
        return _GENERATION_MARK.sub("", full[len(self.key_prefix) :], count=1)

    # -- generations of bumpable namespaces -----------------------------------------------

    def bumpable(self, key: str, namespace: Namespace | None) -> Namespace | None:
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
        found = self.find(key)
        return found if found is not None and found.bumpable else None

    def bumpables(self, keys: Iterable[str], namespace: Namespace | None) -> list[Namespace]:
        """The distinct bumpable namespaces of ``keys``."""
        if namespace is None:
            if not self._bumpable_known:
                return []  # every write asks: answer the common case without a call per key
        elif not namespace.bumpable:
            return []
        # checked here: a write reads these generations before it resolves its keys
        found = {self.bumpable(self.check(key, namespace), namespace) for key in keys}
        return [space for space in found if space is not None]

    def generation_key(self, namespace: Namespace) -> str:
        """Where the generation of a bumpable namespace is counted."""
        return f"{self.key_prefix}{GEN_PREFIX}{namespace.prefix}"

    def learn_generation(self, namespace: Namespace, raw: object) -> int:
        """Parse a generation read from the backend and remember it; returns it.

        What is remembered is only a hint for building the next keys: every read checks
        the generation it used against the one it read, and reads again when they differ.
        """
        generation = parse_counter(raw) or 0
        self.generations[namespace.prefix] = generation
        return generation

    # -- the internal key space ------------------------------------------------------------

    def tag_key(self, tag: str) -> str:
        """The index of the entries carrying ``tag``.

        Raises:
            InvalidKeyError: The tag is not a valid key.
        """
        check_text(check_key(tag))
        return f"{self.key_prefix}{TAG_PREFIX}{tag}"

    def stamp_key(self, tag: str) -> str:
        """Where a tag's invalidations leave their mark (see ``Seen``)."""
        return f"{self.key_prefix}{STAMP_PREFIX}{tag}"

    def node(self, target: str | Tag, namespace: Namespace | None) -> str:
        """A dependency graph node: ``k:<full key>`` or ``t:<tag>``."""
        if isinstance(target, Tag):
            check_text(check_key(target.name))
            return "t:" + target.name
        return "k:" + self.resolve(target, namespace)[0]

    def dep_key(self, node: str) -> str:
        """The set of the nodes that depend on ``node``."""
        return f"{self.key_prefix}{DEP_PREFIX}{node}"

    def probe(self, node: str) -> str:
        """The key whose presence keeps a dependency edge to ``node`` alive."""
        # a tag is alive while its index exists
        return self.tag_key(node[2:]) if node.startswith("t:") else node[2:]

    def index_globs(self) -> tuple[str, str]:
        """Globs of every tag index and of every dependency set."""
        return (
            escape_glob(self.key_prefix + TAG_PREFIX) + "*",
            escape_glob(self.key_prefix + DEP_PREFIX) + "*",
        )

    def stamp_glob(self) -> str:
        """Glob of every tag stamp."""
        return escape_glob(self.key_prefix + STAMP_PREFIX) + "*"

    def index_of_stamp(self, stamp_key: str) -> str:
        """The tag index of the tag whose stamp is at ``stamp_key``."""
        return self.key_prefix + TAG_PREFIX + stamp_key[len(self.key_prefix + STAMP_PREFIX) :]

    def lock_key(self, name: str) -> str:
        """Where the public lock ``name`` lives (``Cache.lock``).

        Raises:
            InvalidKeyError: The name is not a valid key.
        """
        check_text(check_key(name))
        return f"{self.key_prefix}{LOCK_PREFIX}{name}"

    def internal(self, full: str) -> bool:
        """Whether a backend key is one of the cache's own (indexes, stamps, generations)."""
        return full.startswith(self.key_prefix + INTERNAL_PREFIX)

    # -- patterns ----------------------------------------------------------------------------

    def pattern(self, pattern: str, namespace: Namespace | None) -> str:
        """A glob restricted to the key prefix (and the namespace, if given).

        In a bumpable namespace the glob matches the keys of its current generation.

        Raises:
            InvalidKeyError: The pattern is not a valid key, or is in the reserved key
                space (the cache's own keys are never the target of a pattern).
            ConfigurationError: With no key prefix, the pattern would match every key.
        """
        self.check(pattern, namespace)
        scope = self.key_prefix + (namespace.full_key("") if namespace is not None else "")
        if not scope and pattern.strip("*") == "":
            msg = (
                f"pattern {pattern!r} would match every key in the database; give the cache "
                "a key_prefix or use a narrower pattern"
            )
            raise ConfigurationError(msg)
        glob = escape_glob(scope) + pattern
        space = namespace if namespace is not None else self.find(pattern)
        generation = self.generations.get(space.prefix, 0) if space is not None else 0
        if space is not None and space.bumpable and generation:
            return _marked(glob, len(escape_glob(self.key_prefix + space.prefix)), generation)
        return glob

    def everything(self, glob: str) -> bool:
        """Whether ``glob`` is the whole cache (``*`` with no namespace)."""
        return glob == escape_glob(self.key_prefix) + "*"
