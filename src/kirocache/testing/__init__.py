"""Helpers for testing code that uses kirocache, and for testing backends.

``use_cache`` / ``ause_cache`` swap the default cache for a test (an in-memory one by
default); ``CacheRecorder`` records every operation so a test can assert "this call was a
hit"; ``ManualClock`` moves a cache's time by hand; ``FaultyBackend`` wraps any backend and
makes it fail on demand. The pytest fixtures
``kirocache_cache`` and ``kirocache_recorder`` come from :mod:`kirocache.testing.pytest_plugin`,
which pytest loads by itself once kirocache is installed. The backend conformance suite is in
:mod:`kirocache.testing.conformance`.
"""

from kirocache._values.clock import ManualClock
from kirocache.testing._faults import FaultyBackend
from kirocache.testing._swap import CacheRecorder, Recorded, ause_cache, use_cache

__all__ = ["CacheRecorder", "FaultyBackend", "ManualClock", "Recorded", "ause_cache", "use_cache"]
