"""Shared fixtures (an isolated parse cache, a helper to write Terraform trees, binaries) and the
CI contract: under ``CI=true`` no test may skip (see :func:`must_not_skip`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soc2infra import binaries

# The binary build cache is found through SOC2INFRA_CACHE, which _isolated_cache below points at a
# temp dir for each test: resolve binaries against the environment the session started with.
_SESSION_ENV = dict(os.environ)


def _require_binary(name: str) -> str:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_SESSION_ENV)
    try:
        found = binaries.find(name)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if found is not None and os.access(found, os.X_OK):
        return str(found)
    # A failure, not a skip, under CI=true (pytest_runtest_makereport below).
    pytest.skip(f"{name} not found (set {binaries.ENV_VARS[name]}, put it on PATH or run tools/build-binaries.sh)")


@pytest.fixture(scope="session")
def session_env() -> dict[str, str]:
    """The environment the test session started with (before per-test isolation such as the temp
    SOC2INFRA_CACHE), for subprocesses that must find the real binary cache."""
    return dict(_SESSION_ENV)


@pytest.fixture(scope="session")
def require_binary() -> Callable[[str], str]:
    """``require_binary("helm")``: the path of kube-apiserver, etcd, helm or kubectl as
    :mod:`soc2infra.binaries` resolves it; fails under CI (never a silent skip), skips otherwise."""
    return _require_binary


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not read or pollute the user's parse cache.
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SOC2INFRA_CACHE", str(cache))
    monkeypatch.setenv("SOC2INFRA_CACHE_KEY", str(cache / "key" / "cache.key"))


@pytest.fixture
def write_tree(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write {relative path: text} under a temp dir and return the dir."""

    def write(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return tmp_path

    return write


# --------------------------------------------------------------------------- the CI contract
# ONE place decides whether a skip is allowed. Under CI=true (set by .ci/run) every skip — a
# fixture's pytest.skip, a skipif mark, an importorskip — becomes a failure: a test that needs a
# binary, a server or a package must run there. Elsewhere a missing tool skips with its reason.
# SOC2INFRA_E2E_REQUIRE=1 turns the same strictness on locally.

def must_not_skip() -> bool:
    """True when no test may skip (``CI=true``/``1``/``yes``, or ``SOC2INFRA_E2E_REQUIRE`` set)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"} or bool(
        os.environ.get("SOC2INFRA_E2E_REQUIRE")
    )


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which forbids skips: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn a test's skip into a failure when :func:`must_not_skip` says so."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and must_not_skip():
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """The same for a whole module skipped at import (``importorskip`` at module level)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and must_not_skip():
        _as_failure(report)


# --------------------------------------------------------------------------- a real MinIO
# The S3 anchor (soc2infra/evidence/anchor_s3.py) is tested against a real MinIO server with
# Object Lock, built from the Go module proxy by tools/build-minio.sh (cached outside the repo).

class MinioServer:
    """A MinIO server on loopback: its endpoint and root credentials (throwaway, per session)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        self.endpoint, self.access_key, self.secret_key = endpoint, access_key, secret_key

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point boto3 (and the CLI) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def client(self) -> object:
        """A boto3 client with the root credentials."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))


def _minio_binary() -> str:
    import subprocess

    explicit = _SESSION_ENV.get("SOC2INFRA_MINIO")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    script = Path(__file__).resolve().parents[1] / "tools" / "build-minio.sh"
    out = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True, env=_SESSION_ENV,
                         timeout=30, check=False)
    path = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode == 0 and path and os.access(path, os.X_OK):
        return path
    pytest.skip("minio not built (run tools/build-minio.sh, or set SOC2INFRA_MINIO)")


@pytest.fixture(scope="session")
def minio() -> Iterator[MinioServer]:
    """A real MinIO server for this session, in a temp dir, stopped and removed at the end."""
    import secrets
    import shutil
    import socket
    import subprocess
    import tempfile
    import time
    import urllib.request

    binary = _minio_binary()
    workdir = Path(tempfile.mkdtemp(prefix="soc2infra-minio-"))
    user, password = "soc2infra-test", secrets.token_hex(16)

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    port, console = free_port(), free_port()
    env = dict(_SESSION_ENV, MINIO_ROOT_USER=user, MINIO_ROOT_PASSWORD=password, MINIO_BROWSER="off",
               MINIO_UPDATE="off", HOME=str(workdir))
    log = (workdir / "minio.log").open("wb")
    proc = subprocess.Popen([binary, "server", str(workdir / "data"), "--quiet", "--address", f"127.0.0.1:{port}",
                             "--console-address", f"127.0.0.1:{console}"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                text = (workdir / "minio.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"minio did not start (exit {proc.poll()}): {text}")
            time.sleep(0.2)
        yield MinioServer(endpoint, user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
