"""The CEL compiler and the ValidatingAdmissionPolicy objects, on plain data (semantics are
proven against the real API server in tests/e2e/test_vap_parity.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from soc2infra._core.pack import load_pack
from soc2infra._core.waivers import WaiverEntry
from soc2infra.cli import main
from soc2infra.export.cel import NotCompilable, compile_rule_condition
from soc2infra.export.k8s_schema import KINDS
from soc2infra.export.vap import (
    ExportScope,
    WaiverScope,
    export_objects,
    file_waiver_scopes,
    plan_pack,
    policy_objects,
    summarize,
)

POD, DEPLOY, SERVICE, CM = KINDS["Pod"], KINDS["Deployment"], KINDS["Service"], KINDS["ConfigMap"]


@pytest.fixture(scope="module")
def plans():
    return {p.rule.id: p for p in plan_pack(load_pack())}


def test_every_kubernetes_rule_is_planned_with_a_reason_when_not_compiled(plans):
    s = summarize(list(plans.values()))
    assert len(s.cel) >= 35
    assert dict(s.webhook).keys() == {"SOC2-K8S-BACKUP-001", "SOC2-K8S-NET-004", "SOC2-K8S-POD-013",
                                      "SOC2-K8S-AVAIL-005"}
    assert all("reads other objects" in why for _rule, why in s.webhook)
    assert [r for r, _ in s.scan_only] == ["SOC2-K8S-APISERVER-004"]  # an EncryptionConfiguration file


def test_a_path_through_a_list_becomes_a_comprehension():
    c = compile_rule_condition({"for_none": {"path": "_all_containers",
                                             "where": {"path": "ports.hostPort", "gt": 0, "quantifier": "any"}}},
                               None, POD)
    assert c.expression == ("!(variables.allContainers.exists(x0, (has(x0.ports) && "
                            "x0.ports.exists(x1, (has(x1.hostPort) && x1.hostPort > 0)))))")
    assert c.variables == ("pod", "containers", "allContainers")


def test_a_default_decides_when_nothing_is_there():
    # the engine: spec.type missing → default ClusterIP → not in [LoadBalancer, NodePort] → pass
    c = compile_rule_condition({"path": "spec.type", "not_in": ["LoadBalancer", "NodePort"],
                                "default": "ClusterIP"}, None, SERVICE)
    assert c.expression.startswith("(!(has(object.spec))") and "true" not in c.expression
    without = compile_rule_condition({"path": "spec.type", "not_in": ["LoadBalancer"]}, None, SERVICE)
    assert without.expression.startswith("(has(object.spec) && (has(object.spec.type)")


def test_lenient_equality_follows_the_field_type():
    # parameters is map<string,string>: equals true means the string "true" in any case
    c = compile_rule_condition({"path": "parameters.encrypted", "equals": True}, None, KINDS["StorageClass"])
    assert "object.parameters['encrypted'].lowerAscii() == 'true'" in c.expression
    n = compile_rule_condition({"path": "spec.replicas", "gte": 2}, None, DEPLOY)
    assert "object.spec.replicas >= 2" in n.expression


def test_configmap_data_is_iterated_as_name_value_pairs():
    c = compile_rule_condition({"for_none": {"path": "_data", "where": {"path": "name", "equals": "token"}}},
                               None, CM)
    assert c.expression == "!((has(object.data) ? object.data : dyn({})).exists(x0, x0 == 'token'))"


def test_when_guards_the_condition():
    c = compile_rule_condition({"const": False}, {"path": "metadata.name", "equals": "x"}, SERVICE)
    assert c.expression.startswith("!(") and c.expression.endswith(") || (false)")


def test_a_rule_whose_kinds_compile_differently_branches_on_the_kind(plans):
    expr = plans["SOC2-K8S-ADDON-001"].compiled.expression
    assert expr.startswith("(object.kind in ['Deployment'] ? (") and "(object.kind in ['Service'] ? (" in expr
    assert "dyn(object).spec.template.spec.containers" in expr and expr.endswith(": false))")


@pytest.mark.parametrize(("condition", "reason"), [
    ({"related": {"types": ["PodDisruptionBudget"], "link": "selector"}}, "reads other objects"),
    ({"path": "metadata.name", "matches": "^(?!kube-)"}, "RE2"),
    ({"iam_statements": {"path": "x"}}, "operator 'iam_statements'"),
    ({"path": "metadata.name", "in": {"$subject": "_namespace"}}, "$subject"),
    ({"path": "_service_account", "equals": "x"}, "reference to other objects"),
    ({"path": "metadata.name", "cidr_overlaps": "10.0.0.0/8"}, "no CEL form"),
])
def test_conditions_without_a_cel_form_say_why(condition, reason):
    with pytest.raises(NotCompilable, match=reason.replace("$", r"\$").replace("(", r"\(")):
        compile_rule_condition(condition, None, DEPLOY)


def test_actions_become_validation_actions_and_failure_policies(plans):
    plan = plans["SOC2-K8S-POD-001"]
    for action, expected, failure in (("deny", ["Deny"], "Fail"), ("warn", ["Warn"], "Ignore"),
                                      ("audit", ["Audit"], "Ignore")):
        policy, binding = policy_objects(plan, action)
        assert binding["spec"]["validationActions"] == expected
        assert policy["spec"]["failurePolicy"] == failure
        assert binding["spec"]["policyName"] == policy["metadata"]["name"] == "soc2infra-soc2-k8s-pod-001"
    policy, binding = policy_objects(plan, "deny")
    kinds = {r for rr in policy["spec"]["matchConstraints"]["resourceRules"] for r in rr["resources"]}
    assert kinds == {"pods", "deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs",
                     "replicationcontrollers"}
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-node-lease", "kube-public", "kube-system"]
    validation = policy["spec"]["validations"][0]
    assert validation["messageExpression"].startswith("'SOC2-K8S-POD-001 [CC6.1, CC6.8, CC5.3]: ' + ")
    assert "Fix: Remove securityContext.privileged" in validation["messageExpression"]
    assert [v["name"] for v in policy["spec"]["variables"]] == ["pod", "containers", "allContainers"]
    assert [m["name"] for m in policy["spec"]["matchConditions"]] == ["soc2infra-scope"]


def test_exact_user_names_are_one_list_lookup_and_globs_a_regex():
    from soc2infra.export.vap import scope_condition

    cond = scope_condition(ExportScope(excluded_usernames=("system:apiserver", "ci-*"), trusted_controllers=()))
    assert "request.userInfo.username in ['system:apiserver']" in cond
    assert "request.userInfo.username.matches('^(?s:ci" in cond and ".*)$')" in cond


def test_waivers_become_a_match_condition_of_their_rules_only(plans):
    waivers = [WaiverScope(rule="SOC2-K8S-POD-00?", address="*/Deployment/payments/legacy-*",
                           labels=(("app", "legacy"),), origin="SOC2Waiver payments/legacy"),
               WaiverScope(rule="SOC2-K8S-POD-003", address="*", opt_out=True)]
    policy, _ = policy_objects(plans["SOC2-K8S-POD-003"], "deny", waivers=waivers)
    cond = {m["name"]: m["expression"] for m in policy["spec"]["matchConditions"]}["soc2infra-waivers"]
    assert cond.startswith("!(")
    assert ".matches('^(?s:.*/Deployment/payments/legacy\\\\-.*)$')" in cond
    assert "object.metadata.labels['app'] == 'legacy'" in cond
    assert "'soc2infra.io/exempt' in object.metadata.labels" in cond
    assert "SOC2\\\\-K8S\\\\-POD\\\\-003" in cond  # the ignore annotation must name the rule
    other, _ = policy_objects(plans["SOC2-K8S-NET-001"], "deny", waivers=waivers)
    assert [m["name"] for m in other["spec"]["matchConditions"]] == ["soc2infra-scope"]


def test_waiver_file_entries_keep_kubernetes_addresses_and_drop_expired_ones():
    today = date(2026, 6, 1)
    entries = [WaiverEntry("SOC2-K8S-POD-001", "apps/v1/Deployment/a/b", "r", expires=date(2026, 7, 1)),
               WaiverEntry("SOC2-K8S-POD-001", "apps/v1/Deployment/a/c", "r", expires=date(2026, 5, 1)),
               WaiverEntry("SOC2-AWS-S3-001", "aws_s3_bucket.x", "r", expires=date(2026, 7, 1))]
    assert [w.address for w in file_waiver_scopes(entries, today)] == ["apps/v1/Deployment/a/b"]


def test_export_defaults_are_the_webhooks_scope():
    from soc2infra_operator.settings import ScopeSettings

    webhook, export = ScopeSettings(), ExportScope()
    assert export.excluded_namespaces == webhook.excluded_namespaces
    assert export.excluded_usernames == webhook.excluded_usernames
    assert export.trusted_controllers == webhook.trusted_controllers
    assert export.opt_out_key == webhook.opt_out_key


def test_actions_override_the_rules_own(plans):
    objs = export_objects([plans["SOC2-K8S-POD-001"]], actions={"SOC2-K8S-POD-001": "audit"})
    assert objs[1]["spec"]["validationActions"] == ["Audit"]


def test_cli_writes_one_file_per_rule(tmp_path: Path, capsys):
    waivers = tmp_path / "w.yaml"
    waivers.write_text("waivers:\n  - {rule: SOC2-K8S-POD-001, resource: 'apps/v1/Deployment/x/*', reason: r,"
                       " owner: o, expires: '2999-01-01'}\n")
    assert main(["export", "vap", "--rules", "SOC2-K8S-POD-00*,SOC2-K8S-NET-004", "-o", str(tmp_path / "out"),
                 "--waivers", str(waivers)]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"soc2infra-soc2-k8s-pod-00{i}.yaml" for i in range(1, 10)]
    docs = list(yaml.safe_load_all((tmp_path / "out" / files[0]).read_text()))
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert "soc2infra-waivers" in {m["name"] for m in docs[0]["spec"]["matchConditions"]}
    err = capsys.readouterr().err
    assert "9 rules exported" in err and "webhook only  SOC2-K8S-NET-004: reads other objects" in err


def test_cli_refuses_rules_that_match_nothing(capsys):
    assert main(["export", "vap", "--rules", "NOPE-*"]) == 2
    assert "matches no Kubernetes rule" in capsys.readouterr().err
