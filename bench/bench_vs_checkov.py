"""Head to head with checkov 3.3.30 at several tree sizes: cold scan, warm unchanged re-scan,
peak memory. Not a test: run it by hand and copy the table into the README.

    python bench/bench_vs_checkov.py --checkov /path/to/checkov-venv/bin/checkov [--scales 1,4,16,64] [--runs 3]

Each scale builds a terragoat-like tree with ``bench/gen_tree.py`` (47 ``.tf`` files and about
400 resources per unit of scale: ``40×`` is 1,880 files). For every run, checkov, a cold
soc2infra scan (empty parse and result caches) and a warm soc2infra re-scan of the unchanged
tree are run one after another as whole processes, so a busy machine slows all three alike and
the ratios hold. Wall time is a median of the runs; peak memory is ``ru_maxrss`` from ``wait4``
(the largest process, parser workers included). Prints a Markdown table and writes
``bench/out/vs_checkov.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES_PER_SCALE = 47
RESOURCES_PER_SCALE = 400


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit code of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def build_tree(scale: int, out: Path) -> Path:
    tree = out / f"tree-{scale}x"
    if not (tree / ".complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run([sys.executable, str(HERE / "gen_tree.py"), str(tree), "--files",
                        str(FILES_PER_SCALE * scale), "--resources", str(RESOURCES_PER_SCALE * scale)],
                       check=True, stdout=subprocess.DEVNULL)
        (tree / ".complete").write_text("")
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkov", required=True, help="the checkov executable (3.3.30, its own venv)")
    parser.add_argument("--soc2infra", default=str(Path(sys.executable).with_name("soc2infra")))
    parser.add_argument("--scales", default="1,4,16,64")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        tree = build_tree(scale, args.out)
        samples: dict[str, list[tuple[float, float]]] = {"checkov": [], "cold": [], "warm": []}
        for _ in range(args.runs):
            env = dict(os.environ)
            samples["checkov"].append(run([args.checkov, "-d", str(tree), "--framework", "terraform", "--quiet",
                                           "--compact", "-o", "json", "--skip-download"], env)[:2])
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "SOC2INFRA_CACHE": cache}
                argv = [args.soc2infra, "scan", str(tree), "--format", "json", "--no-config"]
                samples["cold"].append(run(argv, env)[:2])
                samples["warm"].append(run(argv, env)[:2])
        med = {k: (statistics.median(w for w, _ in v), max(m for _, m in v)) for k, v in samples.items()}
        row = {"scale": scale, "files": FILES_PER_SCALE * scale,
               "checkov_s": round(med["checkov"][0], 2), "cold_s": round(med["cold"][0], 3),
               "warm_s": round(med["warm"][0], 3), "checkov_mb": round(med["checkov"][1]),
               "soc2infra_mb": round(max(med["cold"][1], med["warm"][1]))}
        row["cold_x"] = round(row["checkov_s"] / row["cold_s"], 1)
        row["warm_x"] = round(row["checkov_s"] / row["warm_s"], 1)
        row["memory_ratio"] = round(row["checkov_mb"] / max(row["soc2infra_mb"], 1), 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vs_checkov.json").write_text(json.dumps(rows, indent=2))
    print("| scale | .tf files | checkov (s) | soc2infra cold (s) | warm (s) | cold × | warm × "
          "| checkov MB | soc2infra MB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']}× | {r['files']} | {r['checkov_s']} | {r['cold_s']} | {r['warm_s']} | "
              f"{r['cold_x']} | {r['warm_x']} | {r['checkov_mb']} | {r['soc2infra_mb']} | {r['memory_ratio']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
