"""Starlette and FastAPI: a lifespan that opens and closes the cache, and a dependency.

Built on Starlette's lifespan protocol alone (no FastAPI import)::

    from typing import Annotated

    from fastapi import Depends, FastAPI

    from kirocache import Cache
    from kirocache.contrib.starlette import CacheLifespan, request_cache

    lifespan = CacheLifespan("redis://localhost:6379/0", key_prefix="shop:")
    app = FastAPI(lifespan=lifespan)
    CacheDep = Annotated[Cache, Depends(lifespan.dependency)]  # or Depends(request_cache)

    @app.get("/hits")
    async def hits(cache: CacheDep) -> dict[str, int | None]:
        return {"hits": await cache.aincr("hits")}
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

import kirocache
from kirocache import BackendError, Cache, ConfigurationError
from kirocache.backends import mask_url

__all__ = ["STATE_KEY", "CacheLifespan", "request_cache"]

STATE_KEY: Final = "kirocache"
"""The name the lifespan gives the cache in the application state (``request.state``)."""


class CacheLifespan:
    """A Starlette/FastAPI lifespan: checks the cache at start-up, closes it at shutdown.

    Pass it as ``lifespan=`` to ``Starlette(...)`` or ``FastAPI(...)``. At start-up it
    pings the backend and reads a key under the key prefix, and refuses to start, with a
    ``ConfigurationError`` naming the URL (password masked) and the fault, when either
    fails (server down, wrong password, an ACL that keeps it out of the prefix). It makes
    the cache the process default (``kirocache.configure``), so ``@cached`` without
    ``cache=`` uses it, and hands the cache to requests through the lifespan state
    (``request.state.kirocache``, read by :func:`request_cache`). At shutdown it closes the
    cache's connections, async and sync.

    The cache is built when the lifespan is, before the app starts (nothing connects until
    the first call), so ``lifespan.cache`` can be given to ``@cached(cache=...)`` or to
    ``kirocache.web.admin_app`` at import time. To run your own start-up code too, enter
    it from your lifespan: ``async with lifespan(app) as state: yield {**state, ...}``.

    Args:
        target: A ``Cache``, or a URL for ``Cache.from_url``; ``None`` reads ``REDIS_URL``
            (memory when unset).
        check: Check the backend at start-up and fail fast when it cannot be used.
        set_default: Make the cache the process default at start-up.
        close: Close the cache at shutdown.
        **options: ``Cache.from_url`` options (not allowed with a ready ``Cache``).

    Raises:
        ConfigurationError: The URL or an option is invalid, or options came with a
            ready ``Cache``.
    """

    def __init__(
        self,
        target: Cache | str | None = None,
        *,
        check: bool = True,
        set_default: bool = True,
        close: bool = True,
        **options: Any,
    ) -> None:
        if isinstance(target, Cache):
            if options:
                msg = "options cannot be combined with a ready Cache; pass them to Cache()"
                raise ConfigurationError(msg)
            self.cache = target
        else:
            self.cache = Cache.from_url(target, **options)
        # only the masked URL is kept: error trackers record objects' attributes too
        self._where = mask_url(target) if isinstance(target, str) else None
        self.check = check
        self.set_default = set_default
        self.close_at_shutdown = close

    def __call__(self, app: object) -> AbstractAsyncContextManager[dict[str, Any]]:
        """The lifespan context for ``app``: Starlette enters it at start-up.

        Args:
            app: The application (unused: the cache does not depend on it).

        Returns:
            An async context manager whose value is the lifespan state
            ``{"kirocache": cache}``.
        """
        return self._run()

    def dependency(self) -> Cache:
        """This lifespan's cache: a dependency, ``Annotated[Cache, Depends(lifespan.dependency)]``.

        Unlike :func:`request_cache` it does not read the lifespan state, so it also works
        under a test transport that runs no lifespan (httpx's ``ASGITransport``).

        Returns:
            The cache.
        """
        return self.cache

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        cache = self.cache
        if self.check:
            await self._check(cache)
        if self.set_default:
            kirocache.configure(cache)
        try:
            yield {STATE_KEY: cache}
        finally:
            if self.close_at_shutdown:
                await cache.aclose()
                # The sync half (def endpoints run in threads) joins its threads: not on the loop.
                await run_in_threadpool(cache.close)

    async def _check(self, cache: Cache) -> None:
        """Ping the backend and read a key under the prefix, as the app's first call would.

        The read finds what a ping cannot: an ACL that keeps the user out of the prefix.
        """
        try:
            await cache.aping()
            await cache.backend.aget(f"{cache.key_prefix}kirocache:check")
        except BackendError as exc:
            where = self._where or repr(cache)
            # the backend's message names its URL (masked) and the fix: say it once
            at = "" if where in str(exc) else f" at {where}"
            msg = (
                f"start-up check of the cache{at} failed: {exc} "
                "(CacheLifespan(check=False) starts without this check)"
            )
            raise ConfigurationError(msg) from None


def request_cache(conn: HTTPConnection) -> Cache:
    """The cache the lifespan handed to the app: a FastAPI dependency, or call it yourself.

    Use it as ``Annotated[Cache, Depends(request_cache)]`` in FastAPI, or call
    ``request_cache(request)`` in a Starlette endpoint; it works for WebSockets too.

    Args:
        conn: The request (or WebSocket) being served.

    Returns:
        The ``Cache`` of the app's :class:`CacheLifespan`.

    Raises:
        ConfigurationError: The app was not started with a ``CacheLifespan``.
    """
    cache = getattr(conn.state, STATE_KEY, None)
    if not isinstance(cache, Cache):
        msg = (
            "no kirocache lifespan ran for this app: pass lifespan=CacheLifespan(...) to "
            "Starlette() or FastAPI(), or enter it from your own lifespan"
        )
        raise ConfigurationError(msg)
    return cache
