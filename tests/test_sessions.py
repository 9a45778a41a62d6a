"""The session store on memory, fakeredis and Redis: lifecycle, expiry, cap, faults, secrecy."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import redis

from kirocache import Cache, Namespace
from kirocache.backends import MemoryBackend, Op
from kirocache.exceptions import BackendError
from kirocache.serializers import EncryptedSerializer
from kirocache.sessions import SessionStore, SessionStoreError
from kirocache.testing import FaultyBackend, ManualClock

if TYPE_CHECKING:
    from collections.abc import Callable

    from kirocache.testing.conformance import FullBackend
    from redis_server import RedisServer

TTL = 0.3
REAL_TTL = 0.8


def store(backend: FullBackend, **options: object) -> SessionStore:
    return SessionStore(Cache(backend), **options)  # type: ignore[arg-type]


# -- lifecycle ----------------------------------------------------------------------------


def test_create_get_update_touch_revoke(backend: FullBackend) -> None:
    sessions = store(backend)
    sid = sessions.create("ada", {"role": "admin"})
    assert sessions.get(sid) == {"role": "admin"}
    assert sessions.update(sid, {"role": "user"}) is True
    assert sessions.get(sid) == {"role": "user"}
    assert sessions.touch(sid, ip="10.0.0.1") is True
    assert sessions.touch(sid, path="/home") is True
    [info] = sessions.user_sessions("ada")
    assert info.session_id == sid
    assert info.activity == {"ip": "10.0.0.1", "path": "/home"}
    assert info.last_activity >= info.created_at
    assert sessions.revoke(sid) is True
    assert sessions.get(sid) is None
    assert sessions.revoke(sid) is False
    assert sessions.update(sid, {"x": 1}) is False
    assert sessions.touch(sid) is False
    assert sessions.user_sessions("ada") == []


async def test_create_get_update_touch_revoke_async(backend: FullBackend) -> None:
    sessions = store(backend)
    sid = await sessions.acreate("ada", {"role": "admin"})
    assert await sessions.aget(sid) == {"role": "admin"}
    assert await sessions.aupdate(sid, {"role": "user"}) is True
    assert await sessions.aget(sid) == {"role": "user"}
    assert await sessions.atouch(sid, ip="10.0.0.1") is True
    [info] = await sessions.auser_sessions("ada")
    assert (info.session_id, info.activity) == (sid, {"ip": "10.0.0.1"})
    assert await sessions.arevoke(sid) is True
    assert await sessions.aget(sid) is None
    assert await sessions.arevoke(sid) is False
    assert await sessions.auser_sessions("ada") == []


def test_unknown_and_malformed_ids_are_no_session(backend: FullBackend) -> None:
    sessions = store(backend)
    for bad in ("nope", "", "a" * 500, "*", "x" * 43):
        assert sessions.get(bad) is None
        assert sessions.touch(bad) is False


def test_revoke_all_ends_every_session_of_one_user_only(backend: FullBackend) -> None:
    sessions = store(backend)
    ada = [sessions.create("ada", {"n": n}) for n in range(3)]
    bob = sessions.create("bob", {})
    assert sessions.revoke_all("ada") == 3
    assert all(sessions.get(sid) is None for sid in ada)
    assert sessions.get(bob) == {}
    assert sessions.user_sessions("ada") == []
    assert sessions.revoke_all("ada") == 0


async def test_revoke_all_async(backend: FullBackend) -> None:
    sessions = store(backend)
    ada = [await sessions.acreate("ada", {"n": n}) for n in range(3)]
    bob = await sessions.acreate("bob", {})
    assert await sessions.arevoke_all("ada") == 3
    assert [await sessions.aget(sid) for sid in ada] == [None, None, None]
    assert await sessions.aget(bob) == {}


def test_a_touch_that_raced_a_revoke_does_not_bring_the_session_back(backend: FullBackend) -> None:
    sessions = store(backend)
    sid = sessions.create("ada", {"k": 1})
    raw = backend.get(sessions._steps._record(sid))
    assert raw is not None
    assert sessions.revoke(sid)
    backend.set(sessions._steps._record(sid), raw, 60)  # the late write of a racing touch
    assert sessions.get(sid) is None
    assert sessions.user_sessions("ada") == []


# -- expiry ------------------------------------------------------------------------------
# The store's own decisions (timestamps, when an index entry counts as expired) read the
# cache's clock, which these tests move by hand. Records expire by the backend's TTL: in
# memory that follows the same clock, so no test waits; on a Redis server (fakeredis or
# the real one) the server's own expiry is under test, so real time passes with the clock.


@dataclass
class Timeline:
    """A backend and a clock moved by hand; with ``real``, real time passes along."""

    backend: FullBackend
    clock: ManualClock
    real: bool
    ttl: float

    @property
    def gone(self) -> float:
        """Past a session's ttl plus the store's clock-skew allowance (capped at the ttl).

        Short of the ttl of an index nobody touched (twice the ttl plus the allowance): on
        a real server, a loop that takes longer in real time than on the clock must still
        find that index.
        """
        return 2.2 * self.ttl

    def store(self, **options: object) -> SessionStore:
        cache = Cache(self.backend, clock=self.clock)
        return SessionStore(cache, ttl=self.ttl, **options)  # type: ignore[arg-type]

    def elapse(self, seconds: float) -> None:
        self.clock.advance(seconds)
        if self.real:
            time.sleep(seconds)

    async def aelapse(self, seconds: float) -> None:
        self.clock.advance(seconds)
        if self.real:
            await asyncio.sleep(seconds)


ON_EVERY_CLOCK = pytest.mark.parametrize(
    "backend",
    [
        pytest.param("memory"),
        pytest.param("fakeredis", marks=pytest.mark.slow),
        pytest.param("redis", marks=[pytest.mark.slow, pytest.mark.real_redis]),
    ],
    indirect=True,
)


@pytest.fixture
def timeline(backend: FullBackend) -> Timeline:
    clock = ManualClock()
    if isinstance(backend, MemoryBackend):
        return Timeline(MemoryBackend(clock=clock.monotonic), clock, real=False, ttl=TTL)
    # A real ttl long enough that a touch every third of it keeps a session alive on a
    # loaded machine (over half a second of slack per step), and that a run of touches
    # ends well before an untouched index expires (0.6 s of slack in all).
    return Timeline(backend, clock, real=True, ttl=REAL_TTL)


@ON_EVERY_CLOCK
def test_sliding_expiry_is_extended_by_touch(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=True)
    sid = sessions.create("ada", {})
    for _ in range(4):
        timeline.elapse(timeline.ttl / 3)
        assert sessions.touch(sid)
    # Well past the first ttl, alive thanks to the touches.
    assert sessions.get(sid) == {}
    assert [s.session_id for s in sessions.user_sessions("ada")] == [sid]
    timeline.elapse(timeline.ttl + 0.1)
    assert sessions.get(sid) is None


@ON_EVERY_CLOCK
async def test_fixed_expiry_ignores_touch_async(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=False)
    sid = await sessions.acreate("ada", {})
    await timeline.aelapse(timeline.ttl / 2)
    assert await sessions.atouch(sid, ip="x")
    assert await sessions.aupdate(sid, {"k": 1})
    await timeline.aelapse(timeline.ttl / 2 + 0.1)
    assert await sessions.aget(sid) is None
    assert await sessions.atouch(sid) is False


@ON_EVERY_CLOCK
async def test_sliding_expiry_async(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=True)
    sid = await sessions.acreate("ada", {})
    for _ in range(4):
        await timeline.aelapse(timeline.ttl / 3)
        assert await sessions.atouch(sid)
    assert await sessions.aget(sid) == {}


@ON_EVERY_CLOCK
def test_fixed_expiry_ignores_touch(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=False)
    sid = sessions.create("ada", {})
    timeline.elapse(timeline.ttl / 2)
    assert sessions.touch(sid)
    timeline.elapse(timeline.ttl / 2 + 0.1)
    assert sessions.get(sid) is None


def test_timestamps_come_from_the_caches_clock(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=True)
    created = timeline.clock.time()
    sid = sessions.create("ada", {})
    timeline.clock.advance(0.05)
    assert sessions.touch(sid)
    [info] = sessions.user_sessions("ada")
    assert (info.created_at, info.last_activity) == (created, timeline.clock.time())


@ON_EVERY_CLOCK
def test_listing_after_some_expire_and_cleanup_counts(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=True)
    old = [sessions.create("ada", {"n": n}) for n in range(2)]
    kept = sessions.create("ada", {"n": 2})
    other = sessions.create("bob", {})
    # A touch every third of the ttl keeps one session alive until the others are gone.
    steps = math.ceil(timeline.gone / (timeline.ttl / 3))
    for _ in range(steps):
        timeline.elapse(timeline.gone / steps)
        sessions.touch(kept)
    assert [s.session_id for s in sessions.user_sessions("ada")] == [kept]
    assert all(sessions.get(sid) is None for sid in [*old, other])
    # The listing pruned ada's dead entries; cleanup finds bob's.
    assert sessions.cleanup() == 1
    assert sessions.cleanup() == 0
    stats = sessions.stats()
    assert (stats.live_sessions, stats.users, stats.created, stats.expired) == (1, 1, 4, 3)


@ON_EVERY_CLOCK
async def test_listing_after_some_expire_and_cleanup_counts_async(timeline: Timeline) -> None:
    sessions = timeline.store(sliding=True)
    await sessions.acreate("ada", {})
    kept = await sessions.acreate("ada", {})
    await sessions.acreate("bob", {})
    steps = math.ceil(timeline.gone / (timeline.ttl / 3))
    for _ in range(steps):
        await timeline.aelapse(timeline.gone / steps)
        await sessions.atouch(kept)
    assert await sessions.acleanup() == 2
    assert [s.session_id for s in await sessions.auser_sessions("ada")] == [kept]
    stats = await sessions.astats()
    assert (stats.live_sessions, stats.users, stats.expired) == (1, 1, 2)


def test_an_expired_record_is_not_pruned_before_its_first_ttl_and_skew(
    timeline: Timeline,
) -> None:
    # A record can vanish early (eviction, or a creation still in flight on another
    # host); its index entry stays until the clock says the session must have expired.
    sessions = timeline.store(sliding=True)
    sid = sessions.create("ada", {})
    timeline.backend.execute([Op("delete", sessions._steps._record(sid))])
    timeline.clock.advance(2 * timeline.ttl - 0.01)
    assert sessions.cleanup() == 0
    timeline.clock.advance(0.02)
    assert sessions.cleanup() == 1


def test_stats_counts_created_revoked_live_and_users(backend: FullBackend) -> None:
    sessions = store(backend)
    a = sessions.create("ada", {})
    sessions.create("ada", {})
    sessions.create("bob", {})
    sessions.revoke(a)
    stats = sessions.stats()
    assert (stats.live_sessions, stats.users, stats.created, stats.revoked) == (2, 2, 3, 1)
    assert stats.expired == 0


# -- the cap -----------------------------------------------------------------------------


def test_cap_revokes_the_oldest(backend: FullBackend) -> None:
    sessions = store(backend, max_sessions_per_user=2)
    first, second, third = (sessions.create("ada", {"n": n}) for n in range(3))
    assert sessions.get(first) is None
    assert [s.session_id for s in sessions.user_sessions("ada")] == [second, third]
    assert sessions.stats().revoked == 1


async def test_cap_revokes_the_oldest_async(backend: FullBackend) -> None:
    sessions = store(backend, max_sessions_per_user=1)
    first = await sessions.acreate("ada", {})
    second = await sessions.acreate("ada", {})
    assert await sessions.aget(first) is None
    assert [s.session_id for s in await sessions.auser_sessions("ada")] == [second]


def test_concurrent_creation_for_one_user_does_not_exceed_the_cap(backend: FullBackend) -> None:
    sessions = store(backend, max_sessions_per_user=3)
    made: list[str] = []
    barrier = threading.Barrier(8)

    def login() -> None:
        barrier.wait()
        made.extend(sessions.create("ada", {}) for _ in range(3))

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 24
    live = [sid for sid in made if sessions.get(sid) is not None]
    assert len(live) == 3
    assert len(sessions.user_sessions("ada")) == 3
    assert sessions.stats().revoked == 21


# -- faults ------------------------------------------------------------------------------


def test_backend_faults_fail_closed(backend: FullBackend) -> None:
    faulty = FaultyBackend(backend)
    sessions = SessionStore(Cache(faulty), max_sessions_per_user=2)
    sid = sessions.create("ada", {})
    faulty.failing = True
    calls = [
        lambda: sessions.get(sid),
        lambda: sessions.create("ada", {}),
        lambda: sessions.update(sid, {}),
        lambda: sessions.touch(sid),
        lambda: sessions.user_sessions("ada"),
        lambda: sessions.revoke(sid),
        lambda: sessions.revoke_all("ada"),
        sessions.cleanup,
        sessions.stats,
    ]
    for call in calls:
        with pytest.raises(SessionStoreError) as info:
            call()
        assert isinstance(info.value, BackendError)
        assert isinstance(info.value.__cause__, BackendError)
    faulty.failing = False
    assert sessions.get(sid) == {}


class _DiesOnCreate:
    """Passes calls through, but the write of a session dies (as a process would)."""

    def __init__(self, inner: FullBackend) -> None:
        self.inner = inner
        self.transactions: list[list[str]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        self.transactions.append([op.name for op in ops])
        if any(op.name == "tag_add" for op in ops):
            msg = "connection lost while creating"
            raise BackendError(msg)
        return self.inner.execute(ops, transaction=transaction)


def test_create_writes_record_and_index_in_one_transaction(backend: FullBackend) -> None:
    dying = _DiesOnCreate(backend)
    sessions = SessionStore(Cache(backend), namespace=Namespace("atomic:", ttl=60))
    sessions._steps.backend = dying  # the store's backend, wrapped after the Cache checked it
    with pytest.raises(SessionStoreError):
        sessions.create("ada", {"n": 1})
    # one transaction held the record and the index entry, and nothing was left behind
    assert dying.transactions == [["set", "tag_add"]]  # the count goes beside it
    assert list(backend.scan("atomic:*")) == []
    assert sessions.user_sessions("ada") == []


async def test_backend_faults_fail_closed_async(backend: FullBackend) -> None:
    faulty = FaultyBackend(backend)
    sessions = SessionStore(Cache(faulty))
    sid = await sessions.acreate("ada", {})
    faulty.failing = True
    with pytest.raises(SessionStoreError):
        await sessions.aget(sid)
    with pytest.raises(SessionStoreError):
        await sessions.acreate("ada", {})
    with pytest.raises(SessionStoreError):
        await sessions.auser_sessions("ada")
    with pytest.raises(SessionStoreError):
        await sessions.arevoke(sid)
    faulty.failing = False
    assert await sessions.aget(sid) == {}


# -- secrecy -----------------------------------------------------------------------------


class _QuotesTheKey:
    """Fails every ``execute`` with an error quoting its first key, as Redis does."""

    def __init__(self, inner: FullBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        msg = f"Command # 1 (GET {ops[0].key}) of pipeline caused error: LOADING"
        raise BackendError(msg)


def test_store_errors_mask_the_session_ids_a_backend_error_quotes(backend: FullBackend) -> None:
    sessions = store(backend)
    sid = sessions.create("ada", {})
    sessions._steps.backend = _QuotesTheKey(backend)
    with pytest.raises(SessionStoreError) as info:
        sessions.get(sid)
    assert sid not in str(info.value)
    assert f"id:{{{sid[:3]}}}:{sid[:6]}\u2026" in str(info.value)


def test_encryption_at_rest(backend: FullBackend) -> None:
    key = os.urandom(32)
    sessions = store(backend, serializer=EncryptedSerializer(key=key))
    sid = sessions.create("ada", {"secret": "hunter2-plaintext"})
    raw = backend.get(sessions._steps._record(sid))
    assert raw is not None
    assert b"hunter2" not in raw
    assert sessions.get(sid) == {"secret": "hunter2-plaintext"}
    # Another key cannot read it, and that is an error, not a silent logout.
    other = store(backend, serializer=EncryptedSerializer(key=os.urandom(32)))
    with pytest.raises(SessionStoreError, match="cannot be decoded"):
        other.get(sid)


@pytest.mark.parametrize("kind", ["encrypted", "signed"])
def test_a_record_copied_to_another_session_never_logs_in_as_its_user(
    backend: FullBackend, kind: str
) -> None:
    # Someone who can write to the store copies ada's record over grace's session: with a
    # serializer that binds records to their keys, grace's id does not become ada's login.
    from kirocache.serializers import PickleSerializer

    serializer = (
        EncryptedSerializer(key=os.urandom(32))
        if kind == "encrypted"
        else PickleSerializer(b"s" * 32)
    )
    sessions = store(backend, serializer=serializer)
    ada = sessions.create("ada", {"role": "admin"})
    grace = sessions.create("grace", {"role": "guest"})
    ada_raw = backend.get(sessions._steps._record(ada))
    assert ada_raw is not None
    backend.set(sessions._steps._record(grace), ada_raw)
    with pytest.raises(SessionStoreError, match="cannot be decoded"):
        sessions.get(grace)
    assert sessions.get(ada) == {"role": "admin"}


def test_the_caches_encrypted_serializer_applies(backend: FullBackend) -> None:
    cache = Cache(backend, serializer=EncryptedSerializer(key=os.urandom(32)))
    sessions = SessionStore(cache)
    sid = sessions.create("ada", {"card": "4111-plaintext"})
    raw = backend.get(sessions._steps._record(sid))
    assert raw is not None
    assert b"4111" not in raw
    assert sessions.get(sid) == {"card": "4111-plaintext"}


def test_ids_are_long_random_and_unique(backend: FullBackend) -> None:
    sessions = store(backend)
    ids = [sessions.create("ada", {}) for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(sid) >= 43 for sid in ids)  # 32 bytes, base64: 256 bits
    # Characters spread over the URL-safe alphabet: about 6 bits of entropy each.
    counts = Counter("".join(ids))
    total = sum(counts.values())
    entropy = -sum(n / total * math.log2(n / total) for n in counts.values())
    assert entropy > 5.5


def test_ids_never_appear_in_full_in_reprs_or_logs(
    backend: FullBackend, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = store(backend, max_sessions_per_user=1)
    with caplog.at_level(logging.DEBUG, logger="kirocache"):
        sid = sessions.create("ada", {})
        sessions.touch(sid)
        [info] = sessions.user_sessions("ada")
        sessions.create("ada", {})  # evicts sid
        sessions.revoke_all("ada")
    assert sid[:6] + "\u2026" in repr(info)
    assert sid not in repr(info)
    assert sid not in repr(sessions)
    assert caplog.records
    assert sid not in caplog.text
    assert sid[:6] + "\u2026" in caplog.text


def test_configuration_errors(backend: FullBackend) -> None:
    from kirocache.exceptions import ConfigurationError
    from kirocache.keys import Namespace

    with pytest.raises(ConfigurationError, match="finite ttl"):
        SessionStore(Cache(backend), Namespace("s:"))
    with pytest.raises(ConfigurationError, match="max_sessions_per_user"):
        SessionStore(Cache(backend), max_sessions_per_user=0)
    sessions = store(backend)
    with pytest.raises(TypeError, match="dict"):
        sessions.create("ada", ["not", "a", "dict"])  # type: ignore[arg-type]


# -- eviction and revocation: validity is proved by presence ------------------------------
# Whatever an eviction policy (or a lost write) removes must end a session, never revive a
# revoked one. The tests below delete keys the way an eviction would and rewrite records
# the way a racing touch would, then count the revoked sessions that still work: none.


def _store_keys(sessions: SessionStore, backend: FullBackend) -> list[str]:
    head = sessions._steps.key("")
    return sorted(key for key in backend.scan(head + "*") if ":stat:" not in key)


def test_revoke_all_needs_no_index(backend: FullBackend) -> None:
    # allkeys-lru evicts the idle index while the sessions stay hot; revoke_all used to
    # find nothing to revoke and report success.
    sessions = store(backend)
    ada = [sessions.create("ada", {"n": n}) for n in range(3)]
    bob = sessions.create("bob", {})
    backend.execute([Op("delete", sessions._steps._index("ada"))])  # evicted
    assert all(sessions.get(sid) is not None for sid in ada)
    sessions.revoke_all("ada")
    assert [sessions.get(sid) for sid in ada] == [None, None, None]
    assert sessions.get(bob) == {}
    # A new login works and the old sessions stay dead.
    fresh = sessions.create("ada", {})
    assert sessions.get(fresh) == {}
    assert [sessions.get(sid) for sid in ada] == [None, None, None]
    assert [s.session_id for s in sessions.user_sessions("ada")] == [fresh]


async def test_revoke_all_needs_no_index_async(backend: FullBackend) -> None:
    sessions = store(backend)
    ada = [await sessions.acreate("ada", {}) for _ in range(2)]
    backend.execute([Op("delete", sessions._steps._index("ada"))])  # evicted
    await sessions.arevoke_all("ada")
    assert [await sessions.aget(sid) for sid in ada] == [None, None]
    fresh = await sessions.acreate("ada", {})
    assert await sessions.aget(fresh) == {}


def test_revoke_all_applies_when_records_cannot_be_decoded(
    backend: FullBackend, caplog: pytest.LogCaptureFixture
) -> None:
    # After a key rotation the records cannot be read for the count; that must not stop
    # the revocation (a guard: revoke_all reads the records for its count first).
    sessions = store(backend, serializer=EncryptedSerializer(key=os.urandom(32)))
    ada = [sessions.create("ada", {}) for _ in range(2)]
    rotated = store(backend, serializer=EncryptedSerializer(key=os.urandom(32)))
    with caplog.at_level(logging.WARNING, logger="kirocache.sessions"):
        assert rotated.revoke_all("ada") == 0
    assert "without a count" in caplog.text
    assert [sessions.get(sid) for sid in ada] == [None, None]


def test_evicting_any_key_never_revives_a_revoked_session(backend: FullBackend) -> None:
    # Every key of the store, evicted alone, with every record rewritten afterwards by a
    # late write (a touch that raced the revocation): revoked sessions stay refused and no
    # session that was logged out comes back.
    def scene() -> tuple[SessionStore, dict[str, str], dict[str, bytes]]:
        for key in backend.scan("ev:*"):
            backend.execute([Op("delete", key)])
        sessions = SessionStore(Cache(backend), namespace=Namespace("ev:", ttl=60))
        ids = {f"ada{n}": sessions.create("ada", {"n": n}) for n in range(3)}
        ids |= {f"bob{n}": sessions.create("bob", {"n": n}) for n in range(2)}
        raws = {sid: backend.get(sessions._steps._record(sid)) for sid in ids.values()}
        sessions.revoke(ids["ada0"])
        sessions.revoke_all("bob")
        return sessions, ids, {sid: raw for sid, raw in raws.items() if raw is not None}

    def roles(sessions: SessionStore, ids: dict[str, str]) -> dict[str, str]:
        """Each key of the store by its role: the session ids replaced by their labels."""
        named = {}
        for key in _store_keys(sessions, backend):
            role = key
            for label, sid in ids.items():
                role = role.replace(sid, label)
            named[role] = key
        return named

    sessions, ids, _ = scene()
    every = sorted(roles(sessions, ids))
    assert len(every) >= 4
    revoked_reads = 0
    for victim in every:
        sessions, ids, raws = scene()
        backend.execute([Op("delete", roles(sessions, ids)[victim])])  # evicted
        for sid, raw in raws.items():  # late writes of racing touches
            backend.set(sessions._steps._record(sid), raw, 60)
        for label in ("ada0", "bob0", "bob1"):
            assert sessions.get(ids[label]) is None, f"{label} alive after evicting {victim}"
            assert sessions.touch(ids[label]) is False
            revoked_reads += 1
        # The others are alive, or logged out by the eviction; never an error.
        assert sessions.get(ids["ada1"]) in ({"n": 1}, None)
        assert sessions.get(ids["ada2"]) in ({"n": 2}, None)
        listed = {s.session_id for s in sessions.user_sessions("ada")}
        assert listed <= {ids["ada1"], ids["ada2"]}
        assert sessions.user_sessions("bob") == []
    assert revoked_reads == 3 * len(every)


def test_a_missing_generation_logs_the_user_out(backend: FullBackend) -> None:
    sessions = store(backend)
    ada = [sessions.create("ada", {}) for _ in range(2)]
    bob = sessions.create("bob", {})
    backend.execute([Op("delete", sessions._steps._gen("ada"))])  # evicted
    assert [sessions.get(sid) for sid in ada] == [None, None]
    assert sessions.touch(ada[0]) is False
    assert sessions.user_sessions("ada") == []
    assert sessions.get(bob) == {}
    # The next login makes a fresh generation: it works, the evicted one never returns.
    fresh = sessions.create("ada", {})
    assert sessions.get(fresh) == {}
    assert [sessions.get(sid) for sid in ada] == [None, None]


def test_records_written_before_generations_read_as_logged_out(backend: FullBackend) -> None:
    sessions = store(backend)
    sid = sessions.create("ada", {"k": 1})
    key = sessions._steps._record(sid)
    raw = backend.get(key)
    assert raw is not None
    old = sessions._steps.serializer.loads(raw)
    del old["gen"]
    backend.set(key, sessions._steps.serializer.dumps(old), 60)
    assert sessions.get(sid) is None
    assert sessions.user_sessions("ada") == []


class _CountsExecutes:
    def __init__(self, inner: FullBackend) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        self.calls += 1
        return self.inner.execute(ops, transaction=transaction)


def test_a_read_checks_the_generation_in_the_same_round_trip(backend: FullBackend) -> None:
    # A store remembers whose each session it has seen is: a warm read is one round trip;
    # a cold one (another process, another store) two; a wrong memo costs a trip only.
    sessions = store(backend)
    sid = sessions.create("ada", {})
    counting = _CountsExecutes(backend)
    sessions._steps.backend = counting
    assert sessions.get(sid) == {}
    assert counting.calls == 1
    cold = store(backend)
    cold._steps.backend = counting
    assert cold.get(sid) == {}
    assert counting.calls == 3
    assert cold.get(sid) == {}
    assert counting.calls == 4
    sessions._steps._owners[sid] = "mallory"  # cannot happen; must not matter
    assert sessions.get(sid) == {}
    sessions._steps.backend = backend
    sessions.revoke_all("ada")
    sessions._steps._owners[sid] = "mallory"
    assert sessions.get(sid) is None
    assert cold.get(sid) is None


class _RevokesDuringCreate:
    """Runs ``revoke_all`` right after a create wrote its record, before it goes live."""

    def __init__(self, inner: FullBackend) -> None:
        self.inner = inner
        self.store: SessionStore | None = None
        self.raced = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        results = self.inner.execute(ops, transaction=transaction)
        if self.store is not None and any(op.name == "tag_add" for op in ops):
            racer, self.store = self.store, None
            racer.revoke_all("ada")
            self.raced += 1
        return results


def test_a_login_racing_revoke_all_returns_a_working_session(backend: FullBackend) -> None:
    # The generation the login read is revoked before its session goes live: the login
    # starts over with the new generation rather than hand out a dead session (or revive
    # the revoked ones).
    racing = _RevokesDuringCreate(backend)
    sessions = store(backend)
    old = sessions.create("ada", {})
    sessions._steps.backend = racing
    racing.store = store(backend)
    sid = sessions.create("ada", {"n": 1})
    assert racing.raced == 1
    assert sessions.get(sid) == {"n": 1}
    assert sessions.get(old) is None


class _LogsInDuringRevokeAll:
    """Logs ada in again right after ``revoke_all`` deleted her generation."""

    def __init__(self, inner: FullBackend, other: SessionStore) -> None:
        self.inner = inner
        self.other = other
        self.made: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        results = self.inner.execute(ops, transaction=transaction)
        if [op.name for op in ops] == ["delete"] and ":gen:" in ops[0].key:
            self.made.append(self.other.create("ada", {"after": True}))
        return results


def test_a_login_after_revoke_all_deleted_the_generation_keeps_working(
    backend: FullBackend,
) -> None:
    # revoke_all tidies the records and index entries it listed before revoking, not a
    # login that started after: that one has a new generation and stays valid and listed.
    sessions = store(backend)
    old = [sessions.create("ada", {}) for _ in range(2)]
    racing = _LogsInDuringRevokeAll(backend, store(backend))
    sessions._steps.backend = racing
    assert sessions.revoke_all("ada") == 2
    sessions._steps.backend = backend
    [fresh] = racing.made
    assert sessions.get(fresh) == {"after": True}
    assert [sessions.get(sid) for sid in old] == [None, None]
    assert [s.session_id for s in sessions.user_sessions("ada")] == [fresh]


def _first_logins(sessions: SessionStore, user: str, count: int) -> list[str]:
    made: list[str] = []
    barrier = threading.Barrier(count)

    def login() -> None:
        barrier.wait()
        made.append(sessions.create(user, {}))

    threads = [threading.Thread(target=login) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return made


def test_concurrent_first_logins_all_work(backend: FullBackend) -> None:
    # A user's first logins race to create the generation: one SET NX wins, the others
    # retry with it, and every id handed out works.
    sessions = store(backend)
    for round_ in range(3):
        made = _first_logins(sessions, f"new{round_}", 8)
        assert len(made) == 8
        assert [sid for sid in made if sessions.get(sid) is None] == []
        assert len(sessions.user_sessions(f"new{round_}")) == 8


class _FailsAt:
    """Passes calls through, but its ``fail_at``-th ``execute`` raises a fault."""

    def __init__(self, inner: FullBackend, fail_at: int) -> None:
        self.inner = inner
        self.left = fail_at

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        self.left -= 1
        if self.left == 0:
            msg = "connection lost"
            raise BackendError(msg)
        return self.inner.execute(ops, transaction=transaction)


@pytest.mark.parametrize("everything", [False, True], ids=["revoke", "revoke_all"])
def test_a_revocation_failing_part_way_raises_or_holds(
    backend: FullBackend, everything: bool
) -> None:
    # Defect 1 on sessions: whichever backend call fails, revoke and revoke_all either
    # raise SessionStoreError or leave the session refused; never a success not applied.
    outcomes = Counter[str]()
    for fail_at in range(1, 9):
        sessions = SessionStore(Cache(backend), namespace=Namespace(f"p{fail_at}:", ttl=60))
        sid = sessions.create("ada", {})
        sessions._steps.backend = _FailsAt(backend, fail_at)
        try:
            sessions.revoke_all("ada") if everything else sessions.revoke(sid)
        except SessionStoreError:
            outcomes["raised"] += 1
            continue
        finally:
            sessions._steps.backend = backend
        assert sessions.get(sid) is None, fail_at
        outcomes["applied"] += 1
    assert outcomes["raised"] >= 2
    assert outcomes["applied"] >= 1


# -- a real redis-server at maxmemory ----------------------------------------------------

USERS = 20
PER_USER = 3
FILLER = b"x" * 1024


def _fill(raw: redis.Redis, start: int, count: int, *, ttl: int | None) -> int:
    """Write ``count`` 1 KiB filler keys (write pressure); how many the server refused."""
    pipe = raw.pipeline(transaction=False)
    for n in range(start, start + count):
        pipe.set(f"filler:{n}", FILLER, ex=ttl)
    return sum(isinstance(r, redis.ResponseError) for r in pipe.execute(raise_on_error=False))


def _valid(sessions: SessionStore, ids: list[str]) -> list[str]:
    return [sid for sid in ids if sessions.get(sid) is not None]


def _pressure(
    raw: redis.Redis, sessions: SessionStore, ids: list[str], written: int, seconds: float
) -> int:
    """Write filler for ``seconds`` while reading ``ids`` (hot); the filler count after.

    About 1 MB a second against 4 MB: Redis keeps LRU time in whole seconds, so memory
    must turn over slower than that for LRU to tell a key read a moment ago from one idle
    for seconds (faster, and eviction is as good as random: sessions go too).
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _fill(raw, written, 100, ttl=3600)  # a TTL, so volatile-lru may evict them too
        written += 100
        _valid(sessions, ids)
        time.sleep(0.08)
    return written


@pytest.mark.slow
@pytest.mark.real_redis
@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_revocation_under_eviction_on_a_real_server(
    make_redis_server: Callable[..., RedisServer], policy: str
) -> None:
    # 20 users with 3 sessions each, read all the time (hot) while filler keys many times
    # maxmemory push the idle keys (the per-user indexes) out; then half the users are
    # revoked everywhere and one session of each other user alone, under more pressure.
    # Redis keeps LRU time in whole seconds, hence the real waits (see _pressure).
    from kirocache.backends.redis import RedisBackend

    server = make_redis_server(maxmemory="4mb", extra_args=["--maxmemory-policy", policy])
    with redis.Redis.from_url(server.url) as raw, Cache(RedisBackend(server.url)) as cache:
        sessions = SessionStore(cache, ttl=3600)
        users = {
            f"user{n}": [sessions.create(f"user{n}", {"n": n}) for _ in range(PER_USER)]
            for n in range(USERS)
        }
        every = [sid for ids in users.values() for sid in ids]
        written = _pressure(raw, sessions, every, 0, 4.0)
        # A loaded machine writes slower: go on until the server has evicted (bounded).
        bound = time.monotonic() + 30.0
        while int(raw.info("stats")["evicted_keys"]) == 0 and time.monotonic() < bound:
            written = _pressure(raw, sessions, every, written, 0.5)
        assert int(raw.info("stats")["evicted_keys"]) > 0
        indexes = [sessions._steps._index(user) for user in users]
        evicted_indexes = sum(not raw.exists(index) for index in indexes)
        # Revoke what works now: the sessions of half the users, and one of each other's.
        revoked: list[str] = []
        for n, (user, ids) in enumerate(users.items()):
            if n < USERS // 2:
                revoked += _valid(sessions, ids)
                sessions.revoke_all(user)
            elif valid := _valid(sessions, ids):
                assert sessions.revoke(valid[0]) is True
                revoked.append(valid[0])
        # Enough sessions survived the pressure for the figures to mean something.
        assert len(revoked) >= (len(every) + USERS) // 4
        refused = 0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            written = _pressure(raw, sessions, every, written, 0.1)
            assert _valid(sessions, revoked) == []
            refused += len(revoked)
        kept = [sid for sid in every if sid not in set(revoked)]
        logging.getLogger(__name__).info(
            "%s: %d indexes of %d evicted; %d revoked sessions, %d reads of them, all "
            "refused; %d of %d others still valid; %d keys evicted",
            policy,
            evicted_indexes,
            USERS,
            len(revoked),
            refused,
            len(_valid(sessions, kept)),
            len(kept),
            int(raw.info("stats")["evicted_keys"]),
        )


@pytest.mark.slow
@pytest.mark.real_redis
def test_revocation_at_maxmemory_under_noeviction(
    make_redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # Out of memory, Redis refuses writes but not deletions: revocations (deletions) still
    # apply and report it, reads still answer, and what needs a write (a login) fails loud.
    from kirocache.backends.redis import RedisBackend

    server = make_redis_server(maxmemory="2mb", extra_args=["--maxmemory-policy", "noeviction"])
    with redis.Redis.from_url(server.url) as raw, Cache(RedisBackend(server.url)) as cache:
        sessions = SessionStore(cache, ttl=3600)
        users = {
            f"user{n}": [sessions.create(f"user{n}", {"n": n}) for _ in range(PER_USER)]
            for n in range(USERS)
        }
        written = refused_writes = 0
        while refused_writes == 0:
            refused_writes = _fill(raw, written, 200, ttl=None)
            written += 200
        assert raw.info("stats")["evicted_keys"] == 0
        with pytest.raises(SessionStoreError, match="maxmemory") as refused:
            sessions.create("user0", {})
        # Redis quotes the refused SET with its key: the id in it is masked.
        assert "session:id:" in str(refused.value)
        assert re.search(r"[A-Za-z0-9_-]{40}", str(refused.value)) is None
        revoked: list[str] = []
        with caplog.at_level(logging.WARNING, logger="kirocache.sessions"):
            for n, (user, ids) in enumerate(users.items()):
                if n < USERS // 2:
                    assert sessions.revoke_all(user) == PER_USER
                    revoked += ids
                else:
                    assert sessions.revoke(ids[0]) is True
                    revoked.append(ids[0])
        assert "counter" in caplog.text  # the stats INCR was refused, and said so
        assert _fill(raw, written, 50, ttl=None) > 0  # still out of memory
        assert _valid(sessions, revoked) == []
        kept = [sid for ids in users.values() for sid in ids if sid not in set(revoked)]
        assert _valid(sessions, kept) == kept


# -- no session id anywhere in a failure's chain (issue 12, item 1) -----------------------------


class _QuotesTheKeyDeep:
    """Fails every ``execute`` as RedisBackend does: a ``BackendError`` chained from the
    client's own error, both quoting the failing command with its key."""

    def __init__(self, inner: FullBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def _fail(self, ops: list[Op]) -> BackendError:
        quoted = f"Command # 1 (GET {ops[0].key}) of pipeline caused error: OOM"
        cause = redis.ResponseError(quoted)
        error = BackendError(f"Redis execute failed on redis://x:6379/0: ResponseError: {quoted}")
        error.__cause__ = cause
        return error

    def execute(self, ops: list[Op], *, transaction: bool = False) -> object:
        raise self._fail(ops)

    async def aexecute(self, ops: list[Op], *, transaction: bool = False) -> object:
        raise self._fail(ops)


def _everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Message, repr, the full traceback (causes included) and the log lines of ``error``."""
    import traceback

    logging.getLogger("kirocache.test").error("session failure", exc_info=error)
    return "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]
    )


def test_no_session_id_in_the_causes_of_a_store_error(
    backend: FullBackend, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = store(backend)
    sid = sessions.create("ada", {})
    sessions._steps.backend = _QuotesTheKeyDeep(backend)
    with pytest.raises(SessionStoreError) as info:
        sessions.get(sid)
    said = _everything_said(info.value, caplog)
    assert sid not in said
    assert f"id:{{{sid[:3]}}}:{sid[:6]}\u2026" in said  # masked, still telling which key
    # An id of a foreign (but valid) shape a cookie may carry is masked as well.
    short = "A" * 22
    with pytest.raises(SessionStoreError) as info:
        sessions.get(short)
    assert short not in _everything_said(info.value, caplog)


async def test_no_session_id_in_the_causes_of_a_store_error_async(
    backend: FullBackend, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = store(backend)
    sid = await sessions.acreate("ada", {})
    sessions._steps.backend = _QuotesTheKeyDeep(backend)
    with pytest.raises(SessionStoreError) as info:
        await sessions.atouch(sid)
    assert sid not in _everything_said(info.value, caplog)


@pytest.mark.slow
@pytest.mark.real_redis
def test_no_session_id_when_redis_refuses_a_session_pipeline(
    make_redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    # NOPERM on SET: redis-py's "Command # 1 (SET session:id:<id>...) of pipeline caused
    # error" reaches the BackendError and redis-py's own error, the causes of the store's.
    from kirocache.backends.redis import RedisBackend

    server = make_redis_server()
    with redis.Redis.from_url(server.url) as admin:
        rules = ["on", ">pw", "resetkeys", "~*", "resetchannels", "&*", "+@all", "-set"]
        admin.execute_command("ACL", "SETUSER", "nowrite", *rules)
    url = f"redis://nowrite:pw@127.0.0.1:{server.port}/0"
    with Cache(RedisBackend(url)) as cache:
        sessions = SessionStore(cache, ttl=60)
        with pytest.raises(SessionStoreError, match="SET session:id:") as info:
            sessions.create("ada", {})
    said = _everything_said(info.value, caplog)
    assert "session:id:" in said
    # Every quote of the new id's key shows its first six characters only.
    shown = re.findall(r"session:id:\{[0-9a-f]{3}\}:([A-Za-z0-9_-]*)", said)
    assert shown
    assert all(len(part) == 6 for part in shown), shown
