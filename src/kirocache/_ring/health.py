"""Health checks: ping, backend stats and metrics turned into a status with issues."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from kirocache._ring.thresholds import THRESHOLDS, Metric, Severity, Threshold, threshold
from kirocache.exceptions import AuthenticationError, BackendError, PermissionDeniedError
from kirocache.metrics import InMemoryMetrics, MultiMetrics

if TYPE_CHECKING:
    from kirocache import BreakerState, Cache
    from kirocache.backends import BackendStats
    from kirocache.metrics import MetricsHook

__all__ = [
    "MEASURES",
    "HealthChecker",
    "HealthReport",
    "HealthStatus",
    "Issue",
    "NamespaceHealth",
    "judge",
    "misconfigured",
]

HealthStatus: TypeAlias = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem a health check found.

    Attributes:
        kind: A stable name (``"hit_rate"``, ``"latency"``, ``"memory"``, ``"errors"``,
            ``"breaker_open"``, ``"unreachable"``, ``"authentication"``, ``"permission"``,
            ``"stats_refused"``).
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
        invalidations_pending: Invalidations the backend refused that this process keeps
            until it can replay them (other processes may serve what they invalidate).
        min_reads: Reads a namespace needs before its hit rate is judged.
        issues: What was found wrong, most severe first.
        nodes: Each node's circuit breaker on a Redis Cluster, by ``host:port`` (the
            backend's ``node_states()``: ``role``, ``state``, ``faults``, ...); empty on
            one node.
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
    invalidations_pending: int = 0
    issues: tuple[Issue, ...] = field(default=())
    nodes: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Every field as plain dicts, lists, strings and numbers."""
        data: dict[str, object] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "backend"
        }
        data["namespaces"] = [asdict(item) for item in self.namespaces]
        data["issues"] = [asdict(item) for item in self.issues]
        data["nodes"] = {name: dict(state) for name, state in self.nodes.items()}
        backend = None
        if self.backend is not None:
            backend = asdict(self.backend)
            backend["extra"] = dict(self.backend.extra)
        data["backend"] = backend
        return data


# -- what each metric of the threshold table reads from a report, by subject --------------


def _hit_rates(report: HealthReport) -> dict[str, float]:
    return {
        ns.namespace: ns.hit_rate
        for ns in report.namespaces
        if ns.hit_rate is not None and ns.reads >= report.min_reads
    }


def _latencies(report: HealthReport) -> dict[str, float]:
    return {ns.namespace: ns.latency_p95 for ns in report.namespaces if ns.latency_p95 is not None}


def _memory(report: HealthReport) -> dict[str, float]:
    return {} if report.memory_ratio is None else {"backend": report.memory_ratio}


def _errors(report: HealthReport) -> dict[str, float]:
    return {"backend": float(report.errors_since_last_check)}


def _pending(report: HealthReport) -> dict[str, float]:
    return {"cache": float(report.invalidations_pending)}


def _breaker(report: HealthReport) -> dict[str, float]:
    return {} if report.breaker is None else {"breaker": float(report.breaker == "open")}


def _unreachable(report: HealthReport) -> dict[str, float]:
    return {"backend": float(report.ping_latency is None)}


def _nodes(report: HealthReport) -> dict[str, float]:
    """Each cluster primary's breaker: 1 while it is open or half open (trying one call)."""
    return {
        name: float(state.get("state") in ("open", "half_open"))
        for name, state in report.nodes.items()
        if state.get("role") == "primary"
    }


MEASURES: Final[Mapping[Metric, Callable[[HealthReport], dict[str, float]]]] = {
    "hit_rate": _hit_rates,
    "latency_p95": _latencies,
    "memory": _memory,
    "connection_errors": _errors,
    "invalidations_pending": _pending,
    "circuit_breaker_open": _breaker,
    "backend_unreachable": _unreachable,
    "node_unavailable": _nodes,
}
"""Each metric's values in a report, by subject (a namespace, ``"backend"``, ``"breaker"``)."""


# -- how a breach reads as an issue ---------------------------------------------------------


_Words: TypeAlias = Callable[[str, float, float], str]

# Per metric: the issue's kind, its message from (subject, value, limit), what to look at.
_ISSUES: Final[Mapping[Metric, tuple[str, _Words, str]]] = {
    "hit_rate": (
        "hit_rate",
        lambda subject, value, limit: f"hit rate {value:.0%} in {subject}: below {limit:.0%}",
        "TTL may be too short or keys unstable",
    ),
    "latency_p95": (
        "latency",
        lambda subject, value, limit: (
            f"p95 latency {value * 1000:.0f} ms in {subject}: above {limit * 1000:.0f} ms"
        ),
        "values may be too large, or the server overloaded or far away",
    ),
    "memory": (
        "memory",
        lambda _, value, limit: f"memory at {value:.0%} of maxmemory: above {limit:.0%}",
        "raise maxmemory, shorten TTLs or cache smaller values",
    ),
    "connection_errors": (
        "errors",
        lambda _, value, __: f"{value:.0f} backend errors since the last check",
        "look for timeouts or connection resets in the cache warnings",
    ),
    "invalidations_pending": (
        "invalidations_pending",
        lambda _, value, __: f"{value:.0f} invalidations kept pending: the backend refused them",
        "replayed when the backend answers; other processes may serve what they invalidate",
    ),
    "circuit_breaker_open": (
        "breaker_open",
        lambda *_: "the circuit breaker is open: cache calls are refused",
        "the backend failed repeatedly; check its logs and connectivity",
    ),
    "backend_unreachable": (
        "unreachable",
        lambda *_: "the cache backend did not answer PING",
        "check the server, the network and the credentials; reads fail open",
    ),
    "node_unavailable": (
        "node_unavailable",
        lambda subject, *_: (
            f"cluster node {subject} is unavailable: its circuit breaker is open; calls for "
            "its slots fail open while the other primaries serve theirs"
        ),
        (
            "check that node (its process, host and network); its replica takes its slots "
            "over after cluster-node-timeout, and the cache follows at once"
        ),
    ),
}


def _issue(row: Threshold, subject: str, value: float) -> Issue:
    kind, words, recommendation = _ISSUES[row.metric]
    return Issue(kind, words(subject, value, row.limit), recommendation, row.severity)


_RANK: Final[dict[Severity, int]] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# Among issues of one severity, a cause comes before what it explains: an unreachable
# server opens the breaker, and both show up as errors.
_CAUSES: Final[tuple[Metric, ...]] = (
    "backend_unreachable",
    "circuit_breaker_open",
    "node_unavailable",
    "connection_errors",
    "invalidations_pending",
    "memory",
    "latency_p95",
    "hit_rate",
)


def judge(figures: HealthReport, thresholds: tuple[Threshold, ...] = THRESHOLDS) -> HealthReport:
    """``figures`` with the issues and status ``thresholds`` find in them (no I/O).

    Args:
        figures: A report whose figures are filled in; its status and issues are ignored.
        thresholds: The rows to judge by.

    Returns:
        The report with its issues, most severe first, and its status.
    """
    found = [
        (row, _issue(row, subject, value))
        for row in thresholds
        for subject, value in MEASURES[row.metric](figures).items()
        if row.breached(value)
    ]
    found.sort(key=lambda pair: (_RANK[pair[0].severity], _CAUSES.index(pair[0].metric)))
    issues = tuple(issue for _, issue in found)
    status: HealthStatus = "healthy"
    if any(issue.severity == "critical" for issue in issues):
        status = "unhealthy"
    elif issues:
        status = "degraded"
    return replace(figures, status=status, issues=issues)


# A refusal of this client is a misconfiguration: what to fix, by kind of refusal.
_AUTHENTICATION_FIX: Final = (
    "fix the password: put it in the URL (redis://:password@host) or REDIS_PASSWORD, "
    "check the ACL user name; the cache fails open (every read is a miss) until then"
)
_PERMISSION_FIX: Final = (
    "grant the ACL user what the cache needs: ACL SETUSER <user> ~<key prefix>* &* +@all "
    "-@dangerous (see the configuration guide)"
)
_INFO_FIX: Final = (
    "grant INFO to the cache's ACL user (ACL SETUSER <user> +info) to watch memory and "
    "evictions, or accept that they are not watched"
)


def misconfigured(report: HealthReport, failure: BackendError | None) -> HealthReport:
    """``report`` with what a refusal of this client says, where the figures cannot say it.

    A refused password or an ACL refusing PING makes the report ``unhealthy`` with an
    ``authentication`` or ``permission`` issue in place of ``unreachable`` (the server
    answered); a refused INFO is a ``stats_refused`` issue (memory is not watched).

    Args:
        report: A judged report.
        failure: What the ping or the stats raised, if anything.

    Returns:
        The report, with those issues first.
    """
    found: list[Issue] = []
    if isinstance(failure, AuthenticationError):
        found.append(Issue("authentication", str(failure), _AUTHENTICATION_FIX, "critical"))
    elif isinstance(failure, PermissionDeniedError):
        found.append(Issue("permission", str(failure), _PERMISSION_FIX, "critical"))
    refused_info = report.backend.extra.get("info_error") if report.backend is not None else None
    if refused_info:
        message = f"the backend refused INFO, so memory and evictions are unknown: {refused_info}"
        found.append(Issue("stats_refused", message, _INFO_FIX, "low"))
    if not found:
        return report
    # the server answered, refusing: "did not answer PING" would send people to the network
    refused = isinstance(failure, (AuthenticationError, PermissionDeniedError))
    kept = tuple(issue for issue in report.issues if not (refused and issue.kind == "unreachable"))
    issues = tuple(found) + kept
    if any(issue.severity == "critical" for issue in issues):
        status: HealthStatus = "unhealthy"
    else:
        status = "degraded"
    return replace(report, status=status, issues=issues)


def _node_states(backend: object) -> dict[str, Mapping[str, object]]:
    """A cluster backend's ``node_states()`` (no I/O); empty for any other backend."""
    states_of = getattr(backend, "node_states", None)
    if not callable(states_of):
        return {}
    try:
        return dict(states_of())
    except Exception:  # noqa: BLE001 - a health check reports, it never raises
        return {}


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
    The defaults and every severity come from the threshold table the alert rules
    (``DEFAULT_RULES``) are made of, so a check and an alert never disagree.

    Args:
        cache: The cache to check.
        hit_rate_threshold: The lowest acceptable hit rate, in [0, 1].
        latency_p95_threshold: The highest acceptable p95 latency, in seconds.
        memory_threshold: The highest acceptable ``used_memory / maxmemory``.
        min_reads: Reads a namespace needs before its hit rate is judged: a cold
            namespace with three misses out of five reads is not a problem yet.
        clock: Seconds, stamped on each report; the cache's monotonic clock if None.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        hit_rate_threshold: float = threshold("hit_rate").limit,
        latency_p95_threshold: float = threshold("latency_p95").limit,
        memory_threshold: float = threshold("memory").limit,
        min_reads: int = 20,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.cache = cache
        self.hit_rate_threshold = hit_rate_threshold
        self.latency_p95_threshold = latency_p95_threshold
        self.memory_threshold = memory_threshold
        self.min_reads = min_reads
        self._clock = clock if clock is not None else cache.clock.monotonic
        self._errors_seen = cache.errors_total

    @property
    def thresholds(self) -> tuple[Threshold, ...]:
        """The threshold table with this checker's limits."""
        limits: dict[Metric, float] = {
            "hit_rate": self.hit_rate_threshold,
            "latency_p95": self.latency_p95_threshold,
            "memory": self.memory_threshold,
        }
        return tuple(replace(row, limit=limits.get(row.metric, row.limit)) for row in THRESHOLDS)

    def check(self) -> HealthReport:
        """Ping the backend, read its stats and judge them with the metrics.

        Returns:
            The report; a failing backend gives an ``unhealthy`` report, never an error. A
            backend that refuses this client (a wrong or missing password, an ACL) is
            reported as such, not as unreachable.
        """
        ping: float | None = None
        stats: BackendStats | None = None
        failure: BackendError | None = None
        try:
            ping = self.cache.ping()
            stats = self.cache.stats()
        except BackendError as exc:
            failure = exc
        return self._report(ping, stats, failure)

    async def acheck(self) -> HealthReport:
        """The async twin of :meth:`check`."""
        ping: float | None = None
        stats: BackendStats | None = None
        failure: BackendError | None = None
        try:
            ping = await self.cache.aping()
            stats = await self.cache.astats()
        except BackendError as exc:
            failure = exc
        return self._report(ping, stats, failure)

    def _report(
        self, ping: float | None, stats: BackendStats | None, failure: BackendError | None = None
    ) -> HealthReport:
        errors_total = self.cache.errors_total
        errors, self._errors_seen = max(0, errors_total - self._errors_seen), errors_total
        breaker = self.cache.breaker.state if self.cache.breaker is not None else None
        figures = HealthReport(
            status="healthy",
            checked_at=self._clock(),
            ping_latency=ping,
            backend=stats,
            memory_ratio=stats.memory_ratio if stats is not None else None,
            namespaces=self._namespaces(),
            breaker=breaker,
            errors_since_last_check=errors,
            min_reads=self.min_reads,
            invalidations_pending=self.cache.pending_invalidations()["invalidations_pending"],
            nodes=_node_states(self.cache.backend),
        )
        return misconfigured(judge(figures, self.thresholds), failure)

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
