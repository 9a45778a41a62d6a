"""The cache's own random numbers: jitter, early refresh, spreading work over nodes."""

from __future__ import annotations

import random
from typing import Final

__all__ = ["RANDOM"]

RANDOM: Final = random.Random()
"""A generator of the cache's own: the application's (the global ``random``, which it may
seed for reproducible runs) is never advanced by the cache, from a caller's thread or from
a background one (a subscriber's backoff, a lock's retry, a refresh)."""
