"""A short soak in CI: the benchmark's soak command (bench/bench_admission_load.py), 20 seconds at
concurrency 16 against one operator with a SQLite ledger and a real control plane. Every review is
answered and the operator's memory stays flat. The 10-minute soak is the same command with
``--soak 600`` (bench/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)

# RSS of the last tenth of the run over the mean of the first tenth: allocator arenas and caches
# settle within seconds; a leak of 2 KB or more per review (5,000 or more reviews here) would exceed it.
MAX_RSS_GROWTH_MB = 12.0


def test_a_short_soak_answers_every_review_and_memory_stays_flat(bin_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = {**os.environ, "SOC2INFRA_BIN_DIR": str(bin_dir)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_admission_load.py"), "--no-direct",
                           "--soak", "20", "--json", str(out)], capture_output=True, text=True, timeout=170,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    soak = result["soak"]
    assert result["operator_alive"] and result["ledger"]
    assert soak["errors"] == 0 and soak["requests"] >= 1000, soak
    growth = soak["rss_last_mb"]["max"] - soak["rss_first_mb"]["mean"]
    assert growth < MAX_RSS_GROWTH_MB, soak
