"""Transitional re-export of ``Batch`` from ``kirocache._cache`` (removed at integration)."""

from __future__ import annotations

from kirocache._cache.batch import Batch, BatchResult
from kirocache._global import batch

__all__ = ["Batch", "BatchResult", "batch"]
