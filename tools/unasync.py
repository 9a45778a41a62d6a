"""Generate the sync halves of ``Cache`` from the async ones (``--check``: fail if they differ).

``_cache_async.py`` gives ``_cache_sync.py`` and ``_invalidation_async.py`` gives
``_invalidation_sync.py``: ``a``-prefixes and ``await`` removed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "kirocache"
PAIRS = (
    ("_cache_async.py", "_cache_sync.py"),
    ("_invalidation_async.py", "_invalidation_sync.py"),
)

HEADER = '''"""The sync half of {what}.

Generated from ``{source}`` by ``tools/unasync.py``; do not edit by hand. Its twin
there is the file to change.
"""
'''

# Private methods with an async twin named ``_a<name>``.
PRIVATE_TWINS = (
    "run",
    "lookup",
    "lookup_many",
    "store",
    "store_many",
    "refresh_generations",
    "cascade",
    "delete_glob",
    "bump_generation",
    "read_with",
    "drop_corrupt",
    "purge",
    "tombstoned",
)

RULES: list[tuple[str, str]] = [
    (r"async def _a(\w+)", r"def _\1"),
    (r"async def a(\w+)", r"def \1"),
    (r"await ", ""),
    (r"async for ", "for "),
    (rf"self\._a({'|'.join(PRIVATE_TWINS)})\b", r"self._\1"),
    (r"self\.a([a-z]\w*)\(", r"self.\1("),
    (r"self\.backend\.a(\w+)", r"self.backend.\1"),
    (r"_need_async", "_need_sync"),
    (r"_async_ok", "_sync_ok"),
    (r"AsyncCacheMethods", "SyncCacheMethods"),
    (r"_cache_async import", "_cache_sync import"),
    (r"AsyncInvalidationMethods", "SyncInvalidationMethods"),
    (r"The async methods", "The sync methods"),
]


def unasync(text: str, source_name: str, target: Path) -> str:
    """Turn an async shell's source into its sync shell's, formatted by ruff."""
    what = text[3 : text.index(":")].replace("The async half of ", "")
    body = text[text.index('"""', 3) + 3 :].lstrip("\n")
    for pattern, replacement in RULES:
        body = re.sub(pattern, replacement, body)
    source = HEADER.format(what=what, source=source_name) + "\n" + body
    done = subprocess.run(  # noqa: S603 - runs this interpreter's ruff on our own source
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(target), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def main() -> int:
    """Write the sync shells, or with ``--check`` report whether they are up to date."""
    stale = 0
    for source_name, target_name in PAIRS:
        target = PACKAGE / target_name
        generated = unasync((PACKAGE / source_name).read_text(), source_name, target)
        if "--check" not in sys.argv[1:]:
            target.write_text(generated)
        elif not target.exists() or target.read_text() != generated:
            print(f"{target} is out of date: run python tools/unasync.py")  # noqa: T201
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
