"""Login sessions on a kirocache backend: per-user index, sliding expiry, fail-closed reads."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kirocache._lock import DistributedLock
from kirocache._sessions_core import (
    Call,
    SessionInfo,
    SessionStoreError,
    Steps,
    check_slots,
    mask,
    member,
    new_session_id,
    parse_member,
    remaining,
    run_async,
    run_sync,
    valid_id,
)
from kirocache._types import ttl_seconds
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import Op
from kirocache.exceptions import ConfigurationError, CorruptValueError, SerializationError
from kirocache.presets import USER_SESSION

if TYPE_CHECKING:
    from kirocache._cache import Cache
    from kirocache._types import Duration
    from kirocache.keys import Namespace
    from kirocache.serializers import Serializer

__all__ = ["SessionInfo", "SessionStats", "SessionStore", "SessionStoreError", "mask"]

_log = logging.getLogger("kirocache.sessions")

# A pruner only drops a record-less index entry once the record's first TTL has passed,
# plus this allowance for clocks of different hosts disagreeing.
_CLOCK_SKEW: Final = 1.0
_LOCK_TIMEOUT: Final = 10.0
_LOCK_WAIT: Final = 5.0


@dataclass(frozen=True, slots=True)
class SessionStats:
    """What ``SessionStore.stats`` reports.

    Attributes:
        live_sessions: Sessions that exist now.
        users: Users with at least one live session.
        created: Sessions created since the counters began.
        expired: Sessions found expired and dropped from an index (by ``cleanup`` or a listing).
        revoked: Sessions revoked, including those evicted by ``max_sessions_per_user``.
    """

    live_sessions: int
    users: int
    created: int
    expired: int
    revoked: int


class SessionStore:
    """Server-side login sessions in a cache's backend, listed per user, failing closed.

    Every session has a record (user, data, creation and activity times) under
    ``<namespace>id:<session id>`` and an entry in its user's index, a tag set under
    ``<namespace>user:<user id>``. The store calls the backend directly rather than the
    cache's fail-open methods: a backend fault raises :class:`SessionStoreError` (answer
    503), never a silent "no such session".

    Creating a session writes the record and its index entry in one transaction (MULTI/EXEC
    on Redis, one lock hold in memory), so a call that dies half way leaves neither: no
    orphan index entry, and never a session that ``revoke_all`` cannot find. Revoking
    writes a tombstone beside deleting the record, so a ``touch`` racing a revoke cannot
    bring the session back.

    Every method has an async twin with an ``a`` prefix (``create``/``acreate``, ...).

    Args:
        cache: The cache whose backend, key prefix and serializer the store uses.
        namespace: Where the keys live; ``USER_SESSION`` (``session:``) by default.
        ttl: Session lifetime (seconds or timedelta); the namespace's TTL if None.
        sliding: Whether ``touch`` restarts the lifetime (idle timeout) or the session
            ends ``ttl`` after its creation whatever happens (absolute timeout).
        max_sessions_per_user: With a number, creating a session beyond it revokes the
            user's oldest sessions; creations for one user take a per-user lock.
        serializer: Encodes records; the cache's serializer if None. Pass an
            ``EncryptedSerializer`` to encrypt session data at rest.

    Raises:
        ConfigurationError: No finite ``ttl`` or a ``max_sessions_per_user`` below 1.
    """

    def __init__(
        self,
        cache: Cache,
        namespace: Namespace = USER_SESSION,
        ttl: Duration | None = None,
        sliding: bool = True,
        max_sessions_per_user: int | None = None,
        *,
        serializer: Serializer | None = None,
    ) -> None:
        seconds = ttl_seconds(ttl) if ttl is not None else namespace.ttl
        if seconds is None:
            msg = "sessions need a finite ttl: pass ttl= or use a namespace with a TTL"
            raise ConfigurationError(msg)
        if max_sessions_per_user is not None and (
            type(max_sessions_per_user) is not int or max_sessions_per_user < 1
        ):
            msg = (
                f"max_sessions_per_user must be an int >= 1 or None, got {max_sessions_per_user!r}"
            )
            raise ConfigurationError(msg)
        self._cache = cache
        self._backend: Any = cache.backend
        self._namespace = namespace
        self.ttl: float = seconds
        self.sliding = sliding
        self.max_sessions_per_user = max_sessions_per_user
        self._serializer: Serializer = serializer if serializer is not None else cache.serializer
        self._skew = min(_CLOCK_SKEW, seconds)
        # An index outlives its sessions by one more ttl, so a cleanup run at least once
        # per ttl sees, drops and counts every expired session.
        self._index_ttl = 2 * seconds + self._skew

    def __repr__(self) -> str:
        return (
            f"SessionStore(namespace={self._namespace.prefix!r}, ttl={self.ttl!r}, "
            f"sliding={self.sliding!r}, max_sessions_per_user={self.max_sessions_per_user!r})"
        )

    # -- keys and records ------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self._cache.full_key(key, self._namespace)

    def _index(self, user_id: str) -> str:
        return self._key(f"user:{user_id}")

    def _dumps(self, info: SessionInfo) -> bytes:
        return self._serializer.dumps(info.record())

    def _loads(self, session_id: str, raw: bytes) -> SessionInfo:
        try:
            record = self._serializer.loads(raw)
        except (CorruptValueError, SerializationError) as exc:
            msg = f"session {mask(session_id)} cannot be decoded (wrong key or serializer?): {exc}"
            raise SessionStoreError(msg) from exc
        if not isinstance(record, Mapping):
            msg = f"session {mask(session_id)} holds a {type(record).__name__}, not a record"
            raise SessionStoreError(msg)
        return SessionInfo.from_record(session_id, record)

    @staticmethod
    def _user(user_id: object) -> str:
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
            msg = f"user_id must be a non-empty str or an int, got {user_id!r}"
            raise ConfigurationError(msg)
        return str(user_id)

    @staticmethod
    def _data(data: object) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            msg = f"session data must be a dict, got {type(data).__name__}"
            raise TypeError(msg)
        return dict(data)

    # -- the operations, written once as generators of backend calls -----------------------

    def _read(self, session_id: str) -> Steps[Any]:
        """The live session and its remaining TTL, or ``(None, None)``."""
        if not valid_id(session_id):
            return None, None
        key, tomb = self._key(f"id:{session_id}"), self._key(f"revoked:{session_id}")
        ops = [Op("get", key), Op("ttl", key), Op("exists", tomb)]
        raw, left, revoked = check_slots(
            (yield Call(self._backend, "execute", (ops,), {"transaction": True})), "a read"
        )
        if raw is None:
            return None, None
        if revoked:
            # A touch raced a revoke and rewrote the record: finish the revoke.
            yield Call(self._backend, "delete", (key,))
            return None, None
        return self._loads(session_id, raw), remaining(left)

    def _create(self, user_id: str, data: dict[str, Any]) -> Steps[Any]:
        lock = None
        if self.max_sessions_per_user is not None:
            lock = DistributedLock(
                self._backend, self._key(f"lock:{user_id}"), timeout=_LOCK_TIMEOUT, wait=_LOCK_WAIT
            )
            if not (yield Call(lock, "acquire")):
                msg = f"timed out waiting for the session lock of user {user_id!r}"
                raise SessionStoreError(msg)
        try:
            if self.max_sessions_per_user is not None:
                live = yield from self._live(user_id, prune=True)
                excess = len(live) + 1 - self.max_sessions_per_user
                for old in live[: max(excess, 0)]:
                    yield from self._revoke(old.session_id, user_id, old.created_at)
            now = time.time()
            session_id = new_session_id()
            info = SessionInfo(session_id, user_id, data, now, now)
            created_ms = round(now * 1000)
            index, key = self._index(user_id), self._key(f"id:{session_id}")
            # The record and its index entry are written in one transaction (MULTI/EXEC on
            # Redis, one lock hold in memory): a call that dies half way leaves neither.
            ops = [
                Op("set", key, self._dumps(info), ttl=self.ttl),
                Op(
                    "tag_add",
                    index,
                    ttl=self._index_ttl,
                    members=(member(created_ms, session_id),),
                ),
                Op("incr", self._key("stat:created")),
            ]
            check_slots(
                (yield Call(self._backend, "execute", (ops,), {"transaction": True})), "create"
            )
            _log.debug("created session %s for user %r", mask(session_id), user_id)
            return session_id
        finally:
            if lock is not None:
                yield Call(lock, "release")

    def _update(
        self, session_id: str, data: dict[str, Any], activity: dict[str, Any] | None
    ) -> Steps[Any]:
        info, left = yield from self._read(session_id)
        if info is None:
            return False
        ttl = left
        if activity is not None:
            now = time.time()
            merged = {**info.activity, **activity}
            info = SessionInfo(session_id, info.user_id, info.data, info.created_at, now, merged)
            if self.sliding:
                ttl = self.ttl
                yield Call(
                    self._backend,
                    "tag_add",
                    (
                        self._index(info.user_id),
                        [member(round(info.created_at * 1000), session_id)],
                        self._index_ttl,
                    ),
                )
        else:
            info = SessionInfo(
                session_id, info.user_id, data, info.created_at, info.last_activity, info.activity
            )
        yield Call(self._backend, "set", (self._key(f"id:{session_id}"), self._dumps(info), ttl))
        return True

    def _revoke(self, session_id: str, user_id: str, created_at: float) -> Steps[Any]:
        """Tombstone and delete one session, unindex it; returns whether it was live."""
        key, tomb = self._key(f"id:{session_id}"), self._key(f"revoked:{session_id}")
        ops = [Op("delete", key), Op("set", tomb, b"1", ttl=self.ttl + self._skew)]
        existed, _ = check_slots(
            (yield Call(self._backend, "execute", (ops,), {"transaction": True})), "revoke"
        )
        yield Call(
            self._backend,
            "tag_remove",
            (self._index(user_id), [member(round(created_at * 1000), session_id)]),
        )
        if existed:
            yield Call(self._backend, "incr", (self._key("stat:revoked"),))
            _log.debug("revoked session %s of user %r", mask(session_id), user_id)
        return bool(existed)

    def _revoke_one(self, session_id: str) -> Steps[Any]:
        info, _ = yield from self._read(session_id)
        if info is None:
            return False
        return (yield from self._revoke(session_id, info.user_id, info.created_at))

    def _revoke_all(self, user_id: str) -> Steps[Any]:
        # Every entry is revoked, live or not: one whose creation is in flight gets its
        # tombstone first, so its record is dead on arrival.
        entries = yield Call(self._backend, "tag_members", (self._index(user_id),))
        count = 0
        for entry in entries:
            parsed = parse_member(entry)
            if parsed is not None:
                count += yield from self._revoke(parsed[1], user_id, parsed[0] / 1000)
        return count

    def _live(self, user_id: str, *, prune: bool) -> Steps[Any]:
        """The user's live sessions, oldest first; with ``prune``, dead entries are dropped."""
        sessions, _ = yield from self._scan_user(user_id, prune=prune)
        return sessions

    def _scan_user(self, user_id: str, *, prune: bool) -> Steps[Any]:
        """``(live sessions, expired entries dropped)`` of one user's index."""
        index = self._index(user_id)
        entries = yield Call(self._backend, "tag_members", (index,))
        parsed = [(entry, parse_member(entry)) for entry in entries]
        ops: list[Op] = []
        for _, item in parsed:
            if item is not None:
                ops += [
                    Op("get", self._key(f"id:{item[1]}")),
                    Op("exists", self._key(f"revoked:{item[1]}")),
                ]
        results = (
            check_slots(
                (yield Call(self._backend, "execute", (ops,), {"transaction": True})), "a listing"
            )
            if ops
            else []
        )
        live: list[SessionInfo] = []
        expired: list[str] = []
        stale: list[str] = []
        now = time.time()
        slots = iter(results)
        for entry, item in parsed:
            if item is None:
                stale.append(entry)
                continue
            raw, revoked = next(slots), next(slots)
            if revoked:
                stale.append(entry)
            elif raw is not None:
                live.append(self._loads(item[1], raw))
            elif item[0] / 1000 + self.ttl + self._skew <= now:
                expired.append(entry)
        dropped = 0
        if prune and expired:
            dropped = yield Call(self._backend, "tag_remove", (index, expired))
            if dropped:
                yield Call(self._backend, "incr", (self._key("stat:expired"), dropped))
        if prune and stale:
            yield Call(self._backend, "tag_remove", (index, stale))
        live.sort(key=lambda info: (info.created_at, info.session_id))
        return live, dropped

    def _users(self) -> Steps[Any]:
        head = self._index("")
        keys = yield Call(self._backend, "scan", (escape_glob(head) + "*",))
        return sorted({key[len(head) :] for key in keys})

    def _sweep(self, *, prune: bool) -> Steps[Any]:
        users = yield from self._users()
        live = expired = with_sessions = 0
        for user_id in users:
            sessions, dropped = yield from self._scan_user(user_id, prune=prune)
            live += len(sessions)
            expired += dropped
            with_sessions += bool(sessions)
        return live, with_sessions, expired

    def _cleanup(self) -> Steps[Any]:
        _, _, expired = yield from self._sweep(prune=True)
        return expired

    def _stats(self) -> Steps[Any]:
        live, users, _ = yield from self._sweep(prune=False)
        names = ("created", "expired", "revoked")
        raws = yield Call(
            self._backend, "get_many", ([self._key(f"stat:{name}") for name in names],)
        )
        created, expired, revoked = (int(raw) if raw is not None else 0 for raw in raws)
        return SessionStats(live, users, created, expired, revoked)

    def _get(self, session_id: str) -> Steps[Any]:
        info, _ = yield from self._read(session_id)
        return None if info is None else info.data

    # -- public API: each sync method and its async twin side by side ----------------------

    def create(self, user_id: str | int, data: Mapping[str, Any] | None = None) -> str:
        """Start a session for ``user_id``.

        Args:
            user_id: The user; ints are stored as their decimal text.
            data: JSON-able session data (with the default serializer).

        Returns:
            The new session id (256 random bits, URL-safe): put it in the cookie.

        Raises:
            SessionStoreError: The backend failed, or the per-user lock stayed taken.
        """
        return run_sync(self._create(self._user(user_id), self._data(data)))  # type: ignore[no-any-return]

    async def acreate(self, user_id: str | int, data: Mapping[str, Any] | None = None) -> str:
        """Async ``create``."""
        return await run_async(self._create(self._user(user_id), self._data(data)))  # type: ignore[no-any-return]

    def get(self, session_id: str) -> dict[str, Any] | None:
        """The data of a live session, or ``None`` if it does not exist, expired or was revoked.

        Args:
            session_id: The id from the cookie; ids of a foreign shape answer ``None``.

        Raises:
            SessionStoreError: The backend failed or the record cannot be decoded.
        """
        return run_sync(self._get(session_id))  # type: ignore[no-any-return]

    async def aget(self, session_id: str) -> dict[str, Any] | None:
        """Async ``get``."""
        return await run_async(self._get(session_id))  # type: ignore[no-any-return]

    def update(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Replace a live session's data, keeping its expiry.

        Returns:
            Whether the session was live (nothing is written otherwise).

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._update(session_id, self._data(data), None))  # type: ignore[no-any-return]

    async def aupdate(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Async ``update``."""
        return await run_async(self._update(session_id, self._data(data), None))  # type: ignore[no-any-return]

    def touch(self, session_id: str, /, **activity: Any) -> bool:
        """Record activity; with ``sliding``, the session (and its user's index) live ``ttl`` more.

        Args:
            session_id: The session.
            **activity: JSON-able facts to remember (``ip=...``, ``path=...``), merged
                into the earlier ones.

        Returns:
            Whether the session was live.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._update(session_id, {}, activity))  # type: ignore[no-any-return]

    async def atouch(self, session_id: str, /, **activity: Any) -> bool:
        """Async ``touch``."""
        return await run_async(self._update(session_id, {}, activity))  # type: ignore[no-any-return]

    def user_sessions(self, user_id: str | int) -> list[SessionInfo]:
        """The user's live sessions, oldest first; dead index entries are dropped on the way.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._live(self._user(user_id), prune=True))  # type: ignore[no-any-return]

    async def auser_sessions(self, user_id: str | int) -> list[SessionInfo]:
        """Async ``user_sessions``."""
        return await run_async(self._live(self._user(user_id), prune=True))  # type: ignore[no-any-return]

    def revoke(self, session_id: str) -> bool:
        """End a session now (log out).

        Returns:
            Whether it was live.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._revoke_one(session_id))  # type: ignore[no-any-return]

    async def arevoke(self, session_id: str) -> bool:
        """Async ``revoke``."""
        return await run_async(self._revoke_one(session_id))  # type: ignore[no-any-return]

    def revoke_all(self, user_id: str | int) -> int:
        """End every session of a user (log out everywhere, password change).

        Returns:
            How many sessions were live.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._revoke_all(self._user(user_id)))  # type: ignore[no-any-return]

    async def arevoke_all(self, user_id: str | int) -> int:
        """Async ``revoke_all``."""
        return await run_async(self._revoke_all(self._user(user_id)))  # type: ignore[no-any-return]

    def cleanup(self) -> int:
        """Drop the index entries of sessions that expired, for every user.

        Returns:
            How many entries of expired sessions were dropped.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._cleanup())  # type: ignore[no-any-return]

    async def acleanup(self) -> int:
        """Async ``cleanup``."""
        return await run_async(self._cleanup())  # type: ignore[no-any-return]

    def stats(self) -> SessionStats:
        """Live sessions and users now, and the created/expired/revoked counters.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._stats())  # type: ignore[no-any-return]

    async def astats(self) -> SessionStats:
        """Async ``stats``."""
        return await run_async(self._stats())  # type: ignore[no-any-return]
