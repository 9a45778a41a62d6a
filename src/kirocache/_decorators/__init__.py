"""The decorator engine: ``@cached``, ``@cached_many``, ``@invalidates`` and their wrappers.

``options.py`` checks what a decorator is given, ``plan.py`` (and ``bulk.py`` for
``@cached_many``) decides everything about a decorated function once, ``wrapper.py`` is the
base of every wrapper, ``cached_sync.py``/``cached_async.py`` and ``many.py`` hold the
hand-written hot paths, and ``flight.py`` the waiting that differs between threads and
asyncio. The ``DistributedLock`` the decorators take is ``kirocache.backends``'s.
"""

from kirocache._decorators.bypass import bypass
from kirocache._decorators.cached import cached, cached_many
from kirocache._decorators.cached_async import AsyncCachedFunction, awarm
from kirocache._decorators.cached_sync import CachedFunction, warm
from kirocache._decorators.invalidates import invalidates
from kirocache._decorators.many import AsyncCachedManyFunction, CachedManyFunction

__all__ = [
    "AsyncCachedFunction",
    "AsyncCachedManyFunction",
    "CachedFunction",
    "CachedManyFunction",
    "awarm",
    "bypass",
    "cached",
    "cached_many",
    "invalidates",
    "warm",
]
