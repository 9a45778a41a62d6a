"""The admin API through its ASGI interface: every route and scope, bodies, bounds, limits."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from kirocache import Cache, ConfigurationError
from kirocache.backends import MemoryBackend
from kirocache.exporters import PrometheusMetrics
from kirocache.metrics import InMemoryMetrics, MultiMetrics
from kirocache.testing import FaultyBackend, ManualClock, use_cache
from kirocache.web import HttpInvalidationRecord, admin_app, admin_app_from_env
from web_helpers import (
    ADMIN,
    CALLERS,
    RANK,
    READ,
    REVEAL,
    ROUTES,
    auth,
    client_of,
    make_cache,
    standard_app,
    traffic,
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.real_redis)])
def served(request: pytest.FixtureRequest) -> Iterator[Cache]:
    """A cache with some traffic, on memory and on the session's real redis-server."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    cache = make_cache(request.param, url, ManualClock())
    traffic(cache)
    yield cache
    cache.close()


async def call(client: Any, method: str, path: str, body: Any, secret: str | None) -> Any:
    if method == "GET":
        return await client.get(path, headers=auth(secret))
    return await client.post(path, headers=auth(secret), json=body)


# -- scopes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
async def test_every_route_answers_each_caller_by_scope(
    served: Cache, method: str, path: str, body: Any, needed: str
) -> None:
    async with client_of(standard_app(served)) as client:
        for caller, secret in CALLERS.items():
            answer = await call(client, method, path, body, secret)
            if caller in {"none", "wrong"}:
                expected = 401
                assert answer.headers["www-authenticate"] == 'Bearer realm="kirocache"'
            elif RANK[caller] < RANK[needed]:
                expected = 403
            else:
                expected = 200
            assert answer.status_code == expected, (caller, answer.text)
            if expected != 200:
                assert answer.json()["error"] in {"unauthorized", "forbidden"}


async def test_anonymous_read_serves_the_read_scope_only(served: Cache) -> None:
    app = admin_app(served, allow_anonymous_read=True)
    async with client_of(app) as client:
        assert (await client.get("/api/cache/metrics")).status_code == 200
        assert (await client.get("/api/cache/session")).json()["scope"] == "read"
        refused = await client.post("/api/cache/invalidate", json={"key": "user:1"})
        assert refused.status_code == 403
        wrong = await client.get("/api/cache/metrics", headers=auth(CALLERS["wrong"]))
        assert wrong.status_code == 401
    assert served.get("user:1") == {"name": "Ada"}


def test_the_app_refuses_to_start_without_a_token() -> None:
    cache = Cache(MemoryBackend())
    with pytest.raises(ConfigurationError, match="allow_anonymous_read") as refused:
        admin_app(cache)
    assert "KIROCACHE_ADMIN_TOKEN" in str(refused.value)
    with pytest.raises(ConfigurationError, match="too short") as short:
        admin_app(cache, token="s3cret-canary")
    assert "s3cret-canary" not in str(short.value)
    with pytest.raises(ConfigurationError, match="same secret"):
        admin_app(cache, token=ADMIN, read_token=ADMIN)
    with pytest.raises(ConfigurationError, match="scope"):
        admin_app(cache, tokens={"x": (READ, "root")})  # type: ignore[dict-item]


async def test_admin_app_from_env_reads_both_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIROCACHE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("KIROCACHE_READ_TOKEN", READ)
    cache = Cache(MemoryBackend())
    async with client_of(admin_app_from_env(cache)) as client:
        session = await client.get("/api/cache/session", headers=auth(READ))
        assert session.json()["token"] == "read"
        session = await client.get("/api/cache/session", headers=auth(ADMIN))
        assert session.json() | {"poll_interval": 0} == {
            "token": "admin",
            "scope": "admin",
            "poll_interval": 0,
        }
    monkeypatch.delenv("KIROCACHE_ADMIN_TOKEN")
    monkeypatch.delenv("KIROCACHE_READ_TOKEN")
    with pytest.raises(ConfigurationError):
        admin_app_from_env(cache)


async def test_without_a_cache_the_app_serves_the_default_one() -> None:
    cache = Cache(MemoryBackend())
    cache.set("mine", 1)
    with use_cache(cache):
        app = admin_app(token=ADMIN)
    async with client_of(app) as client:
        page = await client.get("/api/cache/keys", headers=auth(ADMIN))
    assert page.json()["keys"] == ["mine"]


# -- read routes -----------------------------------------------------------------------------


async def test_metrics_report_hit_rates_latencies_and_backend_stats(served: Cache) -> None:
    async with client_of(standard_app(served)) as client:
        data = (await client.get("/api/cache/metrics", headers=auth(READ))).json()
    users = next(ns for ns in data["namespaces"] if ns["namespace"] == "user:")
    assert users["reads"] == 4
    assert users["hit_rate"] == pytest.approx(0.75)
    for name in ("latency_p50", "latency_p95", "latency_p99"):
        assert users[name] is not None
        assert users[name] > 0
    assert {op["operation"] for op in users["operations"]} >= {"get", "set"}
    assert data["key_prefix"] == "app:"
    assert data["backend"]["keys"] >= 3
    assert data["errors_total"] == 0
    assert data["invalidations"]["invalidations_pending"] == 0


async def test_prometheus_text_parses_and_carries_the_figures(served: Cache) -> None:
    async with client_of(standard_app(served)) as client:
        answer = await client.get("/metrics", headers=auth(READ))
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    hits = [
        s.value
        for s in families["kirocache_operations"].samples
        if s.labels == {"namespace": "user:", "operation": "get", "outcome": "hit"}
    ]
    assert hits == [3.0]
    quantiles = {
        s.labels.get("quantile") for s in families["kirocache_operation_latency_seconds"].samples
    }
    assert {"0.5", "0.95", "0.99"} <= quantiles
    assert families["kirocache_backend_up"].samples[0].value == 1.0


async def test_prometheus_serves_an_exporter_registry_when_there_is_one() -> None:
    exporter = PrometheusMetrics()
    cache = Cache(MemoryBackend(), metrics=MultiMetrics(InMemoryMetrics(), exporter))
    cache.get("x")
    async with client_of(admin_app(cache, token=ADMIN)) as client:
        text = (await client.get("/metrics", headers=auth(ADMIN))).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["kirocache_operation_latency_seconds"].type == "histogram"
    assert "kirocache_errors" in families


async def test_health_is_503_for_a_load_balancer_when_unhealthy() -> None:
    backend = FaultyBackend(MemoryBackend())
    clock = ManualClock()
    cache = Cache(backend, breaker=None, clock=clock)
    async with client_of(admin_app(cache, token=ADMIN)) as client:
        healthy = await client.get("/api/cache/health", headers=auth(ADMIN))
        assert healthy.status_code == 200
        assert healthy.json()["status"] == "healthy"
        backend.failing = True
        clock.advance(1)  # a new check, not the one reused for check_every
        sick = await client.get("/api/cache/health", headers=auth(ADMIN))
        assert sick.status_code == 503
        report = sick.json()
        assert report["status"] == "unhealthy"
        assert any("PING" in issue["message"] for issue in report["issues"])
        assert report["recommendations"]
        alerts = (await client.get("/api/cache/alerts", headers=auth(ADMIN))).json()
        assert any(a["severity"] == "critical" for a in alerts["active"])
        data = (await client.get("/api/cache/metrics", headers=auth(ADMIN))).json()
        assert data["backend"] is None
        assert data["backend_error"]


async def test_public_health_tells_a_load_balancer_the_status_alone() -> None:
    backend = FaultyBackend(MemoryBackend())
    clock = ManualClock()
    cache = Cache(backend, breaker=None, clock=clock)
    async with client_of(admin_app(cache, token=ADMIN, public_health=True)) as client:
        bare = await client.get("/api/cache/health")
        assert (bare.status_code, bare.json()) == (200, {"status": "healthy"})
        full = await client.get("/api/cache/health", headers=auth(ADMIN))
        assert "issues" in full.json()
        wrong = await client.get("/api/cache/health", headers=auth(CALLERS["wrong"]))
        assert wrong.status_code == 401
        assert (await client.get("/api/cache/metrics")).status_code == 401
        backend.failing = True
        clock.advance(1)
        sick = await client.get("/api/cache/health")
        assert (sick.status_code, sick.json()) == (503, {"status": "unhealthy"})


async def test_alerts_have_severities_history_and_a_filter() -> None:
    clock = ManualClock()
    cache = Cache(MemoryBackend(), clock=clock)
    for i in range(30):
        cache.get(f"cold:{i}")  # a hit rate of 0 over 30 reads: the medium hit_rate alert
    async with client_of(admin_app(cache, token=ADMIN)) as client:
        alerts = (await client.get("/api/cache/alerts", headers=auth(ADMIN))).json()
        assert alerts["severities"] == ["low", "medium", "high", "critical"]
        assert [(a["rule"], a["severity"]) for a in alerts["active"]] == [("hit_rate", "medium")]
        assert alerts["active"][0]["started_at"] == clock.time()  # Unix seconds
        assert alerts["history"][0]["state"] == "firing"
        high = await client.get("/api/cache/alerts?severity=high", headers=auth(ADMIN))
        assert high.json()["active"] == []
        bad = await client.get("/api/cache/alerts?severity=urgent", headers=auth(ADMIN))
        assert bad.status_code == 422


async def test_keys_are_listed_page_by_page_inside_the_prefix(served: Cache) -> None:
    neighbour = Cache(served.backend, key_prefix="other:")
    neighbour.set("user:9", "not ours")
    for i in range(12):
        served.set(f"search:{i}", i)
    # Redis moves its key table's buckets a step per command after it grows: reads finish
    # the move, so two scans agree on the order (docs/how-to/admin.md)
    for _ in range(200):
        served.get("search:0")
    async with client_of(standard_app(served)) as client:
        seen: list[str] = []
        cursor = 0
        while True:
            page = await client.get(
                f"/api/cache/keys?pattern=*&count=5&cursor={cursor}", headers=auth(READ)
            )
            data = page.json()
            seen += data["keys"]
            cursor = data["cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(
            ["user:1", "user:2", "search:q", *(f"search:{i}" for i in range(12))]
        )
        for query in ("count=0", "count=5000", "cursor=-1", "cursor=abc"):
            bad = await client.get(f"/api/cache/keys?{query}", headers=auth(READ))
            assert bad.status_code == 422, query
        reserved = await client.get("/api/cache/keys?pattern=kirocache:*", headers=auth(READ))
        assert reserved.status_code == 422


async def test_a_key_is_inspected_and_its_value_shown_only_with_reveal(served: Cache) -> None:
    async with client_of(standard_app(served)) as client:
        info = (await client.get("/api/cache/keys/user:1", headers=auth(READ))).json()
        assert info["tags"] == ["team:red"]
        assert info["format"] == "json"
        assert 0 < info["ttl"] <= 600
        assert "value" not in info
        refused = await client.get("/api/cache/keys/user:1?reveal=1", headers=auth(READ))
        assert refused.status_code == 403
        for secret in (REVEAL, ADMIN):
            shown = await client.get("/api/cache/keys/user:1?reveal=1", headers=auth(secret))
            assert shown.json()["value"] == {"name": "Ada"}
        missing = await client.get("/api/cache/keys/user:404", headers=auth(READ))
        assert missing.status_code == 404


# -- changes ---------------------------------------------------------------------------------


async def test_each_kind_of_invalidation_removes_and_is_logged(served: Cache) -> None:
    served.set("feed:1", "post")
    served.set("search:x", 1)
    served.rules.on("user.renamed", keys=["user:{entity_id}"])
    bodies: list[tuple[dict[str, Any], str]] = [
        ({"key": "user:1"}, "user:1"),
        ({"keys": ["user:2", "user:404"]}, "user:2"),
        ({"tag": "team:red"}, ""),
        ({"pattern": "search:*", "page_size": 10}, "search:q"),
        ({"namespace": "feed:"}, "feed:1"),
        ({"event": {"type": "user.renamed", "entity_id": 7, "data": {"by": "x"}}}, "user:7"),
    ]
    served.set("user:7", 7)
    async with client_of(standard_app(served)) as client:
        for body, gone in bodies:
            answer = await client.post("/api/cache/invalidate", headers=auth(ADMIN), json=body)
            assert answer.status_code == 200, answer.text
            data = answer.json()
            record = data["record"]
            assert (record["source"], record["token"], record["action"]) == (
                "http",
                "admin",
                "invalidate",
            )
            if gone:
                assert served.get(gone) is None, body
        log = (await client.get("/api/cache/invalidations", headers=auth(READ))).json()
    records = [r for r in served.invalidation_log if isinstance(r, HttpInvalidationRecord)]
    assert len(records) == len(bodies)
    assert records[-1].event == "user.renamed"
    assert records[3].patterns == ("search:*",)
    assert records[4].namespaces == ("feed:",)
    assert log["records"][0]["event"] == "user.renamed"  # newest first


async def test_cleanup_runs_once_and_is_logged(served: Cache) -> None:
    served.delete("user:1")  # leaves an index entry of team:red behind
    async with client_of(standard_app(served)) as client:
        answer = await client.post("/api/cache/cleanup", headers=auth(ADMIN))
    data = answer.json()
    assert data["report"]["indexes_checked"] >= 1
    assert data["record"]["action"] == "cleanup"
    assert data["record"]["token"] == "admin"
    assert list(served.invalidation_log)[-1].source == "http"


BAD_BODIES: list[tuple[Any, int, str]] = [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b"[" * 30_000 + b"]" * 30_000, 400, "invalid_json"),
    (b'{"key": "\xff"}', 400, "invalid_json"),
    ({}, 422, "invalid_body"),
    ({"keys": "user:1"}, 422, "invalid_body"),
    ({"key": ""}, 422, "invalid_body"),
    ({"key": 42}, 422, "invalid_body"),
    ({"key": "x" * 2000}, 422, "invalid_body"),
    ({"keys": [f"k{i}" for i in range(1001)]}, 422, "invalid_body"),
    ({"tokn": "user:1"}, 422, "invalid_body"),
    ({"event": {"type": "x", "password": "p"}}, 422, "invalid_body"),
    ({"event": "user.updated"}, 422, "invalid_body"),
    ({"event": {"type": "x", "entity_id": [1]}}, 422, "invalid_body"),
    ({"pattern": "user:*", "page_size": 0}, 422, "invalid_body"),
    ({"pattern": "user:*", "page_size": True}, 422, "invalid_body"),
    ({"key": "kirocache:tag:x"}, 422, "refused"),
    ({"namespace": "nope:"}, 422, "refused"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_malformed_bodies_get_clear_errors(
    served: Cache, body: Any, status: int, code: str
) -> None:
    async with client_of(standard_app(served, rate_limit=None)) as client:
        if isinstance(body, bytes):
            headers = {**auth(ADMIN), "Content-Type": "application/json"}
            answer = await client.post("/api/cache/invalidate", headers=headers, content=body)
        else:
            answer = await client.post("/api/cache/invalidate", headers=auth(ADMIN), json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code
    assert answer.json()["detail"]
    assert served.get("user:1") == {"name": "Ada"}


async def test_bodies_must_be_small_json(served: Cache) -> None:
    async with client_of(standard_app(served)) as client:
        form = await client.post(
            "/api/cache/invalidate", headers=auth(ADMIN), data={"key": "user:1"}
        )
        assert form.status_code == 415
        big = await client.post(
            "/api/cache/invalidate", headers=auth(ADMIN), json={"key": "x" * 70_000}
        )
        assert big.status_code == 413


async def test_patterns_are_bounded_without_a_key_prefix() -> None:
    bare = Cache(MemoryBackend())
    bare.set("user:1", 1)
    async with client_of(admin_app(bare, token=ADMIN, rate_limit=None)) as client:
        for pattern in ("*", "**", "*:1", "?ser:1", "[u]ser:*"):
            answer = await client.post(
                "/api/cache/invalidate", headers=auth(ADMIN), json={"pattern": pattern}
            )
            assert answer.status_code == 422, pattern
        fine = await client.post(
            "/api/cache/invalidate", headers=auth(ADMIN), json={"pattern": "user:*"}
        )
        assert fine.json()["removed"] == 1


async def test_a_bare_star_clears_a_prefixed_cache_only(served: Cache) -> None:
    neighbour = Cache(served.backend, key_prefix="other:")
    neighbour.set("user:1", "kept")
    async with client_of(standard_app(served)) as client:
        answer = await client.post(
            "/api/cache/invalidate", headers=auth(ADMIN), json={"pattern": "*"}
        )
    assert answer.json()["removed"] >= 3
    assert served.get("user:1") is None
    assert neighbour.get("user:1") == "kept"


async def test_mutating_routes_are_rate_limited_per_token() -> None:
    clock = ManualClock()
    cache = Cache(MemoryBackend(), clock=clock)
    app = admin_app(cache, token=ADMIN, tokens={"bot": (REVEAL, "admin")}, rate_limit=(3, 0.5))
    async with client_of(app) as client:
        for _ in range(3):
            ok = await client.post("/api/cache/cleanup", headers=auth(ADMIN))
            assert ok.status_code == 200
        limited = await client.post("/api/cache/cleanup", headers=auth(ADMIN))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        other = await client.post("/api/cache/cleanup", headers=auth(REVEAL))
        assert other.status_code == 200  # each token has its own bucket
        reads = [await client.get("/api/cache/metrics", headers=auth(ADMIN)) for _ in range(10)]
        assert {r.status_code for r in reads} == {200}
        clock.advance(2)
        again = await client.post("/api/cache/cleanup", headers=auth(ADMIN))
        assert again.status_code == 200


async def test_failed_authentications_are_rate_limited_per_client() -> None:
    cache = Cache(MemoryBackend(), clock=ManualClock())
    async with client_of(admin_app(cache, token=ADMIN)) as client:
        answers = [
            await client.get("/api/cache/metrics", headers=auth(CALLERS["wrong"]))
            for _ in range(21)
        ]
    assert [a.status_code for a in answers[:20]] == [401] * 20
    assert answers[20].status_code == 429
    assert int(answers[20].headers["retry-after"]) >= 1


# -- the page, headers, mounting ---------------------------------------------------------


async def test_every_answer_carries_the_security_headers_and_no_cors(served: Cache) -> None:
    async with client_of(standard_app(served)) as client:
        answers = [
            await client.get("/", headers={"Origin": "https://evil.example"}),
            await client.get("/static/dashboard.js"),
            await client.get("/api/cache/metrics", headers=auth(READ)),
            await client.get("/api/cache/metrics"),
            await client.get("/nowhere"),
            await client.options("/api/cache/invalidate", headers={"Origin": "https://x.example"}),
        ]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
    assert answers[4].status_code == 404
    assert answers[4].json()["error"] == "not_found"
    assert answers[5].status_code == 405


async def test_the_page_has_no_inline_script_and_uses_relative_urls(served: Cache) -> None:
    async with client_of(standard_app(served, poll_interval=0.5)) as client:
        page = (await client.get("/")).text
        assert '<script src="static/dashboard.js" defer></script>' in page
        assert "<script>" not in page
        assert "style=" not in page
        assert 'data-interval="500"' in page
        assert 'data-anonymous="false"' in page
        for name in ("dashboard.js", "dashboard.css"):
            assert (await client.get(f"/static/{name}")).status_code == 200
        assert (await client.get("/static/../_app.py")).status_code == 404
        assert (await client.get("/static/dashboard.html")).status_code == 404


async def test_the_app_mounts_under_any_prefix(served: Cache) -> None:
    outer = Starlette(routes=[Mount("/ops/cache", standard_app(served))])
    async with client_of(outer) as client:
        bare = await client.get("/ops/cache", follow_redirects=False)
        assert bare.status_code in {307, 308}
        assert bare.headers["location"].endswith("/ops/cache/")
        assert (await client.get("/ops/cache/")).status_code == 200
        metrics = await client.get("/ops/cache/api/cache/metrics", headers=auth(READ))
        assert metrics.status_code == 200
        assert (await client.get("/ops/cache/static/dashboard.css")).status_code == 200


def test_options_are_checked() -> None:
    cache = Cache(MemoryBackend())
    for options in ({"poll_interval": 0}, {"check_every": -1}, {"rate_limit": (0, 1.0)}):
        with pytest.raises(ConfigurationError):
            admin_app(cache, token=ADMIN, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="rate"):
        admin_app(cache, token=ADMIN, rate_limit=(3, math.inf))
