"""The admin app over a real socket (uvicorn on a loopback port) against a real redis-server.

A canary admin token and a canary Redis password (in the cache's URL) must never appear in
any answer's body or headers, nor in anything logged or printed -- also while the backend
is down and every route reports its failure.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kirocache import Cache
from kirocache.web import admin_app
from redis_server import RedisServer
from web_helpers import FEED, READ, ROUTES, SEARCH, USERS, auth, serving, traffic

pytestmark = pytest.mark.slow

CANARY_TOKEN = "canary-token-" + secrets.token_hex(12)
CANARY_PASSWORD = "canary-pw-" + secrets.token_hex(12)


def leaks(answer: httpx.Response) -> list[str]:
    """The canaries found in an answer's body or headers."""
    seen = answer.text + "\n" + "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
    return [canary for canary in (CANARY_TOKEN, CANARY_PASSWORD) if canary in seen]


def every_route(client: httpx.Client, token: str | None) -> list[httpx.Response]:
    answers = []
    for method, path, body, _ in ROUTES:
        if method == "GET":
            answers.append(client.get(path, headers=auth(token)))
        else:
            answers.append(client.post(path, headers=auth(token), json=body))
    return answers


def test_every_route_over_a_socket_leaks_no_secret(
    make_redis_server: Callable[..., RedisServer],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_redis_server(password=CANARY_PASSWORD)
    assert CANARY_PASSWORD in server.url
    cache = Cache.from_url(
        server.url, key_prefix="app:", namespaces=[USERS, FEED, SEARCH], socket_timeout=0.5
    )
    traffic(cache)
    app = admin_app(
        cache,
        token=CANARY_TOKEN,
        read_token=READ,
        rate_limit=None,
        auth_failure_limit=None,
        check_every=0.001,  # every health call checks again: the outage is seen at once
    )
    answers: list[httpx.Response] = []
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        answers.append(page)
        admin = every_route(client, CANARY_TOKEN)
        assert [a.status_code for a in admin] == [200] * len(ROUTES), [a.text for a in admin]
        assert cache.get("user:2") is None  # the invalidation went through
        read = every_route(client, READ)
        assert [a.status_code for a in read].count(403) == 3  # reveal, invalidate, cleanup
        # near misses of the canary: refused, and never echoed
        for guess in (CANARY_TOKEN[:-1], CANARY_TOKEN + "x", CANARY_TOKEN.upper()):
            refused = every_route(client, guess)
            assert {a.status_code for a in refused} == {401}
            answers += refused
        answers += admin + read
        answers.append(client.get("/metrics", headers={"Authorization": CANARY_TOKEN}))
        answers.append(client.get("/metrics", headers={"Authorization": f"Basic {CANARY_TOKEN}"}))
        # the backend goes away: every route still answers, without the URL's password
        server.stop()
        down = every_route(client, CANARY_TOKEN)
        health = client.get("/api/cache/health", headers=auth(CANARY_TOKEN))
        assert health.status_code == 503
        assert {a.status_code for a in down} <= {200, 503}
        answers += [*down, health]
    cache.close()
    out, err = capfd.readouterr()
    assert not [leaks(a) for a in answers if leaks(a)]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "GET /api/cache/metrics" in logged or "/api/cache/metrics" in logged  # access log seen
    for canary in (CANARY_TOKEN, CANARY_PASSWORD):
        assert canary not in logged
        assert canary not in out
        assert canary not in err


def test_a_memory_cache_serves_the_dashboard_and_api_over_a_socket() -> None:
    cache = Cache.from_url("memory://", key_prefix="app:")
    cache.set("k", 1)
    app: Any = admin_app(cache, token=CANARY_TOKEN)
    with serving(app) as base, httpx.Client(base_url=base) as client:
        assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")
        keys = client.get("/api/cache/keys", headers=auth(CANARY_TOKEN)).json()
        assert keys["keys"] == ["k"]
        assert client.get("/api/cache/keys").status_code == 401
