"""The backend conformance suite: the behaviour every kirocache backend must show.

A backend counts as done when it passes this suite; kirocache runs it against the memory
backend, Redis over fakeredis and a real ``redis-server``. To run it against your own
backend, subclass :class:`BackendConformance` in a test module and provide a ``backend``
fixture that returns a ready backend (an object satisfying both ``Backend`` and
``AsyncBackend``)::

    # tests/test_my_backend.py
    import pytest
    from kirocache.testing.conformance import BackendConformance

    from my_package import DiskBackend


    class TestDiskBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            backend = DiskBackend(tmp_path)
            yield backend
            backend.close()

Every test writes under its own unique key prefix and deletes it (with ``delete_pattern``)
afterwards, so the backend may point at a shared database. The async tests are
``async def`` functions: run them with pytest-asyncio in auto mode (``asyncio_mode =
"auto"`` in the pytest configuration). The suite sleeps a few tenths of a second in total
to watch real TTLs run out.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from kirocache.backends._conveniences import FullBackend
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import TOMBSTONE_PREFIX, AsyncBackend, Backend, BackendStats, Op
from kirocache.exceptions import BackendError

__all__ = ["BackendConformance", "FullBackend"]

# Seconds to live of the entries the expiry tests watch run out, and how long they wait.
_SHORT_TTL = 0.1
_PAST_SHORT_TTL = 0.3
_ALL_BYTES = bytes(range(256))
_MIB = 1024 * 1024
_UNICODE = "ключ:日本語:🙂:é"

_GLOB_KEYS = ("a1", "a2", "b1", "ab", "c*", "c?", "c[x]", "c\\", "cz")
_GLOBS: tuple[tuple[str, set[str]], ...] = (
    ("*", set(_GLOB_KEYS)),
    ("a*", {"a1", "a2", "ab"}),
    ("?1", {"a1", "b1"}),
    ("[ab]1", {"a1", "b1"}),
    ("[a-b]?", {"a1", "a2", "ab", "b1"}),
    ("a[^1]", {"a2", "ab"}),
    ("c\\*", {"c*"}),
    ("c\\?", {"c?"}),
    ("c?", {"c*", "c?", "c\\", "cz"}),
    ("c\\[x\\]", {"c[x]"}),
    ("c\\\\", {"c\\"}),
    ("nothing*", set()),
)


def _ops_with_failure(k: str) -> list[Op]:
    return [
        Op("set", k + "text", value=b"not a number"),
        Op("incr", k + "text"),
        Op("set", k + "n", value=b"41"),
        Op("incr", k + "n"),
        Op("get", k + "n"),
    ]


def _check_failure_results(results: Sequence[object]) -> None:
    assert results[0] is True
    assert isinstance(results[1], BackendError)
    assert results[2:] == [True, 42, b"42"]


def _pipeline(k: str) -> list[Op]:
    return [
        Op("set", k + "a", value=b"1"),
        Op("set", k + "a", value=b"2", nx=True),
        Op("set", k + "b", value=b"x", ttl=60),
        Op("get", k + "a"),
        Op("get", k + "missing"),
        Op("exists", k + "b"),
        Op("incr", k + "n", amount=5, ttl=60),
        Op("ttl", k + "a"),
        Op("expire", k + "a", ttl=60),
        Op("persist", k + "b"),
        Op("delete", k + "b"),
        Op("delete", k + "b"),
    ]


def _check_pipeline(results: Sequence[object]) -> None:
    assert results[:7] == [True, False, True, b"1", None, True, 5]
    assert results[7] == math.inf
    assert results[8:] == [True, True, True, False]


def _conditional_ops(k: str) -> list[Op]:
    return [
        Op("set_if", k + "c", value=b"first", ttl=60, expected=None),
        Op("set_if", k + "c", value=b"lost", expected=None),
        Op("set_if", k + "c", value=b"lost", expected=b"other"),
        Op("set_if", k + "c", value=b"second", expected=b"first"),
        Op("get", k + "c"),
        Op("ttl", k + "c"),
        Op("swap", k + "c", value=b"third", ttl=60),
        Op("swap", k + "absent", value=b"new"),
        Op("get", k + "absent"),
        Op("ttl", k + "absent"),
        Op("tag_add", k + "tag", ttl=60, members=("x", "y")),
        Op("tag_add", k + "tag", ttl=1, members=("z",)),
        Op("tag_add", k + "tag", members=()),
        Op("tag_members", k + "tag"),
        Op("tag_members", k + "no-tag"),
    ]


def _check_conditional(results: Sequence[object]) -> None:
    assert results[:5] == [True, False, False, True, b"second"]
    assert results[5] == math.inf  # set_if without a ttl stores without expiry
    assert results[6:10] == [b"second", None, b"new", math.inf]
    assert results[10:] == [True, True, True, ["x", "y", "z"], []]


def _check_stats(stats: BackendStats, at_least_keys: int) -> None:
    assert isinstance(stats, BackendStats)
    assert isinstance(stats.backend, str)
    assert stats.backend
    if stats.keys is not None:
        assert stats.keys >= at_least_keys
    counters = ("used_memory", "max_memory", "connected_clients", "evictions", "expired")
    for name in (*counters, "hits", "misses"):
        value = getattr(stats, name)
        assert value is None or (isinstance(value, int) and value >= 0), name
    assert stats.uptime_seconds is None or stats.uptime_seconds >= 0
    assert stats.memory_ratio is None or stats.memory_ratio >= 0


class BackendConformance:
    """The conformance tests; subclass it and provide a ``backend`` fixture.

    Sync and async versions of each scenario sit side by side and must agree.
    """

    @pytest.fixture
    def k(self, backend: FullBackend) -> Iterator[str]:
        """A key prefix unique to the test; its keys are deleted afterwards."""
        prefix = f"kirocache-conformance:{uuid.uuid4().hex}:"
        yield prefix
        backend.delete_pattern(escape_glob(prefix) + "*")

    # -- protocol shape --------------------------------------------------------------------

    def test_satisfies_both_protocols(self, backend: FullBackend) -> None:
        """The backend is a runtime ``Backend`` and ``AsyncBackend``."""
        assert isinstance(backend, Backend)
        assert isinstance(backend, AsyncBackend)

    # -- get / set -------------------------------------------------------------------------

    def test_set_get_round_trip(self, backend: FullBackend, k: str) -> None:
        """A stored value reads back; an absent key reads ``None``."""
        assert backend.get(k + "a") is None
        assert backend.set(k + "a", b"value") is True
        assert backend.get(k + "a") == b"value"

    async def test_aset_aget_round_trip(self, backend: FullBackend, k: str) -> None:
        """Async: a stored value reads back; an absent key reads ``None``."""
        assert await backend.aget(k + "a") is None
        assert await backend.aset(k + "a", b"value") is True
        assert await backend.aget(k + "a") == b"value"

    def test_set_overwrites_value_and_ttl(self, backend: FullBackend, k: str) -> None:
        """``set`` replaces the value and drops the old TTL, as Redis SET does."""
        backend.set(k + "a", b"old", ttl=60)
        assert backend.set(k + "a", b"new") is True
        assert backend.get(k + "a") == b"new"
        assert backend.ttl(k + "a") == math.inf

    async def test_aset_overwrites_value_and_ttl(self, backend: FullBackend, k: str) -> None:
        """Async: ``set`` replaces the value and drops the old TTL, as Redis SET does."""
        await backend.aset(k + "a", b"old", ttl=60)
        assert await backend.aset(k + "a", b"new") is True
        assert await backend.aget(k + "a") == b"new"
        assert await backend.attl(k + "a") == math.inf

    def test_set_nx_only_when_absent(self, backend: FullBackend, k: str) -> None:
        """``nx=True`` stores only when the key is absent and leaves a present one alone."""
        assert backend.set(k + "a", b"first", nx=True) is True
        assert backend.set(k + "a", b"second", ttl=60, nx=True) is False
        assert backend.get(k + "a") == b"first"
        assert backend.ttl(k + "a") == math.inf

    async def test_aset_nx_only_when_absent(self, backend: FullBackend, k: str) -> None:
        """Async: ``nx=True`` stores only when the key is absent and leaves a present one alone."""
        assert await backend.aset(k + "a", b"first", nx=True) is True
        assert await backend.aset(k + "a", b"second", ttl=60, nx=True) is False
        assert await backend.aget(k + "a") == b"first"
        assert await backend.attl(k + "a") == math.inf

    def test_delete_and_exists(self, backend: FullBackend, k: str) -> None:
        """``delete`` and ``exists`` answer whether the key held a value."""
        assert backend.exists(k + "a") is False
        assert backend.delete(k + "a") is False
        backend.set(k + "a", b"")
        assert backend.exists(k + "a") is True
        assert backend.delete(k + "a") is True
        assert backend.exists(k + "a") is False
        assert backend.get(k + "a") is None

    async def test_adelete_and_aexists(self, backend: FullBackend, k: str) -> None:
        """Async: ``delete`` and ``exists`` answer whether the key held a value."""
        assert await backend.aexists(k + "a") is False
        assert await backend.adelete(k + "a") is False
        await backend.aset(k + "a", b"")
        assert await backend.aexists(k + "a") is True
        assert await backend.adelete(k + "a") is True
        assert await backend.aexists(k + "a") is False
        assert await backend.aget(k + "a") is None

    # -- values and keys -------------------------------------------------------------------

    def test_binary_values(self, backend: FullBackend, k: str) -> None:
        """Every byte value round-trips, and empty bytes are a value, not a miss."""
        backend.set(k + "all", _ALL_BYTES)
        backend.set(k + "empty", b"")
        backend.set(k + "nul", b"\x00")
        assert backend.get(k + "all") == _ALL_BYTES
        assert backend.get(k + "empty") == b""
        assert backend.get(k + "nul") == b"\x00"

    async def test_abinary_values(self, backend: FullBackend, k: str) -> None:
        """Async: every byte value round-trips, and empty bytes are a value, not a miss."""
        await backend.aset(k + "all", _ALL_BYTES)
        await backend.aset(k + "empty", b"")
        await backend.aset(k + "nul", b"\x00")
        assert await backend.aget(k + "all") == _ALL_BYTES
        assert await backend.aget(k + "empty") == b""
        assert await backend.aget(k + "nul") == b"\x00"

    def test_unicode_keys(self, backend: FullBackend, k: str) -> None:
        """Non-ASCII keys store, read, scan and delete."""
        backend.set(k + _UNICODE, b"v")
        assert backend.get(k + _UNICODE) == b"v"
        assert list(backend.scan(escape_glob(k + _UNICODE))) == [k + _UNICODE]
        assert backend.delete(k + _UNICODE) is True

    async def test_aunicode_keys(self, backend: FullBackend, k: str) -> None:
        """Async: non-ASCII keys store, read, scan and delete."""
        await backend.aset(k + _UNICODE, b"v")
        assert await backend.aget(k + _UNICODE) == b"v"
        assert [key async for key in backend.ascan(escape_glob(k + _UNICODE))] == [k + _UNICODE]
        assert await backend.adelete(k + _UNICODE) is True

    def test_large_value(self, backend: FullBackend, k: str) -> None:
        """A 1 MiB value round-trips."""
        value = _ALL_BYTES * (_MIB // 256)
        backend.set(k + "big", value)
        assert backend.get(k + "big") == value

    async def test_alarge_value(self, backend: FullBackend, k: str) -> None:
        """Async: a 1 MiB value round-trips."""
        value = _ALL_BYTES * (_MIB // 256)
        await backend.aset(k + "big", value)
        assert await backend.aget(k + "big") == value

    # -- TTLs ------------------------------------------------------------------------------

    def test_ttl_semantics(self, backend: FullBackend, k: str) -> None:
        """``ttl`` is ``None`` if absent, ``math.inf`` if persistent, else seconds left."""
        backend.set(k + "persistent", b"v")
        backend.set(k + "short", b"v", ttl=10)
        assert backend.ttl(k + "absent") is None
        assert backend.ttl(k + "persistent") == math.inf
        remaining = backend.ttl(k + "short")
        assert remaining is not None
        assert 0 < remaining <= 10

    async def test_attl_semantics(self, backend: FullBackend, k: str) -> None:
        """Async: ``ttl`` is ``None`` if absent, ``math.inf`` if persistent, else seconds left."""
        await backend.aset(k + "persistent", b"v")
        await backend.aset(k + "short", b"v", ttl=10)
        assert await backend.attl(k + "absent") is None
        assert await backend.attl(k + "persistent") == math.inf
        remaining = await backend.attl(k + "short")
        assert remaining is not None
        assert 0 < remaining <= 10

    def test_entries_expire(self, backend: FullBackend, k: str) -> None:
        """Entries written with a TTL by any method disappear once it runs out."""
        backend.set(k + "set", b"v", ttl=_SHORT_TTL)
        backend.set(k + "expire", b"v")
        assert backend.expire(k + "expire", _SHORT_TTL) is True
        backend.set_many({k + "many1": b"v", k + "many2": b"v"}, ttl=_SHORT_TTL)
        backend.incr(k + "counter", ttl=_SHORT_TTL)
        backend.set(k + "kept", b"v", ttl=60)
        time.sleep(_PAST_SHORT_TTL)
        assert set(backend.scan(escape_glob(k) + "*")) == {k + "kept"}
        assert backend.get(k + "set") is None
        assert backend.exists(k + "expire") is False
        assert backend.get_many([k + "many1", k + "many2"]) == [None, None]
        assert backend.ttl(k + "counter") is None
        assert backend.get(k + "kept") == b"v"
        assert backend.set(k + "set", b"again", nx=True) is True
        assert backend.incr(k + "counter") == 1

    async def test_aentries_expire(self, backend: FullBackend, k: str) -> None:
        """Async: entries written with a TTL by any method disappear once it runs out."""
        await backend.aset(k + "set", b"v", ttl=_SHORT_TTL)
        await backend.aset(k + "expire", b"v")
        assert await backend.aexpire(k + "expire", _SHORT_TTL) is True
        await backend.aset_many({k + "many1": b"v", k + "many2": b"v"}, ttl=_SHORT_TTL)
        await backend.aincr(k + "counter", ttl=_SHORT_TTL)
        await backend.aset(k + "kept", b"v", ttl=60)
        await asyncio.sleep(_PAST_SHORT_TTL)
        assert {key async for key in backend.ascan(escape_glob(k) + "*")} == {k + "kept"}
        assert await backend.aget(k + "set") is None
        assert await backend.aexists(k + "expire") is False
        assert await backend.aget_many([k + "many1", k + "many2"]) == [None, None]
        assert await backend.attl(k + "counter") is None
        assert await backend.aget(k + "kept") == b"v"
        assert await backend.aset(k + "set", b"again", nx=True) is True
        assert await backend.aincr(k + "counter") == 1

    def test_expire(self, backend: FullBackend, k: str) -> None:
        """``expire`` sets a new TTL on an existing key only."""
        assert backend.expire(k + "absent", 10) is False
        assert backend.ttl(k + "absent") is None
        backend.set(k + "a", b"v", ttl=1000)
        assert backend.expire(k + "a", 10) is True
        remaining = backend.ttl(k + "a")
        assert remaining is not None
        assert 0 < remaining <= 10
        assert backend.get(k + "a") == b"v"

    async def test_aexpire(self, backend: FullBackend, k: str) -> None:
        """Async: ``expire`` sets a new TTL on an existing key only."""
        assert await backend.aexpire(k + "absent", 10) is False
        assert await backend.attl(k + "absent") is None
        await backend.aset(k + "a", b"v", ttl=1000)
        assert await backend.aexpire(k + "a", 10) is True
        remaining = await backend.attl(k + "a")
        assert remaining is not None
        assert 0 < remaining <= 10
        assert await backend.aget(k + "a") == b"v"

    def test_persist(self, backend: FullBackend, k: str) -> None:
        """``persist`` removes a TTL and says whether there was one."""
        backend.set(k + "a", b"v", ttl=60)
        backend.set(k + "b", b"v")
        assert backend.persist(k + "a") is True
        assert backend.ttl(k + "a") == math.inf
        assert backend.persist(k + "a") is False
        assert backend.persist(k + "b") is False
        assert backend.persist(k + "absent") is False
        assert backend.get(k + "a") == b"v"

    async def test_apersist(self, backend: FullBackend, k: str) -> None:
        """Async: ``persist`` removes a TTL and says whether there was one."""
        await backend.aset(k + "a", b"v", ttl=60)
        await backend.aset(k + "b", b"v")
        assert await backend.apersist(k + "a") is True
        assert await backend.attl(k + "a") == math.inf
        assert await backend.apersist(k + "a") is False
        assert await backend.apersist(k + "b") is False
        assert await backend.apersist(k + "absent") is False
        assert await backend.aget(k + "a") == b"v"

    # -- many ------------------------------------------------------------------------------

    def test_get_many_keeps_order_and_gaps(self, backend: FullBackend, k: str) -> None:
        """``get_many`` answers in the order asked, ``None`` for misses."""
        backend.set(k + "a", b"1")
        backend.set(k + "c", b"3")
        keys = [k + "c", k + "b", k + "a", k + "c"]
        assert backend.get_many(keys) == [b"3", None, b"1", b"3"]
        assert backend.get_many([]) == []

    async def test_aget_many_keeps_order_and_gaps(self, backend: FullBackend, k: str) -> None:
        """Async: ``get_many`` answers in the order asked, ``None`` for misses."""
        await backend.aset(k + "a", b"1")
        await backend.aset(k + "c", b"3")
        keys = [k + "c", k + "b", k + "a", k + "c"]
        assert await backend.aget_many(keys) == [b"3", None, b"1", b"3"]
        assert await backend.aget_many([]) == []

    def test_set_many(self, backend: FullBackend, k: str) -> None:
        """``set_many`` stores every item, with the TTL when one is given."""
        backend.set_many({k + "a": b"1", k + "b": b""})
        backend.set_many({k + "t": b"2"}, ttl=10)
        backend.set_many({})
        assert backend.get_many([k + "a", k + "b", k + "t"]) == [b"1", b"", b"2"]
        assert backend.ttl(k + "a") == math.inf
        remaining = backend.ttl(k + "t")
        assert remaining is not None
        assert 0 < remaining <= 10

    async def test_aset_many(self, backend: FullBackend, k: str) -> None:
        """Async: ``set_many`` stores every item, with the TTL when one is given."""
        await backend.aset_many({k + "a": b"1", k + "b": b""})
        await backend.aset_many({k + "t": b"2"}, ttl=10)
        await backend.aset_many({})
        assert await backend.aget_many([k + "a", k + "b", k + "t"]) == [b"1", b"", b"2"]
        assert await backend.attl(k + "a") == math.inf
        remaining = await backend.attl(k + "t")
        assert remaining is not None
        assert 0 < remaining <= 10

    def test_delete_many_counts_existing(self, backend: FullBackend, k: str) -> None:
        """``delete_many`` counts only the keys that existed."""
        backend.set_many({k + "a": b"1", k + "b": b"2", k + "c": b"3"})
        assert backend.delete_many([k + "a", k + "missing", k + "b"]) == 2
        assert backend.delete_many([]) == 0
        assert backend.get_many([k + "a", k + "b", k + "c"]) == [None, None, b"3"]

    async def test_adelete_many_counts_existing(self, backend: FullBackend, k: str) -> None:
        """Async: ``delete_many`` counts only the keys that existed."""
        await backend.aset_many({k + "a": b"1", k + "b": b"2", k + "c": b"3"})
        assert await backend.adelete_many([k + "a", k + "missing", k + "b"]) == 2
        assert await backend.adelete_many([]) == 0
        assert await backend.aget_many([k + "a", k + "b", k + "c"]) == [None, None, b"3"]

    # -- incr ------------------------------------------------------------------------------

    def test_incr(self, backend: FullBackend, k: str) -> None:
        """``incr`` creates counters at 0, adds any amount and stores ASCII decimals."""
        assert backend.incr(k + "n") == 1
        assert backend.incr(k + "n", 10) == 11
        assert backend.incr(k + "n", -20) == -9
        assert backend.get(k + "n") == b"-9"
        backend.set(k + "m", b"41")
        assert backend.incr(k + "m") == 42
        assert backend.ttl(k + "n") == math.inf

    async def test_aincr(self, backend: FullBackend, k: str) -> None:
        """Async: ``incr`` creates counters at 0, adds any amount and stores ASCII decimals."""
        assert await backend.aincr(k + "n") == 1
        assert await backend.aincr(k + "n", 10) == 11
        assert await backend.aincr(k + "n", -20) == -9
        assert await backend.aget(k + "n") == b"-9"
        await backend.aset(k + "m", b"41")
        assert await backend.aincr(k + "m") == 42
        assert await backend.attl(k + "n") == math.inf

    def test_incr_ttl_applies_on_create_only(self, backend: FullBackend, k: str) -> None:
        """``incr``'s ``ttl`` applies when it creates the key; an existing TTL stays."""
        backend.incr(k + "new", ttl=10)
        backend.incr(k + "new", ttl=1000)
        backend.set(k + "persistent", b"1")
        backend.incr(k + "persistent", ttl=10)
        backend.set(k + "expiring", b"1", ttl=10)
        backend.incr(k + "expiring")
        for key in ("new", "expiring"):
            remaining = backend.ttl(k + key)
            assert remaining is not None
            assert 0 < remaining <= 10, key
        assert backend.ttl(k + "persistent") == math.inf

    async def test_aincr_ttl_applies_on_create_only(self, backend: FullBackend, k: str) -> None:
        """Async: ``incr``'s ``ttl`` applies when it creates the key; an existing TTL stays."""
        await backend.aincr(k + "new", ttl=10)
        await backend.aincr(k + "new", ttl=1000)
        await backend.aset(k + "persistent", b"1")
        await backend.aincr(k + "persistent", ttl=10)
        await backend.aset(k + "expiring", b"1", ttl=10)
        await backend.aincr(k + "expiring")
        for key in ("new", "expiring"):
            remaining = await backend.attl(k + key)
            assert remaining is not None
            assert 0 < remaining <= 10, key
        assert await backend.attl(k + "persistent") == math.inf

    def test_incr_non_integer_raises_backend_error(self, backend: FullBackend, k: str) -> None:
        """``incr`` on a non-integer raises ``BackendError`` and changes nothing."""
        for value in (b"abc", b"1.5", b" 1", b""):
            backend.set(k + "v", value)
            with pytest.raises(BackendError):
                backend.incr(k + "v")
            assert backend.get(k + "v") == value

    async def test_aincr_non_integer_raises_backend_error(
        self, backend: FullBackend, k: str
    ) -> None:
        """Async: ``incr`` on a non-integer raises ``BackendError`` and changes nothing."""
        for value in (b"abc", b"1.5", b" 1", b""):
            await backend.aset(k + "v", value)
            with pytest.raises(BackendError):
                await backend.aincr(k + "v")
            assert await backend.aget(k + "v") == value

    # -- scan and delete_pattern -----------------------------------------------------------

    def test_scan_globs(self, backend: FullBackend, k: str) -> None:
        """``scan`` follows Redis glob rules, escapes included, whatever the ``count``."""
        backend.set_many({k + name: b"v" for name in _GLOB_KEYS})
        base = escape_glob(k)
        for pattern, expected in _GLOBS:
            found = list(backend.scan(base + pattern, count=2))
            assert {key[len(k) :] for key in found} == expected, pattern
        assert set(backend.scan(escape_glob(k + "c[x]"))) == {k + "c[x]"}

    async def test_ascan_globs(self, backend: FullBackend, k: str) -> None:
        """Async: ``scan`` follows Redis glob rules, escapes included, whatever the ``count``."""
        await backend.aset_many({k + name: b"v" for name in _GLOB_KEYS})
        base = escape_glob(k)
        for pattern, expected in _GLOBS:
            found = [key async for key in backend.ascan(base + pattern, count=2)]
            assert {key[len(k) :] for key in found} == expected, pattern
        assert {key async for key in backend.ascan(escape_glob(k + "c[x]"))} == {k + "c[x]"}

    def test_scan_skips_deleted(self, backend: FullBackend, k: str) -> None:
        """``scan`` does not yield deleted keys."""
        backend.set_many({k + "a": b"1", k + "b": b"2"})
        backend.delete(k + "b")
        assert set(backend.scan(escape_glob(k) + "*")) == {k + "a"}

    async def test_ascan_skips_deleted(self, backend: FullBackend, k: str) -> None:
        """Async: ``scan`` does not yield deleted keys."""
        await backend.aset_many({k + "a": b"1", k + "b": b"2"})
        await backend.adelete(k + "b")
        assert {key async for key in backend.ascan(escape_glob(k) + "*")} == {k + "a"}

    def test_delete_pattern_only_deletes_matches(self, backend: FullBackend, k: str) -> None:
        """``delete_pattern`` deletes the matches, in batches, and nothing else."""
        backend.set_many({k + f"user:{i}": b"v" for i in range(7)})
        backend.set_many(
            {
                k + "user": b"kept",
                k + "users:1": b"kept",
                k + "user:*x": b"x",
                k + "user:abx": b"kept",
            }
        )
        assert backend.delete_pattern(escape_glob(k + "user:") + "?", batch_size=2) == 7
        assert backend.get_many([k + "user", k + "users:1", k + "user:abx"]) == [b"kept"] * 3
        assert backend.delete_pattern(escape_glob(k + "user:*x")) == 1
        assert backend.get_many([k + "user", k + "users:1", k + "user:abx"]) == [b"kept"] * 3
        assert backend.delete_pattern(escape_glob(k) + "nothing*") == 0
        assert set(backend.scan(escape_glob(k) + "*")) == {
            k + "user",
            k + "users:1",
            k + "user:abx",
        }

    async def test_adelete_pattern_only_deletes_matches(self, backend: FullBackend, k: str) -> None:
        """Async: ``delete_pattern`` deletes the matches, in batches, and nothing else."""
        await backend.aset_many({k + f"user:{i}": b"v" for i in range(7)})
        await backend.aset_many(
            {
                k + "user": b"kept",
                k + "users:1": b"kept",
                k + "user:*x": b"x",
                k + "user:abx": b"kept",
            }
        )
        assert await backend.adelete_pattern(escape_glob(k + "user:") + "?", batch_size=2) == 7
        assert await backend.aget_many([k + "user", k + "users:1", k + "user:abx"]) == [b"kept"] * 3
        assert await backend.adelete_pattern(escape_glob(k + "user:*x")) == 1
        assert await backend.aget_many([k + "user", k + "users:1", k + "user:abx"]) == [b"kept"] * 3
        assert await backend.adelete_pattern(escape_glob(k) + "nothing*") == 0
        remaining = {key async for key in backend.ascan(escape_glob(k) + "*")}
        assert remaining == {k + "user", k + "users:1", k + "user:abx"}

    # -- tag sets ----------------------------------------------------------------------------

    def test_tag_add_members_remove(self, backend: FullBackend, k: str) -> None:
        """Tag sets gather members once each, list them sorted and lose them on remove."""
        assert backend.tag_members(k + "t") == []
        backend.tag_add(k + "t", ["b", "a", _UNICODE], 60)
        backend.tag_add(k + "t", ["c", "a"], 60)
        assert backend.tag_members(k + "t") == sorted(["a", "b", "c", _UNICODE])
        assert backend.tag_remove(k + "t", ["a", "missing"]) == 1
        assert backend.tag_remove(k + "absent", ["a"]) == 0
        assert backend.tag_members(k + "t") == sorted(["b", "c", _UNICODE])
        assert backend.tag_remove(k + "t", ["b", "c", _UNICODE]) == 3
        assert backend.exists(k + "t") is False

    async def test_atag_add_members_remove(self, backend: FullBackend, k: str) -> None:
        """Async: tag sets gather members once each, list them sorted and lose them on remove."""
        assert await backend.atag_members(k + "t") == []
        await backend.atag_add(k + "t", ["b", "a", _UNICODE], 60)
        await backend.atag_add(k + "t", ["c", "a"], 60)
        assert await backend.atag_members(k + "t") == sorted(["a", "b", "c", _UNICODE])
        assert await backend.atag_remove(k + "t", ["a", "missing"]) == 1
        assert await backend.atag_remove(k + "absent", ["a"]) == 0
        assert await backend.atag_members(k + "t") == sorted(["b", "c", _UNICODE])
        assert await backend.atag_remove(k + "t", ["b", "c", _UNICODE]) == 3
        assert await backend.aexists(k + "t") is False

    def test_tag_ttl_only_grows(self, backend: FullBackend, k: str) -> None:
        """A new set takes the TTL; later adds extend it but never shorten it."""
        backend.tag_add(k + "t", ["a"], 10)
        assert 0 < (backend.ttl(k + "t") or 0) <= 10
        backend.tag_add(k + "t", ["b"], 1000)
        assert 10 < (backend.ttl(k + "t") or 0) <= 1000
        backend.tag_add(k + "t", ["c"], 10)
        assert 10 < (backend.ttl(k + "t") or 0) <= 1000
        backend.tag_add(k + "t", ["d"], None)
        assert backend.ttl(k + "t") == math.inf
        backend.tag_add(k + "t", ["e"], 10)
        assert backend.ttl(k + "t") == math.inf
        backend.tag_add(k + "forever", ["a"], None)
        backend.tag_add(k + "forever", ["b"], 10)
        assert backend.ttl(k + "forever") == math.inf
        assert backend.tag_members(k + "t") == ["a", "b", "c", "d", "e"]

    async def test_atag_ttl_only_grows(self, backend: FullBackend, k: str) -> None:
        """Async: a new set takes the TTL; later adds extend it but never shorten it."""
        await backend.atag_add(k + "t", ["a"], 10)
        assert 0 < (await backend.attl(k + "t") or 0) <= 10
        await backend.atag_add(k + "t", ["b"], 1000)
        assert 10 < (await backend.attl(k + "t") or 0) <= 1000
        await backend.atag_add(k + "t", ["c"], 10)
        assert 10 < (await backend.attl(k + "t") or 0) <= 1000
        await backend.atag_add(k + "t", ["d"], None)
        assert await backend.attl(k + "t") == math.inf
        await backend.atag_add(k + "t", ["e"], 10)
        assert await backend.attl(k + "t") == math.inf
        await backend.atag_add(k + "forever", ["a"], None)
        await backend.atag_add(k + "forever", ["b"], 10)
        assert await backend.attl(k + "forever") == math.inf
        assert await backend.atag_members(k + "t") == ["a", "b", "c", "d", "e"]

    def test_tag_sets_expire(self, backend: FullBackend, k: str) -> None:
        """A tag set whose TTL runs out is gone; no members, no key, nothing scanned."""
        backend.tag_add(k + "t", ["a", "b"], _SHORT_TTL)
        backend.tag_add(k + "kept", ["a"], 60)
        time.sleep(_PAST_SHORT_TTL)
        assert backend.tag_members(k + "t") == []
        assert backend.exists(k + "t") is False
        assert set(backend.scan(escape_glob(k) + "*")) == {k + "kept"}

    async def test_atag_sets_expire(self, backend: FullBackend, k: str) -> None:
        """Async: a tag set whose TTL runs out is gone; no members, no key, nothing scanned."""
        await backend.atag_add(k + "t", ["a", "b"], _SHORT_TTL)
        await backend.atag_add(k + "kept", ["a"], 60)
        await asyncio.sleep(_PAST_SHORT_TTL)
        assert await backend.atag_members(k + "t") == []
        assert await backend.aexists(k + "t") is False
        assert {key async for key in backend.ascan(escape_glob(k) + "*")} == {k + "kept"}

    def test_tag_set_is_a_key(self, backend: FullBackend, k: str) -> None:
        """Key commands see tag sets; value and tag commands refuse each other's keys."""
        backend.tag_add(k + "t1", ["a"], 60)
        backend.tag_add(k + "t2", ["a"], None)
        backend.tag_add(k + "t3", ["a"], None)
        backend.tag_add(k + "t4", ["a"], None)
        backend.set(k + "v", b"value")
        assert backend.exists(k + "t1") is True
        assert set(backend.scan(escape_glob(k) + "t*")) == {k + "t1", k + "t2", k + "t3", k + "t4"}
        assert backend.get_many([k + "v", k + "t1"]) == [b"value", None]
        with pytest.raises(BackendError):
            backend.get(k + "t1")
        with pytest.raises(BackendError):
            backend.tag_add(k + "v", ["a"], 60)
        with pytest.raises(BackendError):
            backend.tag_members(k + "v")
        assert backend.get(k + "v") == b"value"
        assert backend.expire(k + "t2", 30) is True
        assert 0 < (backend.ttl(k + "t2") or 0) <= 30
        assert backend.persist(k + "t2") is True
        assert backend.delete(k + "t1") is True
        assert backend.delete_many([k + "t2", k + "v"]) == 2
        assert backend.delete_pattern(escape_glob(k) + "t*") == 2
        assert list(backend.scan(escape_glob(k) + "*")) == []

    async def test_atag_set_is_a_key(self, backend: FullBackend, k: str) -> None:
        """Async: key commands see tag sets; value and tag commands refuse each other's keys."""
        await backend.atag_add(k + "t1", ["a"], 60)
        await backend.atag_add(k + "t2", ["a"], None)
        await backend.atag_add(k + "t3", ["a"], None)
        await backend.atag_add(k + "t4", ["a"], None)
        await backend.aset(k + "v", b"value")
        assert await backend.aexists(k + "t1") is True
        scanned = {key async for key in backend.ascan(escape_glob(k) + "t*")}
        assert scanned == {k + "t1", k + "t2", k + "t3", k + "t4"}
        assert await backend.aget_many([k + "v", k + "t1"]) == [b"value", None]
        with pytest.raises(BackendError):
            await backend.aget(k + "t1")
        with pytest.raises(BackendError):
            await backend.atag_add(k + "v", ["a"], 60)
        with pytest.raises(BackendError):
            await backend.atag_members(k + "v")
        assert await backend.aget(k + "v") == b"value"
        assert await backend.aexpire(k + "t2", 30) is True
        assert 0 < (await backend.attl(k + "t2") or 0) <= 30
        assert await backend.apersist(k + "t2") is True
        assert await backend.adelete(k + "t1") is True
        assert await backend.adelete_many([k + "t2", k + "v"]) == 2
        assert await backend.adelete_pattern(escape_glob(k) + "t*") == 2
        assert [key async for key in backend.ascan(escape_glob(k) + "*")] == []

    def test_tag_without_members_does_nothing(self, backend: FullBackend, k: str) -> None:
        """Adding or removing no members neither creates nor touches the set."""
        backend.tag_add(k + "t", [], 60)
        assert backend.exists(k + "t") is False
        backend.tag_add(k + "t", ["a"], None)
        backend.tag_add(k + "t", [], 60)
        assert backend.tag_remove(k + "t", []) == 0
        assert backend.ttl(k + "t") == math.inf
        assert backend.tag_members(k + "t") == ["a"]

    async def test_atag_without_members_does_nothing(self, backend: FullBackend, k: str) -> None:
        """Async: adding or removing no members neither creates nor touches the set."""
        await backend.atag_add(k + "t", [], 60)
        assert await backend.aexists(k + "t") is False
        await backend.atag_add(k + "t", ["a"], None)
        await backend.atag_add(k + "t", [], 60)
        assert await backend.atag_remove(k + "t", []) == 0
        assert await backend.attl(k + "t") == math.inf
        assert await backend.atag_members(k + "t") == ["a"]

    # -- compare-and-delete ----------------------------------------------------------------

    def test_delete_if_equals(self, backend: FullBackend, k: str) -> None:
        """Only the value's owner deletes it; anyone else leaves it in place."""
        assert backend.delete_if_equals(k + "lock", b"token-1") is False
        backend.set(k + "lock", b"token-1", ttl=60)
        assert backend.delete_if_equals(k + "lock", b"token-2") is False
        assert backend.delete_if_equals(k + "lock", b"token-") is False
        assert backend.get(k + "lock") == b"token-1"
        assert backend.delete_if_equals(k + "lock", b"token-1") is True
        assert backend.exists(k + "lock") is False
        assert backend.delete_if_equals(k + "lock", b"token-1") is False

    async def test_adelete_if_equals(self, backend: FullBackend, k: str) -> None:
        """Async: only the value's owner deletes it; anyone else leaves it in place."""
        assert await backend.adelete_if_equals(k + "lock", b"token-1") is False
        await backend.aset(k + "lock", b"token-1", ttl=60)
        assert await backend.adelete_if_equals(k + "lock", b"token-2") is False
        assert await backend.adelete_if_equals(k + "lock", b"token-") is False
        assert await backend.aget(k + "lock") == b"token-1"
        assert await backend.adelete_if_equals(k + "lock", b"token-1") is True
        assert await backend.aexists(k + "lock") is False
        assert await backend.adelete_if_equals(k + "lock", b"token-1") is False

    @pytest.mark.parametrize("transaction", [False, True])
    def test_delete_if_op(self, backend: FullBackend, k: str, transaction: bool) -> None:
        """The ``delete_if`` op removes the key only when it holds exactly ``expected``."""
        backend.set(k + "lock", b"token-1")
        backend.tag_add(k + "tag", ["m"], 60)
        results = backend.execute(
            [
                Op("delete_if", k + "lock", expected=b"token-2"),
                Op("delete_if", k + "lock", expected=b"token-"),
                Op("delete_if", k + "absent", expected=b"token-1"),
                Op("exists", k + "lock"),
                Op("delete_if", k + "lock", expected=b"token-1"),
                Op("exists", k + "lock"),
                Op("delete_if", k + "tag", expected=b"m"),
            ],
            transaction=transaction,
        )
        assert results[:6] == [False, False, False, True, True, False]
        assert isinstance(results[6], BackendError)
        assert backend.tag_members(k + "tag") == ["m"]

    # -- execute ---------------------------------------------------------------------------

    @pytest.mark.parametrize("transaction", [False, True])
    def test_execute(self, backend: FullBackend, k: str, transaction: bool) -> None:
        """A pipeline answers each op like its method, with or without a transaction."""
        _check_pipeline(backend.execute(_pipeline(k), transaction=transaction))
        assert backend.get(k + "a") == b"1"
        assert backend.get(k + "n") == b"5"
        assert backend.exists(k + "b") is False
        assert backend.execute([], transaction=transaction) == []

    @pytest.mark.parametrize("transaction", [False, True])
    async def test_aexecute(self, backend: FullBackend, k: str, transaction: bool) -> None:
        """Async: a pipeline answers each op like its method, with or without a transaction."""
        _check_pipeline(await backend.aexecute(_pipeline(k), transaction=transaction))
        assert await backend.aget(k + "a") == b"1"
        assert await backend.aget(k + "n") == b"5"
        assert await backend.aexists(k + "b") is False
        assert await backend.aexecute([], transaction=transaction) == []

    @pytest.mark.parametrize("transaction", [False, True])
    def test_execute_conditional_ops(self, backend: FullBackend, k: str, transaction: bool) -> None:
        """``set_if`` compares and sets, ``swap`` answers the old value, ``tag_add`` indexes."""
        _check_conditional(backend.execute(_conditional_ops(k), transaction=transaction))
        assert backend.get(k + "c") == b"third"
        assert backend.tag_members(k + "tag") == ["x", "y", "z"]
        left = backend.ttl(k + "tag")
        assert left is not None
        assert 1 < left <= 60  # the TTL only grows

    @pytest.mark.parametrize("transaction", [False, True])
    async def test_aexecute_conditional_ops(
        self, backend: FullBackend, k: str, transaction: bool
    ) -> None:
        """Async: ``set_if`` compares and sets, ``swap`` answers the old value, ``tag_add``."""
        _check_conditional(await backend.aexecute(_conditional_ops(k), transaction=transaction))
        assert await backend.aget(k + "c") == b"third"
        assert await backend.atag_members(k + "tag") == ["x", "y", "z"]

    def test_set_if_guards(self, backend: FullBackend, k: str) -> None:
        """``set_if`` writes only when every guard key holds what it expects."""
        backend.set(k + "g1", b"one")
        ok = (k + "g1", b"one")
        results = backend.execute(
            [
                Op("set_if", k + "v", value=b"a", guards=(ok, (k + "g2", b"two"))),
                Op("set_if", k + "v", value=b"b", guards=(ok, (k + "g1", None))),
                Op("set_if", k + "v", value=b"c", guards=(ok, (k + "g2", None))),
                Op("get", k + "v"),
            ]
        )
        assert results == [False, False, True, b"c"]

    async def test_aset_if_guards(self, backend: FullBackend, k: str) -> None:
        """Async: ``set_if`` writes only when every guard key holds what it expects."""
        await backend.aset(k + "g1", b"one")
        results = await backend.aexecute(
            [
                Op("set_if", k + "v", value=b"a", guards=((k + "g1", b"other"),)),
                Op("set_if", k + "v", value=b"b", guards=((k + "g1", b"one"),)),
            ]
        )
        assert results == [False, True]

    @pytest.mark.parametrize("transaction", [False, True])
    def test_tag_remove_and_prune(self, backend: FullBackend, k: str, transaction: bool) -> None:
        """``tag_remove`` removes members; ``tag_prune`` those whose probe key is gone."""
        backend.set(k + "live", b"v")
        backend.set(k + "invalidated", TOMBSTONE_PREFIX + b"token")
        backend.tag_add(k + "other-tag", ["x"], 60)
        backend.tag_add(k + "tag", ["live", "invalidated", "absent", "tagged", "x", "y"], 60)
        probes = ("live", "invalidated", "absent", "other-tag")
        results = backend.execute(
            [
                Op("tag_remove", k + "tag", members=("x", "nope")),
                Op(
                    "tag_prune",
                    k + "tag",
                    members=("live", "invalidated", "absent", "tagged"),
                    probes=tuple(k + probe for probe in probes),
                ),
                Op("tag_prune", k + "tag"),
                Op("tag_remove", k + "tag"),
            ],
            transaction=transaction,
        )
        assert results == [1, 2, 0, 0]
        assert backend.tag_members(k + "tag") == ["live", "tagged", "y"]

    async def test_atag_prune(self, backend: FullBackend, k: str) -> None:
        """Async: ``tag_prune`` removes the members whose probe key is gone."""
        await backend.atag_add(k + "tag", ["a", "b"], 60)
        await backend.aset(k + "a", b"v")
        results = await backend.aexecute(
            [Op("tag_prune", k + "tag", members=("a", "b"), probes=(k + "a", k + "b"))]
        )
        assert results == [1]
        assert await backend.atag_members(k + "tag") == ["a"]

    def test_set_if_on_a_tag_set_fails_in_its_slot(self, backend: FullBackend, k: str) -> None:
        """``set_if`` on a key holding a tag set reports an error in its slot."""
        backend.tag_add(k + "tag", ["m"], 60)
        results = backend.execute(
            [Op("set_if", k + "tag", value=b"v", expected=None), Op("get", k + "other")]
        )
        assert isinstance(results[0], BackendError)
        assert results[1] is None

    def test_execute_failing_op_fills_its_slot(self, backend: FullBackend, k: str) -> None:
        """A failing op puts its ``BackendError`` in its slot; the others run."""
        _check_failure_results(backend.execute(_ops_with_failure(k)))
        assert backend.get(k + "text") == b"not a number"

    async def test_aexecute_failing_op_fills_its_slot(self, backend: FullBackend, k: str) -> None:
        """Async: a failing op puts its ``BackendError`` in its slot; the others run."""
        _check_failure_results(await backend.aexecute(_ops_with_failure(k)))
        assert await backend.aget(k + "text") == b"not a number"

    # -- ping, stats, close ----------------------------------------------------------------

    def test_ping(self, backend: FullBackend) -> None:
        """``ping`` returns a latency in seconds."""
        latency = backend.ping()
        assert isinstance(latency, float)
        assert 0 <= latency < math.inf

    async def test_aping(self, backend: FullBackend) -> None:
        """Async: ``ping`` returns a latency in seconds."""
        latency = await backend.aping()
        assert isinstance(latency, float)
        assert 0 <= latency < math.inf

    def test_stats(self, backend: FullBackend, k: str) -> None:
        """``stats`` returns a ``BackendStats`` with fields of the documented types."""
        backend.set_many({k + "a": b"1", k + "b": b"2"})
        _check_stats(backend.stats(), at_least_keys=2)

    async def test_astats(self, backend: FullBackend, k: str) -> None:
        """Async: ``stats`` returns a ``BackendStats`` with fields of the documented types."""
        await backend.aset_many({k + "a": b"1", k + "b": b"2"})
        _check_stats(await backend.astats(), at_least_keys=2)

    def test_usable_after_close(self, backend: FullBackend, k: str) -> None:
        """A closed backend can be used again."""
        backend.set(k + "a", b"1")
        backend.close()
        assert backend.set(k + "b", b"2") is True
        assert backend.get(k + "b") == b"2"

    async def test_usable_after_aclose(self, backend: FullBackend, k: str) -> None:
        """Async: a closed backend can be used again."""
        await backend.aset(k + "a", b"1")
        await backend.aclose()
        assert await backend.aset(k + "b", b"2") is True
        assert await backend.aget(k + "b") == b"2"
