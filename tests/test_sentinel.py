"""RedisSentinelBackend on a real master, replica and three Sentinels: the conformance suite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from kirocache import Cache
from kirocache.backends.sentinel import RedisSentinelBackend
from kirocache.exceptions import ConfigurationError
from kirocache.testing.conformance import BackendConformance

if TYPE_CHECKING:
    from cluster_server import LocalSentinel

pytest_plugins = ["cluster_server"]
pytestmark = [pytest.mark.slow, pytest.mark.real_redis]


@pytest.fixture
def backend(
    redis_sentinel: LocalSentinel, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisSentinelBackend]:
    """A backend on the session's Sentinel deployment."""
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    made = RedisSentinelBackend(redis_sentinel.url, timeout=2.0)
    try:
        yield made
    finally:
        made.close()


class TestSentinelConformance(BackendConformance):
    """The whole suite on the master the Sentinels name."""


def test_from_url_reaches_the_master_and_masks_passwords(redis_sentinel: LocalSentinel) -> None:
    cache = Cache.from_url(redis_sentinel.url, key_prefix="sentinel-url:", check=True)
    try:
        assert isinstance(cache.backend, RedisSentinelBackend)
        assert cache.set("k", {"v": 1}) is True
        assert cache.get("k") == {"v": 1}
        assert cache.backend.stats().extra["role"] == "master"
        assert redis_sentinel.password not in repr(cache.backend)
        assert "sentinel_password=***" in repr(cache.backend)
    finally:
        cache.delete_pattern("*")
        cache.backend.close()


def test_a_wrong_sentinel_password_is_refused_by_the_check(redis_sentinel: LocalSentinel) -> None:
    url = redis_sentinel.url.replace(redis_sentinel.password or "", "wrong-canary-secret")
    with pytest.raises(ConfigurationError) as caught:
        Cache.from_url(url, check=True)
    assert "wrong-canary-secret" not in str(caught.value)


def test_env_redis_url_may_name_sentinels(
    redis_sentinel: LocalSentinel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_sentinel.url)
    cache = Cache.from_url(None, key_prefix="sentinel-env:")
    try:
        assert isinstance(cache.backend, RedisSentinelBackend)
        cache.set("k", 2)
        assert cache.get("k") == 2
    finally:
        cache.delete_pattern("*")
        cache.backend.close()


def test_more_threads_than_connections_wait_their_turn(
    redis_sentinel: LocalSentinel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two connections, sixteen threads: a thread finding both in use waits for one (as on
    # RedisBackend) instead of being refused at once ("Too many connections") and failing.
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    made = RedisSentinelBackend(redis_sentinel.url, timeout=2.0, max_connections=2, pool_timeout=30)
    errors: list[BaseException] = []
    done: list[int] = []
    start = threading.Barrier(16)

    def work(n: int) -> None:
        start.wait()
        try:
            for i in range(40):
                made.set_many({f"pool:{n}:{i}": b"v"}, ttl=60)
                assert made.get(f"pool:{n}:{i}") == b"v"
            done.append(n)
        except BaseException as exc:  # every failure is what the test counts
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(done) == list(range(16))
        pool = made._client.connection_pool
        assert len(pool._connections) <= 2  # the bound held: nobody opened a third
    finally:
        made.delete_pattern("pool:*")
        made.close()
