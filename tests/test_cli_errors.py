"""The CLI's failures: one line on stderr naming the problem, no secret, a documented exit code.

Most run ``main()`` in-process; the ``slow`` ones run the installed ``kirocache`` script, as
a shell script would, to see the real exit status and the whole of stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from kirocache import BackendError, Cache
from kirocache._cli import main
from kirocache.backends import MemoryBackend
from kirocache.testing import FaultyBackend
from redis_server import BlackholeServer, RedisServer, free_port

CANARY = "canary-Pw-7f3a9"  # a password that must never be shown
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


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> str:
    """Run the CLI, expect ``code``, nothing on stdout and one line on stderr; return it."""
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kirocache: ")
    assert captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    assert CANARY not in captured.err
    return captured.err


def closed_port_url(password: str | None = None) -> str:
    auth = f"ops:{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{free_port()}/0"


# -- usage and configuration: exit 2 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "choose a command: ping, stats"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["keys", "--limit", "many"], "argument --limit: invalid int value: 'many'"),
        (["ping", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["inspect"], "the following arguments are required: key"),
        (["invalidate"], "say what to invalidate: --key, --tag"),
        (["invalidate", "--pattern", "*"], "would match every key in the database"),
        (["--key-prefix", "app", "ping"], "'app:'"),
        (["inspect", "kirocache:gen:x"], "reserved key space 'kirocache:'"),
        (["--json", "demo"], "demo prints no data: drop --json"),
        (["keys", "--limit", "-1"], "--limit must be 0 (no limit) or more"),
        (["--app", "no_such_module_kc:cache", "ping"], "cannot load --app"),
        (["--app", "json:decoder", "ping"], "is a module, not a kirocache Cache"),
        (["--app", "json:dumps", "ping"], "calling --app 'json:dumps' failed: TypeError"),
        (["--app", "nocolon", "ping"], "--app must be module:attribute"),
        (["--app", "json:loads", "--url", "memory://", "ping"], "--app brings its own cache"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in fails(capsys, argv, 2)


def test_a_url_quoted_by_a_usage_error_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, [f"redis://ops:{CANARY}@example.com/0"], 2)
    assert "invalid choice: 'redis://ops:***@example.com/0'" in err


def test_a_bad_url_is_named_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, ["--url", f"ftp://ada:{CANARY}@example.com/0", "ping"], 2)
    assert "unsupported cache URL 'ftp://ada:***@example.com/0'" in err


def test_a_bad_redis_url_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"http://ada:{CANARY}@example.com")
    assert "REDIS_URL must start with redis://" in fails(capsys, ["stats"], 2)


def test_redis_url_from_the_environment_is_used(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "redis"


def test_an_app_module_that_fails_to_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"kc_broken_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('no database at {CANARY}')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_PASSWORD", CANARY)  # the redactor knows it from there
    err = fails(capsys, ["--app", f"{name}:cache", "ping"], 2)
    assert f"importing {name!r} for --app failed: RuntimeError: no database at ***" in err
    sys.modules.pop(name, None)


def test_an_app_module_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"kc_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "from kirocache import Cache\n"
        "def make():\n"
        "    cache = Cache.from_url('memory://', key_prefix='made:')\n"
        "    cache.set('seeded', 1)\n"
        "    return cache\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--app", f"{name}:make", "keys"]) == 0
    assert capsys.readouterr().out == "seeded\n"
    assert str(tmp_path) not in sys.path
    sys.modules.pop(name, None)


# -- the backend: exit 3 ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ping", "stats", "keys", "cleanup", "bump ns:"])
def test_an_unreachable_server_exits_3(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url(CANARY)
    err = fails(capsys, ["--url", url, *command.split()], 3)
    assert "backend unavailable: Redis ping failed on redis://ops:***@127.0.0.1:" in err
    assert "Connection refused" in err


def test_health_and_alerts_report_an_unreachable_server_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = closed_port_url(CANARY)
    assert main(["--url", url, "health", "--json"]) == 3
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["status"] == "unhealthy"
    assert report["issues"][0]["kind"] == "unreachable"
    assert main(["--url", url, "alerts", "--json"]) == 3
    alerts = json.loads(capsys.readouterr().out)["alerts"]
    assert ("backend_unreachable", "critical") in {(a["rule"], a["severity"]) for a in alerts}
    assert CANARY not in captured.out + captured.err


def test_a_wrong_password_exits_3_and_is_never_shown(
    make_redis_server: Callable[..., RedisServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_redis_server(acl_user=("ops", "the-right-password"))
    wrong = f"redis://ops:{CANARY}@127.0.0.1:{server.port}/0"
    err = fails(capsys, ["--url", wrong, "ping"], 3)
    assert "password" in err
    assert "redis://ops:***@127.0.0.1:" in err
    # a password from REDIS_PASSWORD is kept out just the same
    monkeypatch.setenv("REDIS_PASSWORD", CANARY)
    monkeypatch.setenv("REDIS_URL", f"redis://ops@127.0.0.1:{server.port}/0")
    fails(capsys, ["stats"], 3)
    # the right password works
    monkeypatch.setenv("REDIS_PASSWORD", "the-right-password")
    assert main(["ping"]) == 0
    assert capsys.readouterr().out.startswith("PONG from redis://ops@127.0.0.1:")


class WritesRefused(FaultyBackend):
    """Answers PING and reads, refuses every write: the Redis at maxmemory case."""

    def ping(self) -> float:
        return float(self.inner.ping())


def test_an_invalidation_the_backend_refuses_is_an_error_even_when_the_app_fails_open(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = WritesRefused(MemoryBackend(), reads_work=True)
    cache = Cache(backend, key_prefix="app:")  # on_error="ignore": it fails open
    cache.set("user:1", 1)
    name = f"kc_app_{uuid.uuid4().hex}"
    module = types.ModuleType(name)
    module.cache = cache  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    backend.failing = True
    err = fails(capsys, ["--app", f"{name}:cache", "invalidate", "--key", "user:1"], 3)
    assert "keys not invalidated: the backend refused it" in err
    assert "run it again" in err


def test_a_cli_cache_raises_where_an_application_would_fail_open(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: Cache, *args: object, **kwargs: object) -> int:
        raise BackendError(f"Redis execute failed on {redis_url}: OOM")

    monkeypatch.setattr(Cache, "delete_many", refuse)
    err = fails(capsys, ["--url", redis_url, "invalidate", "--key", "k"], 3)
    assert "keys not invalidated (backend unavailable: Redis execute failed" in err


# -- the installed script, as a shell runs it ---------------------------------------------------


def script() -> str:
    path = Path(sys.executable).parent / "kirocache"
    if not path.exists():
        pytest.fail(f"the kirocache console script is not installed next to {sys.executable}")
    return str(path)


def shell(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    return subprocess.run(
        [script(), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


@pytest.mark.slow
def test_the_script_reports_its_version() -> None:
    done = shell("--version")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"kirocache {version('kirocache')}\n",
        "",
    )


@pytest.mark.slow
def test_the_script_prints_plain_help() -> None:
    done = shell("--help")
    assert done.returncode == 0
    assert "exit codes:" in done.stdout
    assert "``" not in done.stdout
    assert ":class:" not in done.stdout
    done = shell("invalidate", "--help")
    assert done.returncode == 0
    assert "kirocache invalidate --pattern 'search:*'" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["frobnicate"], 2, "invalid choice"),
        (["--url", f"redis://ops:{CANARY}@127.0.0.1:{free_port()}/0", "ping"], 3, "refused"),
        (["--url", f"bogus://ops:{CANARY}@h/0", "stats"], 2, "unsupported cache URL"),
        (["serve"], 2, "without a token"),
    ],
)
def test_the_script_fails_with_its_exit_code_and_one_line(
    argv: list[str], code: int, words: str
) -> None:
    done = shell(*argv)
    assert done.returncode == code
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert CANARY not in done.stderr


@pytest.mark.slow
def test_the_script_on_the_real_server(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server(acl_user=("ops", CANARY))
    env = {"REDIS_URL": f"redis://ops@127.0.0.1:{server.port}/0", "REDIS_PASSWORD": CANARY}
    filled = shell("--key-prefix", "app:", "ping", "--json", env=env)
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout)["ok"] is True
    with Cache.from_url(server.url, key_prefix="app:") as seed:
        seed.set_many({f"user:{n}": n for n in range(10)})
    done = shell("--key-prefix", "app:", "invalidate", "--pattern", "user:*", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 10
    assert done.stderr == ""  # not a terminal: no progress line
    for output in (filled.stdout, filled.stderr, done.stdout, done.stderr):
        assert CANARY not in output


def test_a_silent_server_times_out_with_exit_3(
    blackhole: BlackholeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, ["--url", blackhole.url, "--timeout", "0.2", "ping"], 3)
    assert "backend unavailable: Redis ping failed" in err
    assert "imeout" in err  # redis-py's TimeoutError: "Timeout reading from ..."


def test_a_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, ["--url", "redis://127.0.0.1:1/0", "--timeout", "-1", "ping"], 2)
    assert "timeout" in err
