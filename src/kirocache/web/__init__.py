"""The admin HTTP API and dashboard of a cache: an ASGI app on Starlette (extra ``admin``).

:func:`admin_app` serves a cache's metrics (JSON and Prometheus), health, alerts, keys and
invalidation log to bearer tokens with scopes (``read``, ``reveal``, ``admin``), takes
invalidations and cleanup runs from ``admin`` tokens, and serves a dashboard page at ``/``
that works offline. :func:`admin_app_from_env` reads the tokens from
``KIROCACHE_ADMIN_TOKEN`` and ``KIROCACHE_READ_TOKEN`` (what ``kirocache serve`` runs).

Examples:
    >>> from kirocache import Cache
    >>> from kirocache.web import admin_app
    >>> app = admin_app(Cache.from_url("memory://"), token="an-admin-secret-of-32-characters")
"""

from __future__ import annotations

from kirocache.web._app import (
    ENV_ADMIN_TOKEN,
    ENV_READ_TOKEN,
    Admin,
    SecurityHeaders,
    admin_app,
    admin_app_from_env,
)
from kirocache.web._auth import MIN_TOKEN_LENGTH, SCOPES, RateLimiter, Scope, Token, Tokens
from kirocache.web._routes import HttpInvalidationRecord

__all__ = [
    "ENV_ADMIN_TOKEN",
    "ENV_READ_TOKEN",
    "MIN_TOKEN_LENGTH",
    "SCOPES",
    "Admin",
    "HttpInvalidationRecord",
    "RateLimiter",
    "Scope",
    "SecurityHeaders",
    "Token",
    "Tokens",
    "admin_app",
    "admin_app_from_env",
]
