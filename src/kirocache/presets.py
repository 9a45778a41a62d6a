"""Ready-made namespaces of a learning platform: prefixes and TTLs that suit each kind of data.

Use them as they are, or as a model for your own::

    from kirocache.presets import USER_PROFILE
    cache.set(USER_PROFILE.key(42), profile)  # "user:profile:42", one hour
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from kirocache.keys import Namespace

__all__ = [
    "ALL",
    "CODE_ANALYSIS",
    "EXERCISE",
    "LEARNING_PATH",
    "PERFORMANCE_METRICS",
    "RECOMMENDATIONS",
    "SEARCH_RESULTS",
    "USER_PROFILE",
    "USER_PROGRESS",
    "USER_SESSION",
]

USER_SESSION: Final = Namespace("session:", ttl=timedelta(hours=24))
"""Login sessions: a day."""
USER_PROFILE: Final = Namespace("user:profile:", ttl=timedelta(hours=1))
"""User profiles: an hour."""
USER_PROGRESS: Final = Namespace("user:progress:", ttl=timedelta(minutes=30))
"""Progress through exercises and paths: half an hour."""
LEARNING_PATH: Final = Namespace("learning:path:", ttl=timedelta(hours=2))
"""Learning paths, which change rarely: two hours."""
EXERCISE: Final = Namespace("exercise:", ttl=timedelta(hours=1))
"""Exercises: an hour."""
CODE_ANALYSIS: Final = Namespace("analysis:", ttl=timedelta(minutes=15))
"""Results of analysing submitted code, keyed by ``code_hash``: fifteen minutes."""
RECOMMENDATIONS: Final = Namespace("recommendations:", ttl=timedelta(minutes=30))
"""Recommendations: half an hour."""
SEARCH_RESULTS: Final = Namespace("search:", ttl=timedelta(minutes=10))
"""Search results: ten minutes."""
PERFORMANCE_METRICS: Final = Namespace("metrics:", ttl=timedelta(minutes=5))
"""Performance figures: five minutes."""

ALL: Final[tuple[Namespace, ...]] = (
    USER_SESSION,
    USER_PROFILE,
    USER_PROGRESS,
    LEARNING_PATH,
    EXERCISE,
    CODE_ANALYSIS,
    RECOMMENDATIONS,
    SEARCH_RESULTS,
    PERFORMANCE_METRICS,
)
"""Every preset, e.g. for ``Cache(..., namespaces=presets.ALL)``."""
