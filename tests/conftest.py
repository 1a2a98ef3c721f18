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
