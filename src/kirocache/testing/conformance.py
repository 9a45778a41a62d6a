"""The backend conformance suite: the behaviour every kirocache backend must show.

A backend counts as done when it passes the half, or halves, it implements; kirocache
runs both against the memory backend, Redis over fakeredis and a real ``redis-server``.
Subclass the class that matches your backend in a test module and provide a ``backend``
fixture that returns a ready backend:

* :class:`SyncBackendConformance` for a sync backend (``Backend``),
* :class:`AsyncBackendConformance` for an async one (``AsyncBackend``),
* :class:`BackendConformance` for one that serves both.

Each half tests the small protocol (``get``, ``get_many``, ``execute``, ``scan``,
``ping``, ``stats``, ``close``) and every op kind ``execute`` runs, then the convenience
methods (``set``, ``delete``, ``tag_add``, ...) through
:func:`kirocache.backends.with_conveniences`: your backend's own methods if it has them,
otherwise the ones derived from its ``execute`` and ``scan``. A sync-only backend::

    # tests/test_my_backend.py
    import pytest
    from kirocache.testing.conformance import SyncBackendConformance

    from my_package import DiskBackend


    class TestDiskBackend(SyncBackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            backend = DiskBackend(tmp_path)
            yield backend
            backend.close()

Every test writes under its own unique key prefix and deletes it (with
``delete_pattern``) afterwards, so the backend may point at a shared database. The async
tests are ``async def`` functions: run them with pytest-asyncio in auto mode
(``asyncio_mode = "auto"`` in the pytest configuration). The suite sleeps a few tenths of
a second in total to watch real TTLs run out.
"""

from __future__ import annotations

from kirocache.backends._conveniences import FullBackend
from kirocache.backends._protocol import AsyncBackend, Backend
from kirocache.testing._conformance.async_half import AsyncBackendConformance
from kirocache.testing._conformance.sync_half import SyncBackendConformance

__all__ = ["AsyncBackendConformance", "BackendConformance", "FullBackend", "SyncBackendConformance"]


class BackendConformance(SyncBackendConformance, AsyncBackendConformance):
    """Both halves, for a backend serving sync and async code from one object.

    The two halves share no test or fixture name, so nothing here depends on their order.
    """

    def test_satisfies_both_protocols(self, backend: FullBackend) -> None:
        """The backend is a runtime ``Backend`` and ``AsyncBackend``."""
        assert isinstance(backend, Backend)
        assert isinstance(backend, AsyncBackend)
