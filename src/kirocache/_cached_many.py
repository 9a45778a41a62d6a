"""Where ``kirocache/__init__.py`` imports ``@cached_many`` from; it lives in ``_decorators``."""

from kirocache._decorators import AsyncCachedManyFunction, CachedManyFunction, cached_many

__all__ = ["AsyncCachedManyFunction", "CachedManyFunction", "cached_many"]
