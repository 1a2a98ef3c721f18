"""Faults under a running operator, with the real parts: the API server restarted under it (it
reconnects: the webhook, the waiver watch and the audit keep working) and its PostgreSQL ledger
restarted mid-run under load (no record lost or duplicated, the chain verifies).

(tests/e2e/test_admission.py: SIGKILL of the operator under load, a 3 MB object, malformed and
10,000-deep reviews; tests/e2e/test_ha.py: SIGKILL of the audit leader of two replicas.)
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soc2infra.lab import ControlPlane, free_port, write_webhook_pki
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls
from tests.e2e.conftest import postgres_cluster

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
pytestmark = pytest.mark.timeout(240)


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def records(ledger: str | Path) -> list[dict[str, Any]]:
    from soc2infra.evidence.ledger import open_ledger

    opened = open_ledger(ledger, create=False)
    try:
        return list(opened.iter())
    finally:
        opened.close()


def verify(ledger: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "soc2infra"), "evidence", "verify", str(ledger)],
                          capture_output=True, text=True, timeout=120, check=False)


# --------------------------------------------------------------------------- API server restart

def _deployment(name: str, namespace: str, privileged: bool) -> dict[str, Any]:
    security: dict[str, Any] = {"privileged": True} if privileged else {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": "app", "automountServiceAccountToken": False,
                         "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                             "seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [{"name": "app", "image": "registry.example.com/app:1.4.2@sha256:" + "a" * 64,
                                         "securityContext": security,
                                         "resources": {"limits": {"memory": "256Mi", "cpu": "500m"},
                                                       "requests": {"memory": "128Mi", "cpu": "100m"}},
                                         "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]}}}}


def test_the_operator_reconnects_after_the_apiserver_restarts(bin_dir: Path, kubectl: Kubectl,
                                                               tmp_path: Path) -> None:
    """A control plane of its own (the session's is shared): the operator runs, the API server is
    killed and started again on the same port and etcd; afterwards the webhook still denies, a
    SOC2Waiver created after the restart reaches the operator through its re-established watch,
    and the audit keeps recording and writing PolicyReports."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with ControlPlane(workdir=tmp_path / "cp", bin_dir=bin_dir) as cp:
        pki = write_webhook_pki(tmp_path / "webhook")
        port = free_port()
        ledger = tmp_path / "evidence.db"
        argv = operator_argv(cp.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, ledger, audit_interval=1,
                             extra=["--set", "audit.initial_delay_seconds=0", "--set", "admission.kinds=Deployment"])
        proc = OperatorProcess(argv, tmp_path / "operator.log").start()
        try:
            proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=90, what="serving TLS")
            kubectl("create", "namespace", "shop", kubeconfig=cp.kubeconfig)

            def create(name: str, privileged: bool) -> str:
                """'allowed', 'denied' (by our webhook) or the error, for a server-side dry run."""
                with cp.api_client() as api:
                    try:
                        client.AppsV1Api(api).create_namespaced_deployment(
                            "shop", _deployment(name, "shop", privileged), dry_run="All", _request_timeout=10)
                        return "allowed"
                    except ApiException as exc:
                        body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or "")
                        return "denied" if exc.status == 403 and "SOC2-K8S-POD-001" in body else body[:300]
                    except Exception as exc:  # noqa: BLE001 - the API server is down: say so
                        return repr(exc)

            proc.wait_until(lambda: create("probe", True) == "denied", timeout=60, what="enforcing")

            def audits() -> list[dict[str, Any]]:
                return [r for r in records(ledger) if r["source"] == "audit"]

            wait(lambda: audits(), timeout=30, what="a first audit record")
            down = cp.restart_apiserver(down_seconds=2)
            restarted = datetime.now(UTC)
            assert proc.alive(), proc.log_tail()
            # The webhook configuration lives in etcd; the operator's endpoint never went away.
            assert wait(lambda: create("after", True) == "denied", timeout=30, what="denial after restart")
            assert create("compliant", False) == "allowed"
            # The waiver watch reconnects: a waiver created now admits the privileged Deployment.
            expires = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
            waiver = {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2Waiver",
                      "metadata": {"name": "vendor", "namespace": "shop"},
                      "spec": {"rule": "SOC2-K8S-POD-001", "reason": "vendor image needs it until v5",
                               "owner": "payments@example.com", "expires": expires,
                               "selector": {"kind": "Deployment", "name": "waived"}}}
            kubectl("apply", "-f", "-", input=json.dumps(waiver), kubeconfig=cp.kubeconfig)
            assert wait(lambda: create("waived", True) == "allowed", timeout=60, what="the waiver after restart")
            # The audit goes on: new runs are recorded and the PolicyReport of the namespace is written.
            after = lambda: [r for r in audits() if r["time"] > restarted.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]  # noqa: E731
            wait(lambda: len(after()) >= 2, timeout=60, what="two audit records after the restart")
            kubectl("apply", "-f", "-", input=json.dumps(_deployment("stored", "shop", False)),
                    kubeconfig=cp.kubeconfig)

            def reported() -> bool:
                got = kubectl("get", "policyreports.wgpolicyk8s.io", "-n", "shop", "-o", "json",
                              kubeconfig=cp.kubeconfig, check=False)
                items = json.loads(got.stdout or "{}").get("items", []) if got.returncode == 0 else []
                text = json.dumps(items)
                return "stored" in text

            assert wait(reported, timeout=60, what="a PolicyReport naming the Deployment created after the restart")
            assert proc.alive() and down < 60
        finally:
            proc.stop()
    assert verify(ledger).returncode == 0


# --------------------------------------------------------------------------- PostgreSQL restart

def _review(uid: str, namespace: str) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "operation": "CREATE", "namespace": namespace, "name": uid,
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "userInfo": {"username": "fault-client"},
        "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": uid, "namespace": namespace},
                   "data": {"retention": "90d"}}}}).encode()


def _unrecorded(response: dict[str, Any]) -> bool:
    """The response says its evidence could not be recorded (a warning on a denial or an admission
    under failure policy Ignore; the reason of a refusal under Fail)."""
    return any("could not record evidence" in w for w in response.get("warnings", [])) \
        or "evidence could not be recorded" in response.get("status", {}).get("message", "")


def test_postgres_restart_under_load_loses_and_duplicates_no_record(control_plane: ControlPlane,
                                                                    tmp_path: Path) -> None:
    """Reviews posted at concurrency 8 while the ledger's PostgreSQL is stopped and started again:
    every response that carries a decision has exactly one record; responses during the outage say
    that evidence could not be recorded (and have at most one record: a COMMIT can succeed on the
    server while its connection is cut); the operator answers throughout and recovers by itself."""
    with postgres_cluster("soc2infra-fault-pg-") as pg:
        pki = write_webhook_pki(tmp_path / "webhook")
        port = free_port()
        # Registration none: the shared API server never calls this operator (fail-closed while
        # its ledger is down would otherwise refuse other tests' objects).
        argv = operator_argv(control_plane.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, pg.dsn,
                             extra=["--registration", "none", "--no-audit", "--set", "admission.kinds=ConfigMap",
                                    "--set", "admission.actions=SOC2-K8S-NS-001=deny",
                                    "--set", "evidence.timeout_seconds=5"])
        proc = OperatorProcess(argv, tmp_path / "operator.log").start()
        ctx = ssl.create_default_context(cafile=str(pki.cafile))
        prefix = uuid.uuid4().hex[:6]
        answered: dict[str, dict[str, Any]] = {}  # uid -> response, for every review answered
        errors: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        phase = {"now": "before"}
        per_phase: dict[str, int] = {"before": 0, "down": 0, "after": 0}

        def worker(worker_id: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                uid = f"{prefix}-{worker_id}-{i}"
                namespace = "default" if i % 3 == 0 else "apps"  # NS-001 denies the default namespace
                req = urllib.request.Request(f"https://127.0.0.1:{port}/validate-configmap", method="POST",
                                             data=_review(uid, namespace), headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                        body = json.loads(resp.read())
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    with lock:
                        errors.append(f"{uid}: {exc!r}")
                    continue
                with lock:
                    answered[uid] = body["response"]
                    if not _unrecorded(body["response"]):
                        per_phase[phase["now"]] += 1  # decided (and recorded) in this phase

        try:
            proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=90, what="serving TLS")
            with ThreadPoolExecutor(max_workers=8) as pool:
                futures = [pool.submit(worker, w) for w in range(8)]
                try:
                    wait(lambda: per_phase["before"] >= 150, timeout=60, what="150 decided reviews")
                    phase["now"] = "down"
                    pg.stop()
                    time.sleep(1.5)
                    pg.start()
                    phase["now"] = "after"
                    # Recovery needs nobody: the ledger reconnects at its next transaction.
                    wait(lambda: per_phase["after"] >= 150, timeout=60, what="150 decided reviews after")
                finally:
                    stop.set()
                for f in futures:
                    f.result()
            assert proc.alive(), proc.log_tail()
        finally:
            proc.stop()

        assert errors == [], errors[:5]  # every review got an AdmissionReview back, none an HTTP error
        stored = [r for r in records(pg.dsn) if r["source"] == "admission"
                  and str(r["context"].get("request_uid", "")).startswith(prefix)]
        count: dict[str, int] = {}
        for r in stored:
            count[r["context"]["request_uid"]] = count.get(r["context"]["request_uid"], 0) + 1
        assert [u for u, n in count.items() if n > 1] == [], "a review was recorded twice"
        unrecorded = {u for u, resp in answered.items() if _unrecorded(resp)}
        decided = set(answered) - unrecorded
        missing = sorted(u for u in decided if u not in count)
        assert missing == [], f"{len(missing)} answered reviews have no record: {missing[:5]}"
        assert set(count) <= set(answered), "a record for a review that was never sent"
        by_uid = {r["context"]["request_uid"]: r for r in stored}
        wrong = [u for u in decided if (by_uid[u]["decision"] != "deny") != answered[u]["allowed"]]
        assert wrong == [], wrong[:5]
        assert unrecorded, "no review met the outage"  # the outage was real
        result = verify(pg.dsn)
        assert result.returncode == 0, result.stdout + result.stderr
