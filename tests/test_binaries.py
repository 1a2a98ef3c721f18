"""soc2infra.binaries: one lookup order for kube-apiserver, etcd, helm and kubectl."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from soc2infra import binaries


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No binary variables, an empty PATH (plus bash for the recipe) and an empty cache."""
    for var in [*binaries.ENV_VARS.values(), "SOC2INFRA_BIN_DIR"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # bash, sed, sha256sum; no helm in these
    monkeypatch.setenv("SOC2INFRA_CACHE", str(tmp_path / "cache"))
    if any(os.access(f"{d}/helm", os.X_OK) for d in ("/usr/bin", "/bin")):
        pytest.skip("helm is installed system-wide")
    return tmp_path


def test_order_is_argument_env_bin_dir_path_then_cache(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert binaries.find("helm") is None
    cache_dir = binaries.cache_dir()
    assert cache_dir is not None and cache_dir.is_relative_to(clean / "cache" / "bin")
    cached = _exe(cache_dir / "helm")
    assert binaries.find("helm") == cached

    on_path = _exe(clean / "path" / "helm")
    monkeypatch.setenv("PATH", f"{on_path.parent}:/usr/bin:/bin")
    assert binaries.find("helm") == on_path
    assert binaries.find("helm", use_path=False) == cached

    in_bin_dir = _exe(clean / "bindir" / "helm")
    monkeypatch.setenv("SOC2INFRA_BIN_DIR", str(in_bin_dir.parent))
    assert binaries.find("helm") == in_bin_dir

    from_env = _exe(clean / "env" / "helm")
    monkeypatch.setenv("SOC2INFRA_HELM", str(from_env))
    assert binaries.find("helm") == from_env

    explicit = _exe(clean / "explicit" / "helm")
    assert binaries.find("helm", explicit) == explicit


def test_what_the_user_names_is_returned_even_when_missing(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A typo in SOC2INFRA_KUBECTL must surface as an error about that path, not fall through to
    # some other kubectl.
    monkeypatch.setenv("SOC2INFRA_KUBECTL", str(clean / "nope" / "kubectl"))
    assert binaries.find("kubectl") == clean / "nope" / "kubectl"
    with pytest.raises(binaries.BinaryNotFound, match="not executable"):
        binaries.require("kubectl")


def test_missing_binary_error_says_how_to_get_it(clean: Path) -> None:
    with pytest.raises(binaries.BinaryNotFound) as err:
        binaries.require("helm")
    assert "SOC2INFRA_HELM" in str(err.value) and "--helm-only" in str(err.value)
    with pytest.raises(ValueError):
        binaries.find("terraform")


def test_cli_find(clean: Path) -> None:
    cache_dir = binaries.cache_dir()
    assert cache_dir is not None
    env = {**os.environ}
    missing = subprocess.run([sys.executable, "-m", "soc2infra.binaries", "find", "etcd"], env=env,
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "etcd not found" in missing.stderr
    etcd = _exe(cache_dir / "etcd")
    found = subprocess.run([sys.executable, "-m", "soc2infra.binaries", "find", "etcd"], env=env,
                           capture_output=True, text=True, check=False)
    assert found.returncode == 0 and found.stdout.strip() == str(etcd)
    usage = subprocess.run([sys.executable, "-m", "soc2infra.binaries", "nonsense"], env=env,
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_the_recipe_ships_next_to_its_module_files() -> None:
    recipe = binaries.BUILD_SCRIPT.parent
    assert binaries.BUILD_SCRIPT.is_file()
    for name in ("go.mod", "go.sum", "kubectl.go.mod", "kubectl.go.sum"):
        assert (recipe / name).is_file(), name
    # kubectl is built from the same Kubernetes version as the apiserver.
    kubectl_mod = (recipe / "kubectl.go.mod").read_text()
    main_mod = (recipe / "go.mod").read_text()
    version = next(line.split()[1] for line in main_mod.splitlines() if line.strip().startswith("k8s.io/kubernetes "))
    assert f"k8s.io/kubernetes {version}" in kubectl_mod and "k8s.io/kubernetes/cmd/kubectl" in kubectl_mod
