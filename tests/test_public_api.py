"""The public surface: __all__ sorted and complete, sync and async twins in step."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import kirocache
from kirocache import Cache

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = [
    "kirocache",
    "kirocache.backends",
    "kirocache.exceptions",
    "kirocache.exporters",
    "kirocache.keys",
    "kirocache.metrics",
    "kirocache.monitoring",
    "kirocache.presets",
    "kirocache.testing.conformance",
    "kirocache.serializers",
    "kirocache.sessions",
    "kirocache.testing",
    "kirocache.web",
    "kirocache.contrib.starlette",
]


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return 0, name
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=isort_key), f"{name}.__all__ is not sorted"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names {symbol}, which is missing"
    defined_here = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    }
    missing = defined_here - set(exported)
    assert not missing, f"{name} defines public names not in __all__: {sorted(missing)}"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_symbols_have_docstrings(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    for symbol in module.__all__:
        value = getattr(module, symbol)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{symbol} has no docstring"


def test_every_sync_method_has_an_async_twin_and_back() -> None:
    public = {n for n in dir(Cache) if not n.startswith("_")}
    methods = {n for n in public if callable(getattr(Cache, n))}
    sync = {n for n in methods if not inspect.iscoroutinefunction(getattr(Cache, n))}
    async_ = {n for n in methods if inspect.iscoroutinefunction(getattr(Cache, n))}
    # no I/O, or one object serving `with` and `async with` (batch, lock)
    sync -= {"from_url", "register", "full_key", "batch", "lock", "pending_invalidations"}
    assert {"a" + n for n in sync} == async_
    for name in sync:
        sync_params = list(inspect.signature(getattr(Cache, name)).parameters)
        async_params = list(inspect.signature(getattr(Cache, "a" + name)).parameters)
        assert sync_params == async_params, name


def test_version_is_exposed() -> None:
    assert kirocache.__version__.count(".") == 2


def test_pytest_plugin_is_registered_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("kirocache") == "kirocache.testing.pytest_plugin"
