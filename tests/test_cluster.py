"""RedisClusterBackend on a real 3-primary cluster: the conformance suite, slots, faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kirocache import Cache
from kirocache.backends._cluster_plan import one_slot
from kirocache.backends._conveniences import AsyncConvenientBackend, ConvenientBackend
from kirocache.backends._glob import escape_glob
from kirocache.backends._protocol import Op
from kirocache.backends.cluster import RedisClusterBackend
from kirocache.exceptions import ConfigurationError
from kirocache.testing._conformance.scenarios import (
    OP_KINDS,
    check_answers,
    conditional_ops,
    pipeline,
)
from kirocache.testing.conformance import BackendConformance

if TYPE_CHECKING:
    from cluster_server import LocalCluster

pytest_plugins = ["cluster_server"]
pytestmark = [pytest.mark.slow, pytest.mark.real_redis]


@pytest.fixture
def backend(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisClusterBackend]:
    """A backend on the session's cluster (keys are per test, under unique prefixes)."""
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    made = RedisClusterBackend(redis_cluster.url, timeout=2.0)
    try:
        yield made
    finally:
        made.close()


def _spans_slots(ops: list[Op]) -> bool:
    return not one_slot(ops)


class TestClusterConformance(BackendConformance):
    """The whole suite with keys spread over the cluster's slots and nodes.

    A transaction whose keys span slots is refused (the one place the suite's scenarios
    meet a cluster's limit); the next class runs every transaction in one slot.
    """

    @pytest.mark.parametrize("transaction", [False, True])
    @pytest.mark.parametrize("kind", sorted(OP_KINDS))
    def test_op_kind(
        self, backend: RedisClusterBackend, k: str, kind: str, transaction: bool
    ) -> None:  # type: ignore[override]
        """Each op kind answers as documented; a cross-slot transaction is refused."""
        for ops, answers in OP_KINDS[kind](k):  # type: ignore[index]
            if transaction and _spans_slots(ops):
                with pytest.raises(ConfigurationError, match="hash tag"):
                    backend.execute(ops, transaction=True)
                check_answers(backend.execute(ops), answers)
            else:
                check_answers(backend.execute(ops, transaction=transaction), answers)

    @pytest.mark.parametrize("transaction", [False, True])
    @pytest.mark.parametrize("kind", sorted(OP_KINDS))
    async def test_aop_kind(  # type: ignore[override]
        self, backend: RedisClusterBackend, ak: str, kind: str, transaction: bool
    ) -> None:
        """Async: each op kind answers as documented; a cross-slot transaction is refused."""
        for ops, answers in OP_KINDS[kind](ak):  # type: ignore[index]
            if transaction and _spans_slots(ops):
                with pytest.raises(ConfigurationError, match="hash tag"):
                    await backend.aexecute(ops, transaction=True)
                check_answers(await backend.aexecute(ops), answers)
            else:
                check_answers(await backend.aexecute(ops, transaction=transaction), answers)

    @pytest.mark.parametrize("transaction", [False, True])
    def test_execute(self, full: ConvenientBackend, k: str, transaction: bool) -> None:
        """A cross-slot transaction is refused before anything runs; a batch passes."""
        if transaction:
            with pytest.raises(ConfigurationError, match="hash tag"):
                full.execute(pipeline(k), transaction=True)
            assert full.get(k + "a") is None
        super().test_execute(full, k, False)

    @pytest.mark.parametrize("transaction", [False, True])
    def test_execute_conditional_ops(
        self, full: ConvenientBackend, k: str, transaction: bool
    ) -> None:
        """A cross-slot transaction is refused before anything runs; a batch passes."""
        if transaction:
            with pytest.raises(ConfigurationError, match="hash tag"):
                full.execute(conditional_ops(k), transaction=True)
            assert full.get(k + "c") is None
        super().test_execute_conditional_ops(full, k, False)

    @pytest.mark.parametrize("transaction", [False, True])
    def test_tag_remove_and_prune(self, full: ConvenientBackend, k: str, transaction: bool) -> None:
        """Probes in other slots: a transaction is refused, a batch reads them first."""
        if transaction:
            ops = [Op("tag_prune", k + "tag", members=("a",), probes=(k + "a",))]
            with pytest.raises(ConfigurationError, match="hash tag"):
                full.execute(ops, transaction=True)
        super().test_tag_remove_and_prune(full, k, False)

    @pytest.mark.parametrize("transaction", [False, True])
    async def test_aexecute(
        self, afull: AsyncConvenientBackend, ak: str, transaction: bool
    ) -> None:
        """Async: a cross-slot transaction is refused before anything runs."""
        if transaction:
            with pytest.raises(ConfigurationError, match="hash tag"):
                await afull.aexecute(pipeline(ak), transaction=True)
            assert await afull.aget(ak + "a") is None
        await super().test_aexecute(afull, ak, False)

    @pytest.mark.parametrize("transaction", [False, True])
    async def test_aexecute_conditional_ops(
        self, afull: AsyncConvenientBackend, ak: str, transaction: bool
    ) -> None:
        """Async: a cross-slot transaction is refused before anything runs."""
        if transaction:
            with pytest.raises(ConfigurationError, match="hash tag"):
                await afull.aexecute(conditional_ops(ak), transaction=True)
            assert await afull.aget(ak + "c") is None
        await super().test_aexecute_conditional_ops(afull, ak, False)


class TestClusterOneSlotConformance(BackendConformance):
    """The whole suite with every key of a test under one hash tag: transactions run."""

    @pytest.fixture
    def k(self, full: ConvenientBackend) -> Iterator[str]:  # type: ignore[override]
        prefix = f"kirocache-conformance:{{{uuid.uuid4().hex}}}:"
        yield prefix
        full.delete_pattern(escape_glob(prefix) + "*")

    @pytest.fixture
    async def ak(self, afull: AsyncConvenientBackend) -> AsyncIterator[str]:  # type: ignore[override]
        prefix = f"kirocache-conformance:{{{uuid.uuid4().hex}}}:"
        yield prefix
        await afull.adelete_pattern(escape_glob(prefix) + "*")


def test_keys_spread_over_every_primary_and_stats_sum_them(
    backend: RedisClusterBackend, redis_cluster: LocalCluster
) -> None:
    prefix = f"spread:{uuid.uuid4().hex}:"
    keys = [f"{prefix}{n}" for n in range(60)]
    results = backend.execute([Op("set", key, b"v") for key in keys])
    assert results == [True] * len(keys)
    assert backend.get_many(keys) == [b"v"] * len(keys)
    stats = backend.stats()
    nodes = stats.extra["nodes"]
    assert isinstance(nodes, dict)
    assert len(nodes) == stats.extra["primaries"] == 3
    assert all(node["keys"] > 0 for node in nodes.values())
    assert stats.keys == sum(node["keys"] for node in nodes.values())
    assert stats.backend == "redis-cluster"
    assert sorted(backend.scan(escape_glob(prefix) + "*")) == sorted(keys)
    assert backend.execute([Op("delete", key) for key in keys]) == [True] * len(keys)


def test_tls_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A cluster speaking only TLS (clients, replication and the bus): rediss+cluster://
    # with the CA verifies every node, sync and async.
    from cluster_server import LocalCluster, cluster_tls_files, tools

    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    server, cli = tools()
    files = cluster_tls_files(tmp_path)
    cluster = LocalCluster(server, cli, tls=files)
    try:
        cluster.start()
        cache = Cache.from_url(
            cluster.url, ssl_ca_certs=files.ca, key_prefix="tls:", check=True, timeout=2
        )
        cache.set_many({f"k{n}": n for n in range(30)})
        assert cache.get_many([f"k{n}" for n in range(30)]) == {f"k{n}": n for n in range(30)}

        async def async_round() -> object:
            value = await cache.aget("k7")
            await cache.backend.aclose()
            return value

        assert asyncio.run(async_round()) == 7
        cache.backend.close()
        with pytest.raises(ConfigurationError, match=r"unreachable|refused|certificate"):
            Cache.from_url(cluster.url, key_prefix="tls:", check=True, timeout=2)  # no CA
    finally:
        cluster.close()


def test_acl_user_on_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every node knows the ACL user; the URL's user and password reach each node the
    # client discovers, and a wrong password is refused in plain words, never shown.
    from cluster_server import LocalCluster, tools

    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    server, cli = tools()
    cluster = LocalCluster(server, cli, acl_user=("app", "app-secret-canary"))
    try:
        cluster.start()
        url = cluster.url.replace("://", "://app:app-secret-canary@")
        cache = Cache.from_url(url, key_prefix="acl:", check=True, timeout=2)
        cache.set_many({f"k{n}": n for n in range(30)})
        assert cache.get_many([f"k{n}" for n in range(30)]) == {f"k{n}": n for n in range(30)}
        assert "app-secret-canary" not in repr(cache.backend)
        cache.backend.close()
        wrong = url.replace("app-secret-canary", "wrong-canary")
        with pytest.raises(ConfigurationError) as caught:
            Cache.from_url(wrong, check=True, timeout=2)
        assert "wrong-canary" not in str(caught.value)
        assert "refused to authenticate" in str(caught.value), str(caught.value)
    finally:
        cluster.close()


def test_a_single_node_url_at_a_cluster_node_says_to_name_the_cluster(
    redis_cluster: LocalCluster,
) -> None:
    # A redis:// URL at one node of a cluster answers MOVED for about two thirds of the
    # keys: the error names the fix instead of failing open in silence.
    from kirocache.backends import RedisBackend
    from kirocache.exceptions import CommandError

    single = RedisBackend(f"redis://127.0.0.1:{redis_cluster.ports[0]}/0")
    try:

        def refusal(key: str) -> CommandError | None:
            try:
                single.get(key)
            except CommandError as exc:
                return exc
            return None

        refused = [e for n in range(20) if (e := refusal(f"moved-hint:{n}")) is not None]
        assert refused  # most keys live on the other primaries
        assert "redis+cluster://" in str(refused[0])
        assert refused[0].outage is False  # a misconfiguration: the breaker does not count it
    finally:
        single.close()
