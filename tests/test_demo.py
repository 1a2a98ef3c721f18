"""README command 1 (`bash scripts/demo.sh`) works from a fresh clone with an empty HOME.

The clone is of the committed tree (what a new user gets). HOME is a new directory holding only the
helm binary copied into the build cache where the recipe expects it (what `tools/build-binaries.sh
--helm-only` would build, minutes cold), and helm is absent from PATH: the demo must find it through
soc2infra.binaries, not through the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


def _path_without(name: str) -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not os.access(os.path.join(d, name), os.X_OK))


def _clean_env(home: Path) -> dict[str, str]:
    # The machine's own settings (proxy, CA bundle, pip's find-links) stay; nothing of ours does.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOC2INFRA_", "VIRTUAL_ENV", "PYTHONPATH", "PIP_CACHE_DIR", "KUBECONFIG"))}
    real_pip_cache = Path.home() / ".cache" / "pip"
    env.update(HOME=str(home), PATH=_path_without("helm"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    if real_pip_cache.is_dir():  # only speeds up the install; the packages are the same
        env["PIP_CACHE_DIR"] = str(real_pip_cache)
    return env


def test_demo_from_a_fresh_clone_with_an_empty_home(tmp_path: Path,
                                                    require_binary: Callable[[str], str]) -> None:
    helm = require_binary("helm")
    if shutil.which("git") is None:
        pytest.fail("git is needed to clone the repository")
    clone, home = tmp_path / "clone", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    env = _clean_env(home)

    # Where the clone's recipe caches helm under this HOME (exit 3: not built yet).
    check = subprocess.run(["bash", "tools/build-binaries.sh", "--check"], cwd=clone, env=env,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 3, check.stderr
    key_dir = Path(check.stdout.strip().splitlines()[-1])
    assert key_dir.is_relative_to(home / ".cache" / "soc2infra" / "bin")
    key_dir.mkdir(parents=True)
    shutil.copy2(helm, key_dir / "helm")

    done = subprocess.run(["bash", "scripts/demo.sh"], cwd=clone, env=env, capture_output=True,
                          text=True, check=False, timeout=540)
    out = done.stdout
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert str(key_dir / "helm") in out  # found in the build cache, not on PATH
    # Findings from the example chart, rendered by helm, are in the report.
    assert "examples/kubernetes/chart/templates/deployment.yaml" in out
    assert "helm is needed" not in out
    summary = out[out.index("== Summary"):]
    assert "0 errors" in summary
    assert "Findings by SOC 2 criterion" in summary and "CC6.1" in summary
    assert "Exit code 1" in summary and "Try next" in summary
