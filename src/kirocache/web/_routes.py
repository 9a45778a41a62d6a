"""The admin API's routes: each checks the caller's scope, then uses the cache's async API."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kirocache import BackendError, KirocacheError
from kirocache.cleanup import Cleanup
from kirocache.invalidation import InvalidationRecord
from kirocache.web._auth import Scope, allows
from kirocache.web._bodies import MAX_BODY, BadRequest, parse_invalidation, query_int
from kirocache.web._figures import metrics_json, prometheus_text

if TYPE_CHECKING:
    from kirocache.backends import BackendStats
    from kirocache.monitoring import HealthReport
    from kirocache.web._app import Admin

__all__ = ["Handler", "HttpInvalidationRecord", "guarded", "json_error"]

_log = logging.getLogger("kirocache.web")
_SEVERITIES: Final = ("low", "medium", "high", "critical")
_VALUE_LIMIT: Final = 64 * 1024

Handler = Callable[["Admin", Request, str], Awaitable[Response]]


@dataclasses.dataclass(frozen=True, slots=True)
class HttpInvalidationRecord(InvalidationRecord):
    """An invalidation log record of the admin API: who asked, and for what.

    Attributes:
        token: The name of the token that made the call (``"admin"``, ...).
        action: ``"invalidate"`` or ``"cleanup"``.
    """

    token: str = ""
    action: str = "invalidate"


def json_error(status: int, code: str, detail: str, **headers: str) -> JSONResponse:
    """An error answer: ``{"error": code, "detail": detail}``."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _clean(value: object) -> object:
    """``value`` with non-finite floats as ``None``: JSON has no infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def answer(data: object, status: int = 200) -> JSONResponse:
    """A JSON answer."""
    return JSONResponse(_clean(data), status_code=status)


def guarded(
    admin: Admin, needed: Scope, handler: Handler, *, mutating: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` behind the token check (and the rate limit when ``mutating``)."""

    async def endpoint(request: Request) -> Response:  # noqa: PLR0911 - one answer per refusal
        client = request.client.host if request.client is not None else "unknown"
        who = admin.tokens.identify(request.headers.get("authorization"))
        if who is None:
            wait = admin.failures.take(client) if admin.failures is not None else 0.0
            _log.warning("admin API: refused a request without a valid token from %s", client)
            if wait:
                return json_error(
                    429, "rate_limited", "too many failed attempts", **{"Retry-After": _secs(wait)}
                )
            return json_error(
                401,
                "unauthorized",
                "send a valid token: Authorization: Bearer <token>",
                **{"WWW-Authenticate": 'Bearer realm="kirocache"'},
            )
        name, scope = who
        if not allows(scope, needed):
            return json_error(403, "forbidden", f"this route needs the {needed} scope")
        if mutating and admin.limiter is not None:
            wait = admin.limiter.take(name)
            if wait:
                detail = "too many changes; try again later"
                return json_error(429, "rate_limited", detail, **{"Retry-After": _secs(wait)})
        try:
            return await handler(admin, request, name)
        except BadRequest as exc:
            return json_error(exc.status, exc.code, exc.detail)
        except BackendError as exc:
            _log.warning("admin API: the backend failed (%s)", type(exc).__name__)
            return json_error(503, "backend_unavailable", "the cache backend did not answer")
        except KirocacheError as exc:
            return json_error(422, "refused", str(exc))

    return endpoint


def _secs(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


async def _json_body(request: Request) -> object:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadRequest(415, "unsupported_media_type", "send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest(413, "too_large", f"the body must be at most {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, "too_large", f"the body must be at most {MAX_BODY} bytes")
    if not body:
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise BadRequest(400, "invalid_json", "the body is not valid JSON") from None


# -- read ------------------------------------------------------------------------------------


async def _stats(admin: Admin) -> tuple[BackendStats | None, str | None]:
    try:
        return await admin.cache.astats(), None
    except BackendError as exc:
        return None, f"the backend did not answer ({type(exc).__name__})"


async def session(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/session``: the caller's token name and scope."""
    who = admin.tokens.identify(request.headers.get("authorization"))
    scope = who[1] if who is not None else "read"
    return answer({"token": name, "scope": scope, "poll_interval": admin.poll_interval})


async def metrics(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/metrics``."""
    stats, error = await _stats(admin)
    return answer(metrics_json(admin.cache, stats, error))


async def prometheus(admin: Admin, request: Request, name: str) -> Response:
    """``GET /metrics``: the Prometheus text exposition."""
    stats, _ = await _stats(admin)
    text = prometheus_text(admin.cache, stats)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def health(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/health``: 200 healthy or degraded, 503 unhealthy."""
    report = await admin.check()
    return answer(_health(report), 503 if report.status == "unhealthy" else 200)


def public_health(
    admin: Admin, guarded_health: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """The health route for load balancers: the status alone to a request without a token.

    A request with a token is answered in full, by ``guarded_health``.
    """

    async def endpoint(request: Request) -> Response:
        if "authorization" in request.headers:
            return await guarded_health(request)
        report = await admin.check()
        return answer({"status": report.status}, 503 if report.status == "unhealthy" else 200)

    return endpoint


def _health(report: HealthReport) -> dict[str, object]:
    data = report.to_dict()
    data["recommendations"] = list(dict.fromkeys(issue.recommendation for issue in report.issues))
    return data


async def alerts(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/alerts?severity=``: active alerts and history, at least that severe."""
    least = request.query_params.get("severity", "low")
    if least not in _SEVERITIES:
        detail = f"severity must be one of {', '.join(_SEVERITIES)}"
        raise BadRequest(422, "invalid_query", detail)
    await admin.check()
    rank = _SEVERITIES.index(least)

    def keep(alert: Any) -> bool:
        return _SEVERITIES.index(alert.severity) >= rank

    monitor = admin.monitor
    return answer(
        {
            "severities": list(_SEVERITIES),
            "active": [dataclasses.asdict(a) for a in monitor.active() if keep(a)],
            "history": [dataclasses.asdict(a) for a in monitor.history() if keep(a)][::-1],
        }
    )


async def invalidations(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/invalidations?limit=``: the latest invalidation records, newest first."""
    limit = query_int(request.query_params, "limit", 20, 1, 1000)
    records = list(admin.cache.invalidation_log)[-limit:][::-1]
    return answer({"records": [record.as_dict() for record in records]})


async def keys(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/keys?pattern=&cursor=&count=``: one page of keys under the prefix."""
    params = request.query_params
    pattern = params.get("pattern") or "*"
    if len(pattern) > 1024:
        raise BadRequest(422, "invalid_query", "pattern is longer than 1024 characters")
    cursor = query_int(params, "cursor", 0, 0, 2**63)
    count = query_int(params, "count", 100, 1, 1000)
    page = await admin.cache.ascan_keys(pattern, cursor=cursor, count=count)
    return answer(page.to_dict())


async def key(admin: Admin, request: Request, name: str) -> Response:
    """``GET /api/cache/keys/{key}?reveal=1``: TTL, size, format, tags; the value with reveal."""
    target = request.path_params["key"]
    reveal = request.query_params.get("reveal", "") in {"1", "true", "yes"}
    who = admin.tokens.identify(request.headers.get("authorization"))
    if reveal and (who is None or not allows(who[1], "reveal")):
        return json_error(403, "forbidden", "showing a value needs the reveal or admin scope")
    info = await admin.cache.ainspect(target)
    if info is None:
        return json_error(404, "not_found", "no entry at this key")
    data = info.to_dict()
    if reveal and not info.tombstone:
        _log.info("admin API: token %r read the value of a key", name)
        data["value"] = _shown(await admin.cache.aget(target))
    return answer(data)


def _shown(value: object) -> object:
    """A value as JSON, or its ``repr`` when JSON cannot hold it; cut at 64 KiB."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return {"repr": repr(value)[:_VALUE_LIMIT]}
    if len(text) > _VALUE_LIMIT:
        return {"truncated": text[:_VALUE_LIMIT]}
    return value


# -- admin -----------------------------------------------------------------------------------


def _http_record(record: InvalidationRecord, token: str, action: str) -> HttpInvalidationRecord:
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(InvalidationRecord)}
    return HttpInvalidationRecord(**{**fields, "source": "http"}, token=token, action=action)


async def invalidate(admin: Admin, request: Request, name: str) -> Response:
    """``POST /api/cache/invalidate``: keys, tags, patterns, namespaces, an event; logged."""
    cache = admin.cache
    asked = parse_invalidation(await _json_body(request), key_prefix=cache.key_prefix)
    record = await cache.ainvalidate_targets(
        keys=asked.keys,
        tags=asked.tags,
        patterns=asked.patterns,
        namespaces=asked.namespaces,
        event=asked.event,
        source="http",
        batch_size=asked.page_size,
        log=False,
    )
    logged = _http_record(record, name, "invalidate")
    cache.invalidation_log.add(logged)
    _log.info(
        "admin API: token %r invalidated %s: %d entries removed",
        name,
        "+".join(asked.kinds()),
        logged.removed,
    )
    pending = cache.pending_invalidations()["invalidations_pending"]
    return answer(
        {
            "removed": logged.removed,
            "keys": list(logged.keys),
            "pending": pending,
            "record": logged.as_dict(),
        }
    )


async def cleanup(admin: Admin, request: Request, name: str) -> Response:
    """``POST /api/cache/cleanup``: one cleanup run; its report, logged."""
    report = await Cleanup(admin.cache).arun_once()
    pruned = report.tag_entries_pruned + report.dependency_edges_pruned + report.expired_purged
    logged = HttpInvalidationRecord(
        at=admin.cache.clock.time(),
        source="http",
        removed=pruned,
        duration=report.duration,
        token=name,
        action="cleanup",
    )
    admin.cache.invalidation_log.add(logged)
    _log.info("admin API: token %r ran a cleanup: %d index entries pruned", name, pruned)
    return answer({"report": dataclasses.asdict(report), "record": logged.as_dict()})
