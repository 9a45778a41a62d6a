"""The examples run: each app is imported from examples/ and driven as its users would."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from contrib.contrib_support import EXAMPLES, served
from kirocache import BackendError, ConfigurationError
from kirocache.testing import use_cache
from redis_server import free_port

ADMIN_TOKEN = "example-admin-token-" + "a" * 24


def load(path: Path) -> ModuleType:
    """Import an example's module afresh, under a name of its own."""
    name = f"example_{path.parent.name}_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_the_default_cache() -> Iterator[None]:
    """The examples set the process default cache; put the previous one back."""
    with use_cache():
        yield


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.real_redis)])
def redis_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """``REDIS_URL`` as the examples read it: unset (memory), then the real server."""
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "KIROCACHE_URL"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    monkeypatch.setenv("REDIS_URL", url)
    return url


# -- FastAPI ---------------------------------------------------------------------------------


async def test_the_fastapi_example(redis_env: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIROCACHE_ADMIN_TOKEN", raising=False)
    example = load(EXAMPLES / "fastapi_app" / "main.py")
    async with served(example.app) as client:
        await example.lifespan.cache.adelete_pattern("*")
        first = await client.get("/courses/1")
        assert first.json() == {"id": 1, "title": "Python basics"}
        assert (await client.get("/courses/1")).json() == first.json()
        assert example.loads == [1]  # the second read was a hit
        assert (await client.get("/courses/99")).status_code == 404
        renamed = await client.put("/courses/1", params={"title": "Python for everyone"})
        assert renamed.status_code == 200
        assert (await client.get("/courses/1")).json()["title"] == "Python for everyone"
        assert example.loads == [1, 99, 1]  # invalidated, so loaded again
        assert (await client.post("/visits/home")).json() == {"page_visits": 1}
        assert (await client.post("/visits/home")).json() == {"page_visits": 2}
        assert (await client.get("/health")).json()["cache_ping_ms"] >= 0
        assert (await client.get("/admin/cache/api/cache/health")).status_code == 404
        await example.lifespan.cache.adelete_pattern("*")


async def test_the_fastapi_example_mounts_the_admin_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "KIROCACHE_READ_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIROCACHE_ADMIN_TOKEN", ADMIN_TOKEN)
    example = load(EXAMPLES / "fastapi_app" / "main.py")
    async with served(example.app) as client:
        await client.get("/courses/2")
        health = "/admin/cache/api/cache/health"
        assert (await client.get(health)).status_code == 401
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answer = await client.get(health, headers=auth)
        assert answer.status_code == 200
        assert ADMIN_TOKEN not in answer.text
        key = "/admin/cache/api/cache/keys/course:2"
        assert (await client.get(key, headers=auth)).status_code == 200
        removed = await client.post(
            "/admin/cache/api/cache/invalidate", json={"key": "course:2"}, headers=auth
        )
        assert removed.status_code == 200
        assert await example.lifespan.cache.aget("course:2") is None


@pytest.mark.slow
def test_the_fastapi_example_refuses_to_start_on_uvicorn_without_its_cache() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "KIROCACHE_"))}
    env["REDIS_URL"] = f"redis://app:hunter2@127.0.0.1:{free_port()}/0"
    command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
    command += ["--app-dir", str(EXAMPLES / "fastapi_app")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "start-up check of the cache failed" in done.stderr
    assert "redis://app:***@127.0.0.1:" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


# -- Django ----------------------------------------------------------------------------------


@pytest.fixture
def shop(django_settings: None, redis_env: str | None) -> Iterator[ModuleType]:
    """The example project's settings in force (its CACHES on memory or Redis)."""
    import importlib

    from django.apps import apps
    from django.core.cache import caches
    from django.test import override_settings

    settings = importlib.import_module("shop.settings")
    overrides = {name: getattr(settings, name) for name in dir(settings) if name.isupper()}
    del overrides["DATABASES"]  # none in either: Django warns about overriding it
    alias = dict(overrides["CACHES"]["default"])
    alias["LOCATION"] = redis_env or f"memory://shop{uuid.uuid4().hex[:8]}"
    alias["OPTIONS"] = {"key_prefix": f"django-example-{uuid.uuid4().hex[:8]}:"}
    overrides["CACHES"] = {"default": alias}
    overrides["SECRET_KEY"] = settings.SECRET_KEY
    with override_settings(**overrides):
        # override_settings installs the apps (ShopConfig.ready()) before it swaps the
        # settings in, so ready() saw the old CACHES: run it again on the example's
        apps.get_app_config("shop").ready()
        views = importlib.import_module("shop.views")
        views.loads.clear()
        try:
            yield views
        finally:
            caches["default"].clear()


def test_the_django_example_cache_page_runs_on_kirocache(shop: ModuleType) -> None:
    from django.core.cache import caches
    from django.test import Client

    client = Client()
    first = client.get("/")
    assert first.status_code == 200
    assert client.get("/").content == first.content  # served from the cache
    caches["default"].clear()
    assert client.get("/").content != first.content  # it was in kirocache: rendered again


def test_the_django_example_sessions_live_in_the_cache(shop: ModuleType) -> None:
    from django.core.cache import caches
    from django.test import Client

    visitor, other = Client(), Client()
    assert visitor.get("/visits").json() == {"visits": 1}
    assert visitor.get("/visits").json() == {"visits": 2}
    assert other.get("/visits").json() == {"visits": 1}
    session_key = visitor.cookies["sessionid"].value
    stored = caches["default"].get("django.contrib.sessions.cache" + session_key)
    assert stored == {"visits": 2}


async def test_the_django_example_sessions_work_from_async_code(shop: ModuleType) -> None:
    from django.contrib.sessions.backends.cache import SessionStore

    session = SessionStore()
    await session.aset("cart", [1, 2])
    await session.asave()  # aadd / aset on the kirocache backend
    assert session.session_key is not None
    assert SessionStore(session.session_key)["cart"] == [1, 2]  # read back, sync
    assert await SessionStore(session.session_key).aexists(session.session_key)
    await session.adelete()
    assert not await SessionStore().aexists(session.session_key)


def test_the_django_example_views_use_cached_functions(shop: ModuleType) -> None:
    from django.core.cache import caches
    from django.test import Client

    import kirocache

    assert kirocache.get_cache() is caches["default"].cache  # ShopConfig.ready()
    client = Client()
    assert client.get("/courses/1").json() == {"id": 1, "title": "Python basics"}
    assert client.get("/courses/1").json() == {"id": 1, "title": "Python basics"}
    assert client.get("/courses/404").status_code == 404
    assert shop.loads == [1, 404]
    assert shop.load_course.get_cached(1) == {"id": 1, "title": "Python basics"}
    assert client.get("/counter/likes").json() == {"likes": 1}
    assert client.get("/counter/likes").json() == {"likes": 2}


async def test_the_django_example_async_view(shop: ModuleType) -> None:
    from django.test import AsyncClient

    client = AsyncClient()
    assert (await client.get("/async/courses/2")).json() == {"id": 2, "title": "Async Python"}
    assert (await client.get("/async/courses/2")).json() == {"id": 2, "title": "Async Python"}
    assert shop.loads == [2]


@pytest.mark.slow
def test_the_django_example_project_runs_on_its_own(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "KIROCACHE_"))}
    env["KIROCACHE_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")]))
    project = EXAMPLES / "django_project"
    manage = [sys.executable, "manage.py"]
    run: dict[str, Any] = {"cwd": project, "env": env, "capture_output": True, "text": True}
    check = subprocess.run([*manage, "check"], timeout=60, check=False, **run)
    assert check.returncode == 0, check.stderr
    script = (
        "import kirocache; from django.core.cache import cache; cache.set('standalone', [1, 2]); "
        "print(cache.get('standalone'), cache.cache.key_prefix, "
        "kirocache.get_cache() is cache.cache); cache.clear()"
    )
    shell = subprocess.run(
        [*manage, "shell", "--verbosity", "0", "-c", script], timeout=60, check=False, **run
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == ["[1,", "2]", "django-example:", "True"]


# -- Flask -----------------------------------------------------------------------------------


def test_the_flask_example(redis_env: str | None) -> None:
    example = load(EXAMPLES / "flask_app" / "app.py")
    app = example.create_app({"KIROCACHE_KEY_PREFIX": f"flask-{uuid.uuid4().hex[:8]}:"})
    cache = app.extensions["kirocache"]
    client = app.test_client()
    assert client.get("/courses/1").json == {"id": 1, "title": "Python basics"}
    assert client.get("/courses/1").json == {"id": 1, "title": "Python basics"}
    assert example.loads == [1]
    assert client.get("/courses/99").status_code == 404
    assert client.get("/courses/99").status_code == 404  # an abort is never cached
    assert client.put("/courses/1/Renamed").json == {"id": 1, "title": "Renamed"}
    assert client.get("/courses/1").json == {"id": 1, "title": "Renamed"}
    assert example.loads == [1, 99, 99, 1]
    assert client.post("/visits/home").json == {"visits": 1}
    with app.app_context():
        assert example.get_cache() is cache
    assert cache.get("course:1") == {"id": 1, "title": "Renamed"}
    cache.delete_pattern("*")


def test_the_flask_example_fails_fast_on_an_unreachable_server() -> None:
    example = load(EXAMPLES / "flask_app" / "app.py")
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BackendError, match="ping"):
        example.create_app({"KIROCACHE_URL": url})
    with pytest.raises(ConfigurationError):
        example.create_app({"KIROCACHE_URL": "memcached://localhost"})
