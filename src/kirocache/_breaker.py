"""Transitional re-export of the breaker from ``kirocache._cache`` (removed at integration)."""

from __future__ import annotations

from kirocache._cache.breaker import BreakerState, CircuitBreaker

__all__ = ["BreakerState", "CircuitBreaker"]
