"""The CustomResourceDefinitions the operator needs, and how to apply them.

``soc2infra_operator/crds/*.yaml`` holds the SOC2Waiver CRD, the ``wgpolicyk8s.io/v1alpha2``
PolicyReport/ClusterPolicyReport CRDs and Kopf's peering CRDs; the Helm chart ships the same files
(``tests/operator/test_chart.py`` checks they are identical).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from soc2infra_operator.kube import Kube

CRD_DIR = Path(__file__).resolve().parent / "crds"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def crd_documents(names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every CRD document (only those whose file stem is in *names*, when given)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        if names and path.stem not in names:
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict))
    return docs


def apply_crds(kube: Kube, names: tuple[str, ...] = (), timeout: float = 30.0) -> list[str]:
    """Server-side apply the CRDs and wait until the API server serves them; returns their names."""
    applied = []
    for doc in crd_documents(names):
        name = doc["metadata"]["name"]
        kube.apply(f"{CRD_PATH}/{name}", doc)
        applied.append(name)
    deadline = time.monotonic() + timeout
    pending = set(applied)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            status, body = kube.request("GET", f"{CRD_PATH}/{name}")
            conditions = (body.get("status") or {}).get("conditions") or [] if isinstance(body, dict) else []
            if status == 200 and any(c.get("type") == "Established" and c.get("status") == "True"
                                     for c in conditions):
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    if pending:
        raise TimeoutError(f"CRDs not established after {timeout:g}s: {', '.join(sorted(pending))}")
    return applied
