"""Installing common infrastructure patterns with the operator's default settings, through the real
kube-apiserver (server-side dry runs via the real webhook).

The charts under tests/data/charts are our own and reproduce what ingress controllers, certificate
issuers, node exporters and GitOps controllers install. With the default enforcement levels only
the genuinely dangerous objects are denied — the node exporter's DaemonSet (host namespaces,
hostPath, host port) and the GitOps controller's ``*/*/*`` ClusterRole — each denial says how to
waive it, and the waivers ``soc2infra waiver suggest`` writes from those denials (owner and
reason filled in) let the same install through (the recipe in docs/rollout-recipes.md).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from soc2infra._core.waiver_suggest import parse_denials, suggest_waivers
from soc2infra.lab import ControlPlane

from .test_admission import Kubectl, RunningOperator, delete_configuration, start_operator, wait_for

CHARTS = Path(__file__).resolve().parents[1] / "data" / "charts"
# Objects each chart renders, and the (kind, name suffix) the default settings deny.
EXPECTED: dict[str, tuple[int, set[tuple[str, str]]]] = {
    "edge-ingress": (5, set()),
    "certissuer": (6, set()),
    "node-metrics": (3, {("DaemonSet", "")}),
    "gitops-sync": (4, {("ClusterRole", "-application-controller")}),
}


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RunningOperator]:
    """An operator with default settings (enforce mode, default actions and exclusions)."""
    running = start_operator(control_plane, tmp_path_factory.mktemp("rollout"), kubectl,
                             configuration="rollout.soc2infra.io")
    try:
        yield running
    finally:
        running.process.stop()
        delete_configuration(kubectl, running.configuration)


def render(require_binary: Callable[[str], str], chart: str, release: str, namespace: str) -> str:
    result = subprocess.run([require_binary("helm"), "template", release, str(CHARTS / chart), "--namespace",
                             namespace, "--kube-version", "1.34.0"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def dry_run(kubectl: Kubectl, manifest: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)


@pytest.mark.parametrize("chart", sorted(EXPECTED))
def test_default_settings_deny_only_the_dangerous_objects(operator, kubectl, require_binary, chart):
    count, expected = EXPECTED[chart]
    release, namespace = f"r{uuid.uuid4().hex[:6]}", f"{chart}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    manifest = render(require_binary, chart, release, namespace)
    assert len([d for d in yaml.safe_load_all(manifest) if d]) == count
    result = dry_run(kubectl, manifest)
    denials = parse_denials(result.stderr)
    assert {(d.kind, d.name.removeprefix(release)) for d in denials} == expected, result.stderr
    assert (result.returncode != 0) == bool(expected)
    assert result.stderr.count("To accept the risk instead, waive it") == len(expected)
    # Everything that is not denied is admitted by the API server (created in the dry run).
    assert result.stdout.count("(server dry run)") == count - len(expected), result.stdout
    if chart == "edge-ingress":  # Secrets-reading ClusterRole and a LoadBalancer: warned, not denied
        assert "Warning: SOC2-K8S-RBAC-003" in result.stderr and "Warning: SOC2-K8S-NET-001" in result.stderr
    if chart == "certissuer":  # resourceNames Role passes, ACME solver Ingress is exempt, verbs * warns
        assert "SOC2-K8S-RBAC-003" not in result.stderr and "SOC2-K8S-NET-003" not in result.stderr
        assert "Warning: SOC2-K8S-RBAC-007" in result.stderr
    if not expected:
        return

    # The recipe: the suggested waivers, with a real owner and reason, let the install through.
    suggested = suggest_waivers(denials).replace("TODO: team or person who answers for this risk",
                                                 "platform@example.com")
    suggested = suggested.replace("TODO: why this is accepted, and what would remove the need",
                                  "node-level component, reviewed in PLAT-1")
    waivers = [w for w in yaml.safe_load_all(suggested) if w]
    # Cluster-scoped objects get a SOC2ClusterWaiver; namespaced ones a SOC2Waiver beside them.
    homes = {(w["kind"], w["metadata"].get("namespace")) for w in waivers}
    assert homes == ({("SOC2ClusterWaiver", None)} if chart == "gitops-sync" else {("SOC2Waiver", namespace)})
    applied = kubectl("apply", "-f", "-", input=suggested, check=False)
    assert applied.returncode == 0, applied.stderr
    try:
        admitted = wait_for(lambda: (r := dry_run(kubectl, manifest)).returncode == 0 and r,
                            what="the suggested waivers to apply")
        assert "soc2infra:" not in admitted.stderr and admitted.stdout.count("(server dry run)") == count
    finally:
        kubectl("delete", "-f", "-", "--ignore-not-found", input=suggested, check=False)


def test_cluster_waiver_by_namespace_name_admits_a_release_into_a_new_namespace(operator, kubectl,
                                                                                require_binary):
    """helm install --create-namespace in one step: the waiver names the namespace before it exists."""
    release, namespace = f"r{uuid.uuid4().hex[:6]}", f"metrics-{uuid.uuid4().hex[:6]}"
    waiver = {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2ClusterWaiver",
              "metadata": {"name": f"node-agents-{namespace}"},
              "spec": {"rule": "SOC2-K8S-POD-0??", "namespaces": [namespace], "selector": {"kind": "DaemonSet"},
                       "reason": "node metrics agent, reviewed in PLAT-1", "owner": "platform@example.com",
                       "expires": (date.today() + timedelta(days=30)).isoformat()}}
    text = yaml.safe_dump(waiver)
    assert kubectl("apply", "-f", "-", input=text, check=False).returncode == 0
    try:
        manifest = render(require_binary, "node-metrics", release, namespace)
        kubectl("create", "namespace", namespace)  # what --create-namespace does, after the waiver
        admitted = wait_for(lambda: (r := dry_run(kubectl, manifest)).returncode == 0 and r,
                            what="the cluster waiver to apply")
        assert "soc2infra:" not in admitted.stderr
        # Scoped to that namespace: the same chart elsewhere is still denied.
        other = f"metrics-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", other)
        denied = dry_run(kubectl, render(require_binary, "node-metrics", release, other))
        assert denied.returncode != 0 and "SOC2-K8S-POD-008" in denied.stderr
    finally:
        kubectl("delete", "-f", "-", "--ignore-not-found", input=text, check=False)
