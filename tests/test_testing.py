"""kirocache.testing: swapping the default cache, recording operations, the pytest plugin."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import kirocache
from kirocache import Cache, ConfigurationError
from kirocache._cache import default as _global
from kirocache.backends import MemoryBackend
from kirocache.testing import CacheRecorder, FaultyBackend, Recorded, ause_cache, use_cache
from test_docs import extract_blocks

pytest_plugins = ["pytester"]

HOW_TO = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "testing.md"
PLUGIN = "kirocache.testing.pytest_plugin"
# Whether or not the pytest11 entry point is installed, load the plugin exactly once.
PLUGIN_ARGS = ("-p", "no:kirocache", "-p", PLUGIN)
INNER_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


@pytest.fixture(autouse=True)
def _no_default_leaks() -> Iterator[None]:
    """Every test starts from a known default and must leave it as it found it."""
    start = _global._swap_default(Cache.from_url("memory://"))
    expected = _global._default
    yield
    assert _global._default is expected
    _global._swap_default(start)


# -- use_cache / ause_cache ------------------------------------------------------------------


def spy_on_close(monkeypatch: pytest.MonkeyPatch) -> list[Cache]:
    """Replace ``Cache.close`` with a spy; the list receives every cache closed."""
    closed: list[Cache] = []

    def close(self: Cache) -> None:
        closed.append(self)

    monkeypatch.setattr(Cache, "close", close)
    return closed


def test_use_cache_installs_a_fresh_memory_cache_and_restores_the_previous() -> None:
    before = kirocache.get_cache()
    before.set("k", "outer")
    with use_cache() as cache:
        assert kirocache.get_cache() is cache
        assert cache is not before
        assert isinstance(cache.backend, MemoryBackend)
        assert cache.get("k") is None
        cache.set("k", "inner")
    assert kirocache.get_cache() is before
    assert before.get("k") == "outer"


def test_use_cache_accepts_a_ready_cache_and_leaves_it_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = spy_on_close(monkeypatch)
    mine = Cache(MemoryBackend(), key_prefix="t:")
    with use_cache(mine) as cache:
        assert cache is mine
        assert kirocache.get_cache() is mine
    assert closed == []


def test_use_cache_closes_a_cache_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = spy_on_close(monkeypatch)
    with use_cache("memory://?max_entries=5", key_prefix="t:") as cache:
        assert closed == []
        assert cache.key_prefix == "t:"
    assert closed == [cache]


def test_use_cache_restores_on_exception() -> None:
    before = kirocache.get_cache()
    inside: list[Cache] = []

    def fail() -> None:
        with use_cache() as cache:
            inside.append(kirocache.get_cache())
            assert inside == [cache]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()
    assert len(inside) == 1
    assert inside[0] is not before
    assert kirocache.get_cache() is before


def fail_inside(error: Exception) -> None:
    """Raise ``error`` from inside a ``use_cache()`` block that is the default."""
    with use_cache() as cache:
        assert kirocache.get_cache() is cache
        raise error


def test_nested_use_cache_restores_each_level() -> None:
    before = kirocache.get_cache()
    with use_cache() as outer:
        with use_cache() as inner:
            assert kirocache.get_cache() is inner
            with pytest.raises(KeyError):
                fail_inside(KeyError("x"))
            assert kirocache.get_cache() is inner
        assert kirocache.get_cache() is outer
    assert kirocache.get_cache() is before


def test_use_cache_restores_no_default_when_none_was_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(_global, "_default", None)
    with use_cache() as cache:
        assert kirocache.get_cache() is cache
    assert _global._default is None
    rebuilt = kirocache.get_cache()  # built from the environment again, as before the swap
    assert rebuilt is not cache


def test_use_cache_rejects_options_with_a_ready_cache() -> None:
    before = kirocache.get_cache()
    with pytest.raises(ConfigurationError, match="ready Cache"), use_cache(before, key_prefix="x:"):
        pass  # pragma: no cover - the swap never happens
    assert kirocache.get_cache() is before


def test_use_cache_rejects_a_bad_url_without_swapping() -> None:
    before = kirocache.get_cache()
    with pytest.raises(ConfigurationError, match="unsupported"), use_cache("nosuch://x"):
        pass  # pragma: no cover - the swap never happens
    assert kirocache.get_cache() is before


def test_the_swapped_cache_is_seen_from_other_threads() -> None:
    seen: list[Cache] = []
    with use_cache() as cache:
        thread = threading.Thread(target=lambda: seen.append(kirocache.get_cache()))
        thread.start()
        thread.join()
    assert seen == [cache]


async def test_ause_cache_swaps_restores_and_closes_what_it_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[tuple[str, Cache]] = []

    async def aclose(self: Cache) -> None:
        closed.append(("aclose", self))

    def close(self: Cache) -> None:
        closed.append(("close", self))

    monkeypatch.setattr(Cache, "aclose", aclose)
    monkeypatch.setattr(Cache, "close", close)
    before = kirocache.get_cache()
    async with ause_cache("memory://", key_prefix="a:") as cache:
        assert kirocache.get_cache() is cache
        assert await cache.aset("k", [1, 2])
        assert await cache.aget("k") == [1, 2]
        assert closed == []
    assert kirocache.get_cache() is before
    assert closed == [("aclose", cache), ("close", cache)]

    mine = Cache(MemoryBackend())

    async def fail() -> None:
        async with ause_cache(mine) as cache:
            assert kirocache.get_cache() is cache is mine
            raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        await fail()
    assert kirocache.get_cache() is before
    assert len(closed) == 2  # a cache passed in is not closed


async def test_ause_cache_nests_with_use_cache() -> None:
    before = kirocache.get_cache()
    async with ause_cache() as outer:
        with use_cache() as inner:
            assert kirocache.get_cache() is inner
        assert kirocache.get_cache() is outer
    assert kirocache.get_cache() is before


# -- CacheRecorder ---------------------------------------------------------------------------


def test_recorder_records_hits_and_misses_in_order_from_real_calls() -> None:
    recorder = CacheRecorder()
    profiles = kirocache.Namespace("user:profile:", ttl=60)
    cache = Cache(MemoryBackend(), metrics=recorder, namespaces=[profiles])
    assert cache.get("user:profile:1") is None
    cache.set("user:profile:1", {"name": "Ada"})
    assert cache.get("user:profile:1") == {"name": "Ada"}
    assert cache.get("other") is None
    assert cache.get_many(["user:profile:1", "user:profile:2", "user:profile:3"]) == {
        "user:profile:1": {"name": "Ada"}
    }

    assert recorder.outcomes() == ["miss", "set", "hit", "miss", "hit", "miss"]
    assert recorder.outcomes("get") == ["miss", "hit", "miss"]
    assert recorder.outcomes("get", "user:profile:") == ["miss", "hit"]
    assert recorder.outcomes(namespace="default") == ["miss"]
    assert [(r.operation, r.outcome, r.count) for r in recorder.select("get_many")] == [
        ("get_many", "hit", 1),
        ("get_many", "miss", 2),
    ]
    assert (recorder.hits, recorder.misses) == (2, 4)
    assert len(recorder) == 6
    first = recorder.records[0]
    assert isinstance(first, Recorded)
    assert (first.operation, first.namespace, first.outcome) == ("get", "user:profile:", "miss")
    assert first.latency >= 0
    # It is still the cache's ordinary metrics.
    stats = {(s.namespace, s.operation): s for s in recorder.stats()}
    assert stats["user:profile:", "get"].hits == 1
    assert stats["user:profile:", "get"].misses == 1


async def test_recorder_records_async_calls() -> None:
    recorder = CacheRecorder()
    cache = Cache(MemoryBackend(), metrics=recorder)
    assert await cache.aget_or_set("k", lambda: 3) == 3
    assert await cache.aget_or_set("k", lambda: 4) == 3
    assert await cache.adelete("k")
    assert recorder.outcomes() == ["miss", "set", "hit", "delete"]


def test_recorder_clear_forgets_records_and_figures() -> None:
    recorder = CacheRecorder()
    cache = Cache(MemoryBackend(), metrics=recorder)
    cache.get("a")
    recorder.clear()
    assert recorder.records == []
    assert recorder.stats() == []
    cache.set("a", 1)
    cache.get("a")
    assert recorder.outcomes() == ["set", "hit"]
    recorder.reset()
    assert len(recorder) == 0


def test_recorded_is_frozen() -> None:
    entry = Recorded("get", "default", "hit", 0.001)
    assert entry.count == 1
    with pytest.raises(AttributeError):
        entry.outcome = "miss"  # type: ignore[misc]


def test_recorder_keeps_every_call_from_many_threads() -> None:
    recorder = CacheRecorder()
    cache = Cache(MemoryBackend(), metrics=recorder)
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(200):
            cache.get(f"t{n}:{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recorder) == 1600
    assert recorder.misses == 1600
    assert recorder.stats()[0].calls == 1600


# -- the pytest plugin -----------------------------------------------------------------------


def test_plugin_fixtures_swap_the_default_and_record(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        """
        import kirocache
        from kirocache.backends import MemoryBackend
        from kirocache.testing import CacheRecorder

        def test_cache_is_the_default_and_empty(kirocache_cache):
            assert kirocache.get_cache() is kirocache_cache
            assert isinstance(kirocache_cache.backend, MemoryBackend)
            assert kirocache_cache.get("shared") is None
            kirocache_cache.set("shared", 1)

        def test_the_next_test_gets_a_fresh_cache(kirocache_cache):
            assert kirocache_cache.get("shared") is None

        def test_recorder_belongs_to_the_same_cache(kirocache_cache, kirocache_recorder):
            assert isinstance(kirocache_recorder, CacheRecorder)
            assert kirocache_cache.metrics is kirocache_recorder
            kirocache.get_cache().get_or_set("k", lambda: 1)
            kirocache.get_cache().get("k")
            assert kirocache_recorder.outcomes("get") == ["miss", "hit"]
            assert kirocache_recorder.hits == 1

        async def test_async_tests_see_it_too(kirocache_cache, kirocache_recorder):
            await kirocache.get_cache().aset("k", 2)
            assert await kirocache_cache.aget("k") == 2
            assert kirocache_recorder.outcomes() == ["set", "hit"]

        def test_recorder_alone_installs_the_cache(kirocache_recorder):
            assert kirocache.get_cache().metrics is kirocache_recorder
        """
    )
    before = kirocache.get_cache()
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=5)
    assert kirocache.get_cache() is before  # the default came back after every test


def test_plugin_fixtures_are_unknown_without_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile("def test_x(kirocache_cache):\n    pass\n")
    result = pytester.runpytest("-p", "no:kirocache")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'kirocache_cache' not found*"])


def test_recorder_fixture_explains_an_override_that_does_not_record(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makeconftest(
        """
        import pytest
        from kirocache.testing import use_cache

        @pytest.fixture
        def kirocache_cache():
            with use_cache() as cache:
                yield cache
        """
    )
    pytester.makepyfile("def test_x(kirocache_recorder):\n    pass\n")
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*metrics=CacheRecorder()*"])


@pytest.mark.slow  # runs a pytest session of its own in a subprocess
def test_the_how_to_pytest_examples_pass(pytester: pytest.Pytester) -> None:
    """The how-to's pytest modules (fenced ``python3``, so test_docs shows them) run here."""
    blocks = extract_blocks(HOW_TO.read_text("utf-8"))
    app = next(block for block in blocks if block.language == "python")
    examples = [block for block in blocks if block.language == "python3"]
    assert len(examples) == 3
    test_profiles, conftest, test_disk_backend = (block.code for block in examples)
    pytester.makeini(INNER_INI)
    pytester.makepyfile(myapp=app.code)
    pytester.makepyfile(
        my_package=(
            "from kirocache.backends import MemoryBackend\n\n\n"
            "class DiskBackend(MemoryBackend):\n"
            "    def __init__(self, path):\n"
            "        super().__init__()\n"
        )
    )
    pytester.makepyfile(test_profiles=test_profiles, test_disk_backend=test_disk_backend)
    pytester.syspathinsert()
    result = pytester.runpytest(*PLUGIN_ARGS, "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] > 2  # the two profile tests and the conformance suite

    # The conftest example installs its own cache for every test, under its key prefix.
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        test_prefix="import kirocache\n\n\n"
        "def test_prefix(cache):\n"
        "    assert kirocache.get_cache() is cache\n"
        "    assert cache.key_prefix == 'myapp:'\n"
    )
    result = pytester.runpytest(*PLUGIN_ARGS, "test_prefix.py")
    result.assert_outcomes(passed=1)


def test_kirocache_testing_imports_without_pytest() -> None:
    """Only the plugin module needs pytest; apps may use the helpers under any runner."""
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None\n"  # makes `import pytest` raise ImportError
        "import kirocache.testing\n"
        "with kirocache.testing.use_cache() as cache:\n"
        "    assert cache.set('k', 1)\n"
        "try:\n"
        "    import kirocache.testing.pytest_plugin\n"
        "except ImportError:\n"
        "    print('plugin needs pytest')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "plugin needs pytest\n"


def test_a_faulty_backend_can_refuse_only_writes_as_a_full_redis_does() -> None:
    backend = FaultyBackend(MemoryBackend(), reads_work=True)
    cache = Cache(backend, breaker=None)
    cache.set("k", "old")
    backend.failing = True
    assert cache.get("k") == "old"  # reads still answer
    assert cache.set("k", "new") is False  # writes are refused (and fail open)
    assert backend.calls["execute"] == 2
    assert cache.errors_total == 1
