"""The operator in ``enforcement: hybrid`` on the real API server: it installs one
ValidatingAdmissionPolicy per CEL rule, keeps their waiver conditions in sync with SOC2Waivers,
registers the webhook only for the kinds the remaining rules need, and removes the policies on a
clean exit (out-of-cluster default)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from soc2infra._core.pack import load_pack
from soc2infra.export.vap import plan_pack
from soc2infra.lab import ControlPlane, free_port, write_webhook_pki
from soc2infra.lab.rest import RestClient
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
MANAGED = "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsoc2infra"
CONFIGURATION = "soc2infra-hybrid.io"


def _wait(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def hybrid(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RestClient,
                                                                                                     OperatorProcess]]:
    workdir: Path = tmp_path_factory.mktemp("hybrid")
    pki = write_webhook_pki(workdir / "webhook")
    port = free_port()
    argv = operator_argv(control_plane.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, None,
                         audit_interval=3600,
                         extra=["--set", f"webhook.configuration_name={CONFIGURATION}", "--set", "enforcement=hybrid",
                                "--set", "audit.enabled=false"])
    proc = OperatorProcess(argv, workdir / "operator.log").start()
    client = RestClient(control_plane.server, control_plane.ssl_context())
    try:
        proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=60, what="serving TLS")
        yield client, proc
    finally:
        code = proc.stop()
        assert code == 0, proc.log_tail()
        # a clean out-of-cluster exit leaves no policy and no webhook behind
        left = [p["metadata"]["name"] for p in _policies(client)]
        assert left == [], f"{left}\n{proc.log_tail(80)}"
        client.request("DELETE", f"{ADMISSION}/validatingwebhookconfigurations/{CONFIGURATION}")


def _policies(client: RestClient) -> list[dict[str, Any]]:
    return list(client.request("GET", f"{ADMISSION}/validatingadmissionpolicies{MANAGED}").body.get("items") or [])


def _service(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"port": 80}], "externalIPs": ["203.0.113.7"]}}


def _mentions(condition: str | None, namespace: str) -> bool:
    """Whether a waiver condition names *namespace* (inside a CEL-quoted RE2 pattern)."""
    return re.escape(namespace).replace("\\", "\\\\") in (condition or "")


def _waiver_condition(client: RestClient, rule: str) -> str | None:
    name = f"soc2infra-{rule.lower()}"
    got = client.request("GET", f"{ADMISSION}/validatingadmissionpolicies/{name}").body
    conds = {c["name"]: c["expression"] for c in (got.get("spec") or {}).get("matchConditions") or []}
    return conds.get("soc2infra-waivers")


def test_hybrid_installs_policies_follows_waivers_and_narrows_the_webhook(hybrid: tuple[RestClient, OperatorProcess]
                                                                          ) -> None:
    client, proc = hybrid
    compiled = {p.rule.id for p in plan_pack(load_pack()) if p.cel}
    _wait(lambda: len(_policies(client)) == len(compiled), what=f"{len(compiled)} policies ({proc.log_tail()})")
    assert {p["metadata"]["labels"]["soc2infra.io/rule"] for p in _policies(client)} == compiled
    bindings = _wait(lambda: len(b := client.request("GET", f"{ADMISSION}/validatingadmissionpolicybindings"
                                                     f"{MANAGED}").body["items"]) == len(compiled) and b,
                     what="bindings")
    actions = {b["metadata"]["labels"]["soc2infra.io/rule"]: b["spec"]["validationActions"] for b in bindings}
    assert actions["SOC2-K8S-NET-002"] == ["Deny"], actions

    # The webhook keeps only the kinds the rules without a CEL form target.
    hooks = _wait(lambda: client.request("GET", f"{ADMISSION}/validatingwebhookconfigurations/{CONFIGURATION}"
                                         ).body.get("webhooks"), what="webhook configuration")
    resources = {r for h in hooks for rule in h["rules"] for r in rule["resources"]}
    assert {"namespaces", "deployments", "pods"} <= resources  # NET-004, AVAIL-005, POD-013
    assert not resources & {"services", "roles", "clusterroles", "configmaps", "ingresses", "storageclasses"}

    ns = f"hybrid-{uuid.uuid4().hex[:6]}"
    assert client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": ns}}).status == 201
    # A Service with externalIPs is denied by the API server itself (SOC2-K8S-NET-002 as CEL).
    denied = _wait(lambda: (r := client.create(_service("legacy-a", ns), dry_run=True)).status == 403 and r,
                   what="NET-002 denial")
    assert "ValidatingAdmissionPolicy 'soc2infra-soc2-k8s-net-002'" in denied.message
    assert "SOC2-K8S-NET-002 [" in denied.message and "Fix:" in denied.message

    # A SOC2Waiver for legacy-* services exempts exactly those, once the operator has synced.
    expires = (date.today() + timedelta(days=30)).isoformat()
    waiver = {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2Waiver",
              "metadata": {"name": "legacy-ips", "namespace": ns},
              "spec": {"rule": "SOC2-K8S-NET-002", "selector": {"kind": "Service", "name": "legacy-*"},
                       "reason": "old load balancer until Q3", "owner": "net@example.com", "expires": expires}}
    path = f"/apis/soc2infra.io/v1alpha1/namespaces/{ns}/soc2waivers"
    created = client.request("POST", path, waiver)
    assert created.status == 201, created.message
    _wait(lambda: _mentions(_waiver_condition(client, "SOC2-K8S-NET-002"), ns), what="waiver condition")
    assert not _mentions(_waiver_condition(client, "SOC2-K8S-POD-001"), ns)  # other rules are untouched
    _wait(lambda: client.create(_service("legacy-a", ns), dry_run=True).status == 201, what="waived service admitted")
    other = client.create(_service("payments", ns), dry_run=True)
    assert other.status == 403 and "soc2infra-soc2-k8s-net-002" in other.message

    # Deleting the waiver restores the policy's full reach.
    assert client.request("DELETE", f"{path}/legacy-ips").status == 200
    _wait(lambda: not _mentions(_waiver_condition(client, "SOC2-K8S-NET-002"), ns), what="waiver condition removed")
    _wait(lambda: client.create(_service("legacy-a", ns), dry_run=True).status == 403, what="denied again")
