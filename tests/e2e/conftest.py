"""End-to-end fixtures: a real etcd + kube-apiserver on loopback, shared by the whole session.

Binaries come from ``tools/build-binaries.sh`` (cached outside the repo) or ``$SOC2INFRA_BIN_DIR``.
They are ensured once, right after collection and only if a selected test uses the control plane,
so the one-off ~6 minute cold build is not charged to any single test's timeout and a unit-only
run never triggers it. A missing binary or failed build skips the e2e tests with the reason; under
``CI=true`` (or ``SOC2INFRA_E2E_REQUIRE=1``) tests/conftest.py turns that skip into a failure.

Every test in this directory is marked ``e2e`` automatically (deselect with ``-m "not e2e"``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from soc2infra import binaries
from soc2infra.lab import BinariesMissing, ControlPlane, ensure_binaries

_HERE = Path(__file__).resolve().parent
_BIN_DIR_KEY = pytest.StashKey[Path]()
_BIN_ERROR_KEY = pytest.StashKey[str]()

# Fixtures that need the binaries; tests using any of them trigger the ensure/build step.
_NEEDS_BINARIES = {"control_plane", "kubectl", "bin_dir"}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``e2e`` marker."""
    config.addinivalue_line(
        "markers", "e2e: needs a real control plane (etcd + kube-apiserver built by tools/build-binaries.sh)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e as ``e2e`` (tryfirst: before ``-m`` deselection runs)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Ensure (build if needed) the binaries once, outside any test's timeout, if they are needed."""
    if session.config.option.collectonly:
        return
    if not any(_NEEDS_BINARIES & set(getattr(item, "fixturenames", ())) for item in session.items):
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    reporter = session.config.pluginmanager.getplugin("terminalreporter")
    t0 = time.monotonic()
    # Let the build's progress reach the terminal: a cold build takes minutes.
    ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    with ctx:
        try:
            bin_dir = ensure_binaries(build=True)
        except BinariesMissing as err:
            session.config.stash[_BIN_ERROR_KEY] = str(err)
            return
    session.config.stash[_BIN_DIR_KEY] = bin_dir
    if reporter is not None:
        reporter.write_line(f"e2e: control-plane binaries in {bin_dir} ({time.monotonic() - t0:.1f}s)")


@pytest.fixture(scope="session")
def bin_dir(pytestconfig: pytest.Config) -> Path:
    """Directory holding kube-apiserver, etcd and helm."""
    found = pytestconfig.stash.get(_BIN_DIR_KEY, None)
    if found is not None:
        return found
    error = pytestconfig.stash.get(_BIN_ERROR_KEY, None)
    if error is None:  # hook did not run (e.g. fixture requested dynamically): ensure now
        try:
            found = ensure_binaries(build=True)
        except BinariesMissing as err:
            error = str(err)
        else:
            pytestconfig.stash[_BIN_DIR_KEY] = found
            return found
    pytest.skip(f"control-plane binaries unavailable: {error}")


@pytest.fixture(scope="session")
def control_plane(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver for the whole session.

    Offers ``.kubeconfig``, ``.server``, ``.ca_file``, ``.api_client()`` (kubernetes python client),
    ``.request(path)`` (raw GET as admin) and ``.logs_dir``. Tests share it: use unique names.
    """
    # Under pytest's tmp dir so logs survive for a post-mortem of a failed run.
    workdir = tmp_path_factory.mktemp("control-plane")
    cp = ControlPlane(workdir=workdir, bin_dir=bin_dir)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


def _kubectl_path() -> str:
    found = binaries.find("kubectl")  # SOC2INFRA_KUBECTL, PATH, then the build cache
    return str(found) if found is not None else "kubectl"


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run kubectl against the session control plane.

    ``kubectl("get", "ns", "default", "-o", "json")`` returns the CompletedProcess (text mode);
    ``check=True`` (default) raises on a non-zero exit with stderr in the message; ``input=`` is
    passed to stdin (e.g. a manifest for ``apply -f -``); ``kubeconfig=`` targets another cluster.
    """
    exe = _kubectl_path()
    if not os.access(exe, os.X_OK):
        pytest.skip(f"kubectl not found at {exe}")

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60,
            kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        config = kubeconfig or control_plane.kubeconfig
        argv: Sequence[str] = [exe, f"--kubeconfig={config}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run


# --------------------------------------------------------------------------- PostgreSQL

_ROOT = _HERE.parents[1]


class PostgresCluster:
    """A throwaway PostgreSQL cluster of its own (tools/postgres.sh in *workdir*) that a test may
    stop and start again on the same port (fault tests); ``dsn`` stays valid across restarts."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if k != "SOC2INFRA_PG_PORT"}
        self.env["SOC2INFRA_PG_DIR"] = str(workdir)
        self.dsn = ""

    def _script(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(_ROOT / "tools" / "postgres.sh"), command], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> str:
        """Start (the first time: create) the cluster; returns its DSN. Skips when it cannot start
        (a failure under CI=true, tests/conftest.py)."""
        started = self._script("start")
        lines = started.stdout.strip().splitlines()
        if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql://"):
            pytest.skip(f"tools/postgres.sh start failed ({started.returncode}): {started.stderr[-2000:]}")
        self.dsn = lines[-1]
        self.env["SOC2INFRA_PG_PORT"] = self.dsn.rsplit(":", 1)[1].split("/", 1)[0]  # same port again
        return self.dsn

    def stop(self) -> None:
        """Stop the server (fast shutdown: open transactions are rolled back, clients cut off)."""
        self._script("stop", timeout=120)

    def purge(self) -> None:
        """Stop it and delete its directory."""
        self._script("purge", timeout=120)


@contextlib.contextmanager
def postgres_cluster(prefix: str = "soc2infra-pg-") -> Iterator[PostgresCluster]:
    """A :class:`PostgresCluster` in a fresh directory, purged afterwards."""
    import shutil
    import tempfile

    try:
        import psycopg  # noqa: F401 - the ledger's driver; a skip here fails under CI=true
    except ImportError:
        pytest.skip("psycopg not installed")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = PostgresCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.purge()
        shutil.rmtree(workdir, ignore_errors=True)
