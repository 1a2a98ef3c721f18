"""Server-side proof of the Helm chart: rendered by the real helm (defaults and two non-default value
sets), its CRDs applied for real and every other object applied with ``--dry-run=server`` to the
real kube-apiserver, which runs its full validation (schemas, defaulting, admission) on each."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "soc2infra"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]

VALUE_SETS: dict[str, list[str]] = {
    # The defaults plus what production requires: a signing key and an anchor target.
    "defaults": ["evidence.signingKey.existingSecret=ledger-key", "evidence.anchor.target=s3://evidence-anchors/c1"],
    # PostgreSQL ledger URL and signing key from Secrets, your own TLS Secret, warn mode, Ignore,
    # anchored to a MinIO bucket with credentials from a Secret.
    "postgres-signed": ["evidence.existingSecret=ledger-url", "evidence.signingKey.existingSecret=ledger-key",
                        "evidence.anchor.target=s3://evidence-anchors/c1",
                        "evidence.anchor.s3Endpoint=http://minio.storage:9000",
                        "evidence.anchor.credentialsSecret=anchor-aws",
                        "webhook.certificates.mode=existingSecret", "webhook.certificates.existingSecret=my-tls",
                        "webhook.certificates.caBundle=Q0E=", "webhook.failurePolicy=Ignore",
                        "webhook.timeoutSeconds=5", "admission.mode=warn", "crds.kopfPeering=true",
                        "replicaCount=3"],
    # SQLite on a PVC, no PolicyReport CRDs from the chart, metrics off, no NetworkPolicy; signing
    # and anchoring explicitly switched off.
    "sqlite-pvc": ["evidence.signingKey.required=false", "evidence.anchor.enabled=false","evidence.persistence.enabled=true", "evidence.persistence.size=5Gi", "metrics.enabled=false",
                   "networkPolicy.enabled=false", "crds.policyReports=false", "topologySpread=false",
                   "podDisruptionBudget.minAvailable=1", "audit.intervalSeconds=60"],
}


def render(helm: str, namespace: str, sets: list[str]) -> list[dict[str, Any]]:
    argv = [helm, "template", "soc2infra", str(CHART), "--namespace", namespace, "--include-crds",
            "--kube-version", "1.34.0"]
    for s in sets:
        argv += ["--set", s]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict)]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_is_accepted_by_the_real_apiserver(name: str, kubectl: Kubectl,
                                                 require_binary: Callable[[str], str]) -> None:
    helm = require_binary("helm")
    namespace = f"chart-{name}-{uuid.uuid4().hex[:6]}"
    docs = render(helm, namespace, VALUE_SETS[name])
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    assert crds and len(rest) >= 10, [d["kind"] for d in docs]

    applied = kubectl("apply", "-f", "-", input=yaml.safe_dump_all(crds))
    for crd in crds:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
    assert applied.returncode == 0
    kubectl("create", "namespace", namespace)
    try:
        dry = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rest),
                      check=False)
        assert dry.returncode == 0, dry.stderr
        lines = [line for line in dry.stdout.splitlines() if line.strip()]
        # One "(server dry run)" line per object: every object went through the server.
        assert len(lines) == len(rest) and all(line.endswith("(server dry run)") for line in lines), dry.stdout
        kinds = {d["kind"] for d in rest}
        assert {"Deployment", "Service", "ValidatingWebhookConfiguration", "ClusterRole", "ConfigMap"} <= kinds
        # Dry run persisted nothing.
        assert kubectl("-n", namespace, "get", "deployment", "soc2infra", check=False).returncode != 0
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
