"""Cluster and Sentinel pieces without a server: URLs, masking, the slot plan, faults."""

from __future__ import annotations

import pytest
from redis.exceptions import ClusterDownError, TryAgainError

from kirocache import Cache
from kirocache.backends import mask_url
from kirocache.backends._cluster_plan import (
    execute_flow,
    get_many_commands,
    get_many_values,
    one_slot,
    slot_of,
)
from kirocache.backends._cluster_urls import parse_nodes_url
from kirocache.backends._config import settings_from_env
from kirocache.backends._protocol import TOMBSTONE_PREFIX, Op
from kirocache.backends.cluster import RedisClusterBackend
from kirocache.backends.sentinel import RedisSentinelBackend
from kirocache.exceptions import BackendError, ConfigurationError
from redis_server import free_port

SECRET = "canary-Secret-9f"

# -- URLs -----------------------------------------------------------------------------------


def test_a_cluster_url_names_its_seeds_user_and_tls() -> None:
    parsed = parse_nodes_url(f"rediss+cluster://app:{SECRET}@h1:7000,[::1]:7001,h3/")
    assert parsed.kind == "cluster"
    assert parsed.tls is True
    assert parsed.nodes == (("h1", 7000), ("::1", 7001), ("h3", 6379))
    assert (parsed.username, parsed.password) == ("app", SECRET)
    assert SECRET not in repr(parsed)


def test_a_sentinel_url_names_the_master_db_and_the_sentinels_password() -> None:
    parsed = parse_nodes_url(
        f"redis+sentinel://:{SECRET}@s1,s2:26380/mymaster/2?sentinel_password=x&ssl=true"
    )
    assert parsed.kind == "sentinel"
    assert parsed.nodes == (("s1", 26379), ("s2", 26380))
    assert (parsed.master, parsed.db, parsed.tls) == ("mymaster", 2, True)
    assert (parsed.password, parsed.sentinel_password) == (SECRET, "x")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+cluster://", "no host"),
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://h1:99999", "host:port"),
        ("redis+cluster://h1:7000?db=1", "only database 0"),
        ("redis+cluster://h1:7000?nope=1", r"unsupported query option\(s\) nope"),
        ("redis+sentinel://s1:26379", "name the master"),
        ("redis+sentinel://s1:26379/m/1/2", "/<master>"),
        ("redis+sentinel://s1/m?ssl=maybe", "true or false"),
        ("redis+cluster+x://h1", "must start with"),
    ],
)
def test_malformed_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_nodes_url(url)


def test_errors_and_reprs_never_show_passwords() -> None:
    url = f"redis+sentinel://u:{SECRET}@s1:1/m?sentinel_password={SECRET}x"
    assert SECRET not in mask_url(url)
    assert SECRET not in mask_url(f"redis+sentinel://s1/m?db=0&sentinel_password={SECRET}")
    assert SECRET not in mask_url(f"redis+cluster://u:{SECRET}@h1:1,h2:2")
    assert SECRET not in repr(RedisClusterBackend(f"redis+cluster://u:{SECRET}@h1:1,h2:2"))
    shown = repr(RedisSentinelBackend(url))
    assert SECRET not in shown
    assert "sentinel_password=***" in shown
    with pytest.raises(ConfigurationError) as caught:
        parse_nodes_url(f"redis+cluster://u:{SECRET}@h1:1/9")
    assert SECRET not in str(caught.value)


def test_redis_url_may_name_a_cluster_or_sentinels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+cluster://h1:7000,h2:7001")
    assert settings_from_env().redis_url == "redis+cluster://h1:7000,h2:7001"
    assert isinstance(Cache.from_url(None).backend, RedisClusterBackend)
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1/mymaster")
    assert isinstance(Cache.from_url(None).backend, RedisSentinelBackend)
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1")
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        settings_from_env()


def test_from_url_takes_the_backend_options_and_refuses_unknown_ones() -> None:
    cache = Cache.from_url("redis+cluster://h1:7000", key_prefix="app:", timeout=1, retries=0)
    assert isinstance(cache.backend, RedisClusterBackend)
    with pytest.raises(ConfigurationError, match="db"):
        Cache.from_url("redis+cluster://h1:7000", db=1)
    with pytest.raises(ConfigurationError, match=r"unknown option.*nope.*known options"):
        Cache.from_url("redis+cluster://h1:7000", nope=1)
    sentinel = Cache.from_url("redis+sentinel://s1/m", sentinel_password="x", db=2)
    assert isinstance(sentinel.backend, RedisSentinelBackend)


def test_tls_files_need_a_tls_url() -> None:
    with pytest.raises(ConfigurationError, match="rediss"):
        RedisClusterBackend("redis+cluster://h1:7000", ssl_ca_certs="/ca.pem")
    RedisClusterBackend("redis+cluster://h1:7000?ssl=true", ssl_ca_certs="/ca.pem")


# -- the slot plan, driven by hand ----------------------------------------------------------


def _two_slots() -> tuple[str, str]:
    first = "a"
    second = next(f"b{n}" for n in range(100) if slot_of(f"b{n}") != slot_of(first))
    return first, second


def test_hash_tags_pick_the_slot() -> None:
    assert slot_of("{user:1}:profile") == slot_of("{user:1}:orders") == slot_of("user:1")
    assert one_slot([Op("get", "{t}a"), Op("set_if", "{t}b", guards=(("{t}c", None),))])
    assert not one_slot([Op("get", "a"), Op("get", _two_slots()[1])])


def test_get_many_is_one_mget_per_slot_in_the_callers_order() -> None:
    keys = ["{x}1", "{y}1", "{x}2"]
    commands, places = get_many_commands(keys)
    assert commands == [("MGET", "{x}1", "{x}2"), ("MGET", "{y}1")]
    assert get_many_values(3, [[b"1", None], [b"2"]], places) == [b"1", b"2", None]


def test_a_guard_in_another_slot_is_read_first_and_a_changed_one_drops_the_write() -> None:
    key, stamp = _two_slots()
    ops = [Op("get", key), Op("set_if", key, b"v", guards=((stamp, b"s1"),))]
    flow = execute_flow(ops)
    assert next(flow) == [("GET", stamp)]
    assert flow.send([b"s2"]) == [("GET", key)]  # the write is not sent at all
    with pytest.raises(StopIteration) as done:
        flow.send([b"old"])
    assert done.value.value == [b"old", 0]


def test_a_guard_that_holds_lets_the_write_run_on_its_key_alone() -> None:
    key, stamp = _two_slots()
    flow = execute_flow([Op("set_if", key, b"v", guards=((stamp, b"s1"),))])
    assert next(flow) == [("GET", stamp)]
    [write] = flow.send([b"s1"])
    assert write[0] == "EVAL"
    assert write[2:4] == (1, key)  # one key: the guard was checked already
    with pytest.raises(StopIteration) as done:
        flow.send([1])
    assert done.value.value == [1]


def test_a_guard_written_earlier_in_the_batch_is_read_after_that_write() -> None:
    key, stamp = _two_slots()
    ops = [Op("set", stamp, b"s1", nx=True), Op("set_if", key, b"v", guards=((stamp, b"s1"),))]
    flow = execute_flow(ops)
    assert next(flow)[0][:2] == ("SET", stamp)
    assert flow.send([True]) == [("GET", stamp)]


def test_probes_in_other_slots_prune_only_gone_members() -> None:
    tag, probe = _two_slots()
    gone, kept = probe, probe + "x"
    op = Op("tag_prune", tag, members=("a", "b", "c"), probes=(gone, kept, tag + "y"))
    flow = execute_flow([op])
    reads = next(flow)
    assert [key for _, key in reads] == [gone, kept, tag + "y"]
    pruned = flow.send([None, b"live", TOMBSTONE_PREFIX + b"t"])
    assert pruned == [("SREM", tag, "a", "c")]


def test_an_unknown_op_is_refused_before_any_round() -> None:
    flow = execute_flow([Op("get", "a"), Op("nope", "b")])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="nope"):
        next(flow)


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [ClusterDownError("CLUSTERDOWN The cluster is down"), TryAgainError("TRYAGAIN")]
)
def test_clusterdown_and_tryagain_are_outages(error: Exception) -> None:
    backend = RedisClusterBackend("redis+cluster://127.0.0.1:1")
    made = backend._error("get", error)
    assert made.outage is True


def test_a_cluster_nobody_answers_fails_open() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    backend = RedisClusterBackend(url, retries=0)
    with pytest.raises(BackendError) as caught:
        backend.get("k")
    assert caught.value.outage is True
    cache = Cache(backend)
    assert cache.get("k") is None
    assert cache.set("k", 1) is False


async def test_a_cluster_nobody_answers_fails_open_async() -> None:
    backend = RedisClusterBackend(f"redis+cluster://127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(BackendError) as caught:
        await backend.aget_many(["a", "b"])
    assert caught.value.outage is True
    assert await Cache(backend).aget("k") is None
    await backend.aclose()
