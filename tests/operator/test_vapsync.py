"""enforcement vap/hybrid, pure parts: which rules leave the webhook, which kinds it keeps, and
SOC2Waivers as policy waiver scopes."""

from __future__ import annotations

from datetime import date

from soc2infra._core.pack import load_pack
from soc2infra_operator.settings import OperatorSettings, load_settings
from soc2infra_operator.vapsync import (
    cluster_waiver_scopes,
    desired_objects,
    enforcement_plan,
    webhook_kinds,
    webhook_pack,
)
from soc2infra_operator.waivers import waiver_from_object

TODAY = date(2026, 6, 1)


def _waiver(ns: str, rule: str, expires: str = "2026-12-31", **selector: object) -> object:
    return waiver_from_object({"metadata": {"namespace": ns, "name": "w"},
                               "spec": {"rule": rule, "selector": selector, "reason": "r", "owner": "o",
                                        "expires": expires}})


def test_webhook_mode_changes_nothing():
    pack = load_pack()
    plan = enforcement_plan(pack, "webhook")
    assert plan.cel_rules == frozenset()
    assert webhook_pack(pack, plan.cel_rules) is pack
    assert webhook_kinds(["Pod", "Service"], pack, plan.cel_rules, "webhook") == ["Pod", "Service"]


def test_hybrid_keeps_only_the_kinds_of_rules_without_cel():
    pack = load_pack()
    cel = enforcement_plan(pack, "hybrid").cel_rules
    assert "SOC2-K8S-POD-001" in cel and "SOC2-K8S-NET-004" not in cel
    kinds = webhook_kinds(["Pod", "Deployment", "Namespace", "Service", "ClusterRole", "ConfigMap"], pack, cel,
                          "hybrid")
    assert kinds == ["Pod", "Deployment", "Namespace"]
    assert webhook_kinds(["Pod"], pack, cel, "vap") == []
    remaining = webhook_pack(pack, cel)
    assert {r.id for r in remaining.rules_for("Deployment")} == {"SOC2-K8S-POD-013", "SOC2-K8S-AVAIL-005",
                                                                  "SOC2-K8S-BACKUP-001"}
    assert pack.rule("SOC2-K8S-POD-001").enabled  # the audit's pack is untouched


def test_soc2waivers_become_scopes_for_their_namespace_and_expire():
    live = _waiver("payments", "SOC2-K8S-POD-00?", kind="Deployment", name="legacy-*")
    expired = _waiver("payments", "SOC2-K8S-POD-001", expires="2026-01-01")
    broken = waiver_from_object({"metadata": {"namespace": "x", "name": "b"}, "spec": {"rule": "R"}})
    scopes = cluster_waiver_scopes([live, expired, broken], "soc2infra", TODAY)
    assert [(s.rule, s.address, s.cluster_only) for s in scopes] == [
        ("SOC2-K8S-POD-00?", "*/Deployment/payments/legacy-*", False)]
    own = cluster_waiver_scopes([_waiver("soc2infra", "SOC2-K8S-RBAC-001", kind="ClusterRole")], "soc2infra",
                                TODAY)
    assert [(s.address, s.cluster_only) for s in own] == [("*/ClusterRole/soc2infra/*", False),
                                                          ("*/ClusterRole/*", True)]


def test_desired_objects_use_the_webhooks_actions_and_scope():
    settings = load_settings(overrides=[("admission.actions", "SOC2-K8S-POD-001=warn"),
                                        ("scope.own_namespace", "soc2infra")], environ={})
    pack = load_pack()
    from soc2infra_operator.admission import AdmissionPolicy

    policy = AdmissionPolicy.build(pack, settings)
    objs = desired_objects(enforcement_plan(pack, "hybrid"), policy.actions, settings, [], TODAY, pack.digest)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    binding = by_name[("ValidatingAdmissionPolicyBinding", "soc2infra-soc2-k8s-pod-001")]
    assert binding["spec"]["validationActions"] == ["Warn"]
    excluded = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert "soc2infra" in excluded and "kube-system" in excluded
    assert OperatorSettings().enforcement == "webhook"


def test_soc2clusterwaivers_cover_cluster_objects_or_the_namespaces_they_pick():
    def cw(**spec: object) -> object:
        return waiver_from_object({"kind": "SOC2ClusterWaiver", "metadata": {"name": "c"},
                                   "spec": {"rule": "SOC2-K8S-RBAC-001", "reason": "r", "owner": "o",
                                            "expires": "2026-12-31", **spec}})

    plain = cluster_waiver_scopes([cw(selector={"kind": "ClusterRole"})], "soc2infra", TODAY)
    assert [(s.address, s.cluster_only) for s in plain] == [("*/ClusterRole/*", True)]
    picked = cluster_waiver_scopes([cw(namespaces=["team-*"], namespaceSelector={"matchLabels": {"t": "a"}})],
                                   "soc2infra", TODAY)
    assert [(s.address, s.cluster_only, s.namespace_labels) for s in picked] == [
        ("*/*/team-*/*", False, ()), ("*/*/*/*", False, (("t", "a"),))]
    from soc2infra._core.pack import load_pack as _load
    from soc2infra_operator.vapsync import enforcement_plan as _plan

    plan = next(p for p in _plan(_load(), "hybrid").plans if p.rule.id == "SOC2-K8S-RBAC-001")
    from soc2infra.export.vap import policy_objects

    policy, _ = policy_objects(plan, "deny", waivers=picked)
    cond = {m["name"]: m["expression"] for m in policy["spec"]["matchConditions"]}["soc2infra-waivers"]
    assert "namespaceObject.metadata.labels['t'] == 'a'" in cond
