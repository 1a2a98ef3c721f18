"""High availability on one PostgreSQL ledger: the chart's two replicas, run as two out-of-cluster
operator processes against the real apiserver, share a real PostgreSQL ledger. AdmissionReviews are
sent directly to each under concurrent load; the audit leader is SIGKILLed mid-stream. The other
replica keeps answering, takes the audit Lease within the lease duration, and afterwards the ledger
verifies and holds exactly one admission record per response a client received.

(tests/e2e/test_admission.py has the single-process SIGKILL test on SQLite through the apiserver.)
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from soc2infra.lab import ControlPlane, free_port, write_webhook_pki
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls
from tests.e2e.conftest import postgres_cluster

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
pytestmark = pytest.mark.timeout(300)

LEASE = "soc2infra-audit"
AUDIT_INTERVAL = 1.0
# What the operator asks for: max(audit.lease_seconds, 2 x interval + 30) (audit.Auditor.is_leader).
LEASE_SECONDS = max(5, int(AUDIT_INTERVAL * 2) + 30)


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (tools/postgres.sh) with a fresh schema for this module."""
    import psycopg

    with postgres_cluster("soc2infra-ha-pg-") as cluster:
        schema = "ha_" + uuid.uuid4().hex[:10]
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{cluster.dsn}?options=-csearch_path%3D{schema}"


def review(uid: str, name: str, namespace: str) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "operation": "CREATE", "namespace": namespace, "name": name,
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "userInfo": {"username": "ha-client"},
        "object": {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": namespace}, "data": {"retention": "90d"}}}}).encode()


def lease_holder(kubectl: Kubectl, namespace: str) -> str | None:
    got = kubectl("-n", namespace, "get", "lease", LEASE, "-o", "json", check=False)
    return json.loads(got.stdout)["spec"].get("holderIdentity") if got.returncode == 0 else None


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def test_two_replicas_share_a_postgres_ledger_and_survive_a_sigkill(
        control_plane: ControlPlane, kubectl: Kubectl, postgres_dsn: str, tmp_path: Path) -> None:
    own_ns = f"ha-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", own_ns)
    pki = write_webhook_pki(tmp_path / "webhook")  # one certificate, as the chart's replicas share
    replicas: dict[str, tuple[OperatorProcess, int]] = {}
    for name in ("a", "b"):
        port = free_port()
        # The chart's settings: registration none (the chart owns the webhook configuration),
        # the release namespace as own namespace (it holds the audit Lease), one shared ledger.
        argv = operator_argv(control_plane.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile,
                             postgres_dsn, audit_interval=AUDIT_INTERVAL,
                             extra=["--registration", "none", "--namespace", own_ns,
                                    "--set", "audit.lease_seconds=5", "--set", "audit.initial_delay_seconds=0",
                                    "--set", "admission.kinds=ConfigMap",
                                    "--set", "admission.actions=SOC2-K8S-NS-001=deny"])
        replicas[name] = (OperatorProcess(argv, tmp_path / f"operator-{name}.log").start(), port)
    try:
        for proc, port in replicas.values():
            proc.wait_until(lambda port=port: port_serves_tls(port, pki.cafile), timeout=90, what="serving TLS")
        identity = {name: f"{socket.gethostname()}:{proc.pid}" for name, (proc, _) in replicas.items()}
        leader = wait(lambda: next((n for n, i in identity.items() if lease_holder(kubectl, own_ns) == i), None),
                      timeout=60, what="an audit leader")
        survivor = "b" if leader == "a" else "a"

        ctx = ssl.create_default_context(cafile=str(pki.cafile))
        prefix = uuid.uuid4().hex[:6]
        answered: dict[str, bool] = {}  # configmap name -> allowed, for every response received
        failures: dict[str, int] = {"a": 0, "b": 0}
        after_kill: dict[str, int] = {"a": 0, "b": 0}
        killed = threading.Event()
        stop = threading.Event()
        lock = threading.Lock()

        def worker(target: str, worker_id: int) -> None:
            port = replicas[target][1]
            i = 0
            while not stop.is_set():
                i += 1
                name = f"cm-{prefix}-{target}{worker_id}-{i}"
                # NS-001 denies the default namespace; the own namespace is excluded, so use another.
                namespace = "default" if i % 3 == 0 else f"{own_ns}-apps"
                req = urllib.request.Request(f"https://127.0.0.1:{port}/validate-configmap", method="POST",
                                             data=review(name, name, namespace),
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
                        body = json.loads(resp.read())
                except (OSError, urllib.error.URLError, ValueError):
                    with lock:
                        failures[target] += 1
                    if target == leader and killed.is_set():
                        time.sleep(0.1)
                    continue
                assert body["response"]["uid"] == name
                with lock:
                    answered[name] = bool(body["response"]["allowed"])
                    if killed.is_set():
                        after_kill[target] += 1

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(worker, target, w) for target in ("a", "b") for w in range(4)]
            try:
                wait(lambda: len(answered) >= 120, timeout=90, what="120 answered reviews")
                replicas[leader][0].kill()  # SIGKILL the audit leader mid-stream
                killed_at = time.monotonic()
                killed.set()
                moved = wait(lambda: lease_holder(kubectl, own_ns) == identity[survivor], timeout=LEASE_SECONDS + 15,
                             what="the audit Lease to move to the survivor")
                moved_after = time.monotonic() - killed_at
                time.sleep(1)
            finally:
                stop.set()
            for f in futures:
                f.result()
        assert moved
        # The survivor answered everything sent to it, during and after the kill.
        assert failures[survivor] == 0 and after_kill[survivor] > 0, (failures, after_kill)
        # The Lease moved once it expired: within its duration (plus one audit round and a poll).
        assert moved_after <= LEASE_SECONDS + AUDIT_INTERVAL + 5, moved_after
        assert {True, False} <= set(answered.values())
    finally:
        for proc, _ in replicas.values():
            proc.stop()
        kubectl("delete", "namespace", own_ns, "--wait=false", check=False)

    verify = subprocess.run([str(Path(sys.executable).parent / "soc2infra"), "evidence", "verify", postgres_dsn],
                            capture_output=True, text=True, timeout=120, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    from soc2infra.evidence.ledger import open_ledger

    ledger = open_ledger(postgres_dsn, create=False)
    try:
        records = [r for r in ledger.iter() if r["source"] == "admission"
                   and r["subject"].rsplit("/", 1)[-1].startswith(f"cm-{prefix}-")]
    finally:
        ledger.close()
    recorded = {r["subject"].rsplit("/", 1)[-1]: r for r in records}
    assert len(records) == len(recorded), "a request was recorded twice"
    # Exactly one record per response received, none for a request that got no response... except a
    # request whose record committed just before the SIGKILL cut its response off (the record
    # precedes the response by design); there can be at most one such request per killed worker.
    missing = sorted(set(answered) - set(recorded))
    assert missing == [], f"{len(missing)} answered reviews have no record: {missing[:5]}"
    extra = set(recorded) - set(answered)
    assert all(name.split("-")[2].startswith(leader) for name in extra) and len(extra) <= 4, sorted(extra)
    wrong = [n for n, allowed in answered.items() if (recorded[n]["decision"] == "allow") != allowed]
    assert wrong == [], wrong[:5]
    # Both replicas wrote into the one chain.
    instances = {r["context"]["instance"] for r in records}
    assert instances == {identity["a"], identity["b"]}, instances
