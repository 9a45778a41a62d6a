"""The CLI's commands end to end, in-process: on memory (the application's cache, ``--app``)
and on the real redis-server (``--url`` and ``--key-prefix``), text and ``--json``."""

from __future__ import annotations

import io
import json
import sys
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from kirocache import Cache, Namespace
from kirocache._cli import main
from kirocache._cli.output import Progress

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
    """A developer's REDIS_URL or tokens must not reach these commands."""
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Target:
    """Where the commands run: the arguments that name it, and a cache on the same keys."""

    args: list[str]
    cache: Cache
    kind: str


def app_module(monkeypatch: pytest.MonkeyPatch, cache: Cache) -> str:
    """Put ``cache`` in an importable module; returns the ``--app`` target."""
    name = f"kc_cli_app_{uuid.uuid4().hex}"
    module = types.ModuleType(name)
    module.cache = cache  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    return f"{name}:cache"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.real_redis)])
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """On memory, each run of the CLI would get an empty cache of its own: the commands run
    on the application's cache (``--app``), which the test fills. On Redis, the CLI builds
    its own cache from ``--url`` and ``--key-prefix``, as an operator's shell would."""
    if request.param == "memory":
        cache = Cache.from_url("memory://", key_prefix="app:")
        yield Target(["--app", app_module(monkeypatch, cache)], cache, "memory")
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"cli-{uuid.uuid4().hex[:8]}:"
    cache = Cache.from_url(url, key_prefix=prefix)
    try:
        yield Target(["--url", url, "--key-prefix", prefix], cache, "redis")
    finally:
        cache.delete_pattern("*")
        cache.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> tuple[str, str]:
    """Run the CLI in-process; returns stdout and stderr after checking the exit code."""
    assert main(list(argv)) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> object:
    out, _ = run(capsys, *argv, "--json", code=code)
    return json.loads(out)


def test_ping(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run(capsys, *target.args, "ping")
    assert out.startswith("PONG from ")
    assert err == ""
    data = run_json(capsys, *target.args, "ping")
    assert isinstance(data, dict)
    assert data["ok"] is True
    assert data["latency_ms"] >= 0


def test_options_go_before_or_after_the_command(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    before, _ = run(capsys, *target.args, "keys")
    after, _ = run(capsys, "keys", *target.args)
    assert before == after == ""
    target.cache.set("user:1", 1)
    assert run(capsys, "keys", *target.args)[0] == "user:1\n"


def test_stats(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    target.cache.set_many({f"user:{n}": n for n in range(5)})
    data = run_json(capsys, *target.args, "stats")
    assert isinstance(data, dict)
    assert data["backend"] == target.kind
    assert data["keys"] >= 5
    out, _ = run(capsys, *target.args, "stats")
    assert "backend:" in out
    assert target.kind in out


def test_keys_lists_the_matching_keys_page_by_page(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    users = {f"user:{n}" for n in range(25)}
    target.cache.set_many(dict.fromkeys(users, 1))
    target.cache.set_many({"search:a": 1, "search:b": 2})
    out, err = run(capsys, *target.args, "keys", "user:*", "--count", "7")
    assert set(out.splitlines()) == users
    assert err == ""
    data = run_json(capsys, *target.args, "keys", "search:*")
    assert isinstance(data, dict)
    assert sorted(data["keys"]) == ["search:a", "search:b"]
    assert data["cursor"] == 0
    # a limit stops early and says how to go on; the cursor lists the rest
    first = run_json(capsys, *target.args, "keys", "user:*", "--limit", "10", "--count", "5")
    assert isinstance(first, dict)
    assert len(first["keys"]) == 10
    assert first["cursor"] != 0
    out, err = run(capsys, *target.args, "keys", "user:*", "--limit", "10", "--count", "5")
    assert len(out.splitlines()) == 10
    assert "--limit 0 lists all" in err
    assert len(err.splitlines()) == 1
    rest = run_json(
        capsys, *target.args, "keys", "user:*", "--limit", "0", "--cursor", str(first["cursor"])
    )
    assert isinstance(rest, dict)
    assert set(first["keys"]) | set(rest["keys"]) == users


def test_keys_never_leave_the_key_prefix(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        redis.Redis.from_url(redis_url) as raw,
        Cache.from_url(redis_url, key_prefix="mine:") as mine,
    ):
        raw.set("theirs:user:1", "kept")
        mine.set("user:1", 1)
        try:
            out, _ = run(capsys, "--url", redis_url, "--key-prefix", "mine:", "keys", "*")
            assert out.splitlines() == ["user:1"]
            run(capsys, "--url", redis_url, "--key-prefix", "mine:", "invalidate", "--pattern", "*")
            assert raw.get("theirs:user:1") == b"kept"
            assert raw.keys("mine:user:*") == []
        finally:
            raw.delete("theirs:user:1")


def test_inspect(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    target.cache.set("user:profile:42", {"name": "Ada"}, ttl=60, tags=["user:42"])
    data = run_json(capsys, *target.args, "inspect", "user:profile:42")
    assert isinstance(data, dict)
    assert data["key"] == "user:profile:42"
    assert 0 < data["ttl"] <= 60
    assert data["format"] == "json"
    assert data["tags"] == ["user:42"]
    assert "Ada" not in json.dumps(data)  # never the value
    out, _ = run(capsys, *target.args, "inspect", "user:profile:42")
    assert "format:" in out
    assert "json" in out
    out, err = run(capsys, *target.args, "inspect", "user:profile:7", code=1)
    assert out == ""
    assert err == "kirocache: no entry at key 'user:profile:7'\n"


def test_invalidate_keys_tags_patterns_and_namespaces(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = target.cache
    cache.set("user:profile:1", 1)
    cache.set("user:progress:1", 1, tags=["user:1"])
    cache.set("recs:1", 1, tags=["user:1"])
    cache.set_many({f"search:{n}": n for n in range(30)})
    cache.set_many({f"exercise:{n}": n for n in range(4)})
    cache.set("kept", "yes")
    data = run_json(
        capsys,
        *target.args,
        "invalidate",
        "--key",
        "user:profile:1",
        "--tag",
        "user:1",
        "--pattern",
        "search:*",
        "--namespace",
        "exercise:",
    )
    assert isinstance(data, dict)
    assert [(a["kind"], a["removed"]) for a in data["actions"]] == [
        ("keys", 1),
        ("tags", 2),
        ("pattern", 30),
        ("namespace", 4),
    ]
    assert data["removed"] == 37
    assert data["actions"][2]["record"]["patterns"] == ["search:*"]
    for key in ("user:profile:1", "user:progress:1", "recs:1", "search:0", "exercise:3"):
        assert cache.get(key) is None
    assert cache.get("kept") == "yes"
    out, _ = run(capsys, *target.args, "invalidate", "--key", "kept", "--key", "gone")
    assert out == "key(s) 'kept' 'gone': removed 1\n"


def test_invalidate_an_event_through_the_applications_rules(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = target.cache
    cache.rules.on("user.updated", keys=["user:profile:{entity_id}"], tags=["course:{course}"])
    app = ["--app", app_module(monkeypatch, cache)]
    cache.set("user:profile:42", 1)
    cache.set("user:profile:7", 1)
    cache.set("lesson:1", 1, tags=["course:py"])
    data = run_json(
        capsys,
        *app,
        "invalidate",
        "--event",
        "user.updated",
        "--entity-id",
        "42",
        "--field",
        "course=py",
    )
    assert isinstance(data, dict)
    [action] = data["actions"]
    assert action["target"] == {"type": "user.updated", "entity_id": "42", "course": "py"}
    assert action["removed"] == 2
    assert action["record"]["source"] == "cli"
    assert action["record"]["rules"] == ["user.updated"]
    assert cache.get("user:profile:42") is None
    assert cache.get("lesson:1") is None
    assert cache.get("user:profile:7") == 1
    # an event no rule knows is a mistake, not a silent no-op
    _, err = run(capsys, *app, "invalidate", "--event", "user.deleted", code=2)
    assert "no invalidation rule matches event 'user.deleted'" in err
    _, err = run(capsys, *app, "invalidate", "--event", "user.updated", "--field", "oops", code=2)
    assert err == "kirocache: --field takes name=value, got 'oops'\n"


def test_bump_raises_the_generation_the_application_reads(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = Namespace("path:", bumpable=True)
    cache = target.cache
    cache.register(paths)
    cache.set("path:1", "old")
    assert cache.get("path:1") == "old"
    out, err = run(capsys, *target.args, "bump", "path:")
    first = int(out.removeprefix("namespace 'path:' is at generation ").strip())
    assert first > 1  # a namespace's first generation is random: never a past one
    assert "bumpable=True" in err  # a note, on stderr
    assert cache.get("path:1") is None
    data = run_json(capsys, *target.args, "bump", "path:")
    assert data == {"namespace": "path:", "generation": first + 1}
    assert capsys.readouterr().err == ""


def test_cleanup(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    target.cache.set("board:1", [1, 2], 60, tags=["team:red"])
    target.cache.delete("board:1")
    data = run_json(capsys, *target.args, "cleanup")
    assert isinstance(data, dict)
    assert data["tag_entries_pruned"] == 1
    assert data["errors"] == 0
    out, _ = run(capsys, *target.args, "cleanup")
    assert "tag_entries_pruned:" in out


def test_health_and_alerts(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, *target.args, "health")
    assert isinstance(data, dict)
    assert data["status"] == "healthy"
    assert data["ping_latency"] is not None
    out, _ = run(capsys, *target.args, "health")
    assert out.startswith("status:")
    assert run_json(capsys, *target.args, "alerts") == {"status": "healthy", "alerts": []}
    # metrics are per process: in this one, the cache's 30 misses are a low hit rate
    app = ["--app", app_module(monkeypatch, target.cache)]
    for n in range(30):
        target.cache.get(f"user:{n}")
    data = run_json(capsys, *app, "health")
    assert isinstance(data, dict)
    assert data["status"] == "degraded"
    assert [issue["kind"] for issue in data["issues"]] == ["hit_rate"]
    run(capsys, *app, "health", "--fail-on", "degraded", code=1)
    out, _ = run(capsys, *app, "alerts")
    assert "[medium] hit_rate: hit rate in default: 0 below 0.8" in out
    run(capsys, *app, "alerts", "--fail-on", "medium", code=1)
    run(capsys, *app, "alerts", "--fail-on", "high", code=0)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pattern_delete_shows_its_progress_on_a_terminal(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target.cache.set_many({f"big:{n}": n for n in range(3000)})
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*target.args, "invalidate", "--pattern", "big:*", "--batch-size", "500"]) == 0
    shown = terminal.getvalue()
    assert shown.startswith("\r")
    assert shown.endswith("deleting 'big:*': 3,000 keys removed\n")
    assert capsys.readouterr().out == "pattern 'big:*': removed 3000\n"


def test_no_progress_line_off_a_terminal_or_when_quiet(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target.cache.set_many({f"big:{n}": n for n in range(1200)})
    out, err = run(capsys, *target.args, "invalidate", "--pattern", "big:*", "--batch-size", "100")
    assert (out, err) == ("pattern 'big:*': removed 1200\n", "")
    target.cache.set_many({f"big:{n}": n for n in range(300)})
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*target.args, "-q", "invalidate", "--pattern", "big:*"]) == 0
    assert terminal.getvalue() == ""


def test_an_interrupted_pattern_delete_says_how_far_it_got(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target.cache.set_many({f"big:{n}": n for n in range(1000)})

    def interrupt(self: Progress, done: int) -> None:
        self.done = done
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "__call__", interrupt)
    out, err = run(
        capsys, *target.args, "invalidate", "--pattern", "big:*", "--batch-size", "200", code=130
    )
    assert out == ""
    assert err == (
        "kirocache: interrupted: 200 keys matching 'big:*' removed, the others are still there\n"
    )
