"""Transitional re-export of engine names from ``kirocache._cache`` (removed at integration)."""

from __future__ import annotations

from kirocache._cache.guard import FAILED, OnError
from kirocache._cache.invalidator import TOMBSTONE, UNREAD, Guards, Seen
from kirocache._cache.keyspace import DEFAULT_LABEL, DEP_PREFIX, TAG_PREFIX

__all__ = [
    "DEFAULT_LABEL",
    "DEP_PREFIX",
    "FAILED",
    "TAG_PREFIX",
    "TOMBSTONE",
    "UNREAD",
    "Guards",
    "OnError",
    "Seen",
]
