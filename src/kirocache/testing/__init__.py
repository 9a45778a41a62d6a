"""Helpers for testing code that uses kirocache, and for testing backends.

``FaultyBackend`` wraps any backend and makes it fail on demand. The backend conformance
suite is in :mod:`kirocache.testing.conformance`.
"""

from kirocache.testing._faults import FaultyBackend

__all__ = ["FaultyBackend"]
