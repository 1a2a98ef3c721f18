"""Benchmark the evidence ledger on SQLite and PostgreSQL: throughput and append latency.

Modes, each on a fresh, empty ledger with durable settings (SQLite WAL + synchronous=FULL,
PostgreSQL synchronous_commit=on with the server's default fsync):

- sequential: one writer, one record per transaction (``Ledger.append([entry])``), as a CLI
  run or an un-batched admission handler would do;
- group-commit: 16 threads calling ``GroupCommitter.append_sync`` concurrently, as admission
  requests do (each call returns only once its record is committed);
- bulk: one writer appending 100 records per transaction (a CI scan's records).

Latency is per append call (p50/p99). The entry is a realistic admission record with five rule
results (about 1.3 KB canonical JSON).

    python bench/bench_ledger.py [--records 2000] [--threads 16] [--backends sqlite,postgres]
                                 [--dsn postgresql://…] [--max-wait-ms 2] [--json]

Without --dsn a throwaway PostgreSQL is started with tools/postgres.sh and removed afterwards.
Prints a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from soc2infra.evidence import GroupCommitter, open_ledger, verify_ledger

ROOT = Path(__file__).resolve().parents[1]


def entry(i: int) -> dict[str, Any]:
    """An admission record with five results."""
    address = f"apps/v1/Deployment/payments/api-{i}"
    return {
        "source": "admission", "actor": "system:serviceaccount:ci:deployer", "subject": address,
        "pack_digest": "sha256:" + "ab" * 32, "decision": "allow",
        "results": [{"rule_id": f"SOC2-K8S-POD-00{k}", "status": "pass", "severity": "high",
                     "controls": ["CC6.1", "CC6.8"], "address": address} for k in range(1, 6)],
        "context": {"namespace": "payments", "operation": "CREATE", "dry_run": False,
                    "uid": str(uuid.UUID(int=i)), "kind": "Deployment"},
    }


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of *values*, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summarise(name: str, backend: str, records: int, wall: float, lat: list[float],
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One result row."""
    return {"backend": backend, "mode": name, "records": records, "seconds": round(wall, 3),
            "records_per_s": round(records / wall, 1), "p50_ms": round(pct(lat, 0.50) * 1000, 3),
            "p99_ms": round(pct(lat, 0.99) * 1000, 3), "mean_ms": round(statistics.fmean(lat) * 1000, 3),
            **(extra or {})}


def bench_sequential(url: str, backend: str, n: int) -> dict[str, Any]:
    """One writer, one record per transaction."""
    with open_ledger(url) as led:
        lat = []
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            led.append([entry(i)])
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        assert verify_ledger(led).ok
    return summarise("sequential (1 record/tx)", backend, n, wall, lat)


def bench_group(url: str, backend: str, n: int, threads: int, max_wait_ms: float) -> dict[str, Any]:
    """*threads* concurrent callers through a GroupCommitter."""
    with open_ledger(url) as led:
        gc = GroupCommitter(led, max_batch=256, max_wait_ms=max_wait_ms)
        per = n // threads
        lats: list[list[float]] = [[] for _ in range(threads)]
        barrier = threading.Barrier(threads + 1)

        def client(t: int) -> None:
            barrier.wait()
            for i in range(per):
                t0 = time.perf_counter()
                gc.append_sync(entry(t * per + i))
                lats[t].append(time.perf_counter() - t0)

        workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        gc.close()
        stats = gc.stats
        assert verify_ledger(led).ok and led.count() == per * threads
    lat = [x for xs in lats for x in xs]
    return summarise(f"group commit ({threads} threads, max_wait {max_wait_ms:g} ms)", backend, per * threads,
                     wall, lat, {"transactions": stats.transactions,
                                 "mean_batch": round(stats.records / max(stats.transactions, 1), 1),
                                 "largest_batch": stats.largest_batch})


def bench_bulk(url: str, backend: str, n: int, batch: int = 100) -> dict[str, Any]:
    """One writer, *batch* records per transaction."""
    with open_ledger(url) as led:
        lat = []
        start = time.perf_counter()
        for i in range(0, n, batch):
            t0 = time.perf_counter()
            led.append([entry(j) for j in range(i, min(n, i + batch))])
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        assert verify_ledger(led).ok
    return summarise(f"bulk ({batch} records/tx)", backend, n, wall, lat)


def bench_verify(url: str, backend: str) -> dict[str, Any]:
    """Verify the whole ledger left by the previous modes."""
    with open_ledger(url) as led:
        count = led.count()
        start = time.perf_counter()
        result = verify_ledger(led)
        wall = time.perf_counter() - start
    assert result.ok
    return {"backend": backend, "mode": "verify", "records": count, "seconds": round(wall, 3),
            "records_per_s": round(count / wall, 1)}


@contextmanager
def postgres(dsn: str | None) -> Iterator[str]:
    """A DSN: the given one, or a throwaway server from tools/postgres.sh."""
    if dsn:
        yield dsn
        return
    workdir = tempfile.mkdtemp(prefix="soc2infra-pg-bench-")
    env = dict(os.environ, SOC2INFRA_PG_DIR=workdir)
    proc = subprocess.run(["bash", str(ROOT / "tools" / "postgres.sh"), "start"], env=env, capture_output=True,
                          text=True, check=True)
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(ROOT / "tools" / "postgres.sh"), "purge"], env=env, capture_output=True,
                       check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def fresh_urls(backend: str, dsn: str | None, tmp: Path) -> Callable[[], str]:
    """A factory of empty ledger URLs (a new file, or a new schema)."""
    def make() -> str:
        name = "b_" + uuid.uuid4().hex[:10]
        if backend == "sqlite":
            return str(tmp / f"{name}.db")
        import psycopg

        assert dsn is not None
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{dsn}?options=-csearch_path%3D{name}"

    return make


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--dsn", default=None, help="PostgreSQL DSN (default: a throwaway server)")
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=None, help="directory for the SQLite files (default: temp)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rows: list[dict[str, Any]] = []
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="soc2infra-ledger-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    for backend in args.backends.split(","):
        if backend == "postgres":
            ctx = postgres(args.dsn)
        else:
            ctx = contextmanager(lambda: iter([""]))()
        with ctx as dsn:
            fresh = fresh_urls(backend, dsn or None, tmp)
            url = fresh()
            rows.append(bench_sequential(url, backend, args.records))
            rows.append(bench_group(fresh(), backend, args.records, args.threads, args.max_wait_ms))
            rows.append(bench_group(fresh(), backend, args.records, args.threads, 0))
            rows.append(bench_bulk(url, backend, args.records * 5))
            rows.append(bench_verify(url, backend))
    if args.dir is None:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; temp dir {tmp.parent}; load average after the run "
          f"{load}\n")
    print("| backend | mode | records | records/s | p50 ms | p99 ms | transactions | mean batch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lat = (f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f}") if "p50_ms" in r else "— | —"
        print(f"| {r['backend']} | {r['mode']} | {r['records']} | {r['records_per_s']:,.0f} | {lat} | "
              f"{r.get('transactions', '—')} | {r.get('mean_batch', '—')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
