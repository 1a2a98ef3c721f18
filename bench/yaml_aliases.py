"""Worst-case scan time of a crafted YAML file under the default alias limits.

An attacker who cannot pass the limits still chooses the largest document they allow. For each
shape below the script finds (by bisection on its size parameter) the largest document that
:func:`soc2infra._cogs.limits.check_yaml_node` accepts under the defaults, and the smallest one it
refuses, then times the whole ``soc2infra scan FILE --format json`` command on both (a fresh
process each, interpreter start-up included, no parse cache) and the scan alone in-process.

Shapes:
- ``fanout``: a ConfigMap whose anchors nest k-wide (the classic "billion laughs", bounded);
- ``env``: one container with a long ``env`` list, the container aliased many times;
- ``list``: a ``List`` whose items are one aliased Deployment (each alias becomes a resource);
- ``pods``: a ``List`` of one minimal aliased Pod (the most resources per alias node).

    .venv/bin/python bench/yaml_aliases.py [--runs 3]

Prints a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from soc2infra._cogs import limits


def fanout(k: int) -> str:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: m}", "data:"]
    lines += [f"  p{i}: v{i}" for i in range(100)]  # written nodes, so the ratio rule lets more through
    lines.append("  a0: &a0 [1, 2, 3, 4]")
    for i in range(1, 4):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * k) + "]")
    return "\n".join(lines) + "\n"


def env(copies: int) -> str:
    entries = ", ".join(f"{{name: E{i}, value: v{i}}}" for i in range(40))
    lines = ["apiVersion: apps/v1", "kind: Deployment", "metadata: {name: d, namespace: n}", "spec:",
             "  template:", "    spec:", "      containers:", "      - &c0", "        name: c",
             "        image: nginx", f"        env: [{entries}]", "        securityContext: {privileged: true}"]
    lines += ["      - *c0"] * copies
    return "\n".join(lines) + "\n"


def deployments(copies: int) -> str:
    item = ("{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: n}, spec: {template: "
            "{spec: {hostNetwork: true, containers: [{name: c, image: nginx, securityContext: "
            "{privileged: true}}]}}}}")
    return f"apiVersion: v1\nkind: List\nx: &d {item}\nitems: [" + ", ".join(["*d"] * copies) + "]\n"


def pods(copies: int) -> str:
    item = "{apiVersion: v1, kind: Pod, metadata: {name: a}}"
    return f"apiVersion: v1\nkind: List\nx: &d {item}\nitems: [" + ", ".join(["*d"] * copies) + "]\n"


SHAPES: dict[str, Callable[[int], str]] = {"fanout": fanout, "env": env, "list": deployments, "pods": pods}


def accepted(text: str) -> bool:
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            limits.check_yaml_node(node)
    except limits.LimitExceeded:
        return False
    return True


def largest_accepted(make: Callable[[int], str]) -> int:
    lo, hi = 1, 2
    while accepted(make(hi)):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if accepted(make(mid)) else (lo, mid)
    return lo


def scan_in_process(text: str, runs: int) -> float:
    """Median seconds of :func:`soc2infra._core.scan.scan` on *text* alone (pack already loaded)."""
    from soc2infra._core.pack import load_pack
    from soc2infra._core.scan import ScanOptions, scan

    pack = load_pack()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "crafted.yaml").write_text(text, encoding="utf-8")
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            scan([tmp], pack, ScanOptions(base_dir=Path(tmp), jobs=1))
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_scan(text: str, runs: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crafted.yaml"
        path.write_text(text, encoding="utf-8")
        env_vars = {**os.environ, "SOC2INFRA_NO_CACHE": "1"}
        times, code = [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "soc2infra.cli", "scan", str(path), "--no-config",
                                   "--format", "json"], capture_output=True, env=env_vars, check=False)
            times.append(time.perf_counter() - t0)
            code = proc.returncode
        return statistics.median(times), code, len(text.encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    baseline, _, _ = time_scan("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n", args.runs)
    print(f"defaults: yaml_alias_nodes={limits.DEFAULTS.yaml_alias_nodes:,}, yaml_nodes="
          f"{limits.DEFAULTS.yaml_nodes:,}, yaml_aliases={limits.DEFAULTS.yaml_aliases:,}; "
          f"a one-object manifest takes {baseline:.2f} s (interpreter start-up and pack load)\n")
    print("| shape | largest accepted | bytes | command s (exit) | in-process s | smallest refused | "
          "command s (exit) | in-process s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, make in SHAPES.items():
        n = largest_accepted(make)
        ok_s, ok_code, ok_bytes = time_scan(make(n), args.runs)
        bad_s, bad_code, _ = time_scan(make(n + 1), args.runs)
        ok_in, bad_in = scan_in_process(make(n), args.runs), scan_in_process(make(n + 1), args.runs)
        print(f"| {name} | {n:,} | {ok_bytes:,} | {ok_s:.2f} ({ok_code}) | {ok_in:.3f} | {n + 1:,} | "
              f"{bad_s:.2f} ({bad_code}) | {bad_in:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
