"""Every ```python block of the README and of docs/ runs, so the docs cannot lie.

A file's blocks run in order in one namespace, so a later block may use names an earlier
one defined. Blocks fenced as anything but ``python``/``py`` (``pycon``, ``text``, ``bash``)
are shown, not run. A file that mentions ``redis://localhost:6379/0`` runs against the test
session's redis-server: the literal is replaced by the ``redis_url`` fixture's URL.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_REDIS_URL = "redis://localhost:6379/0"
RUNNABLE = frozenset({"python", "py"})

_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, first code line (1-based) and dedented code."""

    language: str
    line: int
    code: str


def extract_blocks(text: str) -> list[Block]:
    """Return every fenced code block of a Markdown text, in order.

    Follows the fences of Python-Markdown's superfences, which the docs site uses: a fence
    may be indented (inside an admonition or a list), is closed by a fence of the same
    character at least as long, and its info string may carry attributes after the language
    (``python title="x.py"``, ``{.python}``).

    Raises:
        ValueError: A fence is never closed.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        start = index + 1
        end = start
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            msg = f"the code fence opened on line {index + 1} is never closed"
            raise ValueError(msg)
        body = [line.removeprefix(indent) for line in lines[start:end]]
        words = opening["info"].strip().lstrip("{").split()
        language = words[0].lstrip(".").lower() if words else ""
        blocks.append(Block(language, start + 1, "\n".join(body) + "\n"))
        index = end + 1
    return blocks


def run_blocks(path: Path, blocks: list[Block], replacements: dict[str, str]) -> dict[str, object]:
    """Run the runnable blocks of ``path`` in order, in one namespace, and return it.

    The namespace is a module registered in ``sys.modules`` while the blocks run, as a script's
    would be, so dataclasses, pickle and type hints work on the classes a doc defines. Each
    block is compiled with its lines at their place in the file, so a traceback points at the
    Markdown line.

    Raises:
        pytest.fail.Exception: A block raised; the message names the file and block line.
    """
    module = types.ModuleType("kirocache_docs_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        for block in blocks:
            if block.language not in RUNNABLE:
                continue
            code = block.code
            for old, new in replacements.items():
                code = code.replace(old, new)
            compiled = compile("\n" * (block.line - 1) + code, str(path), "exec")
            try:
                exec(compiled, module.__dict__)
            except Exception as exc:
                where = f"{path}:{block.line}"
                pytest.fail(f"{where}: the block raised {type(exc).__name__}: {exc}")
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def doc_params() -> list[object]:
    """One param per Markdown file that has runnable blocks; Redis files are marked."""
    params: list[object] = []
    for path in doc_files():
        text = path.read_text("utf-8")
        if not any(block.language in RUNNABLE for block in extract_blocks(text)):
            continue
        marks = [pytest.mark.real_redis] if DOC_REDIS_URL in text else []
        params.append(pytest.param(path, id=str(path.relative_to(ROOT)), marks=marks))
    return params


@pytest.fixture
def isolated_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a doc set environment variables and the default cache without leaking them.

    The docs describe a clean environment, so a developer's own settings are hidden.
    """
    from kirocache._cache import default as _global

    monkeypatch.setattr(_global, "_default", _global._default)
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("isolated_process_state")
@pytest.mark.parametrize("path", doc_params())
def test_doc_code_blocks_run(path: Path, request: pytest.FixtureRequest) -> None:
    text = path.read_text("utf-8")
    replacements: dict[str, str] = {}
    if DOC_REDIS_URL in text:
        replacements[DOC_REDIS_URL] = str(request.getfixturevalue("redis_url"))
    run_blocks(path, extract_blocks(text), replacements)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    blocks = extract_blocks((ROOT / "README.md").read_text("utf-8"))
    shell = [b.code.strip() for b in blocks if b.language in {"bash", "sh", "shell", "console"}]
    assert len(shell) == 2, shell
    demo, tests = shell
    assert demo.endswith("kirocache demo")
    assert tests.endswith("pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    ci_code = "\n".join(line for line in ci_lines if not line.lstrip().startswith("#"))
    # .ci/run runs the test command step by step (keeping an existing .venv).
    for step in tests.split(" && "):
        assert step in ci_code, step


# The extraction and running logic, on small documents.

SAMPLE = """\
# Title

```python
x = 1
```

Some text with `inline` code.

````markdown
```python
not_a_block = True
```
````

!!! note

    ```py title="nested.py"
    y = x + 1
    ```

```pycon
>>> raise SystemExit
```

~~~text
raise SystemExit
~~~

``` { .python }
z = y * 10
```
"""


def test_extract_blocks_finds_every_fence_with_its_language_and_line() -> None:
    blocks = extract_blocks(SAMPLE)
    assert [(b.language, b.line) for b in blocks] == [
        ("python", 4),
        ("markdown", 10),
        ("py", 18),
        ("pycon", 22),
        ("text", 26),
        ("python", 30),
    ]
    assert blocks[0].code == "x = 1\n"
    assert blocks[1].code == "```python\nnot_a_block = True\n```\n"
    assert blocks[2].code == "y = x + 1\n"


def test_extract_blocks_rejects_an_unclosed_fence() -> None:
    with pytest.raises(ValueError, match="line 3"):
        extract_blocks("text\n\n```python\nx = 1\n")


def test_extract_blocks_ignores_inline_triple_backticks() -> None:
    assert extract_blocks("say ```python``` inline\n```a``` b\n") == []


def test_run_blocks_shares_one_namespace_and_skips_shown_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(SAMPLE + "```python\nassert z == 20\n```\n")
    namespace = run_blocks(doc, extract_blocks(doc.read_text()), {})
    assert (namespace["x"], namespace["y"], namespace["z"]) == (1, 2, 20)
    assert "not_a_block" not in namespace


def test_run_blocks_names_the_file_and_line_of_a_failing_block(tmp_path: Path) -> None:
    doc = tmp_path / "broken.md"
    doc.write_text("# Broken\n\n```python\nvalue = 1\n```\n\n```python\nassert value == 2\n```\n")
    with pytest.raises(pytest.fail.Exception, match=r"broken\.md:8: the block raised Assert"):
        run_blocks(doc, extract_blocks(doc.read_text()), {})


def test_run_blocks_tracebacks_point_at_the_markdown_line(tmp_path: Path) -> None:
    doc = tmp_path / "trace.md"
    doc.write_text("# Trace\n\n```python\nok = True\nraise RuntimeError('line 5')\n```\n")
    with pytest.raises(pytest.fail.Exception) as info:
        run_blocks(doc, extract_blocks(doc.read_text()), {})
    cause = info.value.__context__
    assert isinstance(cause, RuntimeError)
    frames = [f for f in _frames(cause) if f[0] == str(doc)]
    assert frames == [(str(doc), 5)]


def test_run_blocks_applies_replacements(tmp_path: Path) -> None:
    doc = tmp_path / "redis.md"
    doc.write_text(f'```python\nurl = "{DOC_REDIS_URL}"\nassert url == "redis://x:1/2"\n```\n')
    run_blocks(doc, extract_blocks(doc.read_text()), {DOC_REDIS_URL: "redis://x:1/2"})
    with pytest.raises(pytest.fail.Exception):
        run_blocks(doc, extract_blocks(doc.read_text()), {})


def _frames(exc: BaseException) -> list[tuple[str, int]]:
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def test_sphinx_roles_in_docstrings_become_code_spans() -> None:
    spec = importlib.util.spec_from_file_location("griffe_roles", ROOT / "docs" / "griffe_roles.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Use :class:`Backend`, :meth:`~kirocache.Cache.get` and :py:func:`frame`; ``x``."
    assert module.strip_roles(text) == "Use `Backend`, `get` and `frame`; ``x``."
