"""pytest fixtures for applications that use kirocache, loaded through the ``pytest11`` entry point.

``kirocache_cache`` is a fresh in-memory cache installed as the default for one test;
``kirocache_recorder`` is the recorder of that same cache, so a test can assert which calls
were hits and misses. Without the entry point (for instance from a source checkout), load
the plugin with ``-p kirocache.testing.pytest_plugin``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kirocache._cache import Cache
    from kirocache.testing._swap import CacheRecorder

# kirocache itself is imported inside the fixtures: pytest loads this plugin before a
# coverage tool starts, and an import here would hide the package's module-level lines.

__all__ = ["kirocache_cache", "kirocache_recorder"]


@pytest.fixture
def kirocache_cache() -> Iterator[Cache]:
    """A fresh in-memory ``Cache``, the default cache for the test, and recorded.

    ``kirocache.get_cache()`` and ``@cached`` functions without ``cache=`` use it during the
    test; the previous default comes back afterwards. Its ``metrics`` is a
    ``CacheRecorder`` (see ``kirocache_recorder``).
    """
    from kirocache.testing._swap import CacheRecorder, use_cache

    with use_cache("memory://", metrics=CacheRecorder()) as cache:
        yield cache


@pytest.fixture
def kirocache_recorder(kirocache_cache: Cache) -> CacheRecorder:
    """The ``CacheRecorder`` of ``kirocache_cache``: every operation of the test, in order.

    Request ``kirocache_cache`` as well to reach the cache itself; both are the same one.
    """
    from kirocache.testing._swap import CacheRecorder

    recorder = kirocache_cache.metrics
    if not isinstance(recorder, CacheRecorder):
        msg = (
            "kirocache_cache was overridden with a cache that does not record; build it with "
            "metrics=CacheRecorder() to use kirocache_recorder"
        )
        raise TypeError(msg)
    return recorder
