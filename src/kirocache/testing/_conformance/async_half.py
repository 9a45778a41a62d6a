"""The async half of the conformance suite: ``AsyncBackend``, every op kind, the conveniences."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import pytest

from kirocache.backends._conveniences import AsyncConvenientBackend
from kirocache.backends._derive import with_conveniences
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import AsyncBackend, Op
from kirocache.exceptions import BackendError
from kirocache.testing._conformance.scenarios import (
    ALL_BYTES,
    GLOB_KEYS,
    GLOBS,
    MIB,
    OP_KINDS,
    PAST_SHORT_TTL,
    SHORT_TTL,
    UNICODE,
    check_answers,
    check_conditional,
    check_failure_results,
    check_pipeline,
    check_stats,
    conditional_ops,
    ops_with_failure,
    pipeline,
)

__all__ = ["AsyncBackendConformance"]


class AsyncBackendConformance:
    """The async half; subclass it and provide a ``backend`` fixture (an ``AsyncBackend``).

    ``SyncBackendConformance``'s twin: the same scenarios through the ``a`` methods.
    """

    @pytest.fixture
    def afull(self, backend: AsyncBackend) -> AsyncConvenientBackend:
        """The backend with the async convenience methods (its own, or derived)."""
        return with_conveniences(backend)

    @pytest.fixture
    async def ak(self, afull: AsyncConvenientBackend) -> AsyncIterator[str]:
        """A key prefix unique to the test; its keys are deleted afterwards."""
        prefix = f"kirocache-conformance:{uuid.uuid4().hex}:"
        yield prefix
        await afull.adelete_pattern(escape_glob(prefix) + "*")

    # -- the small protocol ----------------------------------------------------------------

    def test_satisfies_the_async_protocol(self, backend: AsyncBackend) -> None:
        """The backend is a runtime ``AsyncBackend``."""
        assert isinstance(backend, AsyncBackend)

    @pytest.mark.parametrize("transaction", [False, True])
    @pytest.mark.parametrize("kind", sorted(OP_KINDS))
    async def test_aop_kind(
        self, backend: AsyncBackend, ak: str, kind: str, transaction: bool
    ) -> None:
        """Async: each op kind answers as ``Op`` documents, alone or in a transaction."""
        for ops, answers in OP_KINDS[kind](ak):  # type: ignore[index]
            check_answers(await backend.aexecute(ops, transaction=transaction), answers)

    async def test_aunknown_op_kind_is_refused_before_anything_runs(
        self, backend: AsyncBackend, ak: str
    ) -> None:
        """Async: an op of an unknown kind raises ``ValueError``; nothing runs."""
        unknown = Op("no-such-kind", ak + "a")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no-such-kind"):
            await backend.aexecute([Op("set", ak + "a", b"v"), unknown])
        assert await backend.aget(ak + "a") is None

    # -- protocol shape --------------------------------------------------------------------

    # -- get / set -------------------------------------------------------------------------

    async def test_aset_aget_round_trip(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: a stored value reads back; an absent key reads ``None``."""
        assert await afull.aget(ak + "a") is None
        assert await afull.aset(ak + "a", b"value") is True
        assert await afull.aget(ak + "a") == b"value"

    async def test_aset_overwrites_value_and_ttl(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: ``set`` replaces the value and drops the old TTL, as Redis SET does."""
        await afull.aset(ak + "a", b"old", ttl=60)
        assert await afull.aset(ak + "a", b"new") is True
        assert await afull.aget(ak + "a") == b"new"
        assert await afull.attl(ak + "a") == math.inf

    async def test_aset_nx_only_when_absent(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``nx=True`` stores only when the key is absent and leaves a present one alone."""
        assert await afull.aset(ak + "a", b"first", nx=True) is True
        assert await afull.aset(ak + "a", b"second", ttl=60, nx=True) is False
        assert await afull.aget(ak + "a") == b"first"
        assert await afull.attl(ak + "a") == math.inf

    async def test_adelete_and_aexists(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``delete`` and ``exists`` answer whether the key held a value."""
        assert await afull.aexists(ak + "a") is False
        assert await afull.adelete(ak + "a") is False
        await afull.aset(ak + "a", b"")
        assert await afull.aexists(ak + "a") is True
        assert await afull.adelete(ak + "a") is True
        assert await afull.aexists(ak + "a") is False
        assert await afull.aget(ak + "a") is None

    # -- values and keys -------------------------------------------------------------------

    async def test_abinary_values(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: every byte value round-trips, and empty bytes are a value, not a miss."""
        await afull.aset(ak + "all", ALL_BYTES)
        await afull.aset(ak + "empty", b"")
        await afull.aset(ak + "nul", b"\x00")
        assert await afull.aget(ak + "all") == ALL_BYTES
        assert await afull.aget(ak + "empty") == b""
        assert await afull.aget(ak + "nul") == b"\x00"

    async def test_aunicode_keys(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: non-ASCII keys store, read, scan and delete."""
        await afull.aset(ak + UNICODE, b"v")
        assert await afull.aget(ak + UNICODE) == b"v"
        assert [key async for key in afull.ascan(escape_glob(ak + UNICODE))] == [ak + UNICODE]
        assert await afull.adelete(ak + UNICODE) is True

    async def test_alarge_value(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: a 1 MiB value round-trips."""
        value = ALL_BYTES * (MIB // 256)
        await afull.aset(ak + "big", value)
        assert await afull.aget(ak + "big") == value

    # -- TTLs ------------------------------------------------------------------------------

    async def test_attl_semantics(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``ttl`` is ``None`` if absent, ``math.inf`` if persistent, else seconds left."""
        await afull.aset(ak + "persistent", b"v")
        await afull.aset(ak + "short", b"v", ttl=10)
        assert await afull.attl(ak + "absent") is None
        assert await afull.attl(ak + "persistent") == math.inf
        remaining = await afull.attl(ak + "short")
        assert remaining is not None
        assert 0 < remaining <= 10

    async def test_aentries_expire(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: entries written with a TTL by any method disappear once it runs out."""
        await afull.aset(ak + "set", b"v", ttl=SHORT_TTL)
        await afull.aset(ak + "expire", b"v")
        assert await afull.aexpire(ak + "expire", SHORT_TTL) is True
        await afull.aset_many({ak + "many1": b"v", ak + "many2": b"v"}, ttl=SHORT_TTL)
        await afull.aincr(ak + "counter", ttl=SHORT_TTL)
        await afull.aset(ak + "kept", b"v", ttl=60)
        await asyncio.sleep(PAST_SHORT_TTL)
        assert {key async for key in afull.ascan(escape_glob(ak) + "*")} == {ak + "kept"}
        assert await afull.aget(ak + "set") is None
        assert await afull.aexists(ak + "expire") is False
        assert await afull.aget_many([ak + "many1", ak + "many2"]) == [None, None]
        assert await afull.attl(ak + "counter") is None
        assert await afull.aget(ak + "kept") == b"v"
        assert await afull.aset(ak + "set", b"again", nx=True) is True
        assert await afull.aincr(ak + "counter") == 1

    async def test_aexpire(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``expire`` sets a new TTL on an existing key only."""
        assert await afull.aexpire(ak + "absent", 10) is False
        assert await afull.attl(ak + "absent") is None
        await afull.aset(ak + "a", b"v", ttl=1000)
        assert await afull.aexpire(ak + "a", 10) is True
        remaining = await afull.attl(ak + "a")
        assert remaining is not None
        assert 0 < remaining <= 10
        assert await afull.aget(ak + "a") == b"v"

    async def test_apersist(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``persist`` removes a TTL and says whether there was one."""
        await afull.aset(ak + "a", b"v", ttl=60)
        await afull.aset(ak + "b", b"v")
        assert await afull.apersist(ak + "a") is True
        assert await afull.attl(ak + "a") == math.inf
        assert await afull.apersist(ak + "a") is False
        assert await afull.apersist(ak + "b") is False
        assert await afull.apersist(ak + "absent") is False
        assert await afull.aget(ak + "a") == b"v"

    # -- many ------------------------------------------------------------------------------

    async def test_aget_many_keeps_order_and_gaps(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: ``get_many`` answers in the order asked, ``None`` for misses."""
        await afull.aset(ak + "a", b"1")
        await afull.aset(ak + "c", b"3")
        keys = [ak + "c", ak + "b", ak + "a", ak + "c"]
        assert await afull.aget_many(keys) == [b"3", None, b"1", b"3"]
        assert await afull.aget_many([]) == []

    async def test_aset_many(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``set_many`` stores every item, with the TTL when one is given."""
        await afull.aset_many({ak + "a": b"1", ak + "b": b""})
        await afull.aset_many({ak + "t": b"2"}, ttl=10)
        await afull.aset_many({})
        assert await afull.aget_many([ak + "a", ak + "b", ak + "t"]) == [b"1", b"", b"2"]
        assert await afull.attl(ak + "a") == math.inf
        remaining = await afull.attl(ak + "t")
        assert remaining is not None
        assert 0 < remaining <= 10

    async def test_adelete_many_counts_existing(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: ``delete_many`` counts only the keys that existed."""
        await afull.aset_many({ak + "a": b"1", ak + "b": b"2", ak + "c": b"3"})
        assert await afull.adelete_many([ak + "a", ak + "missing", ak + "b"]) == 2
        assert await afull.adelete_many([]) == 0
        assert await afull.aget_many([ak + "a", ak + "b", ak + "c"]) == [None, None, b"3"]

    # -- incr ------------------------------------------------------------------------------

    async def test_aincr(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``incr`` creates counters at 0, adds any amount and stores ASCII decimals."""
        assert await afull.aincr(ak + "n") == 1
        assert await afull.aincr(ak + "n", 10) == 11
        assert await afull.aincr(ak + "n", -20) == -9
        assert await afull.aget(ak + "n") == b"-9"
        await afull.aset(ak + "m", b"41")
        assert await afull.aincr(ak + "m") == 42
        assert await afull.attl(ak + "n") == math.inf

    async def test_aincr_ttl_applies_on_create_only(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: ``incr``'s ``ttl`` applies when it creates the key; an existing TTL stays."""
        await afull.aincr(ak + "new", ttl=10)
        await afull.aincr(ak + "new", ttl=1000)
        await afull.aset(ak + "persistent", b"1")
        await afull.aincr(ak + "persistent", ttl=10)
        await afull.aset(ak + "expiring", b"1", ttl=10)
        await afull.aincr(ak + "expiring")
        for key in ("new", "expiring"):
            remaining = await afull.attl(ak + key)
            assert remaining is not None
            assert 0 < remaining <= 10, key
        assert await afull.attl(ak + "persistent") == math.inf

    async def test_aincr_non_integer_raises_backend_error(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: ``incr`` on a non-integer raises ``BackendError`` and changes nothing."""
        for value in (b"abc", b"1.5", b" 1", b""):
            await afull.aset(ak + "v", value)
            with pytest.raises(BackendError):
                await afull.aincr(ak + "v")
            assert await afull.aget(ak + "v") == value

    # -- scan and delete_pattern -----------------------------------------------------------

    async def test_ascan_globs(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``scan`` follows Redis glob rules, escapes included, whatever the ``count``."""
        await afull.aset_many({ak + name: b"v" for name in GLOB_KEYS})
        base = escape_glob(ak)
        for pattern, expected in GLOBS:
            found = [key async for key in afull.ascan(base + pattern, count=2)]
            assert {key[len(ak) :] for key in found} == expected, pattern
        assert {key async for key in afull.ascan(escape_glob(ak + "c[x]"))} == {ak + "c[x]"}

    async def test_ascan_skips_deleted(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``scan`` does not yield deleted keys."""
        await afull.aset_many({ak + "a": b"1", ak + "b": b"2"})
        await afull.adelete(ak + "b")
        assert {key async for key in afull.ascan(escape_glob(ak) + "*")} == {ak + "a"}

    async def test_adelete_pattern_only_deletes_matches(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: ``delete_pattern`` deletes the matches, in batches, and nothing else."""
        await afull.aset_many({ak + f"user:{i}": b"v" for i in range(7)})
        await afull.aset_many(
            {
                ak + "user": b"kept",
                ak + "users:1": b"kept",
                ak + "user:*x": b"x",
                ak + "user:abx": b"kept",
            }
        )
        assert await afull.adelete_pattern(escape_glob(ak + "user:") + "?", batch_size=2) == 7
        assert (
            await afull.aget_many([ak + "user", ak + "users:1", ak + "user:abx"]) == [b"kept"] * 3
        )
        assert await afull.adelete_pattern(escape_glob(ak + "user:*x")) == 1
        assert (
            await afull.aget_many([ak + "user", ak + "users:1", ak + "user:abx"]) == [b"kept"] * 3
        )
        assert await afull.adelete_pattern(escape_glob(ak) + "nothing*") == 0
        remaining = {key async for key in afull.ascan(escape_glob(ak) + "*")}
        assert remaining == {ak + "user", ak + "users:1", ak + "user:abx"}

    # -- tag sets ----------------------------------------------------------------------------

    async def test_atag_add_members_remove(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: tag sets gather members once each, list them sorted and lose them on remove."""
        assert await afull.atag_members(ak + "t") == []
        await afull.atag_add(ak + "t", ["b", "a", UNICODE], 60)
        await afull.atag_add(ak + "t", ["c", "a"], 60)
        assert await afull.atag_members(ak + "t") == sorted(["a", "b", "c", UNICODE])
        assert await afull.atag_remove(ak + "t", ["a", "missing"]) == 1
        assert await afull.atag_remove(ak + "absent", ["a"]) == 0
        assert await afull.atag_members(ak + "t") == sorted(["b", "c", UNICODE])
        assert await afull.atag_remove(ak + "t", ["b", "c", UNICODE]) == 3
        assert await afull.aexists(ak + "t") is False

    async def test_atag_ttl_only_grows(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: a new set takes the TTL; later adds extend it but never shorten it."""
        await afull.atag_add(ak + "t", ["a"], 10)
        assert 0 < (await afull.attl(ak + "t") or 0) <= 10
        await afull.atag_add(ak + "t", ["b"], 1000)
        assert 10 < (await afull.attl(ak + "t") or 0) <= 1000
        await afull.atag_add(ak + "t", ["c"], 10)
        assert 10 < (await afull.attl(ak + "t") or 0) <= 1000
        await afull.atag_add(ak + "t", ["d"], None)
        assert await afull.attl(ak + "t") == math.inf
        await afull.atag_add(ak + "t", ["e"], 10)
        assert await afull.attl(ak + "t") == math.inf
        await afull.atag_add(ak + "forever", ["a"], None)
        await afull.atag_add(ak + "forever", ["b"], 10)
        assert await afull.attl(ak + "forever") == math.inf
        assert await afull.atag_members(ak + "t") == ["a", "b", "c", "d", "e"]

    async def test_atag_sets_expire(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: a tag set whose TTL runs out is gone; no members, no key, nothing scanned."""
        await afull.atag_add(ak + "t", ["a", "b"], SHORT_TTL)
        await afull.atag_add(ak + "kept", ["a"], 60)
        await asyncio.sleep(PAST_SHORT_TTL)
        assert await afull.atag_members(ak + "t") == []
        assert await afull.aexists(ak + "t") is False
        assert {key async for key in afull.ascan(escape_glob(ak) + "*")} == {ak + "kept"}

    async def test_atag_set_is_a_key(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: key commands see tag sets; value and tag commands refuse each other's keys."""
        await afull.atag_add(ak + "t1", ["a"], 60)
        await afull.atag_add(ak + "t2", ["a"], None)
        await afull.atag_add(ak + "t3", ["a"], None)
        await afull.atag_add(ak + "t4", ["a"], None)
        await afull.aset(ak + "v", b"value")
        assert await afull.aexists(ak + "t1") is True
        scanned = {key async for key in afull.ascan(escape_glob(ak) + "t*")}
        assert scanned == {ak + "t1", ak + "t2", ak + "t3", ak + "t4"}
        assert await afull.aget_many([ak + "v", ak + "t1"]) == [b"value", None]
        with pytest.raises(BackendError):
            await afull.aget(ak + "t1")
        with pytest.raises(BackendError):
            await afull.atag_add(ak + "v", ["a"], 60)
        with pytest.raises(BackendError):
            await afull.atag_members(ak + "v")
        assert await afull.aget(ak + "v") == b"value"
        assert await afull.aexpire(ak + "t2", 30) is True
        assert 0 < (await afull.attl(ak + "t2") or 0) <= 30
        assert await afull.apersist(ak + "t2") is True
        assert await afull.adelete(ak + "t1") is True
        assert await afull.adelete_many([ak + "t2", ak + "v"]) == 2
        assert await afull.adelete_pattern(escape_glob(ak) + "t*") == 2
        assert [key async for key in afull.ascan(escape_glob(ak) + "*")] == []

    async def test_atag_without_members_does_nothing(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: adding or removing no members neither creates nor touches the set."""
        await afull.atag_add(ak + "t", [], 60)
        assert await afull.aexists(ak + "t") is False
        await afull.atag_add(ak + "t", ["a"], None)
        await afull.atag_add(ak + "t", [], 60)
        assert await afull.atag_remove(ak + "t", []) == 0
        assert await afull.attl(ak + "t") == math.inf
        assert await afull.atag_members(ak + "t") == ["a"]

    # -- compare-and-delete ----------------------------------------------------------------

    async def test_adelete_if_equals(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: only the value's owner deletes it; anyone else leaves it in place."""
        assert await afull.adelete_if_equals(ak + "lock", b"token-1") is False
        await afull.aset(ak + "lock", b"token-1", ttl=60)
        assert await afull.adelete_if_equals(ak + "lock", b"token-2") is False
        assert await afull.adelete_if_equals(ak + "lock", b"token-") is False
        assert await afull.aget(ak + "lock") == b"token-1"
        assert await afull.adelete_if_equals(ak + "lock", b"token-1") is True
        assert await afull.aexists(ak + "lock") is False
        assert await afull.adelete_if_equals(ak + "lock", b"token-1") is False

    # -- execute ---------------------------------------------------------------------------

    @pytest.mark.parametrize("transaction", [False, True])
    async def test_aexecute(
        self, afull: AsyncConvenientBackend, ak: str, transaction: bool
    ) -> None:
        """Async: a pipeline answers each op like its method, with or without a transaction."""
        check_pipeline(await afull.aexecute(pipeline(ak), transaction=transaction))
        assert await afull.aget(ak + "a") == b"1"
        assert await afull.aget(ak + "n") == b"5"
        assert await afull.aexists(ak + "b") is False
        assert await afull.aexecute([], transaction=transaction) == []

    @pytest.mark.parametrize("transaction", [False, True])
    async def test_aexecute_conditional_ops(
        self, afull: AsyncConvenientBackend, ak: str, transaction: bool
    ) -> None:
        """Async: ``set_if`` compares and sets, ``swap`` answers the old value, ``tag_add``."""
        check_conditional(await afull.aexecute(conditional_ops(ak), transaction=transaction))
        assert await afull.aget(ak + "c") == b"third"
        assert await afull.atag_members(ak + "tag") == ["x", "y", "z"]

    async def test_aset_if_guards(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``set_if`` writes only when every guard key holds what it expects."""
        await afull.aset(ak + "g1", b"one")
        results = await afull.aexecute(
            [
                Op("set_if", ak + "v", value=b"a", guards=((ak + "g1", b"other"),)),
                Op("set_if", ak + "v", value=b"b", guards=((ak + "g1", b"one"),)),
            ]
        )
        assert results == [False, True]

    async def test_atag_prune(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``tag_prune`` removes the members whose probe key is gone."""
        await afull.atag_add(ak + "tag", ["a", "b"], 60)
        await afull.aset(ak + "a", b"v")
        results = await afull.aexecute(
            [Op("tag_prune", ak + "tag", members=("a", "b"), probes=(ak + "a", ak + "b"))]
        )
        assert results == [1]
        assert await afull.atag_members(ak + "tag") == ["a"]

    async def test_aexecute_failing_op_fills_its_slot(
        self, afull: AsyncConvenientBackend, ak: str
    ) -> None:
        """Async: a failing op puts its ``BackendError`` in its slot; the others run."""
        check_failure_results(await afull.aexecute(ops_with_failure(ak)))
        assert await afull.aget(ak + "text") == b"not a number"

    # -- ping, stats, close ----------------------------------------------------------------

    async def test_aping(self, afull: AsyncConvenientBackend) -> None:
        """Async: ``ping`` returns a latency in seconds."""
        latency = await afull.aping()
        assert isinstance(latency, float)
        assert 0 <= latency < math.inf

    async def test_astats(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: ``stats`` returns a ``BackendStats`` with fields of the documented types."""
        await afull.aset_many({ak + "a": b"1", ak + "b": b"2"})
        check_stats(await afull.astats(), at_least_keys=2)

    async def test_usable_after_aclose(self, afull: AsyncConvenientBackend, ak: str) -> None:
        """Async: a closed backend can be used again."""
        await afull.aset(ak + "a", b"1")
        await afull.aclose()
        assert await afull.aset(ak + "b", b"2") is True
        assert await afull.aget(ak + "b") == b"2"
