"""Shared fixtures: an isolated parse cache and a helper to write Terraform trees."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from soc2infra import binaries

#: Under CI a test that needs a binary or a server fails instead of skipping.
STRICT = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
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
    message = f"{name} not found (set {binaries.ENV_VARS[name]}, put it on PATH or run tools/build-binaries.sh)"
    if STRICT:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


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
    monkeypatch.setenv("SOC2INFRA_CACHE", str(tmp_path_factory.mktemp("cache")))


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
