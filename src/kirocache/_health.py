"""Health checks: ping, backend stats and metrics turned into a status with issues."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

from kirocache.exceptions import BackendError
from kirocache.metrics import InMemoryMetrics, MultiMetrics

if TYPE_CHECKING:
    from kirocache._breaker import BreakerState
    from kirocache._cache import Cache
    from kirocache.backends._protocol import BackendStats
    from kirocache.metrics import MetricsHook

__all__ = ["HealthChecker", "HealthReport", "HealthStatus", "Issue", "NamespaceHealth", "Severity"]

HealthStatus: TypeAlias = Literal["healthy", "degraded", "unhealthy"]
Severity: TypeAlias = Literal["low", "medium", "high", "critical"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem a health check found.

    Attributes:
        kind: A stable name (``"hit_rate"``, ``"latency"``, ``"memory"``, ``"errors"``,
            ``"breaker_open"``, ``"unreachable"``).
        message: What is wrong, with the figures.
        recommendation: What to look at.
        severity: ``low``, ``medium``, ``high`` or ``critical`` (critical makes the
            status ``unhealthy``).
    """

    kind: str
    message: str
    recommendation: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class NamespaceHealth:
    """The read figures of one namespace, summed over its operations.

    Attributes:
        namespace: The metrics label of the namespace.
        reads: Hits, stale serves and misses.
        hit_rate: Hits (stale included) over reads, ``None`` without reads.
        latency_p95: The worst p95 latency among the namespace's operations, in seconds.
        errors: Operations that ended in a backend error.
    """

    namespace: str
    reads: int
    hit_rate: float | None
    latency_p95: float | None
    errors: int


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome of one health check; :meth:`to_dict` makes it JSON-ready.

    Attributes:
        status: ``healthy``, ``degraded`` (a threshold is breached) or ``unhealthy``
            (the backend does not answer or the circuit breaker is open).
        checked_at: The checker's clock when the check ran.
        ping_latency: Seconds the ping took, ``None`` when it failed.
        backend: The backend's own figures, ``None`` when they could not be read.
        memory_ratio: Used over max memory, ``None`` when unknown or unlimited.
        namespaces: Read figures per namespace (from the cache's ``InMemoryMetrics``).
        breaker: The circuit breaker's state, ``None`` without a breaker.
        errors_since_last_check: Backend errors the cache counted since the previous check.
        min_reads: Reads a namespace needs before its hit rate is judged.
        issues: What was found wrong, most severe first.
    """

    status: HealthStatus
    checked_at: float
    ping_latency: float | None
    backend: BackendStats | None
    memory_ratio: float | None
    namespaces: tuple[NamespaceHealth, ...]
    breaker: BreakerState | None
    errors_since_last_check: int
    min_reads: int
    issues: tuple[Issue, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        """Every field as plain dicts, lists, strings and numbers."""
        data: dict[str, object] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "backend"
        }
        data["namespaces"] = [asdict(item) for item in self.namespaces]
        data["issues"] = [asdict(item) for item in self.issues]
        backend = None
        if self.backend is not None:
            backend = asdict(self.backend)
            backend["extra"] = dict(self.backend.extra)
        data["backend"] = backend
        return data


_RANK: dict[Severity, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def find_in_memory_metrics(hook: MetricsHook | None) -> InMemoryMetrics | None:
    """The ``InMemoryMetrics`` a cache reports to, directly or through ``MultiMetrics``."""
    if isinstance(hook, InMemoryMetrics):
        return hook
    if isinstance(hook, MultiMetrics):
        for inner in hook.hooks:
            found = find_in_memory_metrics(inner)
            if found is not None:
                return found
    return None


class HealthChecker:
    """Turns a cache's ping, backend stats and metrics into a :class:`HealthReport`.

    Unhealthy: the ping fails or the circuit breaker is open. Degraded: a namespace's hit
    rate is below ``hit_rate_threshold``, an operation's p95 latency is above
    ``latency_p95_threshold``, memory is above ``memory_threshold`` of maxmemory, or the
    cache counted backend errors since the previous check. Hit rates and latencies come
    from the cache's ``InMemoryMetrics`` and cover everything since its last ``reset()``.

    Args:
        cache: The cache to check.
        hit_rate_threshold: The lowest acceptable hit rate, in [0, 1].
        latency_p95_threshold: The highest acceptable p95 latency, in seconds.
        memory_threshold: The highest acceptable ``used_memory / maxmemory``.
        min_reads: Reads a namespace needs before its hit rate is judged: a cold
            namespace with three misses out of five reads is not a problem yet.
        clock: Seconds, stamped on each report; injectable for tests.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        hit_rate_threshold: float = 0.8,
        latency_p95_threshold: float = 0.1,
        memory_threshold: float = 0.8,
        min_reads: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.hit_rate_threshold = hit_rate_threshold
        self.latency_p95_threshold = latency_p95_threshold
        self.memory_threshold = memory_threshold
        self.min_reads = min_reads
        self._clock = clock
        self._errors_seen = cache.errors_total

    def check(self) -> HealthReport:
        """Ping the backend, read its stats and judge them with the metrics.

        Returns:
            The report; a failing backend gives an ``unhealthy`` report, never an error.
        """
        ping: float | None = None
        stats: BackendStats | None = None
        try:
            ping = self.cache.ping()
            stats = self.cache.stats()
        except BackendError:
            pass
        return self._report(ping, stats)

    async def acheck(self) -> HealthReport:
        """The async twin of :meth:`check`."""
        ping: float | None = None
        stats: BackendStats | None = None
        try:
            ping = await self.cache.aping()
            stats = await self.cache.astats()
        except BackendError:
            pass
        return self._report(ping, stats)

    def _report(self, ping: float | None, stats: BackendStats | None) -> HealthReport:
        errors_total = self.cache.errors_total
        errors, self._errors_seen = max(0, errors_total - self._errors_seen), errors_total
        breaker = self.cache.breaker.state if self.cache.breaker is not None else None
        namespaces = self._namespaces()
        memory_ratio = stats.memory_ratio if stats is not None else None
        issues = self._issues(ping, breaker, namespaces, memory_ratio, errors)
        issues.sort(key=lambda issue: _RANK[issue.severity])
        status: HealthStatus = "healthy"
        if any(issue.severity == "critical" for issue in issues):
            status = "unhealthy"
        elif issues:
            status = "degraded"
        return HealthReport(
            status=status,
            checked_at=self._clock(),
            ping_latency=ping,
            backend=stats,
            memory_ratio=memory_ratio,
            namespaces=namespaces,
            breaker=breaker,
            errors_since_last_check=errors,
            min_reads=self.min_reads,
            issues=tuple(issues),
        )

    def _namespaces(self) -> tuple[NamespaceHealth, ...]:
        metrics = find_in_memory_metrics(self.cache.metrics)
        if metrics is None:
            return ()
        result = []
        for namespace in metrics.namespaces():
            series = metrics.stats(namespace)
            p95s = [s.latency_p95 for s in series if s.latency_p95 is not None]
            result.append(
                NamespaceHealth(
                    namespace=namespace,
                    reads=sum(s.hits + s.stale + s.misses for s in series),
                    hit_rate=metrics.hit_rate(namespace),
                    latency_p95=max(p95s) if p95s else None,
                    errors=sum(s.errors for s in series),
                )
            )
        return tuple(result)

    def _issues(
        self,
        ping: float | None,
        breaker: BreakerState | None,
        namespaces: tuple[NamespaceHealth, ...],
        memory_ratio: float | None,
        errors: int,
    ) -> list[Issue]:
        issues: list[Issue] = []
        if ping is None:
            issues.append(
                Issue(
                    "unreachable",
                    "the cache backend did not answer PING",
                    "check the server, the network and the credentials; reads fail open",
                    "critical",
                )
            )
        if breaker == "open":
            issues.append(
                Issue(
                    "breaker_open",
                    "the circuit breaker is open: cache calls are refused",
                    "the backend failed repeatedly; check its logs and connectivity",
                    "critical",
                )
            )
        if errors:
            issues.append(
                Issue(
                    "errors",
                    f"{errors} backend errors since the last check",
                    "look for timeouts or connection resets in the cache warnings",
                    "high",
                )
            )
        if memory_ratio is not None and memory_ratio > self.memory_threshold:
            issues.append(
                Issue(
                    "memory",
                    f"memory at {memory_ratio:.0%} of maxmemory: above {self.memory_threshold:.0%}",
                    "raise maxmemory, shorten TTLs or cache smaller values",
                    "high",
                )
            )
        for ns in namespaces:
            rate = ns.hit_rate
            if rate is not None and ns.reads >= self.min_reads and rate < self.hit_rate_threshold:
                issues.append(
                    Issue(
                        "hit_rate",
                        f"hit rate {rate:.0%} in {ns.namespace}: "
                        f"below {self.hit_rate_threshold:.0%}",
                        "TTL may be too short or keys unstable",
                        "medium",
                    )
                )
            p95 = ns.latency_p95
            if p95 is not None and p95 > self.latency_p95_threshold:
                issues.append(
                    Issue(
                        "latency",
                        f"p95 latency {p95 * 1000:.0f} ms in {ns.namespace}: "
                        f"above {self.latency_p95_threshold * 1000:.0f} ms",
                        "values may be too large, or the server overloaded or far away",
                        "medium",
                    )
                )
        return issues
