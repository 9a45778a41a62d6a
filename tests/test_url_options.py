"""redis-py parity for URLs: the connection options redis-py reads from a query string."""

from __future__ import annotations

import pytest

from kirocache import Cache
from kirocache.backends import RedisBackend
from kirocache.backends._config import parse_redis_url
from kirocache.exceptions import ConfigurationError


def test_redis_pys_query_options_are_parsed_by_its_own_parsers() -> None:
    url = parse_redis_url(
        "redis://h:6379/2?socket_timeout=1.5&socket_connect_timeout=0.5&health_check_interval=10"
        "&socket_keepalive=true&max_connections=7&timeout=0.75&client_name=app"
    )
    assert url.db == 2
    assert url.client_name == "app"
    assert url.options == {
        "socket_timeout": 1.5,
        "socket_connect_timeout": 0.5,
        "health_check_interval": 10,
        "socket_keepalive": True,
        "max_connections": 7,
        "timeout": 0.75,
    }


def test_the_backend_takes_them_where_its_arguments_were_left_as_they_are(redis_url: str) -> None:
    backend = RedisBackend(f"{redis_url}?max_connections=7&health_check_interval=5&timeout=1.5")
    try:
        pool = backend._client.connection_pool
        assert pool.max_connections == 7
        assert pool.connection_kwargs["health_check_interval"] == 5
        assert backend.ping() >= 0  # and it still works
    finally:
        backend.close()
    explicit = RedisBackend(f"{redis_url}?max_connections=7", max_connections=9)
    try:
        assert explicit._client.connection_pool.max_connections == 9  # the argument wins
    finally:
        explicit.close()


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("socket_timeout=soon", "socket_timeout='soon' is not valid"),
        ("max_connections=many", "max_connections='many' is not valid"),
        ("retry_on_timeout=true", "retries="),
        ("protocol=3", "protocol must be 2"),
        ("ssl_check_hostname=true", "need a rediss:// URL"),
        ("bogus=1", "unsupported query option(s) bogus"),
    ],
)
def test_bad_options_are_clear_errors(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Cache.from_url(f"redis://127.0.0.1:1/0?{query}")
    assert words in str(refused.value)


def test_tls_options_on_a_tls_url() -> None:
    url = parse_redis_url("rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    assert url.options == {"ssl_cert_reqs": "none", "ssl_check_hostname": False}


QUERY = (
    "timeout=0.5&max_connections=20&health_check_interval=10&socket_connect_timeout=0.2"
    "&socket_keepalive=true"
)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://127.0.0.1:1/0?{QUERY}",
        f"redis+cluster://127.0.0.1:1,127.0.0.1:2?{QUERY}",
        f"redis+sentinel://127.0.0.1:1/mymaster?{QUERY}",
    ],
)
def test_one_query_means_the_same_on_every_redis_backend(url: str) -> None:
    backend = Cache.from_url(url).backend
    assert backend._deadline == 0.5
    client = getattr(backend, "_lazy", None)
    kwargs = (
        client._settings
        if client is not None
        else backend._client.connection_pool.connection_kwargs
    )
    assert kwargs["health_check_interval"] == 10
    assert kwargs["socket_connect_timeout"] == 0.2
    assert kwargs["socket_keepalive"] is True
    if client is None:
        assert backend._client.connection_pool.max_connections == 20
    else:
        assert kwargs["max_connections"] == 20


def test_a_tls_option_on_a_plain_url_is_refused_even_when_it_maps_onto_an_argument() -> None:
    with pytest.raises(ConfigurationError, match=r"ssl_cert_reqs need a rediss:// URL"):
        RedisBackend("redis://127.0.0.1:1/0?ssl_cert_reqs=none")
