"""RedisClusterBackend's options: the per-node breakers' and the URL's, keyword arguments first.

The constructor does no I/O, so what reaches the clients and the breakers is read from the
backend it builds; the tests that need a node to answer or to die are marked ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from kirocache import Cache
from kirocache.backends import RedisBackend, TieredBackend
from kirocache.backends.cluster import RedisClusterBackend
from kirocache.backends.sentinel import RedisSentinelBackend
from kirocache.exceptions import BackendError, ConfigurationError, NodeUnavailableError
from kirocache.exporters._nodes import NodeReader
from kirocache.monitoring import HealthChecker

if TYPE_CHECKING:
    from cluster_server import LocalCluster

pytest_plugins = ["cluster_server"]

SEEDS = "redis+cluster://127.0.0.1:1,127.0.0.1:2"
NODE = "127.0.0.1:7000"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)


def _settings(backend: RedisClusterBackend) -> dict[str, Any]:
    settings: dict[str, Any] = backend._lazy._settings
    return settings


# -- the per-node breakers' options ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"node_failure_threshold": 0}, "node_failure_threshold"),
        ({"node_failure_threshold": True}, "node_failure_threshold"),
        ({"node_failure_threshold": 2.5}, "node_failure_threshold"),
        ({"node_retry_interval": 0}, "node_retry_interval"),
        ({"node_retry_interval": -1.0}, "node_retry_interval"),
        ({"node_retry_interval": float("nan")}, "node_retry_interval"),
        ({"node_retry_interval": "soon"}, "node_retry_interval"),
    ],
)
def test_bad_node_options_are_refused_by_name(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        RedisClusterBackend(SEEDS, **options)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("node_failure_threshold=0", "node_failure_threshold"),
        ("node_failure_threshold=many", "node_failure_threshold='many' is not valid"),
        ("node_retry_interval=-1", "node_retry_interval"),
        ("node_retry_interval=later", "node_retry_interval='later' is not valid"),
    ],
)
def test_bad_node_options_in_the_url_are_refused_by_name(query: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        RedisClusterBackend(f"{SEEDS}?{query}")


def test_the_defaults_are_three_failures_and_half_a_second() -> None:
    nodes = RedisClusterBackend(SEEDS)._nodes
    assert (nodes.failure_threshold, nodes.retry_interval) == (3, 0.5)
    assert nodes.failure(NODE) is False  # one failure of three


def test_the_options_reach_the_breakers() -> None:
    backend = RedisClusterBackend(
        SEEDS, node_failure_threshold=1, node_retry_interval=timedelta(seconds=2)
    )
    nodes = backend._nodes
    assert nodes.retry_interval == 2.0
    assert nodes.failure(NODE) is True  # one failure opens it
    assert backend.node_states()[NODE]["state"] == "open"
    assert backend.node_states()[NODE]["openings"] == 1


def test_the_url_sets_them_and_keyword_arguments_win() -> None:
    url = f"{SEEDS}?node_failure_threshold=1&node_retry_interval=2"
    nodes = RedisClusterBackend(url)._nodes
    assert (nodes.failure_threshold, nodes.retry_interval) == (1, 2.0)
    nodes = RedisClusterBackend(url, node_failure_threshold=5, node_retry_interval=0.25)._nodes
    assert (nodes.failure_threshold, nodes.retry_interval) == (5, 0.25)


def test_cache_from_url_passes_them_on() -> None:
    cache = Cache.from_url(SEEDS, node_failure_threshold=2)
    assert isinstance(cache.backend, RedisClusterBackend)
    assert cache.backend._nodes.failure_threshold == 2


# -- the URL's connection options --------------------------------------------------------------


def test_a_cluster_url_takes_a_redis_urls_connection_options() -> None:
    backend = RedisClusterBackend(
        f"{SEEDS}?timeout=0.5&max_connections=20&health_check_interval=10"
        "&socket_connect_timeout=0.2&socket_timeout=0.3&socket_keepalive=true"
    )
    settings = _settings(backend)
    assert backend._deadline == 0.5
    assert settings["max_connections"] == 20
    assert settings["health_check_interval"] == 10
    assert settings["socket_connect_timeout"] == 0.2
    assert settings["socket_timeout"] == 0.3
    assert settings["socket_keepalive"] is True


def test_keyword_arguments_win_over_a_cluster_url() -> None:
    backend = RedisClusterBackend(
        f"{SEEDS}?timeout=0.5&max_connections=20&health_check_interval=10"
        "&socket_connect_timeout=0.2",
        timeout=1.5,
        max_connections=7,
        health_check_interval=3,
        connect_timeout=0.1,
    )
    settings = _settings(backend)
    assert backend._deadline == 1.5
    assert settings["max_connections"] == 7
    assert settings["health_check_interval"] == 3
    assert settings["socket_connect_timeout"] == 0.1


def test_tls_options_of_a_cluster_url() -> None:
    backend = RedisClusterBackend(
        "rediss+cluster://127.0.0.1:1?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem"
        "&ssl_check_hostname=false"
    )
    settings = _settings(backend)
    assert settings["ssl_cert_reqs"] == "none"
    assert settings["ssl_ca_certs"] == "/ca.pem"
    assert settings["ssl_check_hostname"] is False
    chosen = RedisClusterBackend(
        "rediss+cluster://127.0.0.1:1?ssl_cert_reqs=none", ssl_cert_reqs="optional"
    )
    assert _settings(chosen)["ssl_cert_reqs"] == "optional"


def test_redis_url_configures_a_cluster_with_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"{SEEDS}?timeout=0.5&node_failure_threshold=1")
    backend = Cache.from_url(None).backend
    assert isinstance(backend, RedisClusterBackend)
    assert backend._deadline == 0.5
    assert backend._nodes.failure_threshold == 1


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("ssl=true&ssl_ciphers=HIGH", "ssl_ciphers do not apply here"),
        ("ssl=true&ssl_min_version=3", "ssl_min_version do not apply here"),
        ("ssl_check_hostname=true", "need a rediss:// URL"),
        ("ssl_cert_reqs=none", "need a rediss:// URL"),
        ("protocol=3", "protocol must be 2"),
        ("retry_on_timeout=true", "retries="),
        ("timeout=soon", "timeout='soon' is not valid"),
        ("db=2", "only database 0"),
        ("sentinel_username=x", "unsupported query option(s) sentinel_username"),
    ],
)
def test_options_a_cluster_cannot_take_are_refused_by_name(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Cache.from_url(f"{SEEDS}?{query}")
    assert words in str(refused.value)


def test_a_sentinel_url_takes_them_too() -> None:
    url = "redis+sentinel://127.0.0.1:1/mymaster?timeout=0.5&max_connections=20"
    backend = RedisSentinelBackend(f"{url}&health_check_interval=10&socket_keepalive=true")
    pool = backend._client.connection_pool
    assert backend._deadline == 0.5
    assert pool.max_connections == 20
    assert pool.connection_kwargs["health_check_interval"] == 10
    assert pool.connection_kwargs["socket_keepalive"] is True
    explicit = RedisSentinelBackend(url, max_connections=9, timeout=1.0)
    assert explicit._client.connection_pool.max_connections == 9
    assert explicit._deadline == 1.0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("node_failure_threshold=1", "unsupported query option(s) node_failure_threshold"),
        ("ssl_ciphers=HIGH", "need a rediss:// URL"),
        ("protocol=3", "protocol must be 2"),
    ],
)
def test_a_sentinel_url_refuses_what_it_cannot_take(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RedisSentinelBackend(f"redis+sentinel://127.0.0.1:1/mymaster?{query}")
    assert words in str(refused.value)


# -- TieredBackend shows the cluster's nodes -------------------------------------------------


@pytest.fixture
def tiered_cluster() -> Iterator[TieredBackend]:
    tiered = TieredBackend(RedisClusterBackend(SEEDS, node_failure_threshold=1))
    try:
        yield tiered
    finally:
        tiered.close()


def test_a_tiered_backend_forwards_the_clusters_node_states(
    tiered_cluster: TieredBackend,
) -> None:
    remote = tiered_cluster.remote
    assert isinstance(remote, RedisClusterBackend)
    remote._nodes.failure(NODE)
    assert tiered_cluster.node_states() == remote.node_states()
    assert tiered_cluster.node_states()[NODE]["state"] == "open"
    # the exporters and the health check read the nodes through it
    cache = Cache(backend=tiered_cluster)
    nodes = NodeReader(cache, stats=False).nodes()
    assert [(node.name, node.state) for node in nodes] == [(NODE, "open")]
    assert HealthChecker(cache).check().nodes[NODE]["state"] == "open"


def test_a_tiered_backend_on_one_node_has_no_nodes() -> None:
    tiered = TieredBackend(RedisBackend("redis://127.0.0.1:1/0"))
    try:
        assert tiered.node_states() == {}
    finally:
        tiered.close()


# -- on a real cluster -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.real_redis
def test_stats_carry_each_nodes_breaker(redis_cluster: LocalCluster) -> None:
    backend = RedisClusterBackend(redis_cluster.url, timeout=2.0)
    try:
        nodes = backend.stats().extra["nodes"]
        assert len(nodes) == 3
        for name, figures in nodes.items():
            assert figures["breaker"]["state"] == "closed"
            assert figures["breaker"]["role"] == "primary"
            assert figures["keys"] is not None
            assert name in backend.node_states()
    finally:
        backend.close()


@pytest.mark.slow
@pytest.mark.real_redis
def test_one_failure_opens_a_dead_nodes_breaker_with_a_threshold_of_one(
    fresh_cluster: LocalCluster,
) -> None:
    backend = RedisClusterBackend(
        fresh_cluster.url, timeout=2.0, retries=0, node_failure_threshold=1, node_retry_interval=60
    )
    try:
        backend.set("victim", b"x")
        victim = fresh_cluster.primary_of("victim")
        name = f"127.0.0.1:{victim.port}"
        assert backend.node_states()[name]["state"] == "closed"
        for node in [*fresh_cluster.replicas_of(victim), victim]:
            fresh_cluster.kill(node)
        with pytest.raises(BackendError):
            backend.get("victim")
        assert backend.node_states()[name]["state"] == "open"
        with pytest.raises(NodeUnavailableError):
            backend.get("victim")  # at once: the breaker refuses it
        others = [n for n in backend.node_states() if n != name]
        assert others
        assert all(backend.node_states()[n]["state"] == "closed" for n in others)
    finally:
        backend.close()
