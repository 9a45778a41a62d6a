"""The backend conformance suite, run on every backend of the shared ``backend`` fixture."""

from __future__ import annotations

from kirocache.testing.conformance import BackendConformance


class TestBackendConformance(BackendConformance):
    """Memory, fakeredis and the real redis-server must all pass the same suite."""
