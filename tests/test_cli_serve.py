"""``kirocache serve``: the admin app on uvicorn, its tokens from the environment only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kirocache import Cache
from kirocache._cli import main
from redis_server import RedisServer, free_port

ADMIN = "canary-admin-token-4d1e9b7c"
READ = "canary-read-token-8a2f6c3d"
PASSWORD = "canary-Pw-serve-51c0"
SECRET_ENV = (
    "REDIS_URL",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "CACHE_DEBUG",
    "KIROCACHE_ADMIN_TOKEN",
    "KIROCACHE_READ_TOKEN",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


def test_serve_refuses_to_start_without_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", str(free_port())]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "kirocache: serve refuses to start without a token: set KIROCACHE_ADMIN_TOKEN "
        "(and KIROCACHE_READ_TOKEN for read-only clients), or pass --allow-anonymous-read\n"
    )


def test_a_short_token_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIROCACHE_ADMIN_TOKEN", "short-canary")
    assert main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "short-canary" not in err
    assert "token" in err


def test_serve_without_the_admin_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIROCACHE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "kirocache: serve needs the admin extra (uvicorn is not installed): "
        "pip install 'kirocache[admin]'\n"
    )


def test_serve_reports_a_taken_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIROCACHE_ADMIN_TOKEN", ADMIN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    assert capsys.readouterr().err.startswith(f"kirocache: cannot listen on 127.0.0.1:{port}: ")


def script() -> str:
    path = Path(sys.executable).parent / "kirocache"
    if not path.exists():
        pytest.fail(f"the kirocache console script is not installed next to {sys.executable}")
    return str(path)


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def wait_for(url: str, process: subprocess.Popen[str], deadline: float) -> None:
    """Until the server accepts connections (any answer will do)."""
    while not answers(url):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"nothing answers at {url}"
        time.sleep(0.05)


def stopped(process: subprocess.Popen[str]) -> str:
    """SIGTERM by pid, as a service manager stops it; its stderr after a clean shutdown.

    uvicorn shuts down gracefully, then ends as the signal says (-SIGTERM), as a process
    that does not trap it would.
    """
    os.kill(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    return out + err


@pytest.fixture
def served(redis_url: str) -> Iterator[tuple[str, subprocess.Popen[str], Cache]]:
    """``kirocache serve`` on the session's Redis under a key prefix, on a free port."""
    prefix = "served:"
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env = {
        **base,
        "REDIS_URL": redis_url,
        "KIROCACHE_ADMIN_TOKEN": ADMIN,
        "KIROCACHE_READ_TOKEN": READ,
    }
    process = subprocess.Popen(
        [script(), "serve", "--port", str(port), "--key-prefix", prefix],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seed = Cache.from_url(redis_url, key_prefix=prefix)
    try:
        wait_for(f"http://127.0.0.1:{port}/", process, time.monotonic() + 30)
        yield f"http://127.0.0.1:{port}", process, seed
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        seed.delete_pattern("*")
        seed.close()


@pytest.mark.slow
def test_serve_runs_the_admin_app_over_a_socket(
    served: tuple[str, subprocess.Popen[str], Cache],
) -> None:
    base, process, seed = served
    seed.set("user:1", {"name": "Ada"}, tags=["user:1"])
    admin = {"Authorization": f"Bearer {ADMIN}"}
    read = {"Authorization": f"Bearer {READ}"}
    with httpx.Client(base_url=base, timeout=10.0) as client:
        assert client.get("/api/cache/health").status_code == 401
        health = client.get("/api/cache/health", headers=read)
        assert health.status_code == 200
        assert health.json()["status"] == "healthy"
        listed: list[str] = []
        cursor = None
        while cursor != 0:
            params = {"pattern": "user:*", "cursor": str(cursor or 0)}
            page = client.get("/api/cache/keys", params=params, headers=read)
            assert page.status_code == 200
            listed += page.json()["keys"]
            cursor = page.json()["cursor"]
        assert listed == ["user:1"]  # the --key-prefix applies
        refused = client.post("/api/cache/invalidate", json={"tags": ["user:1"]}, headers=read)
        assert refused.status_code == 403
        done = client.post("/api/cache/invalidate", json={"tags": ["user:1"]}, headers=admin)
        assert done.status_code == 200, done.text
    assert seed.get("user:1") is None
    err = stopped(process)
    assert "kirocache: admin app for redis://127.0.0.1:" in err
    for secret in (ADMIN, READ):
        assert secret not in err


@pytest.mark.slow
def test_serve_never_shows_the_redis_password(
    make_redis_server: Callable[..., RedisServer],
) -> None:
    server = make_redis_server(password=PASSWORD)
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env = {**base, "REDIS_URL": server.url, "KIROCACHE_ADMIN_TOKEN": ADMIN}
    process = subprocess.Popen(
        [script(), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/", process, time.monotonic() + 30)
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/cache/health",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10.0,
        )
        assert answer.status_code == 200
        assert PASSWORD not in answer.text
    finally:
        err = stopped(process)
    assert "redis://:***@127.0.0.1:" in err
    assert PASSWORD not in err
    assert ADMIN not in err
