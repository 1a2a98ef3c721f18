"""The background audit against a real kube-apiserver: PolicyReports in the cluster, snapshots in the ledger.

The operator runs in ``admission.mode=audit`` (everything admitted and recorded), so the scene
can contain non-compliant objects; the audit then evaluates the whole cluster with one index
(cross-object rules: a NetworkPolicy per namespace, a PDB selecting the pods) and writes
``wgpolicyk8s.io/v1alpha2`` reports, bounded and replaced in place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soc2infra._cogs.model import CATEGORIES
from soc2infra.lab import ControlPlane

from .test_admission import (
    Kubectl,
    RunningOperator,
    _name,
    delete_configuration,
    deployment,
    manifest,
    soc2waiver,
    start_operator,
    wait_for,
)

MAX_RESULTS = 40


@dataclass
class Scene:
    bad: str  # namespace without a NetworkPolicy, with failing and waived workloads
    good: str  # namespace with a NetworkPolicy and a PDB-covered single replica
    role: str  # a wildcard ClusterRole
    created: datetime


@pytest.fixture(scope="module")
def audit_operator(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[RunningOperator]:
    workdir = tmp_path_factory.mktemp("audit-operator")
    running = start_operator(control_plane, workdir, kubectl, "--set", "admission.mode=audit",
                             "--set", "audit.initial_delay_seconds=0.5",
                             "--set", f"audit.max_results_per_report={MAX_RESULTS}", audit_interval=2)
    try:
        yield running
    finally:
        code = running.process.stop()
        delete_configuration(kubectl, running.configuration)
        assert code == 0, running.process.log_tail()


def single(name: str, namespace: str, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    obj = deployment(name, namespace)
    obj["spec"]["replicas"] = 1
    if pod_labels:
        obj["spec"]["selector"]["matchLabels"] = dict(pod_labels)
        obj["spec"]["template"]["metadata"]["labels"] = dict(pod_labels)
    return obj


@pytest.fixture(scope="module")
def scene(audit_operator: RunningOperator, kubectl: Kubectl) -> Scene:
    # Waiver changes are recorded by the audit leader: let the operator win the lease (its first
    # snapshot says so) before the scene's waiver is created, or the change can predate the leader.
    wait_for(lambda: any(r["source"] == "audit" for r in audit_operator.records()), timeout=60,
             what="the operator's first audit snapshot")
    bad, good, role = _name("audit-bad"), _name("audit-good"), _name("audit-wild")
    expires = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": bad}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": good}},
        deployment("priv", bad, privileged=True),
        deployment("waived", bad, privileged=True),
        single("single", bad),
        soc2waiver("waived-priv", bad, "SOC2-K8S-POD-00?", expires, selector={"name": "waived"}),
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "default-deny", "namespace": good},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        single("covered", good),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "covered", "namespace": good},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "covered"}}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
         "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
    ]
    for obj in objects:  # one by one: the namespaces must exist before what goes in them
        result = kubectl("apply", "-f", "-", input=manifest(obj), check=False)
        assert result.returncode == 0, result.stderr
    # Reports audited after this moment saw every object (applying them takes seconds on a busy
    # machine, so the moment before the first apply is too early).
    return Scene(bad, good, role, datetime.now(UTC))


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def report(kubectl: Kubectl, namespace: str | None) -> dict[str, Any] | None:
    args = (["-n", namespace, "get", "policyreport"] if namespace else ["get", "clusterpolicyreport"]) + ["soc2infra"]
    result = kubectl(*args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def audited_after(rep: dict[str, Any] | None, moment: datetime) -> bool:
    if not rep:
        return False
    stamp = rep["metadata"].get("annotations", {}).get("soc2infra.io/audited-at", "")
    return bool(stamp) and datetime.fromisoformat(stamp.replace("Z", "+00:00")) > moment


def fresh_report(kubectl: Kubectl, namespace: str | None, after: datetime) -> dict[str, Any]:
    return wait_for(lambda: (r := report(kubectl, namespace)) and audited_after(r, after) and r, timeout=30,
                    what=f"an audit of {namespace or 'the cluster'} after {after:%H:%M:%S}")


def results_for(rep: dict[str, Any], kind: str, name: str) -> dict[str, dict[str, Any]]:
    return {r["policy"]: r for r in rep.get("results", [])
            if any(res.get("kind") == kind and res.get("name") == name for res in r.get("resources", []))}


def test_namespaced_policy_report_carries_results_with_soc2_criteria(scene, kubectl):
    rep = fresh_report(kubectl, scene.bad, scene.created + timedelta(seconds=1))
    assert rep["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and rep["kind"] == "PolicyReport"
    assert rep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "soc2infra"
    priv = results_for(rep, "Deployment", "priv")
    r = priv["SOC2-K8S-POD-001"]
    assert (r["result"], r["severity"], r["source"], r["scored"]) == ("fail", "critical", "soc2infra", True)
    assert r["category"] in CATEGORIES and r["properties"]["soc2.category"] == r["category"]
    assert r["rule"] == "Containers do not run privileged"
    assert set(r["properties"]["soc2.criteria"].split(",")) >= {"CC6.1", "CC6.8"}
    [ref] = r["resources"]
    assert (ref["apiVersion"], ref["namespace"]) == ("apps/v1", scene.bad) and ref["uid"]
    assert abs(r["timestamp"]["seconds"] - datetime.now(UTC).timestamp()) < 120
    assert "privileged" in r["message"]


def test_waived_results_are_skipped_with_the_waiver(scene, kubectl):
    rep = fresh_report(kubectl, scene.bad, scene.created + timedelta(seconds=1))
    waived = results_for(rep, "Deployment", "waived")
    r = waived["SOC2-K8S-POD-001"]
    assert r["result"] == "skip"
    assert f"SOC2Waiver {scene.bad}/waived-priv" in r["properties"]["waiver"]
    assert "payments@example.com" in r["properties"]["waiver"] and r["properties"]["waiver.ticket"] == "SEC-1234"


def cluster_result(cluster: dict[str, Any], snapshots: list[dict[str, Any]], kind: str, name: str,
                   rule: str) -> str:
    """The report's result for one cluster-scoped object and rule, or — when the report's bound cut
    it (namespaces other test modules left behind compete for its MAX_RESULTS places) — the ledger
    status of the newest audit snapshot that has it (``fail`` where the report says ``warn``)."""
    got = results_for(cluster, kind, name).get(rule)
    if got is not None:
        return str(got["result"])
    assert int(cluster["metadata"]["annotations"]["soc2infra.io/results-omitted"]) > 0, (kind, name, rule)
    object_path = re.compile(rf"/{kind}/+{re.escape(name)}$")
    for snap in reversed(snapshots):
        for res in snap["results"]:
            if res["rule_id"] == rule and object_path.search(res["address"]):
                return "ledger:" + str(res["status"])
    raise AssertionError(f"no result for {rule} on {kind} {name} in the report or the ledger")


def test_cross_object_rules_see_the_whole_cluster(scene, audit_operator, kubectl):
    cluster = fresh_report(kubectl, None, scene.created + timedelta(seconds=1))
    assert cluster["kind"] == "ClusterPolicyReport"
    snapshots = [r for r in audit_operator.records() if r["source"] == "audit"]
    # A namespace without a NetworkPolicy fails NET-004 (a restricted-level rule, so the report
    # says warn; here the audit sees the finished state, objects arrive in any order at admission).
    assert cluster_result(cluster, snapshots, "Namespace", scene.bad, "SOC2-K8S-NET-004") in {"warn", "ledger:fail"}
    assert cluster_result(cluster, snapshots, "Namespace", scene.good, "SOC2-K8S-NET-004") in {"pass", "ledger:pass"}
    assert cluster_result(cluster, snapshots, "ClusterRole", scene.role, "SOC2-K8S-RBAC-001") in {"fail", "ledger:fail"}
    # A single replica: warned without a PDB, passing with a PDB that selects its pods.
    good = fresh_report(kubectl, scene.good, scene.created + timedelta(seconds=1))
    assert results_for(good, "Deployment", "covered")["SOC2-K8S-AVAIL-005"]["result"] == "pass"
    bad = fresh_report(kubectl, scene.bad, scene.created + timedelta(seconds=1))
    single_results = results_for(bad, "Deployment", "single")
    if "SOC2-K8S-AVAIL-005" in single_results:  # may be cut by the bound (passes and warnings go last)
        assert single_results["SOC2-K8S-AVAIL-005"]["result"] == "warn"


def test_reports_are_bounded_with_an_exact_summary(scene, kubectl):
    rep = fresh_report(kubectl, scene.bad, scene.created + timedelta(seconds=1))
    omitted = int(rep["metadata"]["annotations"]["soc2infra.io/results-omitted"])
    assert len(rep["results"]) == MAX_RESULTS and omitted > 0
    assert sum(rep["summary"].values()) == MAX_RESULTS + omitted
    # priv: POD-001 (baseline: fail) and POD-002 (restricted: warn); waived: both skipped.
    assert rep["summary"]["fail"] >= 1 and rep["summary"]["warn"] >= 1 and rep["summary"]["skip"] >= 2
    order = {"fail": 0, "warn": 1, "error": 2, "skip": 3, "pass": 4}
    ranks = [order[r["result"]] for r in rep["results"]]
    assert ranks == sorted(ranks)  # failures first: the bound drops passes first


def test_reports_are_replaced_in_place(scene, kubectl):
    first = fresh_report(kubectl, scene.bad, scene.created + timedelta(seconds=1))
    later = fresh_report(kubectl, scene.bad, datetime.fromisoformat(
        first["metadata"]["annotations"]["soc2infra.io/audited-at"].replace("Z", "+00:00")))
    assert later["metadata"]["uid"] == first["metadata"]["uid"]
    assert later["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
    reports = get_json(kubectl, "get", "policyreports", "-A")["items"]
    per_namespace: dict[str, int] = {}
    for item in reports:
        per_namespace[item["metadata"]["namespace"]] = per_namespace.get(item["metadata"]["namespace"], 0) + 1
    assert set(per_namespace.values()) == {1}
    # Excluded namespaces are excluded from enforcement, not from evidence: they get reports too.
    assert "kube-system" in per_namespace and "kube-public" in per_namespace
    assert len(get_json(kubectl, "get", "clusterpolicyreports")["items"]) == 1
    # A deleted object leaves the report at the next run.
    kubectl("-n", scene.bad, "delete", "deployment", "priv")
    gone_after = datetime.now(UTC)
    rep = fresh_report(kubectl, scene.bad, gone_after + timedelta(seconds=1))
    assert results_for(rep, "Deployment", "priv") == {}


def test_excluded_namespaces_are_audited_but_marked_not_enforced(scene, kubectl):
    name = _name("sys-priv")
    after = datetime.now(UTC)
    # Admitted (the webhook never sees kube-public) ...
    result = kubectl("apply", "-f", "-", input=manifest(deployment(name, "kube-public", privileged=True)),
                     check=False)
    try:
        assert result.returncode == 0 and "SOC2-" not in result.stderr, result.stderr
        # ... and still reported, with what enforcement would have said.
        rep = fresh_report(kubectl, "kube-public", after + timedelta(seconds=1))
        r = results_for(rep, "Deployment", name)["SOC2-K8S-POD-001"]
        assert r["result"] == "fail" and r["properties"]["admission"] == "not enforced (excluded namespace)"
    finally:
        kubectl("-n", "kube-public", "delete", "deployment", name, "--ignore-not-found", check=False)


def test_audit_snapshots_are_in_the_ledger(scene, audit_operator, kubectl):
    from soc2infra.evidence.verify import verify_ledger

    fresh_report(kubectl, scene.bad, scene.created + timedelta(seconds=1))

    def snapshots() -> list[dict[str, Any]]:
        return [r for r in audit_operator.records() if r["source"] == "audit"]

    wait_for(lambda: len(snapshots()) >= 2, timeout=30, what="two audit snapshots")
    latest = [s for s in snapshots() if any(r["address"].endswith(f"/{scene.bad}/waived") for r in s["results"])]
    assert latest, "no snapshot covers the scene"
    snap = latest[-1]
    assert snap["decision"] == "fail" and snap["subject"].startswith("cluster")
    statuses = {(r["rule_id"], r["address"]): r["status"] for r in snap["results"]}
    assert statuses[("SOC2-K8S-POD-001", f"apps/v1/Deployment/{scene.bad}/waived")] == "waived"
    assert statuses[("SOC2-K8S-NET-004", f"v1/Namespace/{scene.bad}")] == "fail"
    assert statuses[("SOC2-K8S-NET-004", f"v1/Namespace/{scene.good}")] == "pass"
    waived = next(r for r in snap["results"] if r["status"] == "waived")
    assert waived["waiver"]["owner"] == "payments@example.com"
    summary = snap["context"]["summary"]
    # Every result is in the snapshot (the report's bound does not apply to evidence).
    assert sum(summary[k] for k in ("pass", "fail", "warn", "error", "skip")) == len(snap["results"])
    assert any(w["name"] == "waived-priv" for w in snap["context"]["waivers"])
    # Waiver changes are evidence as well, recorded by the audit leader as it sees them: wait for
    # the record rather than assume it was written before the snapshots (a busy machine orders
    # them either way).
    wait_for(lambda: any(r["source"] == "waiver" and r["subject"].endswith(f"{scene.bad}/waived-priv")
                         for r in audit_operator.records()), timeout=30, what="the waiver's evidence record")
    assert verify_ledger(audit_operator.ledger).ok


def test_admission_uses_the_audited_cluster_for_cross_object_rules(scene, audit_operator, kubectl):
    """A single-replica Deployment whose pods the existing PDB selects passes AVAIL-005 at admission:
    the webhook evaluates it against the objects the last audit listed."""
    fresh_report(kubectl, scene.good, scene.created + timedelta(seconds=2))
    obj = single("covered-too", scene.good, pod_labels={"app": "covered"})
    assert kubectl("apply", "-f", "-", input=manifest(obj), check=False).returncode == 0
    alone = single("alone", scene.good)
    assert kubectl("apply", "-f", "-", input=manifest(alone), check=False).returncode == 0
    [covered] = audit_operator.records(f"apps/v1/Deployment/{scene.good}/covered-too")
    [uncovered] = audit_operator.records(f"apps/v1/Deployment/{scene.good}/alone")
    status = {r["rule_id"]: r["status"] for r in covered["results"]}
    assert status["SOC2-K8S-AVAIL-005"] == "pass"
    assert {r["rule_id"]: r["status"] for r in uncovered["results"]}["SOC2-K8S-AVAIL-005"] == "fail"


def test_audit_log_shows_no_errors(audit_operator):
    log = Path(audit_operator.process.log_path).read_text(errors="replace")
    assert "Traceback" not in log and "audit run failed" not in log
