"""Benchmark ``soc2infra scan`` on a generated tree: cold, warm and one-file-changed.

Each scan is a separate ``soc2infra scan TREE --format json > OUT`` process, so start-up,
discovery, parsing, evaluation and rendering the JSON report are all counted, as a CI job
would see them. (The text report is not measured here: rendering ~19,000 findings with rich
is a separate cost, see README.md.)

- cold: an empty parse cache (``SOC2INFRA_CACHE`` pointed at a fresh temporary directory);
- warm: the same tree again with the cache the cold run filled;
- one-file-changed: one service file edited (a value changed), the rest from the cache.

Peak memory is reported two ways: the largest single process (``ru_maxrss`` from ``wait4``,
which covers the scan and its parser workers) and the whole process tree (RSS of the scan
and all its workers summed, sampled every 20 ms from /proc).

    python bench/bench_scan.py [--tree DIR] [--files 2000] [--resources 20000] [--runs 3] [--jobs N]
                               [--format json|text|sarif|junit|markdown]

The tree is generated with bench/gen_tree.py when DIR does not exist. Prints a Markdown table
(medians over --runs) for bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_tree import generate  # noqa: E402 - bench/ is a folder of scripts, not a package


@dataclass
class Run:
    """One measured scan process."""

    wall: float
    exit_code: int
    max_rss_kb: int  # largest single process
    tree_rss_kb: int  # scan + workers, summed, sampled
    resources: int | None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_kb(p)
        todo.extend(_children(p))
    return total


def scan_once(cmd: list[str], env: dict[str, str], out_json: Path) -> Run:
    """Run one scan process and measure it."""
    # stderr goes to a file, not a pipe: a chatty scan must not block on a full pipe.
    with tempfile.TemporaryFile() as err_file:
        start = time.perf_counter()
        with out_json.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err_file)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss_kb(proc.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        stderr = err_file.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"scan failed with exit code {proc.returncode}:\n{stderr[-3000:]}")
    resources = None
    with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
        resources = json.loads(out_json.read_text())["summary"]["resources"]
    return Run(wall, proc.returncode, usage.ru_maxrss, peak, resources)


def _touch_one_file(tree: Path) -> tuple[Path, str]:
    """Change a value in one service file (a real content change, not only mtime)."""
    target = sorted(tree.glob("stacks/*/service_00.tf"))[len(list(tree.glob("stacks/*"))) // 2]
    original = target.read_text(encoding="utf-8")
    target.write_text(original.replace("# ", "# edited: ", 1) + '\nresource "aws_kms_key" "bench_edit" {\n'
                      '  enable_key_rotation = false\n}\n', encoding="utf-8")
    return target, original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=HERE / "out" / "tree")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--resources", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--format", default="json", help="report format to render (json: resources are counted)")
    beside = Path(sys.executable).parent / "soc2infra"  # the one installed with this interpreter
    parser.add_argument("--soc2infra", default=str(beside) if beside.exists() else shutil.which("soc2infra"),
                        help="the soc2infra executable to measure")
    args = parser.parse_args()

    if not args.tree.exists():
        print("generating:", json.dumps(generate(args.tree, args.files, args.resources)), file=sys.stderr)
    tf_files = sum(1 for _ in args.tree.rglob("*.tf"))
    size_mb = sum(p.stat().st_size for p in args.tree.rglob("*.tf")) / 1e6

    work = Path(tempfile.mkdtemp(prefix="soc2infra-bench-"))
    out_json = work / "result.json"
    cmd = [args.soc2infra, "scan", str(args.tree), "--format", args.format, "--no-color"]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    results: dict[str, list[Run]] = {"cold": [], "warm": [], "one file changed": []}
    try:
        for i in range(args.runs):
            env = dict(os.environ, SOC2INFRA_CACHE=str(work / f"cache-{i}"))
            env.pop("SOC2INFRA_NO_CACHE", None)
            results["cold"].append(scan_once(cmd, env, out_json))
            results["warm"].append(scan_once(cmd, env, out_json))
            target, original = _touch_one_file(args.tree)
            try:
                results["one file changed"].append(scan_once(cmd, env, out_json))
            finally:
                target.write_text(original, encoding="utf-8")
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1].wall:.2f} s" for k, v in results.items()),
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    resources = next((r.resources for runs in results.values() for r in runs if r.resources), None)
    print(f"tree: {args.tree} — {tf_files} .tf files, {size_mb:.1f} MB, "
          f"{resources if resources is not None else '?'} resources; "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, median of {args.runs} runs\n")
    print("| scan | wall (s) | files/s | resources/s | peak RSS, largest process (MB) | "
          "peak RSS, process tree (MB) |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        wall = statistics.median(r.wall for r in runs)
        rps = f"{resources / wall:,.0f}" if resources else "?"
        print(f"| {name} | {wall:.2f} | {tf_files / wall:,.0f} | {rps} | "
              f"{statistics.median(r.max_rss_kb for r in runs) / 1024:.0f} | "
              f"{statistics.median(r.tree_rss_kb for r in runs) / 1024:.0f} |")


if __name__ == "__main__":
    main()
