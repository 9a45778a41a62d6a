"""The figures the admin API serves: metrics as JSON and in Prometheus's text format."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kirocache.exporters.prometheus import PrometheusMetrics
from kirocache.metrics import InMemoryMetrics, MetricsHook, MultiMetrics

if TYPE_CHECKING:
    from kirocache import Cache
    from kirocache.backends import BackendStats

__all__ = ["hooks", "in_memory", "metrics_json", "prometheus_text"]


def hooks(hook: MetricsHook | None) -> Iterator[MetricsHook]:
    """Every hook a cache reports to, looking inside ``MultiMetrics``."""
    if isinstance(hook, MultiMetrics):
        for inner in hook.hooks:
            yield from hooks(inner)
    elif hook is not None:
        yield hook


def in_memory(cache: Cache) -> InMemoryMetrics | None:
    """The cache's ``InMemoryMetrics``, if it keeps one."""
    return next((h for h in hooks(cache.metrics) if isinstance(h, InMemoryMetrics)), None)


def _worst(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


def stats_dict(stats: BackendStats | None) -> dict[str, object] | None:
    """Backend stats as JSON-ready data (``extra`` kept to plain scalars)."""
    if stats is None:
        return None
    data = dataclasses.asdict(stats)
    data["extra"] = {
        str(k): v for k, v in stats.extra.items() if isinstance(v, (str, int, float, bool))
    }
    data["memory_ratio"] = stats.memory_ratio
    return data


def metrics_json(
    cache: Cache, stats: BackendStats | None, stats_error: str | None
) -> dict[str, object]:
    """``GET /api/cache/metrics``: hit rates, latency percentiles and errors per namespace."""
    metrics = in_memory(cache)
    namespaces: list[dict[str, object]] = []
    if metrics is not None:
        for name in metrics.namespaces():
            series = metrics.stats(name)
            reads = sum(s.hits + s.stale + s.misses for s in series)
            namespaces.append(
                {
                    "namespace": name,
                    "calls": sum(s.calls for s in series),
                    "reads": reads,
                    "hit_rate": metrics.hit_rate(name),
                    "errors": sum(s.errors for s in series),
                    # the worst operation's: percentiles of several series cannot be summed
                    "latency_p50": _worst([s.latency_p50 for s in series]),
                    "latency_p95": _worst([s.latency_p95 for s in series]),
                    "latency_p99": _worst([s.latency_p99 for s in series]),
                    "operations": [s.to_dict() for s in series],
                }
            )
    breaker = cache.breaker.state if cache.breaker is not None else None
    return {
        "time": cache.clock.time(),
        "key_prefix": cache.key_prefix,
        "in_memory_metrics": metrics is not None,
        "hit_rate": metrics.hit_rate() if metrics is not None else None,
        "errors_total": cache.errors_total,
        "breaker": breaker,
        "invalidations": cache.pending_invalidations(),
        "namespaces": namespaces,
        "backend": stats_dict(stats),
        "backend_error": stats_error,
    }


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def prometheus_text(cache: Cache, stats: BackendStats | None, prefix: str = "kirocache") -> str:
    """``GET /metrics``: the cache's figures in Prometheus's text exposition format.

    A ``PrometheusMetrics`` hook's registry is served as it is (its histograms); else
    the ``InMemoryMetrics`` counters and the percentiles of its latency window (a
    summary). Gauges of the cache and the backend follow either way.
    """
    lines: list[str] = []

    def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {prefix}_{name} {text}")
        lines.append(f"# TYPE {prefix}_{name} {kind}")
        lines.extend(f"{prefix}_{name}{labels} {_number(value)}" for labels, value in samples)

    exporters = [h for h in hooks(cache.metrics) if isinstance(h, PrometheusMetrics)]
    if exporters:
        from prometheus_client import generate_latest

        lines.extend(generate_latest(e.registry).decode().rstrip("\n") for e in exporters)
    else:
        metrics = in_memory(cache)
        series = metrics.stats() if metrics is not None else []
        counts = [
            (_labels(namespace=s.namespace, operation=s.operation, outcome=outcome), float(n))
            for s in series
            for outcome, n in (
                ("hit", s.hits),
                ("miss", s.misses),
                ("set", s.sets),
                ("delete", s.deletes),
                ("error", s.errors),
                ("stale", s.stale),
                ("skip", s.skips),
                ("coalesced", s.coalesced),
            )
            if n
        ]
        family("operations_total", "counter", "Cache operations (keys) by outcome.", counts)
        quantiles = [
            (_labels(namespace=s.namespace, operation=s.operation, quantile=q), value)
            for s in series
            for q, value in (
                ("0.5", s.latency_p50),
                ("0.95", s.latency_p95),
                ("0.99", s.latency_p99),
            )
            if value is not None
        ]
        quantiles += [
            (f"_count{_labels(namespace=s.namespace, operation=s.operation)}", float(s.calls))
            for s in series
        ]
        family(
            "operation_latency_seconds",
            "summary",
            "Latency of cache calls over the recent window, in seconds.",
            quantiles,
        )
    family(
        "errors_total", "counter", "Backend faults the cache counted.", [("", cache.errors_total)]
    )
    pending = cache.pending_invalidations()
    family(
        "invalidations_pending",
        "gauge",
        "Invalidations the backend refused, kept until replayed.",
        [("", float(pending["invalidations_pending"]))],
    )
    if cache.breaker is not None:
        family(
            "circuit_breaker_open",
            "gauge",
            "1 while the circuit breaker refuses calls.",
            [("", float(cache.breaker.state == "open"))],
        )
    family("backend_up", "gauge", "1 when the backend answered.", [("", float(stats is not None))])
    if stats is not None:
        for name, value, text in (
            ("backend_keys", stats.keys, "Keys in the backend's database."),
            ("backend_used_memory_bytes", stats.used_memory, "Bytes the backend uses."),
            ("backend_max_memory_bytes", stats.max_memory, "The backend's memory limit."),
            ("backend_evictions_total", stats.evictions, "Entries evicted for lack of room."),
        ):
            if value is not None:
                family(
                    name, "gauge" if "total" not in name else "counter", text, [("", float(value))]
                )
    return "\n".join(lines) + "\n"
