"""Admission latency added by the soc2infra webhook, measured against a real kube-apiserver.

Starts a local control plane (etcd + kube-apiserver from the lab binaries), runs the operator as a
subprocess, and times sequential server-side dry-run creates of a Deployment through the Python
client, interleaving a namespace the webhook checks with one its namespaceSelector skips (the
same API server work minus the webhook call). Runs twice: without evidence and with the SQLite
ledger (records committed durably before each response). Also times the pure decision in-process.

    python bench/bench_admission.py [--requests 300] [--json out.json]

Numbers depend on the machine; PERFORMANCE.md gives Kopf's own floor (trivial handler) as about
4 ms p50 / 7-10 ms p99 on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from soc2infra.lab import ControlPlane, ensure_binaries, free_port, write_webhook_pki
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls

SKIPPED_NS = "bench-skipped"


def deployment(name: str, namespace: str, privileged: bool = False) -> dict[str, Any]:
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}}
    if privileged:
        security = {"privileged": True}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "bench"}}, "template": {
            "metadata": {"labels": {"app": "bench"}},
            "spec": {"serviceAccountName": "bench", "automountServiceAccountToken": False,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "app", "image": "registry.example.com/app:1.4.2@sha256:" + "a" * 64,
                                     "securityContext": security,
                                     "resources": {"limits": {"memory": "256Mi", "cpu": "500m"},
                                                   "requests": {"memory": "128Mi", "cpu": "100m"}},
                                     "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                                     "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]}}},
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p90": round(q[89], 2), "p99": round(q[98], 2),
            "mean": round(statistics.fmean(ordered), 2), "n": len(ordered)}


def time_creates(api_client: Any, checked_ns: str, requests: int, privileged: bool = False) -> dict[str, list[float]]:
    """Interleaved sequential dry-run creates: checked namespace vs skipped namespace (ms)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(api_client)
    out: dict[str, list[float]] = {"checked": [], "skipped": []}
    for i in range(requests + 20):
        for label, ns in (("checked", checked_ns), ("skipped", SKIPPED_NS)) if i % 2 else \
                (("skipped", SKIPPED_NS), ("checked", checked_ns)):
            body = deployment(f"b-{uuid.uuid4().hex[:10]}", ns, privileged)
            t0 = time.perf_counter()
            try:
                apps.create_namespaced_deployment(ns, body, dry_run="All")
            except ApiException as exc:
                if exc.status != 403:
                    raise
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= 20:  # warm-up: connection pool, caches, Python import paths
                out[label].append(elapsed)
    return out


def start_operator(cp: ControlPlane, workdir: Path, ledger: Path | None) -> OperatorProcess:
    pki = write_webhook_pki(workdir / "webhook")
    port = free_port()
    argv = operator_argv(cp.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, ledger, extra=[
        "--no-audit", "--exclude-namespace", "kube-system", "--exclude-namespace", "kube-public",
        "--exclude-namespace", "kube-node-lease", "--exclude-namespace", SKIPPED_NS])
    proc = OperatorProcess(argv, workdir / "operator.log").start()
    proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=60, what="serving")
    return proc


def wait_enforcing(api_client: Any, ns: str, proc: OperatorProcess) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(api_client)

    def denied() -> bool:
        try:
            apps.create_namespaced_deployment(ns, deployment(f"probe-{uuid.uuid4().hex[:6]}", ns, True),
                                              dry_run="All")
        except ApiException as exc:
            return exc.status == 403 and "SOC2-K8S-POD-001" in str(exc.body)
        return False

    proc.wait_until(denied, timeout=60, what="enforcing")


def bench_decide(requests: int) -> dict[str, dict[str, float]]:
    """The pure decision (object → Resource → engine → decision → response) and the record build."""
    from soc2infra_operator.admission import build_response, decide, request_from_review
    from soc2infra_operator.evidence import admission_record
    from soc2infra_operator.runtime import Runtime
    from soc2infra_operator.settings import OperatorSettings

    runtime = Runtime.build(OperatorSettings())
    out: dict[str, list[float]] = {"decide+response": [], "evidence record build": []}
    for i in range(requests + 50):
        review = {"request": {"uid": str(i), "operation": "CREATE", "namespace": "shop",
                              "object": deployment(f"d{i}", "shop"), "userInfo": {"username": "u"}}}
        t0 = time.perf_counter()
        d = decide(request_from_review(review), runtime.policy)
        build_response(d)
        t1 = time.perf_counter()
        admission_record(d, runtime.pack.digest, runtime.rule_meta)
        t2 = time.perf_counter()
        if i >= 50:
            out["decide+response"].append((t1 - t0) * 1000)
            out["evidence record build"].append((t2 - t1) * 1000)
    return {k: percentiles(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300, help="timed requests per namespace and variant")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    from kubernetes import client

    results: dict[str, Any] = {"requests": args.requests, "in_process": bench_decide(args.requests)}
    with tempfile.TemporaryDirectory(prefix="soc2infra-bench-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(workdir=work / "cp", bin_dir=ensure_binaries(build=True)).start()
        try:
            with cp.api_client() as api:
                core = client.CoreV1Api(api)
                checked = "bench-checked"
                for ns in (checked, SKIPPED_NS):
                    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
                for variant, ledger in (("no evidence", None), ("sqlite evidence", work / "evidence.db")):
                    proc = start_operator(cp, work / variant.replace(" ", "-"), ledger)
                    try:
                        wait_enforcing(api, checked, proc)
                        timed = time_creates(api, checked, args.requests)
                        denied = time_creates(api, checked, max(50, args.requests // 3), privileged=True)
                    finally:
                        proc.stop()
                    entry = {k: percentiles(v) for k, v in timed.items()}
                    entry["checked (denied)"] = percentiles(denied["checked"])
                    entry["added p50"] = round(entry["checked"]["p50"] - entry["skipped"]["p50"], 2)
                    entry["added p99"] = round(entry["checked"]["p99"] - entry["skipped"]["p99"], 2)
                    results[variant] = entry
        finally:
            cp.stop()
    print(f"in-process: {json.dumps(results['in_process'])}")
    print(f"{'variant':<18} {'path':<18} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'n':>5}")
    for variant in ("no evidence", "sqlite evidence"):
        entry = results[variant]
        for path in ("skipped", "checked", "checked (denied)"):
            s = entry[path]
            print(f"{variant:<18} {path:<18} {s['p50']:>8} {s['p90']:>8} {s['p99']:>8} {s['n']:>5}")
        print(f"{variant:<18} {'added by webhook':<18} {entry['added p50']:>8} {'':>8} {entry['added p99']:>8}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
