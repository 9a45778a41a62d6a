"""Import rules: the outer ring uses only the public API, no import circles, no upward imports.

The outer ring (sessions, monitoring, cleanup, exporters, the CLI, ``_ring/``, and the web
app and integrations when they come) may import kirocache's public modules -- those with no
``_``-prefixed part in their dotted name, such as ``kirocache``, ``kirocache.backends`` or
``kirocache.testing`` -- and each other, never a private module of the engine. Nothing
below the ring imports it. The rules are read from the source with ``ast``, so they hold
for modules added later; every import counts for them, including those inside functions
and under ``TYPE_CHECKING``. The circle check follows the imports that run when a module
is imported: module level, outside ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "kirocache"
# The first name under kirocache of every outer-ring module or package, those to come
# (the admin web app, framework integrations) included.
RING = frozenset(
    {"sessions", "monitoring", "cleanup", "exporters", "cli", "_cli", "_ring", "web", "contrib"}
)


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a kirocache module."""

    importer: str
    imported: str
    path: Path
    line: int
    runtime: bool  # runs on import: module level, not under TYPE_CHECKING

    def __str__(self) -> str:
        where = f"{self.path.relative_to(SRC.parent)}:{self.line}"
        return f"{where}: {self.importer} imports {self.imported}"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_of(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def in_ring(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[0] == "kirocache" and parts[1] in RING


def is_public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split("."))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    body: list[ast.stmt], *, runtime: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in ``body``, and whether it runs when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, runtime
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, runtime=False)
            yield from _walk(node.orelse, runtime=runtime)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node.body, runtime=False)
        else:
            # Class bodies, if/try/with blocks and loops run on import like the module.
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    stmts = [s for s in inner if isinstance(s, ast.stmt)]
                    stmts += [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body]
                    yield from _walk(stmts, runtime=runtime)


def imports_in(source: str, module: str, path: Path, modules: set[str]) -> list[Import]:
    """The kirocache modules ``source`` (the text of ``module``) imports."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node, runtime in _walk(ast.parse(source).body, runtime=True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from package import submodule`` imports the submodule.
                child = f"{base}.{alias.name}"
                targets.append(child if child in modules else base)
        found += [
            Import(module, target, path, node.lineno, runtime)
            for target in dict.fromkeys(targets)
            if target == "kirocache" or target.startswith("kirocache.")
        ]
    return found


@functools.cache
def all_imports() -> tuple[Import, ...]:
    modules = all_modules()
    names = set(modules)
    return tuple(
        item
        for module, path in modules.items()
        for item in imports_in(path.read_text(encoding="utf-8"), module, path, names)
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


# -- the rules -----------------------------------------------------------------------------


def test_the_outer_ring_imports_only_the_public_api_and_itself() -> None:
    bad = [
        f"{item} (private: the outer ring may import only public modules and each other)"
        for item in all_imports()
        if in_ring(item.importer) and not is_public(item.imported) and not in_ring(item.imported)
    ]
    assert not bad, "\n".join(bad)


def test_nothing_below_the_outer_ring_imports_it() -> None:
    bad = [
        f"{item} (the outer ring sits on top: nothing below it may import it)"
        for item in all_imports()
        if not in_ring(item.importer) and in_ring(item.imported)
    ]
    assert not bad, "\n".join(bad)


def test_no_import_circles() -> None:
    runtime = [item for item in all_imports() if item.runtime and item.imported != item.importer]
    edges: dict[str, set[str]] = {}
    for item in runtime:
        edges.setdefault(item.importer, set()).add(item.imported)
    circles = cycles(edges)
    lines = []
    for circle in circles:
        members = set(circle)
        lines.append("circle: " + " <-> ".join(circle))
        lines += [
            f"  {item}" for item in runtime if item.importer in members and item.imported in members
        ]
    assert not circles, "\n".join(lines)


# -- the checker itself --------------------------------------------------------------------


FAKE = """
from __future__ import annotations
from typing import TYPE_CHECKING
import kirocache
from kirocache import presets, Cache
from . import health
from .._cache import engine
if TYPE_CHECKING:
    from kirocache._values.types import Duration
else:
    import kirocache.keys
def later() -> None:
    from kirocache.backends._glob import escape_glob
"""


def test_the_checker_sees_every_kind_of_import() -> None:
    modules = {
        "kirocache",
        "kirocache.presets",
        "kirocache._ring.health",
        "kirocache._cache.engine",
        "kirocache._values.types",
        "kirocache.keys",
        "kirocache.backends._glob",
    }
    path = PACKAGE / "_ring" / "fake.py"
    found = [
        (item.imported, item.runtime)
        for item in imports_in(FAKE, "kirocache._ring.fake", path, modules)
    ]
    assert found == [
        ("kirocache", True),
        ("kirocache.presets", True),
        ("kirocache", True),
        ("kirocache._ring.health", True),
        ("kirocache._cache.engine", True),
        ("kirocache._values.types", False),
        ("kirocache.keys", True),
        ("kirocache.backends._glob", False),
    ]
    assert in_ring("kirocache._ring.fake")
    assert in_ring("kirocache.exporters._require")
    assert not in_ring("kirocache")
    assert not in_ring("kirocache.backends")
    assert is_public("kirocache.backends")
    assert not is_public("kirocache._cache.engine")


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, []),
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"a"}}, [["a"]]),
    ],
)
def test_the_circle_finder(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected
