"""The session store's operations, each written once as a generator of backend calls."""

from __future__ import annotations

import logging
import secrets
import threading
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
    slot_tag,
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
# A create retries when a revoke_all (or another first login of the user) changed the
# generation between its read and its record; more than this many in a row is an error.
_CREATE_TRIES: Final = 5
# 128 random bits: a token already deleted is never drawn again in practice.
_GEN_BYTES: Final = 16
# The record field holding the generation token (old records lack it: logged out).
_GEN: Final = "gen"
# The length of the slot tag a session id starts with (see ``slot_tag``).
_TAG: Final = 3
# How many session ids a store remembers the user of (about 200 bytes each).
_OWNERS: Final = 10_000


class SessionSteps:
    """What ``SessionStore`` does, as steps the sync and the async driver both run.

    Keys: a session's record at ``<namespace>id:<id>``, its liveness key at
    ``<namespace>live:<id>``, a user's generation at ``<namespace>gen:<user id>``, a user's
    index (a tag set of ``"<created ms>.<id>"`` entries) at ``<namespace>user:<user id>``,
    counters at ``<namespace>stat:<name>``. Every call goes to the backend protocol
    (``execute``, ``get``, ``get_many``, ``scan``), never through the cache's fail-open
    methods.

    Validity is proved by presence, never by the absence of a marker, so whatever an
    eviction policy (or a lost write) removes ends a session and nothing can revive one:

    - a session is valid only while its record, its liveness key and its user's
      generation key all exist and the generation key holds the token the record carries;
    - ``revoke`` deletes the liveness key, and only ``create`` ever writes one, for a
      fresh id: a late write of the record (a touch racing the revoke) finds it missing;
    - ``revoke_all`` deletes the generation key (one DEL, no index needed), and only
      ``create`` ever writes one, with a fresh 128-bit random token and SET NX: a token is
      never written again once its key is gone (a value read back is never written), so
      neither eviction nor a later login revives the records that carry it;
    - both revocations are deletions, which Redis accepts even at ``maxmemory`` under
      ``noeviction``, and they run outside MULTI (which refuses every command when out of
      memory); a write that fails raises ``SessionStoreError``.

    The index only serves listings, the cap and ``stats``; an evicted index loses entries
    from those, never a revocation.

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
        # Whose each recently seen session is: a session never changes user, so a read
        # of a known id asks for its user's generation in the same round trip as the
        # record (checked against the record's user, so a stale entry costs a trip, not
        # correctness). Bounded; the oldest entry goes first.
        self._owners: dict[str, str] = {}
        self._owners_lock = threading.Lock()

    # -- keys and records --------------------------------------------------------------------

    def key(self, key: str) -> str:
        """The full key of ``key`` in the store's namespace."""
        return self.cache.full_key(key, self.namespace)

    # Every key of a user and of the user's sessions carries the user's slot tag ("{abc}",
    # see ``slot_tag``; a session id starts with it), so on a Redis Cluster the
    # transactions below stay within one slot. On one node a tag is just part of a name.

    def _index(self, user_id: str) -> str:
        return self.key(f"user:{{{slot_tag(user_id)}}}:{user_id}")

    def _gen(self, user_id: str) -> str:
        return self.key(f"gen:{{{slot_tag(user_id)}}}:{user_id}")

    def _record(self, session_id: str) -> str:
        return self.key(f"id:{{{session_id[:_TAG]}}}:{session_id}")

    def _live(self, session_id: str) -> str:
        return self.key(f"live:{{{session_id[:_TAG]}}}:{session_id}")

    def _dumps(self, info: SessionInfo, gen: bytes) -> bytes:
        record = {**info.record(), _GEN: gen.decode("ascii")}
        if getattr(self.serializer, "binds_key", False) is True:
            # a signing or encrypting serializer binds the record to its own key: bytes
            # copied to another session's key (a swap, a replay) do not decode there
            key = self._record(info.session_id)
            return self.serializer.dumps(record, key=key)  # type: ignore[call-arg]
        return self.serializer.dumps(record)

    def _decode(self, session_id: str, raw: bytes) -> tuple[SessionInfo, bytes | None]:
        """The record and the generation token it carries (None: a record from before them)."""
        try:
            if getattr(self.serializer, "binds_key", False) is True:
                key = self._record(session_id)
                record = self.serializer.loads(raw, key=key)  # type: ignore[call-arg]
            else:
                record = self.serializer.loads(raw)
        except (CorruptValueError, SerializationError) as exc:
            msg = f"session {mask(session_id)} cannot be decoded (wrong key or serializer?): {exc}"
            raise SessionStoreError(msg) from exc
        if not isinstance(record, Mapping):
            msg = f"session {mask(session_id)} holds a {type(record).__name__}, not a record"
            raise SessionStoreError(msg)
        gen = record.get(_GEN)
        return SessionInfo.from_record(session_id, record), (
            gen.encode("ascii") if isinstance(gen, str) and gen.isascii() else None
        )

    def _entry(self, info: SessionInfo) -> str:
        return member(round(info.created_at * 1000), info.session_id)

    def _counted(self, name: str, amount: int, what: str) -> Steps[None]:
        """Add ``amount`` to a counter, after the operation it counts took effect.

        A failure is logged, not raised: the revocation it counts is already applied, and
        an error would tell the caller it was not (INCR is refused at ``maxmemory`` under
        ``noeviction``, where the deletions that revoke are not).
        """
        if amount <= 0:
            return
        try:
            yield from execute(
                self.backend, [Op("incr", self.key(f"stat:{name}"), amount=amount)], what
            )
        except SessionStoreError as exc:
            _log.warning("session counter %r not updated after %s: %s", name, what, exc)

    # -- one session -------------------------------------------------------------------------

    def read(self, session_id: str) -> Steps[tuple[SessionInfo | None, float | None, bytes]]:
        """The valid session, its remaining TTL and its generation, or ``(None, None, b"")``.

        No transaction (MULTI refuses even reads at ``maxmemory`` under ``noeviction``):
        the record, its TTL, its liveness key and, when this store has seen the id before,
        its user's generation key in one round trip; else the generation in a second. The
        order needs no atomicity: a record's token never changes and a deleted liveness or
        generation key never comes back, so once a revocation has returned, every later
        read sees it.
        """
        dead: tuple[None, None, bytes] = (None, None, b"")
        if not valid_id(session_id):
            return dead
        key = self._record(session_id)
        owner = self._owners.get(session_id)
        # GET the liveness key, not EXISTS: EXISTS leaves Redis's LRU clock alone, so an
        # LRU policy would see a session's liveness key as idle and log it out first.
        ops = [Op("get", key), Op("ttl", key), Op("get", self._live(session_id))]
        if owner is not None:
            ops.append(Op("get", self._gen(owner)))
        raw, left, live, *known = yield from execute(self.backend, ops, "a read")
        if raw is None or live is None or left is None:
            # left None: the record expired between GET and PTTL (no transaction); an
            # update must not write it back without a TTL.
            return dead
        info, gen = self._decode(session_id, raw)
        if gen is None:
            return dead  # written before generations existed: logged out
        if owner == info.user_id:
            [current] = known
        else:
            gen_key = self._gen(info.user_id)
            [current] = yield from execute(self.backend, [Op("get", gen_key)], "a read")
            self._remember(session_id, info.user_id)
        if current != gen:
            return dead  # revoke_all, or the generation was evicted: logged out
        return info, remaining(left), gen

    def _remember(self, session_id: str, user_id: str) -> None:
        with self._owners_lock:
            if len(self._owners) >= _OWNERS:
                del self._owners[next(iter(self._owners))]
            self._owners[session_id] = user_id

    def data(self, session_id: str) -> Steps[dict[str, Any] | None]:
        """The data of a valid session, or ``None``."""
        info, _, _ = yield from self.read(session_id)
        return None if info is None else info.data

    def create(self, user_id: str, data: dict[str, Any]) -> Steps[str]:
        """A new session's id; beyond the cap, the user's oldest sessions are revoked first."""
        lock = None
        if self.max_sessions_per_user is not None:
            lock = DistributedLock(
                self.backend,
                self.key(f"lock:{{{slot_tag(user_id)}}}:{user_id}"),
                timeout=_LOCK_TIMEOUT,
                wait=_LOCK_WAIT,
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
            for _ in range(_CREATE_TRIES):
                session_id = yield from self._create_once(user_id, data)
                if session_id is not None:
                    return session_id
            msg = f"the generation of user {user_id!r} kept changing during a login"
            raise SessionStoreError(msg)
        finally:
            if lock is not None:
                yield Call(lock, "release")

    def _create_once(self, user_id: str, data: dict[str, Any]) -> Steps[str | None]:
        """Write one session; its id, or None if its generation was replaced meanwhile."""
        gen_key = self._gen(user_id)
        held = yield Call(self.backend, "get", (gen_key,))
        # A generation read back is never written: only a fresh token, and only with NX, so
        # a generation revoke_all deleted (or an eviction removed) can never return.
        gen = held if held is not None else secrets.token_hex(_GEN_BYTES).encode("ascii")
        now = self.clock.time()
        info = SessionInfo(new_session_id(user_id), user_id, data, now, now)
        record, live = self._record(info.session_id), self._live(info.session_id)
        # The record and its index entry are written in one transaction (MULTI/EXEC on
        # Redis, one lock hold in memory): a call that dies half way leaves neither. The
        # count of creations, a store-wide key, is written beside it, not within it.
        ops = [
            Op("set", record, self._dumps(info, gen), ttl=self.ttl),
            Op("tag_add", self._index(user_id), ttl=self.index_ttl, members=(self._entry(info),)),
        ]
        yield from execute(self.backend, ops, "create", transaction=True)
        yield from execute(self.backend, [Op("incr", self.key("stat:created"))], "create")
        # Then the session goes live: until its liveness key exists the record is inert,
        # so a call that dies here leaves a session that never worked.
        keep = (
            Op("expire", gen_key, ttl=self.index_ttl)
            if held is not None
            else Op("set", gen_key, gen, ttl=self.index_ttl, nx=True)
        )
        ops = [Op("set", live, b"1", ttl=self.ttl), keep, Op("get", gen_key)]
        _, _, current = yield from execute(self.backend, ops, "create", transaction=True)
        if current != gen:
            # A revoke_all ran since the read, or another first login made the generation:
            # this record is dead for good; drop it and try again with the new generation.
            yield from execute(self.backend, [Op("delete", live), Op("delete", record)], "create")
            return None
        self._remember(info.session_id, user_id)
        _log.debug("created session %s for user %r", mask(info.session_id), user_id)
        return info.session_id

    def update(
        self, session_id: str, data: dict[str, Any], activity: dict[str, Any] | None
    ) -> Steps[bool]:
        """Replace the data (``activity`` None) or merge activity; whether it was valid."""
        info, ttl, gen = yield from self.read(session_id)
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
                # EXPIRE only sets the TTL of a key that exists: a touch racing a revoke
                # cannot recreate the liveness or generation key it deleted.
                ops = [
                    Op(
                        "tag_add",
                        self._index(info.user_id),
                        ttl=self.index_ttl,
                        members=(self._entry(info),),
                    ),
                    Op("expire", self._live(session_id), ttl=self.ttl),
                    Op("expire", self._gen(info.user_id), ttl=self.index_ttl),
                ]
                yield from execute(self.backend, ops, "a touch")
        # A revoke racing this write leaves a record without its liveness key: inert.
        record = Op("set", self._record(session_id), self._dumps(info, gen), ttl=ttl)
        yield from execute(self.backend, [record], "an update")
        return True

    def revoke(self, info: SessionInfo) -> Steps[bool]:
        """End one session, unindex it; returns whether its liveness key existed.

        The liveness key is deleted first and on its own: that DEL is the revocation, and
        it succeeds even where the record's removal or the index's cannot.
        """
        [existed] = yield from execute(
            self.backend, [Op("delete", self._live(info.session_id))], "revoke"
        )
        tidy = [
            Op("delete", self._record(info.session_id)),
            Op("tag_remove", self._index(info.user_id), members=(self._entry(info),)),
        ]
        yield from execute(self.backend, tidy, "revoke")
        if existed:
            yield from self._counted("revoked", 1, "revoke")
            _log.debug("revoked session %s of user %r", mask(info.session_id), info.user_id)
        return bool(existed)

    def revoke_id(self, session_id: str) -> Steps[bool]:
        """Revoke the session ``session_id``; whether it was valid."""
        info, _, _ = yield from self.read(session_id)
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
        """Revoke every session of ``user_id``; how many valid ones the index listed.

        Deleting the generation key is the revocation, and needs no index: the count and
        the removal of the records come from the index, best effort, after it.
        """
        entries: list[str] = []
        try:
            sessions, _, entries = yield from self._listed(user_id, prune=False)
        except SessionStoreError as exc:
            # The count must not stand in the revocation's way (a record the serializer
            # cannot decode, say); a backend fault fails the DEL below as well.
            _log.warning("revoke_all of user %r revokes without a count: %s", user_id, exc)
            sessions = []
        yield from execute(self.backend, [Op("delete", self._gen(user_id))], "revoke_all")
        # Tidy only what was listed before the DEL: a login that started after it has a
        # new generation and must keep its liveness key and its index entry.
        tidy: list[Op] = []
        for entry in entries:
            parsed = parse_member(entry)
            if parsed is not None:
                tidy += [Op("delete", self._live(parsed[1])), Op("delete", self._record(parsed[1]))]
        if entries:
            tidy.append(Op("tag_remove", self._index(user_id), members=tuple(entries)))
            yield from execute(self.backend, tidy, "revoke_all")
        yield from self._counted("revoked", len(sessions), "revoke_all")
        _log.debug("revoked every session of user %r (%d listed)", user_id, len(sessions))
        return len(sessions)

    def live(self, user_id: str) -> Steps[list[SessionInfo]]:
        """The user's valid sessions, oldest first; dead entries leave the index on the way."""
        sessions, _ = yield from self.scan_user(user_id, prune=True)
        return sessions

    def scan_user(self, user_id: str, *, prune: bool) -> Steps[tuple[list[SessionInfo], int]]:
        """``(valid sessions oldest first, expired entries dropped)`` of one user's index.

        With ``prune``, entries of expired, revoked or foreign sessions leave the index.
        """
        live, dropped, _ = yield from self._listed(user_id, prune=prune)
        return live, dropped

    def _listed(
        self, user_id: str, *, prune: bool
    ) -> Steps[tuple[list[SessionInfo], int, list[str]]]:
        """``scan_user``'s answer and the index entries it read.

        With ``prune``, entries of expired, revoked or foreign sessions leave the index. An
        entry younger than the clock-skew allowance stays whatever it finds: its creation
        may still be in flight (record written, not yet live).
        """
        index = self._index(user_id)
        entries = yield from self._members(user_id, "a listing")
        parsed = [(entry, parse_member(entry)) for entry in entries]
        ops: list[Op] = [Op("get", self._gen(user_id))]
        for _, item in parsed:
            if item is not None:
                ops += [Op("get", self._record(item[1])), Op("get", self._live(item[1]))]
        slots = iter((yield from execute(self.backend, ops, "a listing")))
        current = next(slots)
        live: list[SessionInfo] = []
        expired: list[str] = []
        stale: list[str] = []
        now = self.clock.time()
        for entry, item in parsed:
            if item is None:
                stale.append(entry)
                continue
            raw, alive = next(slots), next(slots)
            settled = item[0] / 1000 + self.skew <= now
            if raw is not None:
                info, gen = self._decode(item[1], raw)
                valid = alive is not None and gen is not None and gen == current
                if valid and info.user_id == user_id:
                    live.append(info)
                elif settled:
                    stale.append(entry)
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
        return live, dropped, entries

    def users(self) -> Steps[list[str]]:
        """Every user id with an index, sorted."""
        head = self.key("user:")
        keys = yield Call(self.backend, "scan", (escape_glob(head) + "*",))
        # "<head>{abc}:<user id>": the user id follows the slot tag
        return sorted({key[len(head) + _TAG + 3 :] for key in keys})

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
