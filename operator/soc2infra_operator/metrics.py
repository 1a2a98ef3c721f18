"""Prometheus metrics of the operator, served at ``/metrics`` (prometheus-client's text format).

- ``soc2infra_admission_requests_total{verdict}``: every answered AdmissionReview;
- ``soc2infra_admission_decisions_total{rule,action,result}``: each rule that did not pass on an
  admitted or rejected object (result ``fail`` | ``unknown`` | ``waived``; action ``deny`` | ``warn``
  | ``audit``), so a dashboard shows which rules block and which are waived;
- ``soc2infra_admission_duration_seconds``: decision + durable evidence commit, per request;
- ``soc2infra_evidence_commit_duration_seconds`` and ``soc2infra_evidence_commit_failures_total``;
- ``soc2infra_audit_duration_seconds``, ``soc2infra_audit_runs_total{leader}`` and
  ``soc2infra_audit_findings{status}`` (the last audit's summary);
- ``soc2infra_waivers{state}``: cluster waivers by ``active`` | ``expiring`` | ``expired`` | ``invalid``,
  computed at scrape time.

The metrics live in their own registry (not the process-global one) so several runtimes in one test
process never collide; :func:`serve` starts the HTTP endpoint in a daemon thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from soc2infra import DEFAULT_WARNING_DAYS

__all__ = ["OperatorMetrics", "serve"]

# Admission must answer within the webhook timeout (1..30 s); buckets resolve the interesting range.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_AUDIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WAIVER_STATES = ("active", "expiring", "expired", "invalid")


def waiver_state(waiver: Any, today: Any, warning_days: int = DEFAULT_WARNING_DAYS) -> str:
    """``invalid`` (unusable: never applies), else ``active`` | ``expiring`` | ``expired`` by date."""
    if getattr(waiver, "problem", None):
        return "invalid"
    expires = getattr(waiver, "expires", None)
    if expires is None:
        return "active"
    if expires < today:
        return "expired"
    return "expiring" if (expires - today).days <= warning_days else "active"


class _WaiverCollector(Collector):
    """Counts the waiver store's waivers by expiry state whenever Prometheus scrapes."""

    def __init__(self, waivers: Callable[[], Iterable[Any]], warning_days: int) -> None:
        self._waivers = waivers
        self._warning_days = warning_days

    def collect(self) -> Iterator[GaugeMetricFamily]:
        today = datetime.now(UTC).date()
        counts = dict.fromkeys(WAIVER_STATES, 0)
        for waiver in self._waivers():
            counts[waiver_state(waiver, today, self._warning_days)] += 1
        family = GaugeMetricFamily("soc2infra_waivers", "SOC2Waiver objects by expiry state",
                                   labels=["state"])
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family


class OperatorMetrics:
    """The operator's metric objects, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("soc2infra_admission_requests", "Answered admission requests by verdict",
                                ["verdict"], registry=r)
        self.decisions = Counter("soc2infra_admission_decisions",
                                 "Rules that did not pass at admission, by rule, action and result",
                                 ["rule", "action", "result"], registry=r)
        self.admission_seconds = Histogram("soc2infra_admission_duration_seconds",
                                           "Admission latency: decision plus durable evidence commit",
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_seconds = Histogram("soc2infra_evidence_commit_duration_seconds",
                                        "Time to commit one evidence record durably",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_failures = Counter("soc2infra_evidence_commit_failures", "Evidence records not committed",
                                       registry=r)
        self.audit_seconds = Histogram("soc2infra_audit_duration_seconds", "Duration of one background audit",
                                       buckets=_AUDIT_BUCKETS, registry=r)
        self.audit_runs = Counter("soc2infra_audit_runs", "Background audit rounds (leader: did the work)",
                                  ["leader"], registry=r)
        self.audit_findings = Gauge("soc2infra_audit_findings", "Result counts of the last completed audit",
                                    ["status"], registry=r)

    def watch_waivers(self, waivers: Callable[[], Iterable[Any]],
                      warning_days: int = DEFAULT_WARNING_DAYS) -> None:
        """Export ``soc2infra_waivers{state}`` from *waivers* (called at each scrape)."""
        self.registry.register(_WaiverCollector(waivers, warning_days))

    def observe_decision(self, decision: Any, seconds: float) -> None:
        """Count one answered request and each rule outcome on it."""
        self.requests.labels(verdict=decision.verdict).inc()
        self.admission_seconds.observe(seconds)
        for outcome in decision.outcomes:
            result = "waived" if outcome.waived else outcome.status
            self.decisions.labels(rule=outcome.rule_id, action=outcome.action, result=result).inc()

    def observe_audit(self, outcome: Any) -> None:
        """Record one audit round (leaders only do the work; followers count as leader="false")."""
        self.audit_runs.labels(leader=str(bool(outcome.leader)).lower()).inc()
        if outcome.leader:
            self.audit_seconds.observe(outcome.seconds)
            for status, n in (outcome.summary or {}).items():
                if isinstance(n, int):
                    self.audit_findings.labels(status=status).set(n)


def serve(metrics: OperatorMetrics, port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` on *addr*:*port* in a daemon thread; returns the server (``shutdown()``)."""
    server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server
