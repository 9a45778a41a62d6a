"""Backends with only the small protocol pass their half of the suite and serve ``Cache``."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from kirocache import Cache, cached
from kirocache.backends._conveniences import AsyncConvenientBackend, ConvenientBackend
from kirocache.backends._derive import AsyncConveniences, Conveniences, with_conveniences
from kirocache.backends._protocol import AsyncBackend, Backend, BackendStats, OpName
from kirocache.exceptions import BackendError, ConfigurationError
from kirocache.testing import FaultyBackend
from kirocache.testing._conformance.scenarios import OP_KINDS
from kirocache.testing.conformance import AsyncBackendConformance, SyncBackendConformance

from .dict_backend import AsyncDictBackend, DictBackend

SMALL_PROTOCOL = {"get", "get_many", "execute", "scan", "ping", "stats", "close"}


def dict_backend() -> DictBackend:
    return DictBackend(error=BackendError, stats=BackendStats)


class TestDictBackend(SyncBackendConformance):
    """The sync half, conveniences included (derived from the dict's ``execute``)."""

    @pytest.fixture
    def backend(self) -> DictBackend:
        return dict_backend()


class TestAsyncDictBackend(AsyncBackendConformance):
    """The async half, on an async-only backend."""

    @pytest.fixture
    def backend(self) -> AsyncDictBackend:
        return AsyncDictBackend(error=BackendError, stats=BackendStats)


def test_the_suite_pins_down_every_op_kind() -> None:
    assert set(OP_KINDS) == set(get_args(OpName))


def test_the_dict_backend_has_the_small_protocol_only() -> None:
    backend = dict_backend()
    assert {name for name in dir(backend) if not name.startswith("_")} == SMALL_PROTOCOL
    assert isinstance(backend, Backend)
    assert not isinstance(backend, (AsyncBackend, ConvenientBackend))


def test_with_conveniences_wraps_only_the_halves_a_backend_has() -> None:
    full = with_conveniences(dict_backend())
    assert type(full) is Conveniences
    assert isinstance(full, ConvenientBackend)
    assert not isinstance(full, (AsyncBackend, AsyncConvenientBackend))
    assert repr(full).startswith("Conveniences(<")
    afull = with_conveniences(AsyncDictBackend(error=BackendError, stats=BackendStats))
    assert type(afull) is AsyncConveniences
    assert isinstance(afull, AsyncConvenientBackend)
    assert not isinstance(afull, (Backend, ConvenientBackend))


def test_with_conveniences_refuses_what_is_no_backend() -> None:
    with pytest.raises(ConfigurationError, match="not a kirocache backend"):
        with_conveniences(object())  # type: ignore[call-overload]


@pytest.mark.parametrize("wrap", [False, True], ids=["as-is", "with-conveniences"])
def test_serves_cache_and_cached(wrap: bool) -> None:
    backend = dict_backend()
    cache = Cache(with_conveniences(backend) if wrap else backend, key_prefix="app:")
    calls: list[int] = []

    @cached(prefix="user:", ttl=60, cache=cache, tags=["user:{user_id}"])
    def profile(user_id: int) -> dict[str, Any]:
        calls.append(user_id)
        return {"id": user_id, "calls": len(calls)}

    assert profile(1) == {"id": 1, "calls": 1}
    assert profile(1) == {"id": 1, "calls": 1}
    assert cache.invalidate_tags("user:1") >= 1
    assert profile(1) == {"id": 1, "calls": 2}
    assert profile.invalidate(1) is True
    assert profile(1) == {"id": 1, "calls": 3}
    cache.set("plain", [1, 2], ttl=30)
    assert cache.get("plain") == [1, 2]
    assert cache.incr("hits") == 1
    assert cache.delete_pattern("*") >= 2
    assert cache.stats().backend == "dict"
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("wrap", [False, True], ids=["as-is", "with-conveniences"])
async def test_serves_cache_async(wrap: bool) -> None:
    backend = AsyncDictBackend(error=BackendError, stats=BackendStats)
    cache = Cache(with_conveniences(backend) if wrap else backend)
    calls: list[int] = []

    @cached(prefix="user:", ttl=60, cache=cache)
    async def profile(user_id: int) -> dict[str, Any]:
        calls.append(user_id)
        return {"id": user_id}

    assert await profile(2) == {"id": 2}
    assert await profile(2) == {"id": 2}
    assert await profile.invalidate(2) is True
    assert await profile(2) == {"id": 2}
    assert calls == [2, 2]


def test_a_small_backend_behind_faulty_backend_fails_open_under_cache() -> None:
    faulty = FaultyBackend(dict_backend())
    cache = Cache(faulty, key_prefix="app:")
    cache.set("k", 1)
    faulty.failing = True
    assert cache.get("k", "fallback") == "fallback"
    assert faulty.calls["execute"] >= 1  # the write
    assert faulty.calls["get"] == 1
    faulty.failing = False
    assert cache.get("k") == 1


@pytest.mark.parametrize(
    ("sync", "twin"),
    [
        (Backend, AsyncBackend),
        (ConvenientBackend, AsyncConvenientBackend),
        (Conveniences, AsyncConveniences),
    ],
)
def test_every_sync_method_has_its_async_twin(sync: type, twin: type) -> None:
    def names(cls: type) -> set[str]:
        return {name for name in vars(cls) if not name.startswith("_")}

    assert {"a" + name for name in names(sync)} == names(twin)
