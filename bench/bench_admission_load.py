"""Admission under load: one operator process at concurrency 1, 16 and 64, posted directly and
through the real kube-apiserver with and without the webhook, and a soak.

Starts a real control plane (etcd + kube-apiserver from the lab binaries) and the operator as a
subprocess with a SQLite ledger (every decision recorded durably before it is answered, as in
production; ``--no-ledger`` turns evidence off). Client threads each keep one HTTPS connection:

- ``direct``: AdmissionReviews posted straight to the operator's webhook (half compliant
  Deployments, half privileged ones, which are denied);
- ``--apiserver``: server-side dry-run creates of the same Deployments through the API server, in a
  namespace the webhook checks ("with webhook") and in one its namespaceSelector skips ("without
  webhook": the same API server work minus the webhook call);
- ``--soak SECONDS``: one long direct run at concurrency 16, the operator's RSS sampled every
  second (the README's figure is 600 s: first and last minute are reported).

Per run: requests, errors, throughput (requests/s), p50/p95/p99 latency in ms, and the CPU time
the operator process spent per request (what one review costs it, whatever the client costs).

    python bench/bench_admission_load.py [--seconds 20] [--apiserver] [--soak 600] [--json out.json]
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench_admission import SKIPPED_NS, deployment, start_operator, wait_enforcing  # noqa: E402 - not a package

from soc2infra.lab import ControlPlane, ensure_binaries  # noqa: E402

CHECKED_NS = "bench-checked"


def review(i: int) -> bytes:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"load-{i}", "operation": "CREATE", "namespace": "load",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
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


@dataclass(frozen=True)
class Target:
    """Where requests go: an HTTPS endpoint, the request for the i-th call, and what counts as answered."""

    port: int
    context: ssl.SSLContext
    request: Callable[[int], tuple[str, bytes]]  # i -> (path, body)
    answered: Callable[[int, bytes], bool]  # (status, body) -> a proper answer


def direct_target(port: int, cafile: Path) -> Target:
    bodies = [review(i) for i in range(200)]
    return Target(port, ssl.create_default_context(cafile=str(cafile)),
                  lambda i: ("/validate-deployment", bodies[i % len(bodies)]),
                  lambda status, data: status == 200 and b'"allowed"' in data)


def apiserver_target(cp: ControlPlane, namespace: str) -> Target:
    """Dry-run creates through the API server; allowed (201) or denied by our webhook (403)."""
    bodies = [json.dumps(deployment(f"d{i}", namespace, privileged=bool(i % 2))).encode() for i in range(200)]
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments?dryRun=All"
    return Target(cp.apiserver_port, cp.ssl_context(), lambda i: (path, bodies[i % len(bodies)]),
                  lambda status, data: status == 201 or (status == 403 and b"SOC2-K8S-POD-001" in data))


def run_load(target: Target, clients: int, seconds: float, pid: int = 0,
             on_tick: Callable[[], None] | None = None, others: dict[str, int] | None = None) -> dict[str, Any]:
    """*clients* threads posting for *seconds*; latencies in ms; with *pid*, that process's CPU
    time per request, and with *others* (name → pid: the API server, etcd) theirs. *on_tick*
    runs about once a second meanwhile (RSS sampling)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def connect() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", target.port, context=target.context, timeout=30)

    def worker(n: int) -> None:
        conn = connect()
        i = n
        while time.monotonic() < stop:
            path, body = target.request(i)
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                ok = target.answered(resp.status, resp.read())
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = connect()
            if ok:
                latencies[n].append((time.perf_counter() - t0) * 1000)
            else:
                errors[n] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    cpu0 = cpu_seconds(pid) if pid else 0.0
    others0 = {name: cpu_seconds(p) for name, p in (others or {}).items()}
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while on_tick is not None and any(t.is_alive() for t in threads):
        on_tick()
        time.sleep(1.0)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    own1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu_seconds(pid) - cpu0 if pid else 0.0
    others_cpu = {name: cpu_seconds(p) - others0[name] for name, p in (others or {}).items()}
    samples = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else [0.0] * 99
    n = max(1, len(samples))
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(samples), "errors": sum(errors),
            "throughput_per_s": round(len(samples) / elapsed, 1), "p50_ms": round(q[49], 2),
            "p95_ms": round(q[94], 2), "p99_ms": round(q[98], 2),
            "operator_cpu_ms_per_request": round(cpu * 1000 / n, 3),
            "client_cpu_ms_per_request": round((own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime)
                                               * 1000 / n, 3),
            **{f"{name}_cpu_ms_per_request": round(c * 1000 / n, 3) for name, c in others_cpu.items()}}


def soak(target: Target, pid: int, seconds: float) -> dict[str, Any]:
    """One long run at concurrency 16 with the operator's RSS sampled every second: the mean and
    max of the first and the last minute (of the first and last tenth when shorter than 10 min)."""
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    row = run_load(target, 16, seconds, pid, on_tick=lambda: samples.append((time.monotonic() - t0, rss_mb(pid))))
    window = 60.0 if seconds >= 600 else seconds / 10
    first = [mb for t, mb in samples if t <= window] or [samples[0][1]]
    last = [mb for t, mb in samples if t >= samples[-1][0] - window] or [samples[-1][1]]
    row.update({"rss_window_s": round(window, 1),
                "rss_first_mb": {"mean": round(statistics.fmean(first), 1), "max": round(max(first), 1)},
                "rss_last_mb": {"mean": round(statistics.fmean(last), 1), "max": round(max(last), 1)},
                "rss_samples": len(samples)})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="per run")
    p.add_argument("--concurrency", type=int, action="append", help="levels (default 1, 16, 64)")
    p.add_argument("--apiserver", action="store_true", help="also through the API server, with and without the webhook")
    p.add_argument("--no-direct", action="store_true", help="skip the direct runs")
    p.add_argument("--soak", type=float, default=0.0, help="then one direct run this long at concurrency 16")
    p.add_argument("--no-ledger", action="store_true", help="evidence off (default: a SQLite ledger)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    levels = args.concurrency or [1, 16, 64]
    out: dict[str, Any] = {"ledger": not args.no_ledger, "direct": [], "apiserver": []}
    with tempfile.TemporaryDirectory(prefix="soc2infra-load-") as tmp:
        work = Path(tmp)
        with ControlPlane(workdir=work / "cp", bin_dir=ensure_binaries(build=False)) as cp:
            proc = start_operator(cp, work / "op", None if args.no_ledger else work / "evidence.db")
            try:
                port = int(proc.argv[proc.argv.index("--webhook-port") + 1])
                pid = proc.pid
                direct = direct_target(port, Path(proc.argv[proc.argv.index("--ca-file") + 1]))
                run_load(direct, 4, 3)  # warm-up
                out["rss_mb_start"] = round(rss_mb(pid), 1)
                for clients in levels if not args.no_direct else []:
                    row = run_load(direct, clients, args.seconds, pid)
                    out["direct"].append(row)
                    print("direct", json.dumps(row), flush=True)
                if args.apiserver:
                    with cp.api_client() as api:
                        from kubernetes import client

                        for ns in (CHECKED_NS, SKIPPED_NS):
                            client.CoreV1Api(api).create_namespace(
                                client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
                        wait_enforcing(api, CHECKED_NS, proc)
                    with_hook, without = apiserver_target(cp, CHECKED_NS), apiserver_target(cp, SKIPPED_NS)
                    run_load(with_hook, 4, 3)
                    # Where the CPU goes: on shared cores a closed loop's latency follows it.
                    parts = {r.name: r.pid for r in cp.processes}
                    for clients in levels:
                        # Alternated, so a load change on a shared machine hits both sides alike.
                        plain = run_load(without, clients, args.seconds / 2, pid, others=parts)
                        hooked = run_load(with_hook, clients, args.seconds / 2, pid, others=parts)
                        plain2 = run_load(without, clients, args.seconds / 2, pid, others=parts)
                        hooked2 = run_load(with_hook, clients, args.seconds / 2, pid, others=parts)
                        for name, a, b in (("without webhook", plain, plain2), ("with webhook", hooked, hooked2)):
                            row = {"path": name, "clients": clients, "runs": [a, b]}
                            out["apiserver"].append(row)
                            print("apiserver", name, json.dumps(a), json.dumps(b), flush=True)
                if args.soak:
                    out["soak"] = soak(direct, pid, args.soak)
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
