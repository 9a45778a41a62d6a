"""The sync half of the conformance suite: ``Backend``, every op kind, the conveniences."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator

import pytest

from kirocache.backends._conveniences import ConvenientBackend
from kirocache.backends._derive import with_conveniences
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import TOMBSTONE_PREFIX, Backend, Op
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

__all__ = ["SyncBackendConformance"]


class SyncBackendConformance:
    """The sync half; subclass it and provide a ``backend`` fixture (a ``Backend``).

    The small protocol and every op kind are tested on the backend itself; the
    convenience methods on ``with_conveniences(backend)``, which is the backend itself
    when it has them and otherwise derives them from its ``execute`` and ``scan``.
    """

    @pytest.fixture
    def full(self, backend: Backend) -> ConvenientBackend:
        """The backend with the convenience methods (its own, or derived)."""
        return with_conveniences(backend)

    @pytest.fixture
    def k(self, full: ConvenientBackend) -> Iterator[str]:
        """A key prefix unique to the test; its keys are deleted afterwards."""
        prefix = f"kirocache-conformance:{uuid.uuid4().hex}:"
        yield prefix
        full.delete_pattern(escape_glob(prefix) + "*")

    # -- the small protocol ----------------------------------------------------------------

    def test_satisfies_the_protocol(self, backend: Backend) -> None:
        """The backend is a runtime ``Backend``."""
        assert isinstance(backend, Backend)

    @pytest.mark.parametrize("transaction", [False, True])
    @pytest.mark.parametrize("kind", sorted(OP_KINDS))
    def test_op_kind(self, backend: Backend, k: str, kind: str, transaction: bool) -> None:
        """Each op kind answers as ``Op`` documents, alone or in a transaction."""
        for ops, answers in OP_KINDS[kind](k):  # type: ignore[index]
            check_answers(backend.execute(ops, transaction=transaction), answers)

    def test_unknown_op_kind_is_refused_before_anything_runs(
        self, backend: Backend, k: str
    ) -> None:
        """An op of an unknown kind raises ``ValueError``; no op of the call runs."""
        unknown = Op("no-such-kind", k + "a")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no-such-kind"):
            backend.execute([Op("set", k + "a", b"v"), unknown])
        assert backend.get(k + "a") is None

    # -- protocol shape --------------------------------------------------------------------

    # -- get / set -------------------------------------------------------------------------

    def test_set_get_round_trip(self, full: ConvenientBackend, k: str) -> None:
        """A stored value reads back; an absent key reads ``None``."""
        assert full.get(k + "a") is None
        assert full.set(k + "a", b"value") is True
        assert full.get(k + "a") == b"value"

    def test_set_overwrites_value_and_ttl(self, full: ConvenientBackend, k: str) -> None:
        """``set`` replaces the value and drops the old TTL, as Redis SET does."""
        full.set(k + "a", b"old", ttl=60)
        assert full.set(k + "a", b"new") is True
        assert full.get(k + "a") == b"new"
        assert full.ttl(k + "a") == math.inf

    def test_set_nx_only_when_absent(self, full: ConvenientBackend, k: str) -> None:
        """``nx=True`` stores only when the key is absent and leaves a present one alone."""
        assert full.set(k + "a", b"first", nx=True) is True
        assert full.set(k + "a", b"second", ttl=60, nx=True) is False
        assert full.get(k + "a") == b"first"
        assert full.ttl(k + "a") == math.inf

    def test_delete_and_exists(self, full: ConvenientBackend, k: str) -> None:
        """``delete`` and ``exists`` answer whether the key held a value."""
        assert full.exists(k + "a") is False
        assert full.delete(k + "a") is False
        full.set(k + "a", b"")
        assert full.exists(k + "a") is True
        assert full.delete(k + "a") is True
        assert full.exists(k + "a") is False
        assert full.get(k + "a") is None

    # -- values and keys -------------------------------------------------------------------

    def test_binary_values(self, full: ConvenientBackend, k: str) -> None:
        """Every byte value round-trips, and empty bytes are a value, not a miss."""
        full.set(k + "all", ALL_BYTES)
        full.set(k + "empty", b"")
        full.set(k + "nul", b"\x00")
        assert full.get(k + "all") == ALL_BYTES
        assert full.get(k + "empty") == b""
        assert full.get(k + "nul") == b"\x00"

    def test_unicode_keys(self, full: ConvenientBackend, k: str) -> None:
        """Non-ASCII keys store, read, scan and delete."""
        full.set(k + UNICODE, b"v")
        assert full.get(k + UNICODE) == b"v"
        assert list(full.scan(escape_glob(k + UNICODE))) == [k + UNICODE]
        assert full.delete(k + UNICODE) is True

    def test_large_value(self, full: ConvenientBackend, k: str) -> None:
        """A 1 MiB value round-trips."""
        value = ALL_BYTES * (MIB // 256)
        full.set(k + "big", value)
        assert full.get(k + "big") == value

    # -- TTLs ------------------------------------------------------------------------------

    def test_ttl_semantics(self, full: ConvenientBackend, k: str) -> None:
        """``ttl`` is ``None`` if absent, ``math.inf`` if persistent, else seconds left."""
        full.set(k + "persistent", b"v")
        full.set(k + "short", b"v", ttl=10)
        assert full.ttl(k + "absent") is None
        assert full.ttl(k + "persistent") == math.inf
        remaining = full.ttl(k + "short")
        assert remaining is not None
        assert 0 < remaining <= 10

    def test_entries_expire(self, full: ConvenientBackend, k: str) -> None:
        """Entries written with a TTL by any method disappear once it runs out."""
        full.set(k + "set", b"v", ttl=SHORT_TTL)
        full.set(k + "expire", b"v")
        assert full.expire(k + "expire", SHORT_TTL) is True
        full.set_many({k + "many1": b"v", k + "many2": b"v"}, ttl=SHORT_TTL)
        full.incr(k + "counter", ttl=SHORT_TTL)
        full.set(k + "kept", b"v", ttl=60)
        time.sleep(PAST_SHORT_TTL)
        assert set(full.scan(escape_glob(k) + "*")) == {k + "kept"}
        assert full.get(k + "set") is None
        assert full.exists(k + "expire") is False
        assert full.get_many([k + "many1", k + "many2"]) == [None, None]
        assert full.ttl(k + "counter") is None
        assert full.get(k + "kept") == b"v"
        assert full.set(k + "set", b"again", nx=True) is True
        assert full.incr(k + "counter") == 1

    def test_expire(self, full: ConvenientBackend, k: str) -> None:
        """``expire`` sets a new TTL on an existing key only."""
        assert full.expire(k + "absent", 10) is False
        assert full.ttl(k + "absent") is None
        full.set(k + "a", b"v", ttl=1000)
        assert full.expire(k + "a", 10) is True
        remaining = full.ttl(k + "a")
        assert remaining is not None
        assert 0 < remaining <= 10
        assert full.get(k + "a") == b"v"

    def test_persist(self, full: ConvenientBackend, k: str) -> None:
        """``persist`` removes a TTL and says whether there was one."""
        full.set(k + "a", b"v", ttl=60)
        full.set(k + "b", b"v")
        assert full.persist(k + "a") is True
        assert full.ttl(k + "a") == math.inf
        assert full.persist(k + "a") is False
        assert full.persist(k + "b") is False
        assert full.persist(k + "absent") is False
        assert full.get(k + "a") == b"v"

    # -- many ------------------------------------------------------------------------------

    def test_get_many_keeps_order_and_gaps(self, full: ConvenientBackend, k: str) -> None:
        """``get_many`` answers in the order asked, ``None`` for misses."""
        full.set(k + "a", b"1")
        full.set(k + "c", b"3")
        keys = [k + "c", k + "b", k + "a", k + "c"]
        assert full.get_many(keys) == [b"3", None, b"1", b"3"]
        assert full.get_many([]) == []

    def test_set_many(self, full: ConvenientBackend, k: str) -> None:
        """``set_many`` stores every item, with the TTL when one is given."""
        full.set_many({k + "a": b"1", k + "b": b""})
        full.set_many({k + "t": b"2"}, ttl=10)
        full.set_many({})
        assert full.get_many([k + "a", k + "b", k + "t"]) == [b"1", b"", b"2"]
        assert full.ttl(k + "a") == math.inf
        remaining = full.ttl(k + "t")
        assert remaining is not None
        assert 0 < remaining <= 10

    def test_delete_many_counts_existing(self, full: ConvenientBackend, k: str) -> None:
        """``delete_many`` counts only the keys that existed."""
        full.set_many({k + "a": b"1", k + "b": b"2", k + "c": b"3"})
        assert full.delete_many([k + "a", k + "missing", k + "b"]) == 2
        assert full.delete_many([]) == 0
        assert full.get_many([k + "a", k + "b", k + "c"]) == [None, None, b"3"]

    # -- incr ------------------------------------------------------------------------------

    def test_incr(self, full: ConvenientBackend, k: str) -> None:
        """``incr`` creates counters at 0, adds any amount and stores ASCII decimals."""
        assert full.incr(k + "n") == 1
        assert full.incr(k + "n", 10) == 11
        assert full.incr(k + "n", -20) == -9
        assert full.get(k + "n") == b"-9"
        full.set(k + "m", b"41")
        assert full.incr(k + "m") == 42
        assert full.ttl(k + "n") == math.inf

    def test_incr_ttl_applies_on_create_only(self, full: ConvenientBackend, k: str) -> None:
        """``incr``'s ``ttl`` applies when it creates the key; an existing TTL stays."""
        full.incr(k + "new", ttl=10)
        full.incr(k + "new", ttl=1000)
        full.set(k + "persistent", b"1")
        full.incr(k + "persistent", ttl=10)
        full.set(k + "expiring", b"1", ttl=10)
        full.incr(k + "expiring")
        for key in ("new", "expiring"):
            remaining = full.ttl(k + key)
            assert remaining is not None
            assert 0 < remaining <= 10, key
        assert full.ttl(k + "persistent") == math.inf

    def test_incr_non_integer_raises_backend_error(self, full: ConvenientBackend, k: str) -> None:
        """``incr`` on a non-integer raises ``BackendError`` and changes nothing."""
        for value in (b"abc", b"1.5", b" 1", b""):
            full.set(k + "v", value)
            with pytest.raises(BackendError):
                full.incr(k + "v")
            assert full.get(k + "v") == value

    # -- scan and delete_pattern -----------------------------------------------------------

    def test_scan_globs(self, full: ConvenientBackend, k: str) -> None:
        """``scan`` follows Redis glob rules, escapes included, whatever the ``count``."""
        full.set_many({k + name: b"v" for name in GLOB_KEYS})
        base = escape_glob(k)
        for pattern, expected in GLOBS:
            found = list(full.scan(base + pattern, count=2))
            assert {key[len(k) :] for key in found} == expected, pattern
        assert set(full.scan(escape_glob(k + "c[x]"))) == {k + "c[x]"}

    def test_scan_skips_deleted(self, full: ConvenientBackend, k: str) -> None:
        """``scan`` does not yield deleted keys."""
        full.set_many({k + "a": b"1", k + "b": b"2"})
        full.delete(k + "b")
        assert set(full.scan(escape_glob(k) + "*")) == {k + "a"}

    def test_delete_pattern_only_deletes_matches(self, full: ConvenientBackend, k: str) -> None:
        """``delete_pattern`` deletes the matches, in batches, and nothing else."""
        full.set_many({k + f"user:{i}": b"v" for i in range(7)})
        full.set_many(
            {
                k + "user": b"kept",
                k + "users:1": b"kept",
                k + "user:*x": b"x",
                k + "user:abx": b"kept",
            }
        )
        assert full.delete_pattern(escape_glob(k + "user:") + "?", batch_size=2) == 7
        assert full.get_many([k + "user", k + "users:1", k + "user:abx"]) == [b"kept"] * 3
        assert full.delete_pattern(escape_glob(k + "user:*x")) == 1
        assert full.get_many([k + "user", k + "users:1", k + "user:abx"]) == [b"kept"] * 3
        assert full.delete_pattern(escape_glob(k) + "nothing*") == 0
        assert set(full.scan(escape_glob(k) + "*")) == {
            k + "user",
            k + "users:1",
            k + "user:abx",
        }

    # -- tag sets ----------------------------------------------------------------------------

    def test_tag_add_members_remove(self, full: ConvenientBackend, k: str) -> None:
        """Tag sets gather members once each, list them sorted and lose them on remove."""
        assert full.tag_members(k + "t") == []
        full.tag_add(k + "t", ["b", "a", UNICODE], 60)
        full.tag_add(k + "t", ["c", "a"], 60)
        assert full.tag_members(k + "t") == sorted(["a", "b", "c", UNICODE])
        assert full.tag_remove(k + "t", ["a", "missing"]) == 1
        assert full.tag_remove(k + "absent", ["a"]) == 0
        assert full.tag_members(k + "t") == sorted(["b", "c", UNICODE])
        assert full.tag_remove(k + "t", ["b", "c", UNICODE]) == 3
        assert full.exists(k + "t") is False

    def test_tag_ttl_only_grows(self, full: ConvenientBackend, k: str) -> None:
        """A new set takes the TTL; later adds extend it but never shorten it."""
        full.tag_add(k + "t", ["a"], 10)
        assert 0 < (full.ttl(k + "t") or 0) <= 10
        full.tag_add(k + "t", ["b"], 1000)
        assert 10 < (full.ttl(k + "t") or 0) <= 1000
        full.tag_add(k + "t", ["c"], 10)
        assert 10 < (full.ttl(k + "t") or 0) <= 1000
        full.tag_add(k + "t", ["d"], None)
        assert full.ttl(k + "t") == math.inf
        full.tag_add(k + "t", ["e"], 10)
        assert full.ttl(k + "t") == math.inf
        full.tag_add(k + "forever", ["a"], None)
        full.tag_add(k + "forever", ["b"], 10)
        assert full.ttl(k + "forever") == math.inf
        assert full.tag_members(k + "t") == ["a", "b", "c", "d", "e"]

    def test_tag_sets_expire(self, full: ConvenientBackend, k: str) -> None:
        """A tag set whose TTL runs out is gone; no members, no key, nothing scanned."""
        full.tag_add(k + "t", ["a", "b"], SHORT_TTL)
        full.tag_add(k + "kept", ["a"], 60)
        time.sleep(PAST_SHORT_TTL)
        assert full.tag_members(k + "t") == []
        assert full.exists(k + "t") is False
        assert set(full.scan(escape_glob(k) + "*")) == {k + "kept"}

    def test_tag_set_is_a_key(self, full: ConvenientBackend, k: str) -> None:
        """Key commands see tag sets; value and tag commands refuse each other's keys."""
        full.tag_add(k + "t1", ["a"], 60)
        full.tag_add(k + "t2", ["a"], None)
        full.tag_add(k + "t3", ["a"], None)
        full.tag_add(k + "t4", ["a"], None)
        full.set(k + "v", b"value")
        assert full.exists(k + "t1") is True
        assert set(full.scan(escape_glob(k) + "t*")) == {k + "t1", k + "t2", k + "t3", k + "t4"}
        assert full.get_many([k + "v", k + "t1"]) == [b"value", None]
        with pytest.raises(BackendError):
            full.get(k + "t1")
        with pytest.raises(BackendError):
            full.tag_add(k + "v", ["a"], 60)
        with pytest.raises(BackendError):
            full.tag_members(k + "v")
        assert full.get(k + "v") == b"value"
        assert full.expire(k + "t2", 30) is True
        assert 0 < (full.ttl(k + "t2") or 0) <= 30
        assert full.persist(k + "t2") is True
        assert full.delete(k + "t1") is True
        assert full.delete_many([k + "t2", k + "v"]) == 2
        assert full.delete_pattern(escape_glob(k) + "t*") == 2
        assert list(full.scan(escape_glob(k) + "*")) == []

    def test_tag_without_members_does_nothing(self, full: ConvenientBackend, k: str) -> None:
        """Adding or removing no members neither creates nor touches the set."""
        full.tag_add(k + "t", [], 60)
        assert full.exists(k + "t") is False
        full.tag_add(k + "t", ["a"], None)
        full.tag_add(k + "t", [], 60)
        assert full.tag_remove(k + "t", []) == 0
        assert full.ttl(k + "t") == math.inf
        assert full.tag_members(k + "t") == ["a"]

    # -- compare-and-delete ----------------------------------------------------------------

    def test_delete_if_equals(self, full: ConvenientBackend, k: str) -> None:
        """Only the value's owner deletes it; anyone else leaves it in place."""
        assert full.delete_if_equals(k + "lock", b"token-1") is False
        full.set(k + "lock", b"token-1", ttl=60)
        assert full.delete_if_equals(k + "lock", b"token-2") is False
        assert full.delete_if_equals(k + "lock", b"token-") is False
        assert full.get(k + "lock") == b"token-1"
        assert full.delete_if_equals(k + "lock", b"token-1") is True
        assert full.exists(k + "lock") is False
        assert full.delete_if_equals(k + "lock", b"token-1") is False

    # -- execute ---------------------------------------------------------------------------

    @pytest.mark.parametrize("transaction", [False, True])
    def test_execute(self, full: ConvenientBackend, k: str, transaction: bool) -> None:
        """A pipeline answers each op like its method, with or without a transaction."""
        check_pipeline(full.execute(pipeline(k), transaction=transaction))
        assert full.get(k + "a") == b"1"
        assert full.get(k + "n") == b"5"
        assert full.exists(k + "b") is False
        assert full.execute([], transaction=transaction) == []

    @pytest.mark.parametrize("transaction", [False, True])
    def test_execute_conditional_ops(
        self, full: ConvenientBackend, k: str, transaction: bool
    ) -> None:
        """``set_if`` compares and sets, ``swap`` answers the old value, ``tag_add`` indexes."""
        check_conditional(full.execute(conditional_ops(k), transaction=transaction))
        assert full.get(k + "c") == b"third"
        assert full.tag_members(k + "tag") == ["x", "y", "z"]
        left = full.ttl(k + "tag")
        assert left is not None
        assert 1 < left <= 60  # the TTL only grows

    def test_set_if_guards(self, full: ConvenientBackend, k: str) -> None:
        """``set_if`` writes only when every guard key holds what it expects."""
        full.set(k + "g1", b"one")
        ok = (k + "g1", b"one")
        results = full.execute(
            [
                Op("set_if", k + "v", value=b"a", guards=(ok, (k + "g2", b"two"))),
                Op("set_if", k + "v", value=b"b", guards=(ok, (k + "g1", None))),
                Op("set_if", k + "v", value=b"c", guards=(ok, (k + "g2", None))),
                Op("get", k + "v"),
            ]
        )
        assert results == [False, False, True, b"c"]

    @pytest.mark.parametrize("transaction", [False, True])
    def test_tag_remove_and_prune(self, full: ConvenientBackend, k: str, transaction: bool) -> None:
        """``tag_remove`` removes members; ``tag_prune`` those whose probe key is gone."""
        full.set(k + "live", b"v")
        full.set(k + "invalidated", TOMBSTONE_PREFIX + b"token")
        full.tag_add(k + "other-tag", ["x"], 60)
        full.tag_add(k + "tag", ["live", "invalidated", "absent", "tagged", "x", "y"], 60)
        probes = ("live", "invalidated", "absent", "other-tag")
        results = full.execute(
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
        assert full.tag_members(k + "tag") == ["live", "tagged", "y"]

    def test_set_if_on_a_tag_set_fails_in_its_slot(self, full: ConvenientBackend, k: str) -> None:
        """``set_if`` on a key holding a tag set reports an error in its slot."""
        full.tag_add(k + "tag", ["m"], 60)
        results = full.execute(
            [Op("set_if", k + "tag", value=b"v", expected=None), Op("get", k + "other")]
        )
        assert isinstance(results[0], BackendError)
        assert results[1] is None

    def test_execute_failing_op_fills_its_slot(self, full: ConvenientBackend, k: str) -> None:
        """A failing op puts its ``BackendError`` in its slot; the others run."""
        check_failure_results(full.execute(ops_with_failure(k)))
        assert full.get(k + "text") == b"not a number"

    # -- ping, stats, close ----------------------------------------------------------------

    def test_ping(self, full: ConvenientBackend) -> None:
        """``ping`` returns a latency in seconds."""
        latency = full.ping()
        assert isinstance(latency, float)
        assert 0 <= latency < math.inf

    def test_stats(self, full: ConvenientBackend, k: str) -> None:
        """``stats`` returns a ``BackendStats`` with fields of the documented types."""
        full.set_many({k + "a": b"1", k + "b": b"2"})
        check_stats(full.stats(), at_least_keys=2)

    def test_usable_after_close(self, full: ConvenientBackend, k: str) -> None:
        """A closed backend can be used again."""
        full.set(k + "a", b"1")
        full.close()
        assert full.set(k + "b", b"2") is True
        assert full.get(k + "b") == b"2"
