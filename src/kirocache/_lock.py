"""Where ``kirocache.backends`` and sessions import ``DistributedLock`` from (``_decorators``)."""

from kirocache._decorators.lock import DistributedLock

__all__ = ["DistributedLock"]
