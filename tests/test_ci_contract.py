"""The CI contract: .ci/run sets CI=true, and under it no test may skip (one hook decides)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIPPING = '''
import pytest

def test_needs_a_tool():
    pytest.skip("tool missing")

@pytest.mark.skipif(True, reason="marked")
def test_marked():
    pass

def test_runs():
    pass
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(SKIPPING, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "SOC2INFRA_E2E_REQUIRE"}}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False)


def test_skips_fail_under_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    # A skip in the call is a failure; one in setup (a skipif mark, a fixture) is an error.
    assert "1 failed, 1 passed, 1 error" in result.stdout
    assert "skipped under CI=true" in result.stdout and "tool missing" in result.stdout


def test_skips_stay_skips_elsewhere(tmp_path: Path) -> None:
    result = _run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout


def test_ci_run_sets_ci_true() -> None:
    assert re.search(r"^export CI=true\b", (ROOT / ".ci" / "run").read_text(), re.M)


def test_one_place_reads_ci_and_nothing_imports_or_skips() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name in {"conftest.py", "test_ci_contract.py"} and path.parent == ROOT / "tests":
            continue
        text = path.read_text(encoding="utf-8")
        if "importorskip(" in text or re.search(r"environ(?:\.get\(|\[)\s*[\"']CI[\"']", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
