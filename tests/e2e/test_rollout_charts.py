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
from pathlib import Path

import pytest
import yaml

from soc2infra.lab import ControlPlane
from soc2infra.waiver_suggest import parse_denials, suggest_waivers

from .test_admission import Kubectl, RunningOperator, delete_configuration, start_operator, wait_for

CHARTS = Path(__file__).resolve().parents[1] / "data" / "charts"
# Objects each chart renders, and the (kind, name suffix) the default settings deny.
EXPECTED: dict[str, tuple[int, set[tuple[str, str]]]] = {
    "edge-ingress": (5, set()),
    "certissuer": (6, set()),
    "node-metrics": (3, {("DaemonSet", "")}),
    "gitops-sync": (4, {("ClusterRole", "-application-controller")}),
}
WAIVER_NAMESPACE = "default"  # out of cluster the operator has no own namespace: cluster waivers go here


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
    homes = {w["metadata"]["namespace"] for w in waivers}
    assert homes == ({WAIVER_NAMESPACE} if chart == "gitops-sync" else {namespace})
    applied = kubectl("apply", "-f", "-", input=suggested, check=False)
    assert applied.returncode == 0, applied.stderr
    try:
        admitted = wait_for(lambda: (r := dry_run(kubectl, manifest)).returncode == 0 and r,
                            what="the suggested waivers to apply")
        assert "soc2infra:" not in admitted.stderr and admitted.stdout.count("(server dry run)") == count
    finally:
        for w in waivers:
            kubectl("-n", w["metadata"]["namespace"], "delete", "soc2waiver", w["metadata"]["name"],
                    "--ignore-not-found", check=False)
