"""The background audit's pure parts: one evaluation over the whole cluster, bounded reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from soc2infra._core.pack import load_pack
from soc2infra_operator.admission import AdmissionPolicy, rule_relations
from soc2infra_operator.audit import audit_kinds, build_reports, evaluate_cluster, pick_resources
from soc2infra_operator.kube import ApiResource
from soc2infra_operator.settings import OperatorSettings, apply_overrides
from soc2infra_operator.waivers import waiver_from_object

TODAY = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> AdmissionPolicy:
    pack = load_pack()
    settings = apply_overrides(OperatorSettings(), [("scope.own_namespace", "soc2infra")], "t")
    return AdmissionPolicy.build(pack, settings, rule_relations(pack))


def ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": f"uid-{name}"}}


def pod(name: str, namespace: str, privileged: bool = False) -> dict[str, Any]:
    sc = {"privileged": True} if privileged else {"allowPrivilegeEscalation": False, "runAsNonRoot": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "securityContext": sc}]}}


def netpol(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": namespace}, "spec": {"podSelector": {}}}


def by(entries, rule_id: str, address: str):
    return next(e for e in entries if e.rule_id == rule_id and e.address == address)


def test_one_index_over_the_cluster_decides_cross_object_rules(policy):
    result = evaluate_cluster([ns("a"), ns("b"), netpol("b"), pod("p", "a", privileged=True)], policy, today=TODAY)
    assert by(result.entries, "SOC2-K8S-NET-004", "v1/Namespace/a").result == "warn"  # restricted: warn
    assert by(result.entries, "SOC2-K8S-NET-004", "v1/Namespace/b").result == "pass"
    p = by(result.entries, "SOC2-K8S-POD-001", "v1/Pod/a/p")
    assert (p.result, p.namespace, p.ref["uid"]) == ("fail", "a", "u1")
    assert by(result.entries, "SOC2-K8S-POD-003", "v1/Pod/a/p").result == "warn"  # a warn rule failing
    # The admission context keeps the objects cross-object rules look up, and the Namespaces.
    assert sorted(r.type for r in result.context) == ["Namespace", "Namespace", "NetworkPolicy"]  # + labels
    assert result.summary()["objects"] == 4


def test_excluded_namespaces_waivers_and_garbage(policy):
    waiver = waiver_from_object({"metadata": {"name": "w", "namespace": "a"}, "spec": {
        "rule": "SOC2-K8S-POD-001", "reason": "r", "owner": "o", "expires": "2026-12-31"}})
    objects = [ns("kube-system"), pod("sys", "kube-system", privileged=True), pod("mine", "soc2infra", True),
               pod("p", "a", privileged=True), None, "x", {"kind": 3}, {"metadata": None, "kind": "Pod"}]
    result = evaluate_cluster(objects, policy, [waiver], today=TODAY)
    # Excluded namespaces (and the own one) are audited all the same, marked as not enforced.
    sys_priv = by(result.entries, "SOC2-K8S-POD-001", "v1/Pod/kube-system/sys")
    assert (sys_priv.result, sys_priv.enforced) == ("fail", False)
    assert by(result.entries, "SOC2-K8S-POD-001", "v1/Pod/soc2infra/mine").enforced is False
    reports, _cluster = build_reports(result.entries, "soc2infra", NOW, 100, namespaces=["kube-system", "a"])
    [sys_result] = [r for r in reports["kube-system"]["results"] if r["policy"] == "SOC2-K8S-POD-001"]
    assert sys_result["properties"]["admission"] == "not enforced (excluded namespace)"
    skipped = by(result.entries, "SOC2-K8S-POD-001", "v1/Pod/a/p")
    assert skipped.result == "skip" and skipped.waiver["owner"] == "o" and skipped.enforced
    assert skipped.to_record()["status"] == "waived" and "status" not in skipped.to_record()["waiver"]
    expired = evaluate_cluster(objects, policy, [waiver], today=date(2027, 1, 1))
    assert by(expired.entries, "SOC2-K8S-POD-001", "v1/Pod/a/p").result == "fail"


def test_reports_are_bounded_sorted_and_complete(policy):
    objects = [ns("a"), *[pod(f"p{i}", "a", privileged=i % 2 == 0) for i in range(10)]]
    result = evaluate_cluster(objects, policy, today=TODAY)
    reports, cluster = build_reports(result.entries, "soc2infra", NOW, 15, namespaces=["a", "empty"])
    rep = reports["a"]
    assert rep["kind"] == "PolicyReport" and rep["metadata"]["namespace"] == "a"
    assert len(rep["results"]) == 15
    omitted = int(rep["metadata"]["annotations"]["soc2infra.io/results-omitted"])
    namespaced = [e for e in result.entries if e.namespace == "a"]
    assert sum(rep["summary"].values()) == len(namespaced) == 15 + omitted
    order = [r["result"] for r in rep["results"]]
    assert order == sorted(order, key=["fail", "warn", "error", "skip", "pass"].index)
    first = rep["results"][0]
    assert first["policy"].startswith("SOC2-K8S-") and first["properties"]["soc2.criteria"]
    assert first["timestamp"] == {"seconds": int(NOW.timestamp()), "nanos": 0}
    # A namespace with nothing to check still gets an (empty) report; Namespaces go to the cluster report.
    assert reports["empty"]["results"] == [] and sum(reports["empty"]["summary"].values()) == 0
    assert cluster["kind"] == "ClusterPolicyReport" and "namespace" not in cluster["metadata"]
    assert {r["resources"][0]["kind"] for r in cluster["results"]} == {"Namespace"}


def test_audit_lists_targeted_and_related_kinds_but_not_secrets(policy):
    kinds = audit_kinds(policy, skip=("Secret",))
    assert {"Deployment", "NetworkPolicy", "PodDisruptionBudget", "Namespace", "ClusterRole"} <= set(kinds)
    assert "Secret" not in kinds and "EncryptionConfiguration" not in kinds
    discovered = {"Service": [ApiResource("", "v1", "services", "Service", True),
                              ApiResource("serving.knative.dev", "v1", "services", "Service", True)],
                  "Schedule": [ApiResource("velero.io", "v1", "schedules", "Schedule", True)]}
    picked = pick_resources(discovered, ["Service", "Schedule", "Missing"])
    assert [(r.group, r.kind) for r in picked] == [("", "Service"), ("velero.io", "Schedule")]
    assert picked[0].path("shop", "web") == "/api/v1/namespaces/shop/services/web"
    assert picked[1].path() == "/apis/velero.io/v1/schedules"


def test_expiring_waiver_still_skips(policy):
    soon = (TODAY + timedelta(days=2)).isoformat()
    waiver = waiver_from_object({"metadata": {"name": "w", "namespace": "a"}, "spec": {
        "rule": "*", "reason": "r", "owner": "o", "expires": soon}})
    result = evaluate_cluster([pod("p", "a", privileged=True)], policy, [waiver], today=TODAY)
    assert {e.result for e in result.entries if e.address == "v1/Pod/a/p"} <= {"skip", "pass"}


def test_warn_mode_reports_deny_level_failures_as_would_be_denied():
    pack = load_pack()
    settings = apply_overrides(OperatorSettings(), [("admission.mode", "warn")], "t")
    staged = AdmissionPolicy.build(pack, settings, rule_relations(pack))
    result = evaluate_cluster([pod("p", "a", privileged=True)], staged, today=TODAY)
    priv = by(result.entries, "SOC2-K8S-POD-001", "v1/Pod/a/p")
    assert priv.result == "fail" and priv.staged  # a deny-level rule: fail, even while only warning
    assert not by(result.entries, "SOC2-K8S-POD-003", "v1/Pod/a/p").staged  # a warn-level rule
    reports, _ = build_reports(result.entries, "soc2infra", NOW, 100, namespaces=["a"])
    [r] = [r for r in reports["a"]["results"] if r["policy"] == "SOC2-K8S-POD-001"]
    assert r["properties"]["admission"] == "would be denied (admission.mode is not enforce)"
