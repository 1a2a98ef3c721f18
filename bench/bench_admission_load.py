"""AdmissionReviews posted straight to one operator process at concurrency 1, 16 and 64 (and a soak).

Starts a real control plane (etcd + kube-apiserver from the lab binaries, which the operator
needs for its CRDs and waivers) and the operator as a subprocess, then posts AdmissionReview
bodies over HTTPS to its webhook from client threads, each with its own keep-alive connection:
half compliant Deployments, half privileged ones (denied). Reports per concurrency: requests,
errors, throughput (reviews/s) and p50/p95/p99 latency in ms, and the operator's RSS before and
after. ``--soak SECONDS`` adds one long run at concurrency 16 (the README's figure is 600 s).
``--ledger`` records every decision in a SQLite ledger, as in production.

    python bench/bench_admission_load.py [--seconds 20] [--soak 600] [--ledger] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench_admission import deployment, start_operator  # noqa: E402 - the bench folder is not a package

from soc2infra.lab import ControlPlane, ensure_binaries  # noqa: E402


def review(i: int) -> bytes:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"load-{i}", "operation": "CREATE", "namespace": "load",
        "object": deployment(f"d{i}", "load", privileged=bool(i % 2)), "userInfo": {"username": "bench"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"}}}
    return json.dumps(body).encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(port: int, cafile: Path, clients: int, seconds: float, pid: int = 0) -> dict[str, Any]:
    """*clients* threads posting for *seconds*; latencies in ms; with *pid*, that process's CPU
    time per review (what one review costs the operator, whatever the client costs)."""
    bodies = [review(i) for i in range(200)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        ctx = ssl.create_default_context(cafile=str(cafile))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        i = n
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/validate-deployment", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and b'"allowed"' in data
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            if ok:
                latencies[n].append((time.perf_counter() - t0) * 1000)
            else:
                errors[n] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    cpu0 = cpu_seconds(pid) if pid else 0.0
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    own1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu_seconds(pid) - cpu0 if pid else 0.0
    client_cpu = own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime
    samples = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else [0.0] * 99
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(samples), "errors": sum(errors),
            "throughput_per_s": round(len(samples) / elapsed, 1), "p50_ms": round(q[49], 2),
            "p95_ms": round(q[94], 2), "p99_ms": round(q[98], 2),
            "operator_cpu_ms_per_review": round(cpu * 1000 / max(1, len(samples)), 3),
            "client_cpu_ms_per_review": round(client_cpu * 1000 / max(1, len(samples)), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    p.add_argument("--concurrency", type=int, action="append", help="levels (default 1, 16, 64)")
    p.add_argument("--soak", type=float, default=0.0, help="then one run this long at concurrency 16")
    p.add_argument("--ledger", action="store_true", help="record every decision in a SQLite ledger")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    levels = args.concurrency or [1, 16, 64]
    out: dict[str, Any] = {"levels": [], "ledger": args.ledger}
    with tempfile.TemporaryDirectory(prefix="soc2infra-load-") as tmp:
        work = Path(tmp)
        with ControlPlane(workdir=work / "cp", bin_dir=ensure_binaries(build=False)) as cp:
            proc = start_operator(cp, work / "op", work / "evidence.db" if args.ledger else None)
            try:
                port = int(proc.argv[proc.argv.index("--webhook-port") + 1])
                cafile = Path(proc.argv[proc.argv.index("--ca-file") + 1])
                pid = proc.proc.pid if proc.proc else 0
                run_load(port, cafile, 4, 3)  # warm-up
                out["rss_mb_start"] = round(rss_mb(pid), 1)
                for clients in levels:
                    row = run_load(port, cafile, clients, args.seconds, pid)
                    out["levels"].append(row)
                    print(json.dumps(row), flush=True)
                if args.soak:
                    out["soak"] = run_load(port, cafile, 16, args.soak)
                    print("soak", json.dumps(out["soak"]), flush=True)
                out["rss_mb_end"] = round(rss_mb(pid), 1)
                out["operator_alive"] = proc.alive()
            finally:
                proc.stop()
    print(f"operator RSS {out['rss_mb_start']} MB -> {out['rss_mb_end']} MB")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
