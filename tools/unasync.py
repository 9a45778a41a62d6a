"""Generate ``_cache_sync.py`` from ``_cache_async.py`` (``--check``: fail if it differs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "kirocache"
SOURCE = PACKAGE / "_cache_async.py"
TARGET = PACKAGE / "_cache_sync.py"

HEADER = '''"""The sync half of ``Cache``: thin shells over ``CacheCore`` that call the backend.

Generated from ``_cache_async.py`` by ``tools/unasync.py``; do not edit by hand. Its twin
there is the file to change.
"""
'''

RULES: list[tuple[str, str]] = [
    (r"async def _a(\w+)", r"def _\1"),
    (r"async def a(\w+)", r"def \1"),
    (r"await ", ""),
    (r"self\._a(run|lookup|lookup_many|store|store_many|erase|index)\(", r"self._\1("),
    (r"self\.backend\.a(\w+)", r"self.backend.\1"),
    (r"_need_async", "_need_sync"),
    (r"_async_ok", "_sync_ok"),
    (r"AsyncCacheMethods", "SyncCacheMethods"),
    (r"The async methods", "The sync methods"),
]


def unasync(text: str) -> str:
    """Turn the async shell's source into the sync shell's, formatted by ruff."""
    body = text[text.index('"""', 3) + 3 :].lstrip("\n")
    for pattern, replacement in RULES:
        body = re.sub(pattern, replacement, body)
    source = HEADER + "\n" + body
    done = subprocess.run(  # noqa: S603 - runs this interpreter's ruff on our own source
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(TARGET), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def main() -> int:
    """Write the sync shell, or with ``--check`` report whether it is up to date."""
    generated = unasync(SOURCE.read_text())
    if "--check" in sys.argv[1:]:
        if TARGET.read_text() != generated:
            print(f"{TARGET} is out of date: run python tools/unasync.py")  # noqa: T201
            return 1
        return 0
    TARGET.write_text(generated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
