"""The Starlette/FastAPI integration: the lifespan, the dependency, run as a server runs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import kirocache
from contrib.contrib_support import StartupFailed, served
from kirocache import Cache, ConfigurationError, cached
from kirocache.contrib.starlette import STATE_KEY, CacheLifespan, request_cache
from kirocache.testing import use_cache
from redis_server import free_port

CacheDep = Annotated[Cache, Depends(request_cache)]


@pytest.fixture(autouse=True)
def _restore_the_default_cache() -> Any:
    """The lifespan sets the process default; put the previous one back after each test."""
    with use_cache():
        yield


def fastapi_app(lifespan: CacheLifespan) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.post("/visits/{page}")
    async def visit(page: str, cache: CacheDep) -> dict[str, int | None]:
        return {"visits": await cache.aincr(f"visits:{page}")}

    @app.get("/sync/{key}")
    def read(key: str, cache: CacheDep) -> dict[str, Any]:  # runs in a worker thread
        return {"value": cache.get(key)}

    return app


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.real_redis)])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    redis_url: str = request.getfixturevalue("redis_url")
    return redis_url


async def test_fastapi_endpoints_get_the_cache_through_the_dependency(url: str) -> None:
    lifespan = CacheLifespan(url, key_prefix="fastapi-test:")
    async with served(fastapi_app(lifespan)) as client:
        assert (await client.post("/visits/home")).json() == {"visits": 1}
        assert (await client.post("/visits/home")).json() == {"visits": 2}
        await lifespan.cache.aset("greeting", "hello")
        assert (await client.get("/sync/greeting")).json() == {"value": "hello"}
        assert await lifespan.cache.aget("visits:home") == 2
        await lifespan.cache.adelete_pattern("*")


async def test_starlette_endpoints_read_the_cache_from_the_request() -> None:
    async def home(request: Request) -> JSONResponse:
        cache = request_cache(request)
        return JSONResponse({"same": cache is request.state.kirocache})

    lifespan = CacheLifespan("memory://")
    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
    async with served(app) as client:
        assert (await client.get("/")).json() == {"same": True}


async def test_the_lifespan_makes_the_cache_the_default_for_cached_functions() -> None:
    calls: list[int] = []

    @cached(prefix="square:", key="{n}")
    async def square(n: int) -> int:
        calls.append(n)
        return n * n

    lifespan = CacheLifespan("memory://")
    app = FastAPI(lifespan=lifespan)

    @app.get("/square/{n}")
    async def endpoint(n: int) -> dict[str, int]:
        return {"square": await square(n)}

    async with served(app) as client:
        assert kirocache.get_cache() is lifespan.cache
        assert (await client.get("/square/7")).json() == {"square": 49}
        assert (await client.get("/square/7")).json() == {"square": 49}
        assert calls == [7]
        assert await lifespan.cache.aget("square:7") == 49


async def test_a_ready_cache_is_used_as_is_and_set_default_can_be_off() -> None:
    cache = Cache.from_url("memory://", key_prefix="ready:")
    before = kirocache.get_cache()
    lifespan = CacheLifespan(cache, set_default=False)
    assert lifespan.cache is cache
    async with served(fastapi_app(lifespan)) as client:
        assert (await client.post("/visits/a")).json() == {"visits": 1}
        assert kirocache.get_cache() is before
    assert cache.backend.get("ready:visits:a") == b"1"


def test_options_with_a_ready_cache_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="ready Cache"):
        CacheLifespan(Cache.from_url("memory://"), key_prefix="x:")


def test_a_bad_url_fails_when_the_lifespan_is_built() -> None:
    with pytest.raises(ConfigurationError, match="unsupported cache URL"):
        CacheLifespan("memcached://localhost")


async def test_startup_fails_fast_on_an_unreachable_server_naming_it() -> None:
    port = free_port()  # nothing listens there
    url = f"redis://app:hunter2@127.0.0.1:{port}/0"
    lifespan = CacheLifespan(url, connect_timeout=0.2, retries=0)
    with pytest.raises(StartupFailed) as failed:
        async with served(fastapi_app(lifespan)):
            pytest.fail("the app started without its cache")
    error = failed.value.__cause__
    assert isinstance(error, ConfigurationError)
    message = str(error)
    assert f"redis://app:***@127.0.0.1:{port}/0" in message
    assert "start-up check of the cache failed" in message
    assert "hunter2" not in message
    assert "hunter2" not in str(failed.value)  # the ASGI failure message (a traceback)


@pytest.fixture
def acl_user(redis_url: str) -> Any:
    """A user of the session's redis-server confined to keys under ``theirs:``; removed after."""
    import uuid

    import redis

    name, password = f"kc-lifespan-{uuid.uuid4().hex[:8]}", "canary-" + uuid.uuid4().hex
    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", name, "on", f">{password}", "resetkeys", "~theirs:*",
            "resetchannels", "&*", "+@all", "-@dangerous",
        )  # fmt: skip
        try:
            yield name, password
        finally:
            admin.execute_command("ACL", "DELUSER", name)


async def test_startup_fails_on_a_wrong_password_or_an_acl_outside_the_prefix(
    redis_url: str, acl_user: tuple[str, str]
) -> None:
    from urllib.parse import urlsplit

    name, password = acl_user
    where = urlsplit(redis_url).netloc
    cases = {
        "wrong password": (f"redis://{name}:not-{password}@{where}/0", "theirs:"),
        "ACL outside the prefix": (f"redis://{name}:{password}@{where}/0", "mine:"),
    }
    for case, (url, prefix) in cases.items():
        lifespan = CacheLifespan(url, key_prefix=prefix, retries=0)
        with pytest.raises(StartupFailed) as failed:
            async with served(fastapi_app(lifespan)):
                pytest.fail(f"{case}: the app started")
        message = str(failed.value.__cause__)
        assert f"redis://{name}:***@{where}/0" in message, case
        assert password not in message + str(failed.value), case
    allowed = CacheLifespan(f"redis://{name}:{password}@{where}/0", key_prefix="theirs:")
    async with served(fastapi_app(allowed)) as client:
        assert (await client.post("/visits/home")).json() == {"visits": 1}
        await allowed.cache.adelete("visits:home")


async def test_check_false_starts_without_the_server() -> None:
    lifespan = CacheLifespan(f"redis://127.0.0.1:{free_port()}/0", check=False, retries=0)
    async with served(fastapi_app(lifespan)) as client:
        # the cache fails open: the endpoint answers, the counter is just not counted
        assert (await client.post("/visits/home")).json() == {"visits": None}


async def test_shutdown_closes_the_cache_async_and_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache.from_url("memory://")
    closed: list[str] = []
    real_close, real_aclose = cache.close, cache.aclose

    def close() -> None:
        closed.append("close")
        real_close()

    async def aclose() -> None:
        closed.append("aclose")
        await real_aclose()

    monkeypatch.setattr(cache, "close", close)
    monkeypatch.setattr(cache, "aclose", aclose)
    async with served(fastapi_app(CacheLifespan(cache))) as client:
        await client.post("/visits/home")
        assert closed == []
    assert closed == ["aclose", "close"]

    closed.clear()
    async with served(fastapi_app(CacheLifespan(cache, close=False))):
        pass
    assert closed == []


async def test_shutdown_releases_the_redis_connections(redis_url: str) -> None:
    import redis.asyncio

    lifespan = CacheLifespan(redis_url, client_name="kirocache-lifespan-test")
    async with redis.asyncio.Redis.from_url(redis_url) as admin:

        async def ours() -> int:
            clients = await admin.client_list()
            return sum(c.get("name") == "kirocache-lifespan-test" for c in clients)

        async with served(fastapi_app(lifespan)) as client:
            await client.post("/visits/home")
            assert (await client.get("/sync/visits:home")).json() == {"value": 1}
            assert await ours() >= 1
            await lifespan.cache.adelete("visits:home")
        assert await ours() == 0


async def test_your_own_lifespan_can_enter_the_caches() -> None:
    cache_lifespan = CacheLifespan("memory://")
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("own start-up")
        async with cache_lifespan(app) as state:
            yield {**state, "greeting": "hello"}
        events.append("own shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def home(request: Request, cache: CacheDep) -> dict[str, Any]:
        return {"greeting": request.state.greeting, "ours": cache is cache_lifespan.cache}

    async with served(app) as client:
        assert (await client.get("/")).json() == {"greeting": "hello", "ours": True}
    assert events == ["own start-up", "own shutdown"]


async def test_the_lifespans_own_dependency_needs_no_lifespan_state() -> None:
    import httpx

    lifespan = CacheLifespan("memory://")
    app = FastAPI(lifespan=lifespan)

    @app.get("/{key}")
    # a default rather than Annotated: with postponed annotations FastAPI cannot see locals
    async def read(key: str, cache: Cache = Depends(lifespan.dependency)) -> Any:  # noqa: B008
        return {"value": await cache.aget(key)}

    async with lifespan(app):  # entered by hand: the transport runs no lifespan
        await lifespan.cache.aset("greeting", "hello")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/greeting")).json() == {"value": "hello"}
        assert kirocache.get_cache() is lifespan.cache


def test_the_dependency_without_the_lifespan_says_what_is_missing() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "state": {}})
    with pytest.raises(ConfigurationError, match=r"lifespan=CacheLifespan\(\.\.\.\)"):
        request_cache(request)
    request.state.kirocache = "not a cache"
    with pytest.raises(ConfigurationError):
        request_cache(request)
    assert STATE_KEY == "kirocache"
