"""Added latency per create: no policy vs the exported ValidatingAdmissionPolicies vs the webhook.

One local control plane (etcd + kube-apiserver from the lab binaries) holds, at the same time:

- every policy ``soc2infra export vap`` writes (38 with the built-in pack), bound to namespace
  ``bench-vap`` only (the bindings' namespaceSelector excludes the other two);
- the operator's webhook (``enforcement: webhook``, no evidence, no audit), which excludes every
  namespace but ``bench-webhook``;
- namespace ``bench-none``, which neither checks: the API server's own cost of a create.

Server-side dry-run creates of a compliant Deployment (every rule passes, so all three paths do
the full work and are admitted) are sent round-robin to the three namespaces, so the variants are
interleaved in one run and see the same machine state; at concurrency 1 and 16 (threads, one
keep-alive connection each).

    python bench/bench_vap.py [--requests 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_admission import deployment, percentiles

from soc2infra._core.pack import load_pack
from soc2infra.export.vap import ExportScope, export_objects, plan_pack
from soc2infra.lab import ControlPlane, ensure_binaries, free_port, write_webhook_pki
from soc2infra.lab.rest import RestClient
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls

NAMESPACES = {"none": "bench-none", "vap": "bench-vap", "webhook": "bench-webhook"}
SYSTEM = ("kube-system", "kube-public", "kube-node-lease")
ADMISSION = "/apis/admissionregistration.k8s.io/v1"


def install_policies(client: RestClient) -> int:
    """Every exported policy, bound to bench-vap only."""
    excluded = (*SYSTEM, NAMESPACES["none"], NAMESPACES["webhook"])
    objects = export_objects(plan_pack(load_pack()), scope=ExportScope(excluded_namespaces=excluded))
    for obj in objects:
        plural = "validatingadmissionpolicies" if obj["kind"] == "ValidatingAdmissionPolicy" \
            else "validatingadmissionpolicybindings"
        reply = client.request("POST", f"{ADMISSION}/{plural}", obj)
        if reply.status != 201:
            raise SystemExit(f"{obj['metadata']['name']}: {reply.message}")
    return len(objects) // 2


def start_operator(cp: ControlPlane, workdir: Path) -> OperatorProcess:
    pki = write_webhook_pki(workdir / "webhook")
    port = free_port()
    extra = ["--no-audit"]
    for ns in (*SYSTEM, NAMESPACES["none"], NAMESPACES["vap"]):
        extra += ["--exclude-namespace", ns]
    argv = operator_argv(cp.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, None, extra=extra)
    proc = OperatorProcess(argv, workdir / "operator.log").start()
    proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=60, what="serving")
    return proc


def wait_enforcing(client: RestClient) -> None:
    """Both paths reject a privileged Deployment in their namespace (the webhook registered, the
    policies loaded), and bench-none admits it."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        got = {k: client.create(deployment(f"probe-{uuid.uuid4().hex[:6]}", ns, privileged=True),
                                dry_run=True).status for k, ns in NAMESPACES.items()}
        if got["vap"] == 403 and got["webhook"] == 403 and got["none"] == 201:
            return
        time.sleep(0.5)
    raise SystemExit(f"policies or webhook never enforced: {got}")


def run(client: RestClient, concurrency: int, requests: int) -> dict[str, list[float]]:
    """*requests* timed creates per variant, round-robin over the variants in every worker."""
    order = list(NAMESPACES.items())
    per_worker = max(1, requests // concurrency)

    def worker(w: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {k: [] for k in NAMESPACES}
        for i in range(per_worker + 10):
            shift = (i + w) % len(order)
            for variant, ns in order[shift:] + order[:shift]:
                body = deployment(f"b-{uuid.uuid4().hex[:10]}", ns)
                t0 = time.perf_counter()
                reply = client.create(body, dry_run=True)
                elapsed = (time.perf_counter() - t0) * 1000
                if reply.status != 201:
                    raise SystemExit(f"{variant}: unexpected {reply.status} {reply.message[:200]}")
                if i >= 10:  # warm-up: connections, API server caches
                    out[variant].append(elapsed)
        return out

    merged: dict[str, list[float]] = {k: [] for k in NAMESPACES}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for part in pool.map(worker, range(concurrency)):
            for k, v in part.items():
                merged[k] += v
    merged["_seconds"] = [time.perf_counter() - t0]
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300, help="timed requests per variant and concurrency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"requests": args.requests}
    with tempfile.TemporaryDirectory(prefix="soc2infra-bench-vap-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(workdir=work / "cp", bin_dir=ensure_binaries(build=True)).start()
        try:
            client = RestClient(cp.server, cp.ssl_context())
            for ns in NAMESPACES.values():
                client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": ns}})
            results["policies"] = install_policies(client)
            proc = start_operator(cp, work / "operator")
            try:
                wait_enforcing(client)
                for c in args.concurrency:
                    timed = run(client, c, args.requests)
                    seconds = timed.pop("_seconds")[0]
                    entry: dict[str, Any] = {k: percentiles(v) for k, v in timed.items()}
                    for k in ("vap", "webhook"):
                        entry[f"added p50 {k}"] = round(entry[k]["p50"] - entry["none"]["p50"], 2)
                        entry[f"added p99 {k}"] = round(entry[k]["p99"] - entry["none"]["p99"], 2)
                    entry["creates/s (all variants)"] = round(sum(len(v) for v in timed.values()) / seconds, 1)
                    results[f"concurrency {c}"] = entry
            finally:
                proc.stop()
        finally:
            cp.stop()
    print(f"{results['policies']} policies; {args.requests} timed dry-run creates per variant and concurrency")
    print(f"{'concurrency':>11} {'path':<34} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'added p50':>10} "
          f"{'added p99':>10}")
    labels = {"none": "no policy", "vap": "ValidatingAdmissionPolicies", "webhook": "webhook"}
    for c in args.concurrency:
        entry = results[f"concurrency {c}"]
        for k, label in labels.items():
            s = entry[k]
            added = ("", "") if k == "none" else (entry[f"added p50 {k}"], entry[f"added p99 {k}"])
            print(f"{c:>11} {label:<34} {s['p50']:>8} {s['p90']:>8} {s['p99']:>8} {added[0]:>10} {added[1]:>10}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
