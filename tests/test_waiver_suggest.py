"""``soc2infra waiver suggest``: denials from a dry run's output become SOC2Waivers to review."""

from __future__ import annotations

from datetime import date

import yaml
from click.testing import CliRunner

from soc2infra._core.waiver_suggest import parse_denials, suggest_waivers
from soc2infra.cli import cli

OUTPUT = """\
daemonset.apps/node-exporter created (server dry run)
Error from server (Forbidden): error when creating "STDIN": admission webhook "validate-daemonset.soc2infra.io" \
denied the request: soc2infra: DaemonSet monitoring/node-exporter violates 2 SOC 2 rules:
- SOC2-K8S-POD-008 [CC6.1, CC6.8] Pods do not share the node's namespaces: … Fix: …
- SOC2-K8S-POD-009 [CC6.1, CC6.8] Pods do not mount hostPath volumes: … Fix: …
To accept the risk instead, waive it: a SOC2Waiver per rule (SOC2-K8S-POD-008, SOC2-K8S-POD-009) in namespace \
monitoring with selector {kind: DaemonSet, name: node-exporter}, reason, owner and expires; …
Error from server (Forbidden): error when creating "STDIN": admission webhook "validate-clusterrole.soc2infra.io" \
denied the request: soc2infra: ClusterRole argo:app-controller violates 1 SOC 2 rule:
- SOC2-K8S-RBAC-001 [CC6.3] Roles do not grant every resource: … Fix: …
To accept the risk instead, waive it: a SOC2Waiver per rule (SOC2-K8S-RBAC-001) in namespace soc2infra with \
selector {kind: ClusterRole, name: argo:app-controller}, reason, owner and expires; …
"""


def test_denials_are_parsed_with_the_namespace_the_waiver_belongs_in():
    denials = parse_denials(OUTPUT)
    assert [(d.kind, d.namespace, d.name, d.rules, d.waiver_namespace) for d in denials] == [
        ("DaemonSet", "monitoring", "node-exporter", ("SOC2-K8S-POD-008", "SOC2-K8S-POD-009"), "monitoring"),
        ("ClusterRole", None, "argo:app-controller", ("SOC2-K8S-RBAC-001",), "soc2infra"),
    ]


def test_one_waiver_per_object_and_rule_with_placeholders_to_fill():
    docs = list(yaml.safe_load_all(suggest_waivers(parse_denials(OUTPUT), today=date(2026, 1, 1), days=30)))
    assert [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"], d["spec"]["rule"])
            for d in docs] == [
        ("SOC2Waiver", "monitoring", "node-exporter-k8s-pod-008", "SOC2-K8S-POD-008"),
        ("SOC2Waiver", "monitoring", "node-exporter-k8s-pod-009", "SOC2-K8S-POD-009"),
        ("SOC2ClusterWaiver", None, "argo-app-controller-k8s-rbac-001", "SOC2-K8S-RBAC-001"),
    ]
    assert all(d["spec"]["owner"].startswith("TODO") and d["spec"]["reason"].startswith("TODO") for d in docs)
    assert {d["spec"]["expires"] for d in docs} == {"2026-01-31"}
    assert docs[2]["spec"]["selector"] == {"kind": "ClusterRole", "name": "argo:app-controller"}


def test_cli_reads_stdin_and_fails_without_denials():
    ok = CliRunner().invoke(cli, ["waiver", "suggest"], input=OUTPUT)
    assert ok.exit_code == 0 and ok.output.count("kind: SOC2Waiver") == 2
    assert ok.output.count("kind: SOC2ClusterWaiver") == 1
    none = CliRunner().invoke(cli, ["waiver", "suggest"], input="deployment.apps/x created\n")
    assert none.exit_code == 1
