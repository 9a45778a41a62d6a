"""``admin_app``: the Starlette app of the admin API and dashboard, with its security headers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kirocache import Cache, ConfigurationError, get_cache
from kirocache.monitoring import HealthChecker, HealthReport, Monitor
from kirocache.web import _routes as routes
from kirocache.web._auth import RateLimiter, Scope, Tokens, named_tokens

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Send
    from starlette.types import Scope as AsgiScope

__all__ = ["ENV_ADMIN_TOKEN", "ENV_READ_TOKEN", "Admin", "admin_app", "admin_app_from_env"]

ENV_ADMIN_TOKEN: Final = "KIROCACHE_ADMIN_TOKEN"  # noqa: S105 - a variable name
ENV_READ_TOKEN: Final = "KIROCACHE_READ_TOKEN"  # noqa: S105 - a variable name

# No inline script or style anywhere: the page's script and sheet come from the app itself.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS: Final = (
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cache-control", b"no-store"),
)
_STATIC: Final = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


class SecurityHeaders:
    """ASGI middleware: the security headers on every answer (CSP, nosniff, no-store, ...)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class Admin:
    """What every route of one admin app shares (``app.state.admin``).

    Attributes:
        cache: The cache it serves.
        tokens: The tokens it accepts.
        limiter: The token bucket of mutating routes, per token; ``None``: no limit.
        failures: The token bucket of failed authentications, per client address.
        monitor: Health checks and alerts (one checker, so errors are counted once).
        check_every: Seconds a health report is reused before the next check.
        poll_interval: Seconds between the dashboard's polls.
    """

    cache: Cache
    tokens: Tokens
    limiter: RateLimiter | None
    failures: RateLimiter | None
    monitor: Monitor
    check_every: float = 1.0
    poll_interval: float = 2.0
    _checked_at: float = field(default=-1e18, repr=False)

    async def check(self) -> HealthReport:
        """A health check, evaluated for alerts; reused for ``check_every`` seconds."""
        now = self.cache.clock.monotonic()
        report = self.monitor.last_report
        if report is None or now - self._checked_at >= self.check_every:
            await self.monitor.amonitor_and_alert()
            self._checked_at = now
            report = self.monitor.last_report
        assert report is not None
        return report


def _dashboard(admin: Admin) -> Any:
    page = resources.files("kirocache.web").joinpath("static/dashboard.html").read_text("utf-8")
    page = page.replace("{{anonymous}}", "true" if admin.tokens.allow_anonymous_read else "false")
    page = page.replace("{{interval}}", str(int(admin.poll_interval * 1000)))

    async def dashboard(request: Request) -> Response:
        if not request.url.path.endswith("/"):
            # the page's links are relative: it must be read as a folder wherever mounted
            return RedirectResponse(request.url.replace(path=request.url.path + "/"), 308)
        return Response(page, media_type="text/html; charset=utf-8")

    return dashboard


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        raise HTTPException(404)
    body = resources.files("kirocache.web").joinpath("static").joinpath(name).read_bytes()
    return Response(body, media_type=_STATIC[name])


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
    return routes.json_error(status, code, code.replace("_", " "))


def admin_app(
    cache: Cache | None = None,
    *,
    token: str | None = None,
    read_token: str | None = None,
    allow_anonymous_read: bool = False,
    tokens: Mapping[str, tuple[str, Scope]] | None = None,
    rate_limit: tuple[int, float] | None = (10, 1.0),
    auth_failure_limit: tuple[int, float] | None = (20, 1.0),
    public_health: bool = False,
    poll_interval: float = 2.0,
    check_every: float = 1.0,
    monitor: Monitor | None = None,
) -> Starlette:
    """The admin API and dashboard of a cache, as an ASGI app.

    Mount it under any prefix (``app.mount("/cache", admin_app(cache, token=...))``) or
    serve it alone (``uvicorn``). Every route but the dashboard page and its files needs a
    bearer token: the ``read`` scope reads metrics, health, alerts and keys; ``reveal``
    also shows values; ``admin`` also invalidates and runs cleanups. Mutating routes are
    rate limited per token and recorded in the cache's invalidation log with source
    ``"http"`` and the token's name. No CORS headers are sent.

    Args:
        cache: The cache to serve; ``None``: the default cache (``kirocache.get_cache()``).
        token: The secret of the ``admin`` token (admin scope).
        read_token: The secret of the ``read`` token (read scope).
        allow_anonymous_read: Serve the read scope to requests without a token.
        tokens: More tokens: name -> ``(secret, scope)``.
        rate_limit: ``(burst, calls per second)`` of mutating routes per token; ``None``:
            no limit.
        auth_failure_limit: ``(burst, per second)`` of requests with a missing or wrong
            token per client address, answered 429 past it; ``None``: no limit.
        public_health: Answer ``GET /api/cache/health`` without a token too, with the
            status alone (and 503 when unhealthy), for a load balancer.
        poll_interval: Seconds between the dashboard's polls.
        check_every: Seconds a health check is reused by health and alert routes.
        monitor: The ``Monitor`` whose alerts are served (one on ``cache`` by default).

    Returns:
        The Starlette app; ``app.state.admin`` holds what its routes share.

    Raises:
        ConfigurationError: No token was given and ``allow_anonymous_read`` is false, a
            token is shorter than 16 characters, or an option is out of range.
    """
    target = get_cache() if cache is None else cache
    if not isinstance(target, Cache):
        msg = f"cache must be a kirocache.Cache, not {type(target).__name__}"  # type: ignore[unreachable]
        raise ConfigurationError(msg)
    for name, value in (("poll_interval", poll_interval), ("check_every", check_every)):
        if not isinstance(value, (int, float)) or not 0 < value <= 3600:  # type: ignore[redundant-expr]
            msg = f"{name} must be a number of seconds from 0 to 3600, got {value!r}"
            raise ConfigurationError(msg)
    accepted = Tokens(
        named_tokens(token, read_token, tokens), allow_anonymous_read=allow_anonymous_read
    )
    clock = target.clock.monotonic
    admin = Admin(
        cache=target,
        tokens=accepted,
        limiter=RateLimiter(*rate_limit, clock) if rate_limit is not None else None,
        failures=RateLimiter(*auth_failure_limit, clock) if auth_failure_limit else None,
        monitor=monitor
        if monitor is not None
        # Unix seconds on reports and alerts: the dashboard shows them as times of day
        else Monitor(
            target,
            clock=target.clock.time,
            checker=HealthChecker(target, clock=target.clock.time),
        ),
        check_every=float(check_every),
        poll_interval=float(poll_interval),
    )

    def api(path: str, handler: routes.Handler, scope: Scope, method: str = "GET") -> Route:
        endpoint = routes.guarded(admin, scope, handler, mutating=method != "GET")
        return Route(path, endpoint, methods=[method])

    health = api("/api/cache/health", routes.health, "read")
    if public_health:
        health = Route(
            "/api/cache/health", routes.public_health(admin, health.endpoint), methods=["GET"]
        )
    app = Starlette(
        routes=[
            Route("/", _dashboard(admin), methods=["GET"]),
            Route("/static/{name}", _static, methods=["GET"]),
            api("/metrics", routes.prometheus, "read"),
            api("/api/cache/session", routes.session, "read"),
            api("/api/cache/metrics", routes.metrics, "read"),
            health,
            api("/api/cache/alerts", routes.alerts, "read"),
            api("/api/cache/invalidations", routes.invalidations, "read"),
            api("/api/cache/keys", routes.keys, "read"),
            api("/api/cache/keys/{key:path}", routes.key, "read"),
            api("/api/cache/invalidate", routes.invalidate, "admin", "POST"),
            api("/api/cache/cleanup", routes.cleanup, "admin", "POST"),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.add_middleware(SecurityHeaders)
    app.state.admin = admin
    return app


def admin_app_from_env(cache: Cache | None = None, **options: Any) -> Starlette:
    """``admin_app`` with its tokens from ``KIROCACHE_ADMIN_TOKEN`` and ``KIROCACHE_READ_TOKEN``.

    What ``kirocache serve`` runs. A token given in ``options`` wins over the environment.

    Args:
        cache: As for ``admin_app``.
        **options: Any other ``admin_app`` option.

    Returns:
        The app.

    Raises:
        ConfigurationError: Neither variable is set (and ``allow_anonymous_read`` is not
            given), or a token is too short.
    """
    options.setdefault("token", os.environ.get(ENV_ADMIN_TOKEN) or None)
    options.setdefault("read_token", os.environ.get(ENV_READ_TOKEN) or None)
    return admin_app(cache, **options)
