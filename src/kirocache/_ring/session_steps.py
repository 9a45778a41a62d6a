"""The session store's operations, each written once as a generator of backend calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from kirocache._ring.sessions_core import (
    SessionInfo,
    SessionStats,
    SessionStoreError,
    execute,
    mask,
    member,
    new_session_id,
    parse_member,
    remaining,
    valid_id,
)
from kirocache.backends import Call, DistributedLock, Op, Steps, escape_glob
from kirocache.exceptions import CorruptValueError, SerializationError

if TYPE_CHECKING:
    from kirocache import Cache, Clock
    from kirocache.keys import Namespace
    from kirocache.serializers import Serializer

__all__ = ["SessionSteps"]

_log = logging.getLogger("kirocache.sessions")

# A pruner only drops a record-less index entry once the record's first TTL has passed,
# plus this allowance for clocks of different hosts disagreeing.
_CLOCK_SKEW: Final = 1.0
_LOCK_TIMEOUT: Final = 10.0
_LOCK_WAIT: Final = 5.0


class SessionSteps:
    """What ``SessionStore`` does, as steps the sync and the async driver both run.

    Keys: a session's record at ``<namespace>id:<id>``, its tombstone at
    ``<namespace>revoked:<id>``, a user's index (a tag set of ``"<created ms>.<id>"``
    entries) at ``<namespace>user:<user id>``, counters at ``<namespace>stat:<name>``.
    Every call goes to the backend protocol (``execute``, ``get_many``, ``scan``), never
    through the cache's fail-open methods.

    Args:
        cache: Gives the backend, the key prefix and the clock.
        namespace: Where the keys live.
        ttl: Session lifetime in seconds.
        sliding: Whether activity restarts the lifetime.
        max_sessions_per_user: The cap, or None.
        serializer: Encodes records.
    """

    def __init__(
        self,
        cache: Cache,
        namespace: Namespace,
        ttl: float,
        sliding: bool,
        max_sessions_per_user: int | None,
        serializer: Serializer,
    ) -> None:
        self.cache = cache
        self.backend: Any = cache.backend
        self.clock: Clock = cache.clock
        self.namespace = namespace
        self.ttl = ttl
        self.sliding = sliding
        self.max_sessions_per_user = max_sessions_per_user
        self.serializer = serializer
        self.skew = min(_CLOCK_SKEW, ttl)
        # An index outlives its sessions by one more ttl, so a cleanup run at least once
        # per ttl sees, drops and counts every expired session.
        self.index_ttl = 2 * ttl + self.skew

    # -- keys and records --------------------------------------------------------------------

    def key(self, key: str) -> str:
        """The full key of ``key`` in the store's namespace."""
        return self.cache.full_key(key, self.namespace)

    def _index(self, user_id: str) -> str:
        return self.key(f"user:{user_id}")

    def _dumps(self, info: SessionInfo) -> bytes:
        return self.serializer.dumps(info.record())

    def _loads(self, session_id: str, raw: bytes) -> SessionInfo:
        try:
            record = self.serializer.loads(raw)
        except (CorruptValueError, SerializationError) as exc:
            msg = f"session {mask(session_id)} cannot be decoded (wrong key or serializer?): {exc}"
            raise SessionStoreError(msg) from exc
        if not isinstance(record, Mapping):
            msg = f"session {mask(session_id)} holds a {type(record).__name__}, not a record"
            raise SessionStoreError(msg)
        return SessionInfo.from_record(session_id, record)

    def _entry(self, info: SessionInfo) -> str:
        return member(round(info.created_at * 1000), info.session_id)

    # -- one session -------------------------------------------------------------------------

    def read(self, session_id: str) -> Steps[tuple[SessionInfo | None, float | None]]:
        """The live session and its remaining TTL, or ``(None, None)``."""
        if not valid_id(session_id):
            return None, None
        key, tomb = self.key(f"id:{session_id}"), self.key(f"revoked:{session_id}")
        ops = [Op("get", key), Op("ttl", key), Op("exists", tomb)]
        raw, left, revoked = yield from execute(self.backend, ops, "a read", transaction=True)
        if raw is None:
            return None, None
        if revoked:
            # A touch raced a revoke and rewrote the record: finish the revoke.
            yield from execute(self.backend, [Op("delete", key)], "a read")
            return None, None
        return self._loads(session_id, raw), remaining(left)

    def data(self, session_id: str) -> Steps[dict[str, Any] | None]:
        """The data of a live session, or ``None``."""
        info, _ = yield from self.read(session_id)
        return None if info is None else info.data

    def create(self, user_id: str, data: dict[str, Any]) -> Steps[str]:
        """A new session's id; beyond the cap, the user's oldest sessions are revoked first."""
        lock = None
        if self.max_sessions_per_user is not None:
            lock = DistributedLock(
                self.backend, self.key(f"lock:{user_id}"), timeout=_LOCK_TIMEOUT, wait=_LOCK_WAIT
            )
            if not (yield Call(lock, "acquire")):
                msg = f"timed out waiting for the session lock of user {user_id!r}"
                raise SessionStoreError(msg)
        try:
            if self.max_sessions_per_user is not None:
                live = yield from self.live(user_id)
                excess = len(live) + 1 - self.max_sessions_per_user
                for old in live[: max(excess, 0)]:
                    yield from self.revoke(old)
            now = self.clock.time()
            info = SessionInfo(new_session_id(), user_id, data, now, now)
            # The record and its index entry are written in one transaction (MULTI/EXEC on
            # Redis, one lock hold in memory): a call that dies half way leaves neither.
            ops = [
                Op("set", self.key(f"id:{info.session_id}"), self._dumps(info), ttl=self.ttl),
                Op(
                    "tag_add",
                    self._index(user_id),
                    ttl=self.index_ttl,
                    members=(self._entry(info),),
                ),
                Op("incr", self.key("stat:created")),
            ]
            yield from execute(self.backend, ops, "create", transaction=True)
            _log.debug("created session %s for user %r", mask(info.session_id), user_id)
            return info.session_id
        finally:
            if lock is not None:
                yield Call(lock, "release")

    def update(
        self, session_id: str, data: dict[str, Any], activity: dict[str, Any] | None
    ) -> Steps[bool]:
        """Replace the data (``activity`` None) or merge activity; whether it was live."""
        info, ttl = yield from self.read(session_id)
        if info is None:
            return False
        if activity is None:
            info = SessionInfo(
                session_id, info.user_id, data, info.created_at, info.last_activity, info.activity
            )
        else:
            merged = {**info.activity, **activity}
            info = SessionInfo(
                session_id, info.user_id, info.data, info.created_at, self.clock.time(), merged
            )
            if self.sliding:
                ttl = self.ttl
                add = Op(
                    "tag_add",
                    self._index(info.user_id),
                    ttl=self.index_ttl,
                    members=(self._entry(info),),
                )
                yield from execute(self.backend, [add], "a touch")
        record = Op("set", self.key(f"id:{session_id}"), self._dumps(info), ttl=ttl)
        yield from execute(self.backend, [record], "an update")
        return True

    def revoke(self, info: SessionInfo) -> Steps[bool]:
        """Tombstone and delete one session, unindex it; returns whether it was live."""
        key, tomb = self.key(f"id:{info.session_id}"), self.key(f"revoked:{info.session_id}")
        ops = [Op("delete", key), Op("set", tomb, b"1", ttl=self.ttl + self.skew)]
        existed, _ = yield from execute(self.backend, ops, "revoke", transaction=True)
        unindex = Op("tag_remove", self._index(info.user_id), members=(self._entry(info),))
        yield from execute(self.backend, [unindex], "revoke")
        if existed:
            yield from execute(self.backend, [Op("incr", self.key("stat:revoked"))], "revoke")
            _log.debug("revoked session %s of user %r", mask(info.session_id), info.user_id)
        return bool(existed)

    def revoke_id(self, session_id: str) -> Steps[bool]:
        """Revoke the session ``session_id``; whether it was live."""
        info, _ = yield from self.read(session_id)
        if info is None:
            return False
        return (yield from self.revoke(info))

    # -- a user's index ----------------------------------------------------------------------

    def _members(self, user_id: str, what: str) -> Steps[list[str]]:
        [entries] = yield from execute(
            self.backend, [Op("tag_members", self._index(user_id))], what
        )
        return list(entries)

    def revoke_all(self, user_id: str) -> Steps[int]:
        """Revoke every session of ``user_id``; how many were live."""
        # Every entry is revoked, live or not: one whose creation is in flight gets its
        # tombstone first, so its record is dead on arrival.
        entries = yield from self._members(user_id, "revoke_all")
        count = 0
        for entry in entries:
            parsed = parse_member(entry)
            if parsed is not None:
                created_ms, session_id = parsed
                stub = SessionInfo(session_id, user_id, {}, created_ms / 1000, created_ms / 1000)
                count += yield from self.revoke(stub)
        return count

    def live(self, user_id: str) -> Steps[list[SessionInfo]]:
        """The user's live sessions, oldest first; dead entries leave the index on the way."""
        sessions, _ = yield from self.scan_user(user_id, prune=True)
        return sessions

    def scan_user(self, user_id: str, *, prune: bool) -> Steps[tuple[list[SessionInfo], int]]:
        """``(live sessions oldest first, expired entries dropped)`` of one user's index.

        With ``prune``, entries of expired, revoked or foreign sessions leave the index.
        """
        index = self._index(user_id)
        entries = yield from self._members(user_id, "a listing")
        parsed = [(entry, parse_member(entry)) for entry in entries]
        ops: list[Op] = []
        for _, item in parsed:
            if item is not None:
                ops += [
                    Op("get", self.key(f"id:{item[1]}")),
                    Op("exists", self.key(f"revoked:{item[1]}")),
                ]
        results: list[Any] = []
        if ops:
            results = yield from execute(self.backend, ops, "a listing", transaction=True)
        live: list[SessionInfo] = []
        expired: list[str] = []
        stale: list[str] = []
        now = self.clock.time()
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
            elif item[0] / 1000 + self.ttl + self.skew <= now:
                expired.append(entry)
        dropped = 0
        if prune and expired:
            [dropped] = yield from execute(
                self.backend, [Op("tag_remove", index, members=tuple(expired))], "a listing"
            )
            if dropped:
                counter = Op("incr", self.key("stat:expired"), amount=dropped)
                yield from execute(self.backend, [counter], "a listing")
        if prune and stale:
            unindex = Op("tag_remove", index, members=tuple(stale))
            yield from execute(self.backend, [unindex], "a listing")
        live.sort(key=lambda info: (info.created_at, info.session_id))
        return live, dropped

    def users(self) -> Steps[list[str]]:
        """Every user id with an index, sorted."""
        head = self._index("")
        keys = yield Call(self.backend, "scan", (escape_glob(head) + "*",))
        return sorted({key[len(head) :] for key in keys})

    def sweep(self, *, prune: bool) -> Steps[tuple[int, int, int]]:
        """``(live sessions, users with one, expired entries dropped)`` over every index."""
        users = yield from self.users()
        live = expired = with_sessions = 0
        for user_id in users:
            sessions, dropped = yield from self.scan_user(user_id, prune=prune)
            live += len(sessions)
            expired += dropped
            with_sessions += bool(sessions)
        return live, with_sessions, expired

    def cleanup(self) -> Steps[int]:
        """Drop the entries of expired sessions from every index; how many."""
        _, _, expired = yield from self.sweep(prune=True)
        return expired

    def stats(self) -> Steps[SessionStats]:
        """The live figures and the counters."""
        live, users, _ = yield from self.sweep(prune=False)
        names = ("created", "expired", "revoked")
        raws = yield Call(self.backend, "get_many", ([self.key(f"stat:{name}") for name in names],))
        created, expired, revoked = (int(raw) if raw is not None else 0 for raw in raws)
        return SessionStats(live, users, created, expired, revoked)
