"""Admission decisions as pure functions: plain AdmissionReview dicts in, decisions and responses out.

No Kopf, no cluster: these pin what the webhook decides (deny / warn / audit, scope, waivers,
opt-outs, cross-object rules, garbage objects), the response text, the evidence record shape and
the settings loader. The same behaviour against a real kube-apiserver is in tests/e2e.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.sources.kubernetes import object_to_resource
from soc2infra.evidence.records import normalize_entry
from soc2infra_operator.admission import (
    MAX_WARNING_CHARS,
    AdmissionPolicy,
    ReviewRequest,
    build_response,
    decide,
    failure_decision,
    request_from_review,
    review_response,
    rule_relations,
)
from soc2infra_operator.evidence import admission_record, audit_record, waiver_record
from soc2infra_operator.settings import OperatorSettings, SettingsError, apply_overrides, load_settings
from soc2infra_operator.waivers import WaiverStore, waiver_from_object

TODAY = date(2026, 6, 1)


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture(scope="module")
def relations(pack):
    return rule_relations(pack)


@pytest.fixture(scope="module")
def policy(pack, relations) -> AdmissionPolicy:
    return AdmissionPolicy.build(pack, OperatorSettings(), relations)


def policy_with(pack, relations, *overrides: tuple[str, Any]) -> AdmissionPolicy:
    settings = apply_overrides(OperatorSettings(), overrides, "test").validate()
    return AdmissionPolicy.build(pack, settings, relations)


def deployment(name: str = "api", namespace: str = "shop", **changes: Any) -> dict[str, Any]:
    """A Deployment that passes every rule of the pack (no denial, no warning)."""
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "serviceAccountName": name, "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "app", "image": "registry.example.com/api:1.4.2@sha256:" + "a" * 64,
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "resources": {"limits": {"memory": "256Mi", "cpu": "500m"},
                                      "requests": {"memory": "128Mi", "cpu": "100m"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    }],
                },
            },
        },
    }
    container = obj["spec"]["template"]["spec"]["containers"][0]
    for key, value in changes.items():
        if key == "container":
            container.update(value)
        elif key == "pod":
            obj["spec"]["template"]["spec"].update(value)
        elif key == "metadata":
            obj["metadata"].update(value)
        else:
            obj[key] = value
    return obj


PRIVILEGED = {"securityContext": {"privileged": True, "allowPrivilegeEscalation": False,
                                  "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}


def review(obj: Any, operation: str = "CREATE", namespace: str | None = "shop", user: str = "alice",
           dry_run: bool = False, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": "d7f1", "operation": operation, "object": obj, "dryRun": dry_run,
        "userInfo": {"username": user, "groups": ["developers"]},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
    }
    if namespace:
        request["namespace"] = namespace
    request.update(extra)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def run(obj: Any, policy: AdmissionPolicy, waivers=(), context=(), today: date = TODAY, **kw: Any):
    return decide(request_from_review(review(obj, **kw)), policy, waivers, context, today)


def waiver(name: str = "w", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    base = {"rule": "SOC2-K8S-POD-001", "reason": "vendor image needs it until v5", "owner": "team@example.com",
            "expires": (TODAY + timedelta(days=90)).isoformat()}
    base.update(spec)
    return {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2Waiver",
            "metadata": {"name": name, "namespace": namespace}, "spec": base}


def failing_ids(decision) -> set[str]:
    return {o.rule_id for o in decision.outcomes}


# --------------------------------------------------------------------------- verdicts

def test_compliant_deployment_is_admitted_without_warnings(policy):
    d = run(deployment(), policy)
    assert (d.verdict, d.allowed, d.outcomes) == ("allow", True, ())
    assert "SOC2-K8S-POD-001" in d.passed and d.address == "apps/v1/Deployment/shop/api"
    assert build_response(d).warnings == ()


def test_privileged_deployment_is_denied_naming_rule_criteria_and_fix(policy):
    d = run(deployment(container=PRIVILEGED), policy)
    assert not d.allowed and d.verdict == "deny"
    assert [o.rule_id for o in d.denials] == ["SOC2-K8S-POD-001"]
    response = build_response(d)
    assert response.code == 403 and not response.allowed
    assert "SOC2-K8S-POD-001" in response.message
    assert "[CC6.1, CC6.8, CC5.3]" in response.message  # SOC 2 criteria
    assert "Fix: Remove securityContext.privileged" in response.message
    assert "Deployment shop/api" in response.message


ESCALATING = {"image": "nginx:latest", "securityContext": {
    "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}


def test_warn_rule_admits_with_a_warning_and_audit_rule_only_records(policy):
    # allowPrivilegeEscalation is SOC2-K8S-POD-002 (restricted → warn, although its severity is
    # high); :latest and no digest are IMAGE-001/002 (hygiene → audit).
    d = run(deployment(container=ESCALATING), policy)
    assert d.allowed and d.verdict == "warn"
    actions = {o.rule_id: o.action for o in d.outcomes}
    assert actions == {"SOC2-K8S-POD-002": "warn", "SOC2-K8S-IMAGE-001": "audit", "SOC2-K8S-IMAGE-002": "audit"}
    warnings = build_response(d).warnings
    assert len(warnings) == 1 and warnings[0].startswith("SOC2-K8S-POD-002 [")
    assert all(len(w) <= MAX_WARNING_CHARS for w in warnings)


def test_audit_only_failure_is_admitted_silently_but_kept_in_the_decision(policy):
    d = run(deployment(container={"image": "registry.example.com/api:1.4.2"}), policy)
    assert d.allowed and build_response(d).warnings == ()
    assert [(o.rule_id, o.action) for o in d.outcomes] == [("SOC2-K8S-IMAGE-002", "audit")]


def test_action_overrides_and_mode(pack, relations):
    obj = deployment(container={"image": "nginx:latest"})
    strict = policy_with(pack, relations, ("admission.actions", "SOC2-K8S-IMAGE-*=deny"))
    assert run(obj, strict).verdict == "deny"
    assert {o.rule_id for o in run(obj, strict).denials} == {"SOC2-K8S-IMAGE-001", "SOC2-K8S-IMAGE-002"}
    # The exact id wins over the glob (whatever the order): IMAGE-002 stays audit, IMAGE-001 is denied.
    ordered = policy_with(pack, relations, ("admission.actions", {"SOC2-K8S-IMAGE-002": "audit",
                                                                  "SOC2-K8S-IMAGE-*": "deny"}))
    assert [o.rule_id for o in run(obj, ordered).denials] == ["SOC2-K8S-IMAGE-001"]
    bad = deployment(container=PRIVILEGED)
    warn_mode = policy_with(pack, relations, ("admission.mode", "warn"))
    d = run(bad, warn_mode)
    assert d.allowed and any(w.startswith("SOC2-K8S-POD-001") for w in build_response(d).warnings)
    audit_mode = policy_with(pack, relations, ("admission.mode", "audit"))
    d = run(bad, audit_mode)
    assert d.allowed and build_response(d).warnings == () and "SOC2-K8S-POD-001" in failing_ids(d)


@pytest.mark.parametrize("mode", ["warn", "audit"])
def test_staged_rollout_records_what_enforcing_would_have_denied(pack, relations, mode):
    p = policy_with(pack, relations, ("admission.mode", mode))
    d = run(deployment(container=PRIVILEGED), p)
    assert d.allowed and d.would_deny == ["SOC2-K8S-POD-001"] and d.mode == mode
    record = normalize_entry(admission_record(d, "sha256:x"))
    assert record["context"]["would_deny"] == ["SOC2-K8S-POD-001"] and record["context"]["mode"] == mode
    warnings = build_response(d).warnings
    if mode == "warn":  # the warning says what enforcing will do
        assert any(w.startswith("SOC2-K8S-POD-001 [CC6.1, CC6.8, CC5.3] (denied once admission.mode is enforce)")
                   for w in warnings)
    else:
        assert warnings == ()
    # A waived failure, a warn-level failure and an enforcing operator record no "would deny".
    waived = run(deployment(container=PRIVILEGED), p, waivers=store(waiver()))
    assert waived.would_deny == []
    assert run(deployment(container=ESCALATING), p).would_deny == []
    enforced = run(deployment(container=PRIVILEGED), policy_with(pack, relations))
    assert enforced.would_deny == [] and "would_deny" not in admission_record(enforced, "sha256:x")["context"]


def test_unknown_results_never_deny(policy, pack, relations):
    from soc2infra._cogs.model import Unknown

    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = Unknown("computed")
    d = run(obj, policy)
    unknown = [o for o in d.outcomes if o.status == "unknown"]
    assert unknown and all(o.action != "deny" for o in unknown)


# --------------------------------------------------------------------------- scope

@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_default_excluded_namespaces_are_not_checked(policy, namespace):
    d = run(deployment(namespace=namespace, container=PRIVILEGED), policy, namespace=namespace)
    assert d.verdict == "skip" and d.allowed and "excluded" in d.reason


def test_own_namespace_is_excluded_and_exclusions_are_configurable(pack, relations):
    p = policy_with(pack, relations, ("scope.own_namespace", "soc2infra"), ("scope.excluded_namespaces", "sandbox"))
    assert run(deployment(namespace="soc2infra", container=PRIVILEGED), p, namespace="soc2infra").verdict == "skip"
    assert run(deployment(namespace="sandbox", container=PRIVILEGED), p, namespace="sandbox").verdict == "skip"
    # Replacing the list means kube-system is checked now.
    assert run(deployment(namespace="kube-system", container=PRIVILEGED), p,
               namespace="kube-system").verdict == "deny"


def test_exclude_namespace_flag_adds_to_the_defaults_and_replace_flag_replaces():
    from soc2infra_operator.main import _overrides, _parser

    def resolved(*argv: str) -> tuple[str, ...]:
        settings = load_settings(None, _overrides(_parser().parse_args(["run", *argv])), environ={})
        return settings.scope.all_excluded_namespaces

    assert resolved("--exclude-namespace", "sandbox", "--exclude-namespace", "ci") == (
        "kube-system", "kube-public", "kube-node-lease", "sandbox", "ci")
    assert resolved("--replace-excluded-namespaces", "kube-system,sandbox") == ("kube-system", "sandbox")
    settings = apply_overrides(OperatorSettings(), [("scope.extra_excluded_namespaces", "sandbox")], "t")
    assert settings.scope.all_excluded_namespaces == ("kube-system", "kube-public", "kube-node-lease", "sandbox")


def test_action_overrides_resolve_by_specificity_not_map_order(pack, relations):
    # The case: Helm sorts keys, so the glob arrives first; the exact id still wins.
    p = policy_with(pack, relations, ("admission.actions", {"SOC2-K8S-POD-*": "warn", "SOC2-K8S-POD-008": "deny"}))
    assert p.actions["SOC2-K8S-POD-008"] == "deny" and p.actions["SOC2-K8S-POD-001"] == "warn"
    host = run(deployment(pod={"hostNetwork": True}), p)
    assert not host.allowed and [o.rule_id for o in host.denials] == ["SOC2-K8S-POD-008"]


def test_namespace_object_of_an_excluded_namespace_is_not_checked(policy):
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    assert run(ns, policy, namespace=None).verdict == "skip"


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT", ""])
def test_other_operations_are_not_checked(policy, operation):
    assert run(deployment(container=PRIVILEGED), policy, operation=operation).verdict == "skip"


def test_subresources_and_objects_being_deleted_are_not_checked(policy):
    assert run(deployment(container=PRIVILEGED), policy, subResource="status").verdict == "skip"
    dying = deployment(container=PRIVILEGED, metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    assert run(dying, policy, operation="UPDATE").verdict == "skip"
    # A new object claiming a deletion timestamp is still checked (only UPDATE is exempt).
    assert run(dying, policy, operation="CREATE").verdict == "deny"


def test_update_is_checked_like_create(policy):
    assert run(deployment(container=PRIVILEGED), policy, operation="UPDATE").verdict == "deny"


def test_api_server_loopback_user_is_excluded(policy):
    assert run(deployment(container=PRIVILEGED), policy, user="system:apiserver").verdict == "skip"


def test_children_of_checked_owners_are_trusted_only_from_controllers(policy):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "api-7d9-x", "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7d9", "uid": "u",
                             "controller": True}]},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.2", "securityContext": {"privileged": True}}]}}
    controller = "system:serviceaccount:kube-system:replicaset-controller"
    assert run(pod, policy, user=controller).verdict == "skip"
    # The same pod from a person (ownerReferences can be written by anyone) is checked.
    assert run(pod, policy, user="mallory").verdict == "deny"
    orphan = copy.deepcopy(pod)
    del orphan["metadata"]["ownerReferences"]
    assert run(orphan, policy, user=controller).verdict == "deny"


def test_dry_run_is_checked_and_flagged(policy):
    d = run(deployment(container=PRIVILEGED), policy, dry_run=True)
    assert d.verdict == "deny" and d.dry_run is True


def test_namespace_from_request_when_object_has_none(policy):
    obj = deployment(container=PRIVILEGED)
    del obj["metadata"]["namespace"]
    d = run(obj, policy, namespace="kube-system")
    assert d.verdict == "skip"
    d = run(obj, policy, namespace="payments")
    assert d.address == "apps/v1/Deployment/payments/api"


# --------------------------------------------------------------------------- cross-object rules

def test_cross_object_deny_rule_only_warns_at_admission(policy):
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "shop", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    d = run(ns, policy, namespace=None)
    net = [o for o in d.outcomes if o.rule_id == "SOC2-K8S-NET-004"]
    assert net and net[0].cross_object and net[0].action == "warn"  # the rule itself is high → deny
    assert d.allowed
    assert "re-checked by the background audit" in build_response(d).warnings[0]


def test_cross_object_rules_see_the_audit_context(policy):
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "shop", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    netpol = object_to_resource({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                 "metadata": {"name": "deny", "namespace": "shop"},
                                 "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
    d = run(ns, policy, context=[netpol], namespace=None)
    assert "SOC2-K8S-NET-004" not in failing_ids(d) and "SOC2-K8S-NET-004" in d.passed
    # One replica, no PDB → AVAIL-005 fails; a PDB selecting the pods in the context fixes it.
    single = deployment()
    single["spec"]["replicas"] = 1
    assert "SOC2-K8S-AVAIL-005" in failing_ids(run(single, policy))
    pdb = object_to_resource({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                              "metadata": {"name": "api", "namespace": "shop"},
                              "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}})
    assert "SOC2-K8S-AVAIL-005" not in failing_ids(run(single, policy, context=[pdb]))


def test_rule_relations_are_read_from_the_pack(relations):
    assert {"NetworkPolicy"} <= relations["SOC2-K8S-NET-004"]
    assert "PodDisruptionBudget" in relations["SOC2-K8S-AVAIL-005"]
    assert "SOC2-K8S-POD-001" not in relations


# --------------------------------------------------------------------------- waivers

def store(*objects: dict[str, Any]):
    s = WaiverStore()
    for o in objects:
        s.upsert(o)
    return s.snapshot()


def test_waiver_admits_until_it_expires(policy):
    bad = deployment(container=PRIVILEGED)
    live = store(waiver(selector={"kind": "Deployment", "name": "api"}))
    d = run(bad, policy, waivers=live)
    assert d.allowed and d.verdict == "waived"
    [o] = [o for o in d.outcomes if o.rule_id == "SOC2-K8S-POD-001"]
    assert o.waived and o.waiver["owner"] == "team@example.com" and o.waiver["source"] == "cluster"
    # Valid through its expiry date, applies no more the day after.
    last_day = store(waiver(expires=TODAY.isoformat()))
    assert run(bad, policy, waivers=last_day).allowed
    yesterday = store(waiver(expires=(TODAY - timedelta(days=1)).isoformat()))
    d = run(bad, policy, waivers=yesterday)
    assert not d.allowed
    assert any("expired on" in n for n in d.notes)


def test_waiver_expiring_soon_warns(policy):
    soon = store(waiver(expires=(TODAY + timedelta(days=3)).isoformat()))
    d = run(deployment(container=PRIVILEGED), policy, waivers=soon)
    assert d.allowed
    assert any("SOC2Waiver shop/w" in w and "renew" in w for w in build_response(d).warnings)


def test_waiver_scope_namespace_kind_name_labels_and_rule_glob(policy):
    bad = deployment(container=PRIVILEGED)
    assert not run(bad, policy, waivers=store(waiver(namespace="other"))).allowed
    assert not run(bad, policy, waivers=store(waiver(selector={"kind": "StatefulSet"}))).allowed
    assert not run(bad, policy, waivers=store(waiver(selector={"name": "web-*"}))).allowed
    assert run(bad, policy, waivers=store(waiver(selector={"name": "ap?"}))).allowed
    assert not run(bad, policy, waivers=store(waiver(selector={"matchLabels": {"app": "web"}}))).allowed
    assert run(bad, policy, waivers=store(waiver(selector={"matchLabels": {"app": "api"}}))).allowed
    assert run(bad, policy, waivers=store(waiver(rule="SOC2-K8S-POD-*"))).allowed
    assert not run(bad, policy, waivers=store(waiver(rule="SOC2-K8S-NET-*"))).allowed


@pytest.mark.parametrize("missing", ["reason", "owner", "expires", "rule"])
def test_incomplete_waiver_never_applies(policy, missing):
    w = waiver()
    del w["spec"][missing]
    assert waiver_from_object(w).problem
    assert not run(deployment(container=PRIVILEGED), policy, waivers=store(w)).allowed


def test_opt_out_label_needs_a_granting_waiver(policy):
    labelled = deployment(container=PRIVILEGED, metadata={"labels": {"app": "api", "soc2infra.io/exempt": "true"}})
    d = run(labelled, policy)
    assert not d.allowed
    assert any("soc2infra.io/exempt" in n and "ignored" in n for n in d.notes)
    grant = store(waiver(rule="*", optOut=True))
    assert run(labelled, policy, waivers=grant).verdict == "waived"
    # The grant does nothing for objects that do not opt out.
    assert not run(deployment(container=PRIVILEGED), policy, waivers=grant).allowed
    # An expired grant stops the opt-out.
    old = store(waiver(rule="*", optOut=True, expires=(TODAY - timedelta(days=1)).isoformat()))
    assert not run(labelled, policy, waivers=old).allowed


def test_ignore_annotation_is_an_opt_out_too(policy):
    annotated = deployment(container=PRIVILEGED, metadata={"annotations": {
        "soc2infra.io/ignore": "SOC2-K8S-POD-001 vendor image"}})
    # Alone, the annotation does not suppress at admission (unlike a reviewed file in CI).
    assert not run(annotated, policy).allowed
    grant = store(waiver(rule="SOC2-K8S-POD-*", optOut=True))
    assert run(annotated, policy, waivers=grant).allowed
    # The grant covers only the rules the annotation names.
    both = deployment(container={"securityContext": {**PRIVILEGED["securityContext"], "capabilities": {
        "drop": ["ALL"], "add": ["SYS_ADMIN"]}}}, metadata={
        "annotations": {"soc2infra.io/ignore": "SOC2-K8S-POD-001 vendor image"}})
    d = run(both, policy, waivers=grant)
    assert not d.allowed and [o.rule_id for o in d.denials] == ["SOC2-K8S-POD-007"]


def test_cluster_scoped_objects_use_waivers_of_the_own_namespace(pack, relations):
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ops"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
    p = policy_with(pack, relations, ("scope.own_namespace", "soc2infra"))
    assert not run(role, p, namespace=None).allowed
    w = store(waiver(namespace="soc2infra", rule="SOC2-K8S-RBAC-*", selector={"kind": "ClusterRole", "name": "ops"}))
    assert run(role, p, waivers=w, namespace=None).allowed
    assert not run(role, p, waivers=store(waiver(namespace="shop", rule="SOC2-K8S-RBAC-*")), namespace=None).allowed


def cluster_waiver(name: str = "cw", **spec: Any) -> dict[str, Any]:
    base = {"rule": "SOC2-K8S-POD-00?", "reason": "node agent, reviewed", "owner": "platform@example.com",
            "expires": (TODAY + timedelta(days=90)).isoformat()}
    return {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2ClusterWaiver", "metadata": {"name": name},
            "spec": {**base, **spec}}


def test_cluster_waiver_without_namespaces_covers_cluster_scoped_objects_only(policy):
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "gitops"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
    w = store(cluster_waiver(rule="SOC2-K8S-RBAC-001", selector={"kind": "ClusterRole", "name": "gitops"}))
    d = run(role, policy, waivers=w, namespace=None)
    assert d.allowed and d.verdict == "waived"
    assert [o.waiver["location"] for o in d.outcomes if o.waived] == ["SOC2ClusterWaiver cw"]
    everywhere = store(cluster_waiver(rule="*"))
    assert not run(deployment(container=PRIVILEGED), policy, waivers=everywhere).allowed


def test_cluster_waiver_matches_namespaces_by_name_before_they_exist(policy):
    # helm install --create-namespace: the waiver is in place before the namespace is.
    w = store(cluster_waiver(namespaces=["monitoring", "obs-*"], selector={"kind": "Deployment"}))
    for ns in ("monitoring", "obs-eu"):
        assert run(deployment(namespace=ns, container=PRIVILEGED), policy, waivers=w, namespace=ns).allowed
    assert not run(deployment(namespace="shop", container=PRIVILEGED), policy, waivers=w, namespace="shop").allowed


def test_cluster_waiver_selects_namespaces_by_label_as_last_audited(policy):
    w = store(cluster_waiver(namespaceSelector={"matchLabels": {"team": "platform"}}))
    labelled = object_to_resource({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "infra", "labels": {"team": "platform"}}}, "cluster")
    obj = deployment(namespace="infra", container=PRIVILEGED)
    assert run(obj, policy, waivers=w, context=[labelled], namespace="infra").allowed
    assert not run(obj, policy, waivers=w, namespace="infra").allowed  # labels unknown: not waived
    other = object_to_resource({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": "infra", "labels": {"team": "shop"}}}, "cluster")
    assert not run(obj, policy, waivers=w, context=[other], namespace="infra").allowed


def test_cluster_waiver_events_are_keyed_without_a_namespace():
    s = WaiverStore()
    w = s.upsert(cluster_waiver(name="gitops"))
    assert (w.cluster, w.namespace, w.problem) == (True, "", None)
    assert s.delete("", "gitops") is not None and len(s) == 0


# --------------------------------------------------------------------------- garbage never crashes

GARBAGE_OBJECTS: list[Any] = [
    None, [], "text", 42, {}, {"kind": "Deployment"}, {"metadata": None}, {"metadata": "x"},
    {"kind": 5, "metadata": {"name": ["x"], "namespace": {"a": 1}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": "nope"},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
     "spec": {"template": {"spec": {"containers": "c"}}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": ["a"]},
     "spec": {"template": {"spec": {"containers": [None, 3, {"securityContext": "x"}]}}}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": None, "annotations": {"soc2infra.io/ignore": 3}},
     "spec": {"containers": [{"image": None, "env": "x", "ports": [{"hostPort": "80"}]}], "volumes": 7}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": ["LoadBalancer"]}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}, "rules": "all"},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": 12}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": ["a", "b"]},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {}, "spec": {"tls": {"a": 1}}},
]
GARBAGE_REVIEWS: list[Any] = [None, [], "x", {}, {"request": None}, {"request": []}, {"request": {"userInfo": 3}},
                              {"request": {"operation": 7, "object": {}, "userInfo": {"groups": "g"}}}]


def _fuzz(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 4 else 5)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, 0, -1, 3.5, 10**20])
    if pick == 2:
        return rng.choice(["", "x", "Deployment", "*", "\u0000", "a" * 300])
    if pick in (3, 4):
        return rng.choice(["apps/v1", "v1", 5, None])
    keys = ["apiVersion", "kind", "metadata", "spec", "template", "containers", "securityContext", "name",
            "namespace", "labels", "annotations", "privileged", "image", "rules", "selector", "replicas"]
    if pick in (5, 6):
        return {rng.choice(keys): _fuzz(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_fuzz(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_garbage_objects_never_crash_the_decision(policy):
    rng = random.Random(1234)
    kinds = ["Deployment", "Pod", "Service", "Role", "Namespace", "CronJob", "ConfigMap", "Ingress", "X"]
    objects = list(GARBAGE_OBJECTS)
    for _ in range(400):
        obj = _fuzz(rng)
        if isinstance(obj, dict) and rng.random() < 0.7:
            obj["kind"] = rng.choice(kinds)
        objects.append(obj)
    for obj in objects:
        for op in ("CREATE", "UPDATE"):
            d = run(obj, policy, operation=op)
            response = build_response(d)  # must not raise either
            assert d.verdict in ("allow", "deny", "warn", "waived", "skip", "error")
            assert response.allowed == d.allowed
            if d.verdict != "skip":  # the ledger accepts every record the webhook can produce
                normalize_entry(admission_record(d, "sha256:x"))
    for rev in GARBAGE_REVIEWS:
        d = decide(request_from_review(rev), policy, today=TODAY)
        assert d.verdict in ("skip", "error")


def test_an_unreadable_object_is_rejected_with_a_reason(policy):
    d = run("not an object", policy)
    assert d.verdict == "error" and not d.allowed
    assert "could not check" in build_response(d).message


def test_failure_decision_follows_the_failure_policy():
    req = ReviewRequest(operation="CREATE", obj={})
    assert not failure_decision(req, "ledger down", fail_closed=True).allowed
    open_ = failure_decision(req, "ledger down", fail_closed=False)
    assert open_.allowed and "ledger down" in build_response(open_).warnings[0]


# --------------------------------------------------------------------------- response and evidence

def test_review_response_shape(policy):
    rev = review(deployment(container=PRIVILEGED))
    d = decide(request_from_review(rev), policy, today=TODAY)
    out = review_response(rev, build_response(d))
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    assert out["response"]["uid"] == "d7f1" and out["response"]["allowed"] is False
    assert out["response"]["status"]["code"] == 403
    ok = review_response(rev, build_response(run(deployment(container=ESCALATING), policy)))
    assert ok["response"]["allowed"] is True and "status" not in ok["response"] and ok["response"]["warnings"]


def test_denial_message_is_bounded(pack, relations):
    p = policy_with(pack, relations, ("admission.actions", "*=deny"))
    worst = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
             "spec": {"hostNetwork": True, "hostPID": True, "volumes": [{"name": "d", "hostPath": {
                 "path": "/var/run/docker.sock"}}],
                      "containers": [{"name": "c", "image": "nginx", "securityContext": {
                          "privileged": True, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}},
                          "ports": [{"hostPort": 80, "containerPort": 80}],
                          "env": [{"name": "DB_PASSWORD", "value": "hunter2hunter2"}]}]}}
    d = run(worst, p, namespace="default")
    assert len(d.denials) > 10
    message = build_response(d).message
    assert message.count("\n- SOC2-") == 10 and f"and {len(d.denials) - 10} more" in message


def test_evidence_record_has_results_and_no_object_content(policy, pack):
    secret_value = "hunter2-s3cr3t-value"
    obj = deployment(container={**PRIVILEGED, "env": [{"name": "DB_PASSWORD", "value": secret_value}]})
    d = run(obj, policy, dry_run=True)
    meta = {r.id: (r.severity, r.controls) for r in pack.rules}
    record = admission_record(d, pack.digest, meta)
    text = json.dumps(record)
    assert secret_value not in text and "DB_PASSWORD" not in text
    assert record["source"] == "admission" and record["decision"] == "deny"
    assert record["actor"] == "alice" and record["context"]["groups"] == ["developers"]
    assert record["subject"] == "apps/v1/Deployment/shop/api"
    assert record["context"]["dry_run"] is True and record["pack_digest"] == pack.digest
    assert {"rule_id": "SOC2-K8S-POD-001", "action": "deny"} in record["context"]["actions"]
    statuses = {r["rule_id"]: r["status"] for r in record["results"]}
    assert statuses["SOC2-K8S-POD-001"] == "fail" and statuses["SOC2-K8S-POD-003"] == "pass"
    passed = next(r for r in record["results"] if r["rule_id"] == "SOC2-K8S-POD-003")
    assert passed["severity"] == "high" and passed["controls"]


def test_waived_and_error_decisions_map_to_ledger_decisions(policy):
    bad = deployment(container=PRIVILEGED)
    waived = run(bad, policy, waivers=store(waiver()))
    record = normalize_entry(admission_record(waived, "sha256:x"))
    assert record["decision"] == "allow" and record["context"]["verdict"] == "waived"
    [w] = [r for r in record["results"] if r["status"] == "waived"]
    assert w["rule_id"] == "SOC2-K8S-POD-001" and w["waiver"]["owner"] == "team@example.com"
    error = normalize_entry(admission_record(run("garbage", policy), "sha256:x"))
    assert error["decision"] == "deny" and error["context"]["verdict"] == "error"
    change = normalize_entry(waiver_record("waiver-created", waiver_from_object(waiver()).to_dict(), "sha256:x",
                                           "kubectl"))
    assert change["source"] == "waiver" and change["subject"].endswith("SOC2Waiver/shop/w")
    snap = normalize_entry(audit_record([{"rule_id": "R", "status": "fail", "severity": "high", "controls": [],
                                          "address": "a"}], "sha256:x", {"fail": 1}))
    assert snap["decision"] == "fail" and snap["source"] == "audit"


def test_secret_objects_never_reach_the_record(policy):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
              "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "plain-token-value"}}
    d = run(secret, policy, namespace="default")
    text = json.dumps(admission_record(d, "sha256:x"))
    assert "aHVudGVyMg==" not in text and "plain-token-value" not in text
    assert "SOC2-K8S-NS-001" in text  # evaluated: objects in the default namespace


# --------------------------------------------------------------------------- parity with the CLI

def test_same_verdicts_as_the_cli_for_the_same_manifest(policy, pack, tmp_path: Path):
    from soc2infra._core.scan import scan

    objects = [deployment("good"), deployment("bad", container=PRIVILEGED),
               deployment("tagless", container={"image": "nginx"})]
    for obj in objects:
        path = tmp_path / f"{obj['metadata']['name']}.yaml"
        path.write_text(json.dumps(obj), encoding="utf-8")
        address = f"apps/v1/Deployment/shop/{obj['metadata']['name']}"
        cli = {f.rule_id for f in scan([str(path)], pack).findings if f.resource.address == address}
        assert failing_ids(run(obj, policy)) == cli, obj["metadata"]["name"]


# --------------------------------------------------------------------------- settings

def test_settings_precedence_file_env_cli(tmp_path: Path):
    config = tmp_path / "operator.yaml"
    config.write_text("webhook:\n  port: 9000\n  timeout-seconds: 5\nadmission:\n  actions:\n"
                      "    SOC2-K8S-POD-005: deny\naudit:\n  interval_seconds: 60\n", encoding="utf-8")
    s = load_settings(config, [("webhook.port", "9100")],
                      environ={"SOC2INFRA_WEBHOOK_PORT": "9050", "SOC2INFRA_AUDIT_INTERVAL_SECONDS": "30",
                               "SOC2INFRA_SCOPE_EXCLUDED_NAMESPACES": "a, b", "SOC2INFRA_CACHE": "/x",
                               "POD_NAMESPACE": "soc2infra"})
    assert s.webhook.port == 9100 and s.webhook.timeout_seconds == 5
    assert s.audit.interval_seconds == 30.0
    assert s.scope.excluded_namespaces == ("a", "b") and s.scope.own_namespace == "soc2infra"
    assert s.scope.all_excluded_namespaces == ("a", "b", "soc2infra")
    assert s.admission.actions == (("SOC2-K8S-POD-005", "deny"),)
    assert OperatorSettings().evidence_fail_closed is True
    assert apply_overrides(OperatorSettings(), [("webhook.failure_policy", "Ignore")], "t").evidence_fail_closed \
        is False


@pytest.mark.parametrize("override, needle", [
    (("webhook.timeout_seconds", "31"), "timeout_seconds"),
    (("webhook.failure_policy", "Maybe"), "failure_policy"),
    (("webhook.prot", "1"), "unknown key webhook.prot"),
    (("admission.actions", "X=block"), "deny, warn or audit"),
    (("audit.enabled", "perhaps"), "boolean"),
    (("webhook.port", "http"), "number"),
])
def test_bad_settings_are_named(override, needle):
    with pytest.raises(SettingsError, match=needle.replace("[", r"\[")):
        load_settings(None, [override], environ={})


def test_settings_file_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("webhook: [1, 2]\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="bad.yaml"):
        load_settings(bad, environ={})


# --------------------------------------------------------------------------- Kopf registration

def test_every_kind_gets_its_own_webhook_id(pack):
    """The gotcha from ARCHITECTURE.md: stacked registrations need distinct ids, or the API server
    rejects the configuration and nothing is checked."""
    from kopf._cogs.structs.references import Resource
    from kopf._core.engines.admission import build_webhooks

    from soc2infra_operator.handlers import register
    from soc2infra_operator.runtime import Runtime

    runtime = Runtime.build(OperatorSettings())
    registry = kopf.OperatorRegistry()
    ids = register(registry, runtime)
    assert len(ids) == len(set(ids)) == len(runtime.kinds) >= 15
    assert "validate-deployment" in ids and "validate-clusterrolebinding" in ids
    handlers = registry._webhooks.get_all_handlers()
    # Plus the waiver governance webhooks (approval.py), validating and mutating.
    waiver_ids = {f"{p}-{k}" for p in ("validate", "mutate") for k in ("soc2waiver", "soc2clusterwaiver")}
    assert {h.id for h in handlers} == set(ids) | waiver_ids
    assert all(set(h.operations) == ({"CREATE", "UPDATE", "DELETE"} if h.id.startswith("validate-soc2")
                                     else {"CREATE", "UPDATE"}) for h in handlers)
    resources = [Resource(group="apps", version="v1", plural="deployments", kind="Deployment", namespaced=True),
                 Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)]
    hooks = build_webhooks(handlers, resources=resources, name_suffix="auto.soc2infra.io",
                           client_config={"url": "https://127.0.0.1:9443"})
    names = [h["name"] for h in hooks]
    assert len(names) == len(set(names))
    # Each webhook covers exactly its own kind (Knative's Service would not match the core one).
    dep = next(h for h in hooks if h["name"].startswith("validate-deployment."))
    assert dep["rules"] == [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                             "resources": ["deployments"], "scope": "*"}]


def test_webhook_configuration_carries_settings():
    from soc2infra_operator.webhookconfig import WebhookTarget, webhook_configuration

    s = apply_overrides(OperatorSettings(), [("webhook.failure_policy", "Ignore"), ("webhook.timeout_seconds", "7"),
                                             ("scope.own_namespace", "soc2infra")], "t")
    targets = [WebhookTarget("validate-deployment", "Deployment", "apps", ("v1",), "deployments", True),
               WebhookTarget("validate-pod", "Pod", "", ("v1",), "pods", True)]
    cfg = webhook_configuration(s, targets, {"url": "https://127.0.0.1:9443", "caBundle": "Q0E="})
    hooks = cfg["webhooks"]
    assert [h["name"] for h in hooks] == ["validate-deployment.soc2infra.io", "validate-pod.soc2infra.io"]
    assert hooks[0]["clientConfig"] == {"url": "https://127.0.0.1:9443/validate-deployment", "caBundle": "Q0E="}
    assert {h["failurePolicy"] for h in hooks} == {"Ignore"} and {h["timeoutSeconds"] for h in hooks} == {7}
    assert {h["sideEffects"] for h in hooks} == {"None"}  # dry-run requests reach the webhook
    values = hooks[0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert values == ["kube-node-lease", "kube-public", "kube-system", "soc2infra"]


# --------------------------------------------------------------------------- command line

def test_cli_config_and_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    from soc2infra_operator.main import main

    monkeypatch.delenv("SOC2INFRA_OPERATOR_CONFIG", raising=False)
    assert main(["config", "--set", "webhook.port=9100", "--set", "admission.mode=warn"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["webhook"]["port"] == 9100 and shown["admission"]["mode"] == "warn"
    assert main(["config", "--set", "webhook.port=http"]) == 2
    assert "webhook.port" in capsys.readouterr().err
    # No serving certificate: refused up front (Kopf's self-signed mode is never used).
    assert main(["run", "--kubeconfig", "/nonexistent"]) == 2
    assert "certificate" in capsys.readouterr().err


def test_evidence_record_traces_to_the_audit_log_and_the_object(policy, pack):
    """Request uid, user name/uid/groups, object uid + resourceVersion, operation, dry run, cluster."""
    obj = deployment()
    obj["metadata"].update(uid="6b2c-obj", resourceVersion="4711")
    d = decide(request_from_review(review(obj, operation="UPDATE", userInfo={
        "username": "alice", "uid": "u-42", "groups": ["developers", "system:authenticated"]})),
        policy, (), (), TODAY)
    ctx = admission_record(d, pack.digest, cluster="c-prod-eu")["context"]
    assert ctx["request_uid"] == "d7f1" and ctx["operation"] == "UPDATE" and ctx["dry_run"] is False
    assert ctx["user"] == {"username": "alice", "uid": "u-42", "groups": ["developers", "system:authenticated"]}
    assert (ctx["object_uid"], ctx["resource_version"], ctx["cluster"]) == ("6b2c-obj", "4711", "c-prod-eu")
    # DELETE carries only the old object: its uid and version identify it.
    gone = request_from_review(review(None, operation="DELETE", oldObject=obj))
    assert gone.object_ref == ("6b2c-obj", "4711")


def test_rule_ids_with_secret_in_their_name_survive_redaction():
    """A rule id is a name, not a secret: its action must not become [REDACTED] (issue 20)."""
    from soc2infra.evidence.records import normalize_entry

    entry = {"source": "admission", "actor": "a", "subject": "s", "decision": "deny",
             "context": {"actions": {"SOC2-K8S-SECRET-001": "deny", "SECRET-003": "warn"},
                         "would_deny": ["SOC2-K8S-SECRET-001"], "apiToken": "abc"},
             "results": [{"rule_id": "SOC2-K8S-SECRET-001", "status": "fail", "controls": ["CC6.1"]}]}
    out = normalize_entry(entry)
    assert out["context"]["actions"] == {"SOC2-K8S-SECRET-001": "deny", "SECRET-003": "warn"}
    assert out["context"]["would_deny"] == ["SOC2-K8S-SECRET-001"]
    assert out["results"][0]["rule_id"] == "SOC2-K8S-SECRET-001"
    assert out["context"]["apiToken"] == "[REDACTED]"  # a real secret key still is


def test_a_context_tuple_is_indexed_once_and_decides_as_a_list_does(policy):
    """Runtime.context is one tuple between two audits: what decide derives from it is built once
    (ResourceIndex.plus adds the object per request). Same verdicts as a list; a new tuple is read anew."""
    pdb = object_to_resource({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                              "metadata": {"name": "api", "namespace": "shop"},
                              "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}})
    single = deployment()
    single["spec"]["replicas"] = 1
    context = (pdb,)
    for _ in range(3):
        assert "SOC2-K8S-AVAIL-005" not in failing_ids(run(single, policy, context=context))
    assert "SOC2-K8S-AVAIL-005" in failing_ids(run(single, policy, context=()))
    w = store(cluster_waiver(namespaceSelector={"matchLabels": {"team": "platform"}}))
    obj = deployment(namespace="infra", container=PRIVILEGED)
    for labels, admitted in (({"team": "platform"}, True), ({"team": "shop"}, False)):
        ns = object_to_resource({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "infra", "labels": labels}}, "cluster")
        assert run(obj, policy, waivers=w, context=(ns,), namespace="infra").allowed is admitted
        assert run(obj, policy, waivers=w, context=(ns,), namespace="infra").allowed is admitted


def test_managed_fields_are_bookkeeping_not_configuration(policy: AdmissionPolicy) -> None:
    """metadata.managedFields (the API server's record of who set which field) is not walked:
    nesting there deeper than limits.depth does not turn a good object into an error, while the
    same nesting in the spec still does; the verdict on the rest of the object is unchanged."""
    deep: Any = {}
    for _ in range(200):
        deep = {"f:spec": deep}
    managed = [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                "fieldsV1": deep}]
    good = deployment(metadata={"managedFields": managed})
    assert run(good, policy).verdict == "allow"
    bad = deployment(metadata={"managedFields": managed}, container=PRIVILEGED)
    assert run(bad, policy).verdict == "deny"
    assert good["metadata"]["managedFields"] is managed  # the request's object is not changed
    in_spec = deployment(pod={"extra": deep})
    decision = run(in_spec, policy)
    assert decision.verdict == "error" and "nested more than" in decision.reason
