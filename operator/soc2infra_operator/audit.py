"""The background audit: evaluate every existing object, write PolicyReports, record a snapshot.

Every ``audit.interval_seconds`` the operator lists every object of the kinds the pack targets
(plus the kinds cross-object rules look up: NetworkPolicies, PodDisruptionBudgets, …), turns them
into Resources with the same ``object_to_resource`` the CLI and the webhook use, and evaluates
them **with one ResourceIndex over the whole cluster**, so "every namespace has a NetworkPolicy"
and "a PDB selects the pods" are decided on the real cluster, as ``soc2infra scan`` decides them
on a directory of manifests.

Results go to ``wgpolicyk8s.io/v1alpha2`` reports (the format Kyverno, Trivy-operator and Policy
Reporter use): one ``PolicyReport`` per namespace and one ``ClusterPolicyReport`` for
cluster-scoped objects, all named ``audit.report_name`` and replaced in place by server-side apply,
so the number of report objects never grows with time. Results are capped per report
(``audit.max_results_per_report``; failures first, passes dropped first) while the ``summary``
stays exact. Result values: ``fail`` = a rule whose action is deny failed; ``warn`` = a warn/audit
rule failed; ``error`` = the rule could not be decided; ``skip`` = waived by a SOC2Waiver (the
waiver is in ``properties``); ``pass``. Each result's ``properties`` carry the SOC 2 criteria.

Then one audit snapshot record goes to the ledger. With several replicas, a Lease elects the one
that writes reports and records; every replica refreshes its admission context (the related
objects) from its own listing.

:func:`evaluate_cluster` and :func:`build_reports` are pure; :class:`Auditor` does the I/O.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from soc2infra import Resource, ResourceIndex, evaluate, match_entry, object_to_resource
from soc2infra_operator import waivers as cluster_waivers
from soc2infra_operator.admission import (
    BUILTIN_GROUPS,
    FILE_ONLY_KINDS,
    AdmissionPolicy,
    kubernetes_kinds,
    namespace_labels,
)
from soc2infra_operator.evidence import EvidenceError, EvidenceWriter, audit_record
from soc2infra_operator.kube import ApiResource, Kube, KubeError, try_acquire_lease
from soc2infra_operator.settings import OperatorSettings
from soc2infra_operator.waivers import ClusterWaiver, entries_for, object_facts

logger = logging.getLogger(__name__)

REPORT_API_VERSION = "wgpolicyk8s.io/v1alpha2"
REPORT_GROUP = "wgpolicyk8s.io"
MANAGED_BY = {"app.kubernetes.io/managed-by": "soc2infra"}
RESULT_ORDER = {"fail": 0, "warn": 1, "error": 2, "skip": 3, "pass": 4}
# PolicyReport result → ledger status (the ledger records whether the rule held, not the action).
LEDGER_STATUS = {"pass": "pass", "fail": "fail", "warn": "fail", "error": "unknown", "skip": "waived"}
REPORT_SEVERITIES = {"critical", "high", "medium", "low", "info"}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One rule's result on one object."""

    rule_id: str
    title: str
    severity: str
    category: str
    controls: tuple[str, ...]
    result: str  # pass | fail | warn | error | skip
    address: str
    namespace: str | None  # None: cluster scoped (the ClusterPolicyReport)
    ref: Mapping[str, str]  # apiVersion, kind, name, namespace, uid
    message: str = ""
    waiver: Mapping[str, Any] | None = None
    # False in a namespace excluded from admission: audited and reported all the same (an exclusion
    # is from enforcement, not from evidence), and marked so nobody reads it as enforced.
    enforced: bool = True
    # A deny-level failure while admission.mode is warn or audit: "would be denied".
    staged: bool = False

    def to_record(self) -> dict[str, Any]:
        """The ledger form of this result: did the rule hold (pass / fail / unknown / waived)."""
        out: dict[str, Any] = {"rule_id": self.rule_id, "status": LEDGER_STATUS[self.result],
                               "severity": self.severity, "controls": list(self.controls),
                               "address": self.address}
        if self.result == "skip" and self.waiver:
            out["waiver"] = {k: v for k, v in self.waiver.items() if k != "status"}
        return out


@dataclass(slots=True)
class AuditResult:
    """What one evaluation of the cluster produced."""

    entries: list[AuditEntry] = field(default_factory=list)
    resources: int = 0
    context: list[Resource] = field(default_factory=list)  # objects of related kinds (admission context)

    def summary(self) -> dict[str, int]:
        """Counts per result value, plus the number of objects evaluated."""
        counts = Counter(e.result for e in self.entries)
        return {"objects": self.resources, **{k: counts.get(k, 0) for k in RESULT_ORDER}}


def audit_kinds(policy: AdmissionPolicy, skip: Iterable[str] = ()) -> list[str]:
    """Kinds the audit lists: every targeted Kubernetes kind and every kind rules relate to."""
    kinds = set(kubernetes_kinds(policy.pack)) - FILE_ONLY_KINDS
    for related in policy.relations.values():
        kinds |= related
    return sorted(kinds - set(skip))


def _ref(obj: Mapping[str, Any]) -> dict[str, str]:
    found = obj.get("metadata")
    meta: Mapping[str, Any] = found if isinstance(found, dict) else {}
    out = {"apiVersion": str(obj.get("apiVersion") or ""), "kind": str(obj.get("kind") or ""),
           "name": str(meta.get("name") or "")}
    if meta.get("namespace"):
        out["namespace"] = str(meta["namespace"])
    if meta.get("uid"):
        out["uid"] = str(meta["uid"])
    return out


def _result_value(status: str, action: str, waived: bool) -> str:
    if waived:
        return "skip"
    if status == "unknown":
        return "error"
    return "fail" if action == "deny" else "warn"


def evaluate_cluster(objects: Iterable[Any], policy: AdmissionPolicy, waivers: Sequence[ClusterWaiver] = (),
                     today: date | None = None) -> AuditResult:
    """Evaluate every object with one index over all of them. Pure; strange objects are skipped
    quietly by the engine (``object_to_resource`` never raises)."""
    today = today or date.today()
    excluded = set(policy.scope.all_excluded_namespaces)
    related = {k for kinds in policy.relations.values() for k in kinds}
    resources: list[Resource] = []
    raw: dict[str, tuple[Resource, dict[str, Any], tuple[str, ...]]] = {}
    unenforced: set[str] = set()  # addresses in excluded namespaces: audited, not enforced
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        res = object_to_resource(obj, file="cluster")
        if res.namespace in excluded:  # a Namespace object's own name counts as its namespace
            unenforced.add(res.address)
        annotated = tuple(rule for rule, _reason, _line in res.inline_waivers)
        res.inline_waivers = ()  # annotations are opt-outs: only a SOC2Waiver grants them
        resources.append(res)
        raw[res.address] = (res, obj, annotated)
    findings, passes = evaluate(resources, policy.pack, ResourceIndex(resources))
    entries: list[AuditEntry] = []
    facts_cache: dict[str, Any] = {}

    namespaces = [r for r in resources if r.type == "Namespace"]

    def facts_of(address: str) -> Any:
        if address not in facts_cache:
            res, obj, annotated = raw[address]
            ns = res.namespace if res.attributes.get("_namespace") is not None else None
            facts_cache[address] = object_facts(obj, address, res.type, ns, res.name,
                                                policy.scope.opt_out_key, annotated,
                                                namespace_labels(obj, ns, namespaces))
        return facts_cache[address]

    for f in findings:
        facts = facts_of(f.resource.address)
        entry, status = match_entry(entries_for(facts, waivers, policy.cluster_waiver_namespace), f.rule_id,
                                    facts.address, today, policy.waiver_warning_days)
        waived = entry is not None and status in ("active", "expiring")
        action = policy.rule_actions.get(f.rule_id, policy.actions.get(f.rule_id, "warn"))
        entries.append(AuditEntry(
            rule_id=f.rule_id, title=f.title, severity=f.severity, category=f.category, controls=f.controls,
            result=_result_value(f.status, action, waived), address=facts.address, namespace=facts.namespace,
            ref=_ref(raw[facts.address][1]), message=f.message,
            waiver={**entry.to_waiver().to_dict(), "status": status} if entry is not None else None,
            enforced=facts.address not in unenforced,
            staged=policy.mode != "enforce" and action == "deny" and f.status == "fail" and not waived,
        ))
    rules = {r.id: r for r in policy.pack.rules}
    for rule_id, address in passes:
        rule, facts = rules[rule_id], facts_of(address)
        entries.append(AuditEntry(
            rule_id=rule_id, title=rule.title, severity=rule.severity, category=rule.category,
            controls=rule.controls, result="pass", address=address, namespace=facts.namespace,
            ref=_ref(raw[address][1]), enforced=address not in unenforced,
        ))
    # Namespaces too: admission reads their labels for SOC2ClusterWaiver namespaceSelectors.
    context = [r for r in resources if r.type in related or r.type == "Namespace"]
    return AuditResult(entries=entries, resources=len(resources), context=context)


def _report_result(e: AuditEntry, seconds: int) -> dict[str, Any]:
    props = {"soc2.criteria": ",".join(e.controls), "soc2.category": e.category, "address": e.address}
    if e.waiver:
        props["waiver"] = f"{e.waiver.get('location', '')} owner={e.waiver.get('owner', '')} " \
                          f"expires={e.waiver.get('expires', '')} ({e.waiver.get('status', '')})".strip()
        if e.waiver.get("ticket"):
            props["waiver.ticket"] = str(e.waiver["ticket"])
    if not e.enforced:
        props["admission"] = "not enforced (excluded namespace)"
    elif e.staged:
        props["admission"] = "would be denied (admission.mode is not enforce)"
    out: dict[str, Any] = {
        "policy": e.rule_id, "rule": e.title, "result": e.result,
        "severity": e.severity if e.severity in REPORT_SEVERITIES else "info", "category": e.category,
        "source": "soc2infra", "scored": True, "timestamp": {"seconds": seconds, "nanos": 0},
        "properties": props, "resources": [dict(e.ref)],
    }
    if e.message:
        out["message"] = e.message
    return out


def build_reports(entries: Sequence[AuditEntry], name: str, now: datetime, max_results: int,
                  namespaces: Iterable[str] = ()) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(namespace → PolicyReport, the ClusterPolicyReport). Pure.

    Every namespace in *namespaces* gets a report even when it holds nothing to check (an empty
    report says "audited, nothing found" rather than leaving a stale one behind).
    """
    seconds = int(now.timestamp())
    groups: dict[str | None, list[AuditEntry]] = {ns: [] for ns in namespaces}
    groups.setdefault(None, [])
    for e in entries:
        groups.setdefault(e.namespace, []).append(e)
    reports: dict[str, dict[str, Any]] = {}
    cluster: dict[str, Any] = {}
    for ns, items in groups.items():
        counts = Counter(e.result for e in items)
        ordered = sorted(items, key=lambda e: (RESULT_ORDER[e.result], e.rule_id, e.address))
        kept = ordered[:max_results]
        annotations = {"soc2infra.io/audited-at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "soc2infra.io/results-omitted": str(len(ordered) - len(kept))}
        meta: dict[str, Any] = {"name": name, "labels": dict(MANAGED_BY), "annotations": annotations}
        report: dict[str, Any] = {
            "apiVersion": REPORT_API_VERSION, "kind": "PolicyReport" if ns else "ClusterPolicyReport",
            "metadata": meta,
            "summary": {k: counts.get(k, 0) for k in ("pass", "fail", "warn", "error", "skip")},
            "results": [_report_result(e, seconds) for e in kept],
        }
        if ns:
            meta["namespace"] = ns
            reports[ns] = report
        else:
            cluster = report
    return reports, cluster


# --------------------------------------------------------------------------- I/O

def pick_resources(discovered: Mapping[str, list[ApiResource]], kinds: Iterable[str]) -> list[ApiResource]:
    """The API resource to list for each kind (built-in kinds only from their own group)."""
    out: list[ApiResource] = []
    for kind in kinds:
        candidates = discovered.get(kind, [])
        if kind in BUILTIN_GROUPS:
            candidates = [c for c in candidates if c.group == BUILTIN_GROUPS[kind]]
        out.extend(candidates)
    return out


@dataclass(slots=True)
class AuditOutcome:
    """What one run did (for logs, tests and the snapshot)."""

    leader: bool
    summary: dict[str, int]
    reports_written: int = 0
    reports_deleted: int = 0
    record: Any = None
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Auditor:
    """Runs the audit against a cluster; one instance per operator process."""

    def __init__(self, kube: Kube, policy: AdmissionPolicy, settings: OperatorSettings,
                 writer: EvidenceWriter, identity: str,
                 on_context: Callable[[list[Resource]], None] | None = None,
                 cluster_name: str = "") -> None:
        self.kube = kube
        self.policy = policy
        self.settings = settings
        self.writer = writer
        self.identity = identity
        self.on_context = on_context
        self.cluster_name = cluster_name

    def is_leader(self) -> bool:
        """Whether this process writes reports and records (Lease in the own namespace)."""
        ns = self.settings.scope.own_namespace
        if not ns:
            return True
        a = self.settings.audit
        duration = max(a.lease_seconds, int(a.interval_seconds * 2) + 30)
        try:
            return try_acquire_lease(self.kube, ns, a.lease_name, self.identity, duration)
        except Exception:  # noqa: BLE001 - a failed election means "not leader this round"
            logger.exception("audit leader election failed")
            return False

    def list_cluster(self) -> tuple[list[dict[str, Any]], list[ClusterWaiver], list[str]]:
        """Every object to audit, the SOC2Waivers, and the namespaces that exist."""
        discovered = self.kube.discover()
        objects: list[dict[str, Any]] = []
        for res in pick_resources(discovered, audit_kinds(self.policy, self.settings.audit.skip_kinds)):
            try:
                objects.extend(self.kube.list_objects(res))
            except KubeError as exc:  # e.g. forbidden: report, keep auditing the rest
                logger.warning("audit cannot list %s: %s", res.path(), exc)
        waiver_res = ApiResource(cluster_waivers.GROUP, cluster_waivers.VERSION, cluster_waivers.PLURAL,
                                 cluster_waivers.KIND, True)
        cluster_res = ApiResource(cluster_waivers.GROUP, cluster_waivers.VERSION,
                                  cluster_waivers.CLUSTER_PLURAL, cluster_waivers.CLUSTER_KIND, False)
        waivers = []
        for res in (waiver_res, cluster_res):
            try:
                require = self.settings.waivers.require_independent_approval
                waivers += [cluster_waivers.waiver_from_object(o, require)
                            for o in self.kube.list_objects(res)]
            except KubeError as exc:
                logger.warning("audit cannot list %s: %s", res.kind, exc)
        namespaces = [o["metadata"]["name"] for o in objects
                      if o.get("kind") == "Namespace" and isinstance(o.get("metadata"), dict)
                      and isinstance(o["metadata"].get("name"), str)]
        if not namespaces:
            ns_res = ApiResource("", "v1", "namespaces", "Namespace", False)
            namespaces = [o["metadata"]["name"] for o in self.kube.list_objects(ns_res)]
        return objects, waivers, namespaces

    def run_once(self, now: datetime | None = None) -> AuditOutcome:
        """One audit: list, evaluate, and (as leader) write reports and the snapshot record."""
        t0 = time.monotonic()
        now = now or datetime.now(UTC)
        objects, waivers, namespaces = self.list_cluster()
        result = evaluate_cluster(objects, self.policy, waivers, now.date())
        if self.on_context is not None:
            self.on_context(result.context)
        outcome = AuditOutcome(leader=self.is_leader(), summary=result.summary())
        if outcome.leader:
            live = list(namespaces)  # excluded namespaces too: excluded from enforcement, not evidence
            self._write_reports(result, live, now, outcome)
            rollout = {"mode": self.policy.mode,
                       "deny_rules": sorted(r for r, a in self.policy.rule_actions.items() if a == "deny"),
                       "excluded_namespaces": list(self.settings.scope.all_excluded_namespaces)}
            entry = audit_record([e.to_record() for e in result.entries], self.policy.pack.digest,
                                 {**outcome.summary, "namespaces": len(live)},
                                 [w.to_dict() for w in waivers], self.cluster_name, rollout)
            try:
                outcome.record = self.writer.commit_sync(entry)
            except EvidenceError as exc:
                outcome.errors.append(str(exc))
                logger.error("audit snapshot not recorded: %s", exc)
        outcome.seconds = time.monotonic() - t0
        return outcome

    def _write_reports(self, result: AuditResult, namespaces: list[str], now: datetime,
                       outcome: AuditOutcome) -> None:
        a = self.settings.audit
        reports, cluster = build_reports(result.entries, a.report_name, now, a.max_results_per_report,
                                         namespaces)
        ns_res = ApiResource(REPORT_GROUP, "v1alpha2", "policyreports", "PolicyReport", True)
        cluster_res = ApiResource(REPORT_GROUP, "v1alpha2", "clusterpolicyreports", "ClusterPolicyReport",
                                  False)
        for ns, report in sorted(reports.items()):
            try:
                self.kube.apply(ns_res.path(ns, a.report_name), report)
                outcome.reports_written += 1
            except KubeError as exc:
                outcome.errors.append(str(exc))
                logger.warning("cannot write PolicyReport in %s: %s", ns, exc)
        try:
            self.kube.apply(cluster_res.path(None, a.report_name), cluster)
            outcome.reports_written += 1
        except KubeError as exc:
            outcome.errors.append(str(exc))
            logger.warning("cannot write ClusterPolicyReport: %s", exc)
        # Reports of namespaces that are gone: remove ours (and only ours).
        try:
            existing = list(self.kube.list_objects(ns_res))
        except KubeError:
            existing = []
        for rep in existing:
            meta = rep.get("metadata") or {}
            labels = meta.get("labels") or {}
            ours = meta.get("name") == a.report_name \
                and labels.get("app.kubernetes.io/managed-by") == "soc2infra"
            if ours and meta.get("namespace") not in reports:
                try:
                    if self.kube.delete(ns_res.path(meta.get("namespace"), a.report_name)):
                        outcome.reports_deleted += 1
                except KubeError as exc:
                    outcome.errors.append(str(exc))
