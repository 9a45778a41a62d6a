"""Every ``>>>`` example in the package's docstrings runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import kirocache
from kirocache._cache import default as _global

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(kirocache.__path__, "kirocache.")
    if not info.name.endswith("pytest_plugin") and not info.name.endswith("conformance")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_global, "_default", None)  # examples may configure the default
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_examples_sections_are_the_ones_the_reference_renders_as_code() -> None:
    # griffe parses "Examples:" into highlighted ``>>>`` blocks; a singular "Example:" is an
    # admonition whose doctest lines render as nested blockquotes, the code run together.
    import re
    from pathlib import Path

    singular = re.compile(r"^\s+Example:\s*$", re.MULTILINE)
    package = Path(kirocache.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if singular.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
