"""Admission control against a real kube-apiserver: the operator runs as a subprocess (exactly as
``soc2infra-operator`` runs out of cluster), registers its webhooks with the API server, and
kubectl / the Python client create objects through it.

Covers: denial with rule id, criteria and fix; compliant objects admitted; warn rules as kubectl
warnings; excluded namespaces; SOC2Waivers admitting until expiry; opt-out only when granted;
server-side dry runs checked; the same verdicts as ``soc2infra scan`` on the same files; garbage
AdmissionReviews; decisions in the ledger; and no lost record when the operator is SIGKILLed while
answering concurrent requests.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from soc2infra.lab import ControlPlane, free_port, write_webhook_pki
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deployment(name: str, namespace: str, *, privileged: bool = False, image: str | None = None,
               labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
               escalate: bool = False) -> dict[str, Any]:
    """A Deployment that passes every rule unless told otherwise."""
    security: dict[str, Any] = {"allowPrivilegeEscalation": escalate, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}}
    if privileged:  # the API server refuses privileged with allowPrivilegeEscalation: false
        security = {"privileged": True, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {"app": name, **(labels or {})}}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "serviceAccountName": "app", "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "app", "image": image or ("registry.example.com/app:1.4.2@sha256:" + "a" * 64),
                        "securityContext": security,
                        "resources": {"limits": {"memory": "256Mi", "cpu": "500m"},
                                      "requests": {"memory": "128Mi", "cpu": "100m"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    }],
                },
            },
        },
    }


def soc2waiver(name: str, namespace: str, rule: str, expires: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2Waiver",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"rule": rule, "reason": "vendor image needs it until v5", "owner": "payments@example.com",
                     "ticket": "SEC-1234", "expires": expires, **spec}}


def manifest(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last kubectl stderr:\n{LAST_APPLY[0]}")


def ledger_records(path: Path) -> list[dict[str, Any]]:
    from soc2infra.evidence.ledger import open_ledger

    ledger = open_ledger(path)
    try:
        return list(ledger.iter())
    finally:
        ledger.close()


@dataclass
class RunningOperator:
    """What tests need to know about the operator under test."""

    process: OperatorProcess
    port: int
    ledger: Path
    cafile: Path
    configuration: str

    def records(self, subject: str | None = None) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        out = ledger_records(self.ledger)
        return [r for r in out if subject is None or r["subject"] == subject]


def start_operator(control_plane: ControlPlane, workdir: Path, kubectl: Kubectl, *extra: str,
                   configuration: str = "soc2infra.io", audit_interval: float = 3600) -> RunningOperator:
    """Start an operator subprocess and wait until the API server really routes requests to it
    (a canary dry run shows up in its ledger), not just until its port is open."""
    pki = write_webhook_pki(workdir / "webhook")
    port = free_port()
    ledger = workdir / "evidence.db"
    argv = operator_argv(control_plane.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, ledger,
                         audit_interval=audit_interval,
                         extra=["--set", f"webhook.configuration_name={configuration}", *extra])
    proc = OperatorProcess(argv, workdir / "operator.log").start()
    running = RunningOperator(proc, port, ledger, pki.cafile, configuration)
    try:
        proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=60, what="serving TLS")
        canary_ns = _name("canary")
        kubectl("create", "namespace", canary_ns)

        def routed() -> bool:
            name = _name("canary")
            canary = manifest({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": name, "namespace": canary_ns}, "data": {"a": "b"}})
            kubectl("apply", "--dry-run=server", "-f", "-", input=canary, check=False)
            return bool(running.records(f"v1/ConfigMap/{canary_ns}/{name}"))

        proc.wait_until(routed, timeout=60, what="admitting through the API server")
    except BaseException:
        proc.kill()
        delete_configuration(kubectl, configuration)
        raise
    return running


def delete_configuration(kubectl: Kubectl, name: str) -> None:
    kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)
    # The waiver webhooks (approval.py) fail closed in every namespace: a killed operator's would
    # block every later waiver change on the shared control plane.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kubectl("delete", kind, f"{name}-waivers", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RunningOperator]:
    workdir = tmp_path_factory.mktemp("operator")
    running = start_operator(control_plane, workdir, kubectl)
    try:
        yield running
    finally:
        code = running.process.stop()
        # A clean stop removes the webhook configuration (else failurePolicy=Fail would block the
        # shared control plane for the other test modules).
        still = kubectl("get", "validatingwebhookconfiguration", running.configuration, check=False)
        delete_configuration(kubectl, running.configuration)
        assert code == 0, running.process.log_tail()
        assert still.returncode != 0, "the operator left its webhook configuration behind"


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = _name("e2e-adm")
    kubectl("create", "namespace", name)
    return name


LAST_APPLY: list[str] = [""]


def apply(kubectl: Kubectl, *objects: dict[str, Any], dry_run: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    result = kubectl(*args, input=manifest(*objects), check=False)
    LAST_APPLY[0] = result.stderr
    return result


def exists(kubectl: Kubectl, kind: str, name: str, namespace: str) -> bool:
    return kubectl("-n", namespace, "get", kind, name, check=False).returncode == 0


# --------------------------------------------------------------------------- verdicts

def test_noncompliant_deployment_is_rejected_by_kubectl(operator, kubectl, ns):
    result = apply(kubectl, deployment("priv", ns, privileged=True))
    assert result.returncode != 0
    assert 'admission webhook "validate-deployment.soc2infra.io" denied the request' in result.stderr
    assert "SOC2-K8S-POD-001" in result.stderr and "[CC6.1, CC6.8, CC5.3]" in result.stderr
    assert "Fix: Remove securityContext.privileged" in result.stderr
    assert not exists(kubectl, "deployment", "priv", ns)


def test_noncompliant_deployment_is_rejected_by_the_python_client(operator, control_plane, ns):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with control_plane.api_client() as api:
        apps = client.AppsV1Api(api)
        with pytest.raises(ApiException) as err:
            apps.create_namespaced_deployment(ns, deployment("priv-py", ns, privileged=True))
        assert err.value.status == 403
        body = json.loads(err.value.body)
        assert "SOC2-K8S-POD-001" in body["message"]
        # UPDATE is checked too: a compliant object cannot be moved onto the host network later.
        apps.create_namespaced_deployment(ns, deployment("upd", ns))
        patch = {"spec": {"template": {"spec": {"hostNetwork": True}}}}
        with pytest.raises(ApiException) as err:
            apps.patch_namespaced_deployment("upd", ns, patch)
        assert err.value.status == 403 and "SOC2-K8S-POD-008" in err.value.body


def test_compliant_deployment_is_admitted_silently(operator, kubectl, ns):
    result = apply(kubectl, deployment("good", ns))
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    assert exists(kubectl, "deployment", "good", ns)


def test_warn_rule_reaches_kubectl_as_a_warning(operator, kubectl, ns):
    result = apply(kubectl, deployment("latest", ns, image="nginx:latest", escalate=True))
    assert result.returncode == 0, result.stderr
    # POD-002 is a restricted-level rule: a warning, although its severity is high.
    assert "Warning: SOC2-K8S-POD-002 [CC6.1, CC6.8]" in result.stderr
    assert exists(kubectl, "deployment", "latest", ns)
    # IMAGE-001/002 (latest tag, no digest) are hygiene rules: recorded, never shown.
    assert "SOC2-K8S-IMAGE-00" not in result.stderr
    [record] = operator.records(f"apps/v1/Deployment/{ns}/latest")
    statuses = {r["rule_id"]: r["status"] for r in record["results"]}
    assert statuses["SOC2-K8S-IMAGE-002"] == statuses["SOC2-K8S-IMAGE-001"] == "fail"
    assert record["decision"] == "warn"


def test_excluded_namespace_is_not_checked(operator, kubectl):
    name = _name("sys")
    result = apply(kubectl, deployment(name, "kube-public", privileged=True))
    try:
        assert result.returncode == 0, result.stderr
        assert "SOC2-" not in result.stderr
        assert operator.records(f"apps/v1/Deployment/kube-public/{name}") == []  # out of scope, not recorded
    finally:
        kubectl("-n", "kube-public", "delete", "deployment", name, "--ignore-not-found", check=False)


def test_server_side_dry_run_is_checked_and_recorded(operator, kubectl, ns):
    result = apply(kubectl, deployment("dry", ns, privileged=True), dry_run=True)
    assert result.returncode != 0 and "SOC2-K8S-POD-001" in result.stderr
    ok = apply(kubectl, deployment("dry-ok", ns), dry_run=True)
    assert ok.returncode == 0 and "(server dry run)" in ok.stdout
    assert not exists(kubectl, "deployment", "dry", ns) and not exists(kubectl, "deployment", "dry-ok", ns)
    [record] = operator.records(f"apps/v1/Deployment/{ns}/dry")
    assert record["decision"] == "deny" and record["context"]["dry_run"] is True


# --------------------------------------------------------------------------- waivers and opt-outs

def test_waiver_admits_until_it_expires(operator, kubectl, ns):
    today = datetime.now(UTC).date()
    obj = deployment("legacy", ns, privileged=True)
    assert apply(kubectl, obj).returncode != 0
    # A privileged container also fails POD-002 (privilege escalation): one glob waives both.
    w = soc2waiver("legacy-privileged", ns, "SOC2-K8S-POD-00?", (today + timedelta(days=30)).isoformat(),
                   selector={"kind": "Deployment", "name": "legacy"})
    kubectl("apply", "-f", "-", input=manifest(w))
    # The operator learns about the waiver from its watch: allow a moment for the event.
    admitted = wait_for(lambda: (r := apply(kubectl, obj)).returncode == 0 and r, what="the waiver to apply")
    assert "SOC2-K8S-POD-001" not in admitted.stderr
    [record] = [r for r in operator.records(f"apps/v1/Deployment/{ns}/legacy") if r["decision"] == "allow"]
    waived = {r["rule_id"]: r for r in record["results"] if r["status"] == "waived"}
    assert set(waived) == {"SOC2-K8S-POD-001", "SOC2-K8S-POD-002"}
    waived = waived["SOC2-K8S-POD-001"]
    assert waived["waiver"]["owner"] == "payments@example.com" and waived["waiver"]["ticket"] == "SEC-1234"
    assert waived["waiver"]["location"] == f"SOC2Waiver {ns}/legacy-privileged"

    # Expired yesterday: the same object is rejected again, and told why.
    kubectl("-n", ns, "delete", "deployment", "legacy")
    w["spec"]["expires"] = (today - timedelta(days=1)).isoformat()
    kubectl("apply", "-f", "-", input=manifest(w))
    rejected = wait_for(lambda: (r := apply(kubectl, obj)).returncode != 0 and r, what="the waiver to expire")
    assert "SOC2-K8S-POD-001" in rejected.stderr
    assert f"SOC2Waiver {ns}/legacy-privileged for SOC2-K8S-POD-001 expired on" in rejected.stderr
    # The control plane is shared: leave no expired waiver for other modules to count.
    kubectl("-n", ns, "delete", "soc2waiver", "legacy-privileged", "--ignore-not-found", check=False)


def test_waiver_does_not_leak_to_other_objects_or_namespaces(operator, kubectl, ns):
    other_ns = _name("e2e-adm")
    kubectl("create", "namespace", other_ns)
    expires = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    kubectl("apply", "-f", "-", input=manifest(soc2waiver("only-api", ns, "SOC2-K8S-POD-*", expires,
                                                          selector={"name": "api"})))
    wait_for(lambda: apply(kubectl, deployment("api", ns, privileged=True)).returncode == 0, what="the waiver")
    assert apply(kubectl, deployment("web", ns, privileged=True)).returncode != 0
    assert apply(kubectl, deployment("api", other_ns, privileged=True)).returncode != 0


def test_opt_out_label_works_only_when_a_waiver_grants_it(operator, kubectl, ns):
    obj = deployment("debug", ns, privileged=True, labels={"soc2infra.io/exempt": "true"})
    denied = apply(kubectl, obj)
    assert denied.returncode != 0 and "soc2infra.io/exempt on" in denied.stderr and "is ignored" in denied.stderr
    expires = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
    kubectl("apply", "-f", "-", input=manifest(soc2waiver("debug-opt-out", ns, "*", expires, optOut=True)))
    wait_for(lambda: apply(kubectl, obj).returncode == 0, what="the opt-out grant")
    # The grant is not a waiver for objects that do not opt out.
    assert apply(kubectl, deployment("plain", ns, privileged=True)).returncode != 0


# --------------------------------------------------------------------------- same verdicts as the CLI

def _scan_json(paths: list[Path]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "soc2infra.cli", "scan", "--format", "json",
                             *map(str, paths)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_same_verdicts_as_soc2infra_scan(operator, kubectl, ns, tmp_path: Path):
    """Each object is written to a file and scanned by the CLI, and sent to the API server as a
    server-side dry run: the rules failing on it are the same, and it is rejected exactly when a
    deny rule fails (cross-object rules are capped at warn at admission, see docs/operator.md)."""
    from soc2infra._core.pack import load_pack
    from soc2infra_operator.admission import rule_relations

    pack = load_pack()
    cross = set(rule_relations(pack))
    deny_rules = {r.id for r in pack.rules if r.action == "deny"} - cross
    objects = [
        deployment("parity-good", ns),
        deployment("parity-priv", ns, privileged=True),
        deployment("parity-latest", ns, image="nginx:latest"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "parity-lb", "namespace": ns},
         "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "parity-svc", "namespace": ns},
         "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "parity-wild", "namespace": ns},
         "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "parity-creds", "namespace": ns},
         "data": {"DB_PASSWORD": "hunter2hunter2hunter2"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "parity-pod", "namespace": ns},
         "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox:1.36"}]}},
    ]
    compared = 0
    for obj in objects:
        name, kind = obj["metadata"]["name"], obj["kind"]
        path = tmp_path / f"{name}.yaml"
        path.write_text(manifest(obj), encoding="utf-8")
        report = _scan_json([path])
        address = f"{obj['apiVersion']}/{kind}/{ns}/{name}"
        cli_failing = {f["rule_id"] for f in report["findings"]
                       if f["resource"]["address"] == address and not f["suppressed"]}
        result = apply(kubectl, obj, dry_run=True)
        records = operator.records(address)
        assert records, f"no admission record for {address}:\n{result.stderr}"
        admission_failing = {r["rule_id"] for r in records[-1]["results"] if r["status"] in ("fail", "unknown")}
        assert admission_failing == cli_failing, address
        should_deny = bool(cli_failing & deny_rules)
        assert (result.returncode != 0) == should_deny, (address, result.stderr)
        if should_deny:
            assert all(rule in result.stderr for rule in cli_failing & deny_rules)
        compared += 1
    assert compared == len(objects)


# --------------------------------------------------------------------------- robustness and evidence

def _post_review(operator: RunningOperator, path: str, body: Any) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(operator.cafile))
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"https://127.0.0.1:{operator.port}/{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


GARBAGE_OBJECTS: list[Any] = [
    {}, {"kind": "Deployment"}, {"metadata": None, "spec": "x"}, {"metadata": {"name": ["a"], "labels": "x"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g", "namespace": "default"},
     "spec": {"template": {"spec": {"containers": [None, 5, {"securityContext": "yes"}]}}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": 7}, "spec": {"replicas": "many"}},
    "a string", 12, [1, 2],
]


def test_garbage_admission_reviews_never_crash_the_handler(operator, ns):
    for i, obj in enumerate(GARBAGE_OBJECTS):
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": f"garbage-{i}", "operation": "CREATE", "namespace": ns, "object": obj,
            "userInfo": {"username": "fuzzer", "groups": "not-a-list"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"}}}
        status, body = _post_review(operator, "validate-deployment", review)
        # Kopf refuses reviews it cannot route (400); everything else is a proper answer.
        assert status in (200, 400), (obj, status, body)
        if status == 200:
            assert body["response"]["uid"] == f"garbage-{i}"
            assert isinstance(body["response"]["allowed"], bool)
            if not body["response"]["allowed"]:
                assert body["response"]["status"]["message"].startswith("soc2infra"), body
    # Not JSON at all: Kopf answers 400. A review without a request still gets a review back,
    # decided by the failure policy (Fail: rejected).
    ctx = ssl.create_default_context(cafile=str(operator.cafile))
    req = urllib.request.Request(f"https://127.0.0.1:{operator.port}/validate-deployment", data=b"not json",
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert err.value.code == 400
    status, body = _post_review(operator, "validate-deployment", {"request": None})
    assert status == 200 and body["response"]["allowed"] is False
    assert "could not check this request" in body["response"]["status"]["message"]
    assert operator.process.alive()
    # And it still works for real requests afterwards.
    assert _post_review(operator, "validate-deployment", {"apiVersion": "admission.k8s.io/v1",
                                                          "kind": "AdmissionReview", "request": {
        "uid": "after", "operation": "CREATE", "namespace": ns,
        "object": deployment("after", ns, privileged=True), "userInfo": {"username": "u"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"}}})[1]["response"]["allowed"] \
        is False


def test_a_3mb_object_and_a_10000_deep_object_are_answered(operator):
    # Posted straight to the webhook: no namespace is created (the shared cluster's reports are bounded).
    ns = "e2e-posted-only"
    def review(uid: str, obj: Any) -> dict[str, Any]:
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid, "operation": "CREATE", "namespace": ns, "object": obj, "userInfo": {"username": "u"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"}}}

    t0 = time.monotonic()
    status, body = _post_review(operator, "validate-deployment",
                                review("big", deployment("big", ns, annotations={"blob": "x" * 3_000_000})))
    assert status == 200 and body["response"]["uid"] == "big" and body["response"]["allowed"] is True
    # 10,000 levels: more than json.loads (or any rule) can hold. Built as text, as an attacker would.
    text = json.dumps(review("deep", deployment("deep", ns))).replace(
        '"replicas": 2', '"replicas": 2, "x": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000, 1)
    assert '"x": {"a"' in text
    ctx = ssl.create_default_context(cafile=str(operator.cafile))
    req = urllib.request.Request(f"https://127.0.0.1:{operator.port}/validate-deployment", data=text.encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    # json.loads cannot hold it (Kopf answered HTTP 500 before any handler ran): the operator reads
    # the review cut at the nesting limit and answers it by the failure policy (Fail: refused).
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        assert resp.status == 200
        answer = json.loads(resp.read())
    assert answer["response"]["uid"] == "deep" and answer["response"]["allowed"] is False
    assert "nested more than" in answer["response"]["status"]["message"]
    # ... and recorded like any decision: the ledger shows the attempt and why it was not checked.
    [record] = [r for r in operator.records() if r["context"].get("request_uid") == "deep"]
    assert record["decision"] == "deny" and "nested more than" in record["context"]["reason"]
    assert time.monotonic() - t0 < 30 and operator.process.alive()
    status, body = _post_review(operator, "validate-deployment", review("after", deployment("after", ns)))
    assert status == 200 and body["response"]["allowed"] is True


def test_admission_decisions_are_in_the_ledger(operator, kubectl, ns):
    from soc2infra.evidence.verify import verify_ledger

    assert apply(kubectl, deployment("ev-deny", ns, privileged=True)).returncode != 0
    assert apply(kubectl, deployment("ev-allow", ns)).returncode == 0
    [deny] = operator.records(f"apps/v1/Deployment/{ns}/ev-deny")
    [allow] = operator.records(f"apps/v1/Deployment/{ns}/ev-allow")
    assert deny["source"] == allow["source"] == "admission"
    assert deny["decision"] == "deny" and allow["decision"] == "allow"
    assert deny["actor"] == allow["actor"] != "unknown"  # the kubeconfig's admin user
    assert deny["context"]["operation"] == "CREATE" and deny["context"]["dry_run"] is False
    failing = {r["rule_id"] for r in deny["results"] if r["status"] == "fail"}
    assert "SOC2-K8S-POD-001" in failing
    assert {r["status"] for r in allow["results"]} == {"pass"} and len(allow["results"]) >= 20
    assert deny["pack_digest"].startswith("sha256:")
    # Traceable to the API server's audit log and to the object (issue 20): the review's uid, the
    # user, the object's uid as stored, and the cluster id (kube-system's uid by default).
    assert deny["context"]["request_uid"] and deny["context"]["request_uid"] != allow["context"]["request_uid"]
    assert deny["context"]["user"]["username"] == deny["actor"]
    stored = kubectl("get", "deployment", "ev-allow", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert stored.returncode == 0 and allow["context"]["object_uid"] == stored.stdout.strip() != ""
    system = kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}")
    assert deny["context"]["cluster"] == allow["context"]["cluster"] == system.stdout.strip() != ""
    result = verify_ledger(operator.ledger)
    assert result.ok, str(result)


# --------------------------------------------------------------------------- durability

def test_sigkill_under_load_loses_no_record_of_a_sent_response(control_plane, kubectl, tmp_path: Path):
    """Concurrent admissions, SIGKILL mid-stream: every response the API server received from this
    operator has its record in the ledger (the record is committed before the response is sent)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from soc2infra.evidence.verify import verify_ledger

    configuration = "soc2infra-durability.io"
    ns = _name("e2e-kill")
    # Only ConfigMaps, and NS-001 (objects in the default namespace; an audit rule) made a deny rule:
    # this operator's denials are then told apart from the module operator's, which only records
    # NS-001 (both webhooks see every ConfigMap).
    running = start_operator(control_plane, tmp_path, kubectl, "--set", "admission.kinds=ConfigMap",
                             "--set", "admission.actions=SOC2-K8S-NS-001=deny", "--no-audit",
                             configuration=configuration)
    prefix = uuid.uuid4().hex[:6]
    kubectl("create", "namespace", ns)
    answered: dict[str, str] = {}  # configmap name → "allow" | "deny" (a response from our webhook)
    failed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(worker_id: int) -> None:
        with control_plane.api_client() as api:
            core = client.CoreV1Api(api)
            i = 0
            while not stop.is_set():
                name = f"cm-{prefix}-{worker_id}-{i}"
                i += 1
                # Every third one goes to the default namespace, which this operator denies.
                target = "default" if i % 3 == 0 else ns
                body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"e2e-run": prefix}),
                                          data={"retention": "90d"})
                try:
                    core.create_namespaced_config_map(target, body, _request_timeout=30)
                    outcome = "allow"
                except ApiException as exc:
                    raw = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or "")
                    try:
                        text = str(json.loads(raw).get("message", ""))
                    except ValueError:
                        text = raw
                    if exc.status == 403 and f"validate-configmap.{configuration}\" denied" in text:
                        outcome = "deny"
                    else:  # the webhook could not be called (killed): no response from it
                        with lock:
                            failed.append(name)
                        continue
                except Exception:  # noqa: BLE001 - connection trouble while the operator dies
                    with lock:
                        failed.append(name)
                    continue
                with lock:
                    answered[name] = outcome

    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = [pool.submit(worker, w) for w in range(12)]
            try:
                wait_for(lambda: len(answered) >= 150, timeout=60, what="150 answered admissions")
                running.process.kill()  # SIGKILL: no clean-up, no flush
                killed_at = len(answered)
                time.sleep(2)  # requests in flight run into the dead webhook
            finally:
                stop.set()  # before the pool joins its workers, or a failure here would hang
            for f in futures:
                f.result()
    finally:
        stop.set()
        running.process.kill()
        delete_configuration(kubectl, configuration)

    assert killed_at >= 150 and failed, "the kill should have cut requests off"
    assert {"allow", "deny"} <= set(answered.values())
    records = ledger_records(running.ledger)
    recorded = {r["subject"].rsplit("/", 1)[-1]: r["decision"] for r in records if r["source"] == "admission"}
    missing = sorted(name for name in answered if name not in recorded)
    assert missing == [], f"{len(missing)} answered admissions have no record: {missing[:10]}"
    wrong = sorted(name for name, outcome in answered.items() if recorded[name] != outcome)
    assert wrong == [], f"records disagree with the responses: {wrong[:10]}"
    result = verify_ledger(running.ledger)
    assert result.ok and result.records == len(records), str(result)
    with contextlib.suppress(Exception):
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
