"""The built wheel, installed the way operator/Dockerfile installs it (the hash-pinned lock with
--require-hashes, then the wheel with --no-deps --no-index) into a fresh virtual environment outside
the checkout: `soc2infra lab up`/`lab down` work from it (the binaries' build recipe ships in the
wheel), and the image's exact entrypoint command, `soc2infra-operator run`, enforces the pack
against the lab's real apiserver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)

BAD_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "nginx:latest", securityContext: {privileged: true}}
"""


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory, session_env: dict[str, str]) -> Path:
    """A fresh venv holding the wheel and the locked dependencies; returns its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in session_env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(ROOT)],
                 env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (work / "dist").glob("soc2infra-*.whl")
    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], timeout=120).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    locked = _run([*pip, "--require-hashes", "--no-deps", "-r", str(ROOT / "operator" / "requirements.lock")],
                  env=env, timeout=480)
    assert locked.returncode == 0, locked.stderr[-3000:]
    own = _run([*pip, "--no-deps", "--no-index", str(wheel)], env=env, timeout=120)
    assert own.returncode == 0, own.stderr
    return venv / "bin"


def _env(session_env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in session_env.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "KUBECONFIG", "SOC2INFRA_BIN_DIR", "SOC2INFRA_HELM",
                        "SOC2INFRA_KUBECTL", "SOC2INFRA_ETCD", "SOC2INFRA_KUBE_APISERVER")}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])  # kubectl of the apiserver's minor
    return env


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wheel_ships_the_operator_and_the_build_recipe(wheel_venv: Path, tmp_path: Path) -> None:
    help_ = _run([str(wheel_venv / "soc2infra-operator"), "--help"], cwd=tmp_path, timeout=60)
    assert help_.returncode == 0 and "run" in help_.stdout
    where = _run([str(wheel_venv / "python"), "-c",
                  "import soc2infra, soc2infra_operator, soc2infra.binaries as b;"
                  "print(soc2infra.__file__); print(soc2infra_operator.__file__); print(b.BUILD_SCRIPT)"],
                 cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    venv_root = wheel_venv.parent
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv_root), f"{line} is not from the wheel"
    recipe = Path(where.stdout.split()[-1]).parent
    assert {"go.mod", "go.sum", "kubectl.go.mod", "kubectl.go.sum", "build-binaries.sh"} <= \
        {p.name for p in recipe.iterdir()}


def test_lab_up_and_the_image_entrypoint_from_the_wheel(wheel_venv: Path, bin_dir: Path, tmp_path: Path,
                                                        session_env: dict[str, str]) -> None:
    env = _env(session_env, bin_dir)
    script = next(wheel_venv.parent.glob("lib/python*/site-packages/soc2infra/k8sbin/build-binaries.sh"))
    check = _run(["bash", str(script), "--check"], env=env, timeout=60)
    if check.returncode != 0 or Path(check.stdout.split()[-1]) != bin_dir:
        # The session's binaries are not in the default cache (a custom SOC2INFRA_BIN_DIR): use them.
        env["SOC2INFRA_BIN_DIR"] = str(bin_dir)
    workdir = tmp_path / "lab"
    soc2infra = str(wheel_venv / "soc2infra")
    up = _run([soc2infra, "lab", "up", "--workdir", str(workdir), "--no-operator", "--json"], cwd=tmp_path,
              env=env, timeout=300)
    operator: subprocess.Popen[bytes] | None = None
    log = (tmp_path / "operator.log").open("wb")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        info = json.loads(up.stdout)
        port = _free_port()
        # The image's ENTRYPOINT + CMD (soc2infra-operator run) with the options the chart configures.
        operator = subprocess.Popen(
            [str(wheel_venv / "soc2infra-operator"), "run", "--kubeconfig", info["kubeconfig"],
             "--webhook-addr", "127.0.0.1", "--webhook-host", "127.0.0.1", "--webhook-port", str(port),
             "--cert-file", info["webhook"]["certfile"], "--key-file", info["webhook"]["pkeyfile"],
             "--ca-file", info["webhook"]["cafile"], "--install-crds", "--no-audit",
             "--ledger", str(tmp_path / "evidence.db")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "operator did not listen"
            time.sleep(0.3)
        kubectl = [str(bin_dir / "kubectl"), "--kubeconfig", info["kubeconfig"]]
        denied = None
        for _ in range(60):  # until the operator has registered its webhook configuration
            denied = _run([*kubectl, "apply", "--dry-run=server", "-f", "-"], input=BAD_DEPLOYMENT, env=env,
                          timeout=60)
            if denied.returncode != 0 and "SOC2-K8S-POD-001" in denied.stderr:
                break
            time.sleep(1)
        assert denied is not None and denied.returncode != 0, denied and denied.stdout
        assert "SOC2-K8S-POD-001" in denied.stderr and "CC6.8" in denied.stderr
        verify = _run([soc2infra, "evidence", "verify", str(tmp_path / "evidence.db")], env=env, timeout=60)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
        log.close()
        down = _run([soc2infra, "lab", "down", "--workdir", str(workdir)], cwd=tmp_path, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    status = _run([soc2infra, "lab", "status", "--workdir", str(workdir)], env=env, timeout=60)
    assert status.returncode == 1 and "not running" in status.stdout
