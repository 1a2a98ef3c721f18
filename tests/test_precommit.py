"""The real pre-commit tool, installed in a temporary git repository, runs the hook exactly
as this repository defines it in `.pre-commit-hooks.yaml` (`repo:` pointing at a git copy of
the current working tree, `language: python`): a commit adding a non-compliant resource is
refused, and the same commit passes once the resource is fixed.

The hook environment is built by pre-commit from PyPI the first time (about a minute) and
kept in a cache outside the repository, keyed by the copy's commit; the copy is committed
with fixed dates, so an unchanged tree reuses the environment on the next run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
POLICY = Path(__file__).parent / "data" / "policies" / "storage.yaml"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "soc2infra-tests" / "pre-commit"
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"

# A machine without git or pre-commit skips these; under CI=true the skip is a failure (conftest).
pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
    pytest.mark.skipif(not PRE_COMMIT.exists() and shutil.which("pre-commit") is None,
                       reason="needs pre-commit"),
    pytest.mark.timeout(900),
]

FIXED_DATE = "2026-01-01T00:00:00+00:00"


def _git_env(tmp_path: Path) -> dict[str, str]:
    empty_config = tmp_path / "gitconfig"
    empty_config.write_text("")
    return dict(
        os.environ,
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com", GIT_AUTHOR_DATE=FIXED_DATE,
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com", GIT_COMMITTER_DATE=FIXED_DATE,
        GIT_CONFIG_GLOBAL=str(empty_config), GIT_CONFIG_NOSYSTEM="1",  # no user hooksPath, templates …
        PRE_COMMIT_HOME=str(CACHE / "store"), PRE_COMMIT_COLOR="never",
        PATH=f"{PRE_COMMIT.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )


def _run(args: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=840)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cache_lock() -> Iterator[None]:
    # Several test runs may share the cache (other checkouts, parallel CI jobs): one at a time.
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _snapshot_this_repo(dest: Path, env: dict[str, str]) -> str:
    """Copy the working tree (tracked and new files, as they are now) into a fresh git
    repository at *dest* and commit it; returns the commit id."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file() or rel.startswith(("tests/", "bench/")):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    _run(["git", "init", "-q", "-b", "main"], dest, env)
    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-q", "-m", "snapshot"], dest, env)
    return _run(["git", "rev-parse", "HEAD"], dest, env).stdout.strip()


NON_COMPLIANT = 'resource "aws_s3_bucket" "reports" {\n  logging = true\n}\n'
FIXED = 'resource "aws_s3_bucket" "reports" {\n  logging   = true\n  encrypted = true\n}\n'


def test_hook_refuses_a_non_compliant_commit_and_accepts_the_fix(tmp_path, cache_lock):
    env = _git_env(tmp_path)
    hook_repo = CACHE / "hook-repo"  # a stable path: pre-commit keys its environments on (repo, rev)
    rev = _snapshot_this_repo(hook_repo, env)

    project = CACHE / "project"  # stable too, so `pre-commit gc` keeps only this rev's environment
    if project.exists():
        shutil.rmtree(project)
    project.mkdir()
    _run(["git", "init", "-q", "-b", "main"], project, env)
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n      - id: soc2infra\n")
    (project / ".soc2infra").mkdir()
    shutil.copy(POLICY, project / ".soc2infra" / "storage.yaml")
    # The project's own configuration, found by the hook walking up from the repository root.
    (project / ".soc2infra.yaml").write_text("policy_dirs: [.soc2infra]\nbuiltin_policies: false\n")
    _run(["pre-commit", "install"], project, env)
    _run(["git", "add", "-A"], project, env)
    _run(["git", "commit", "-q", "-m", "tooling"], project, env)  # builds the hook environment

    (project / "infra").mkdir()
    (project / "infra" / "main.tf").write_text(NON_COMPLIANT)
    _run(["git", "add", "infra/main.tf"], project, env)
    refused = _run(["git", "commit", "-m", "add reports bucket"], project, env, check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "soc2infra" in output and "Failed" in output
    assert "TEST-STORE-001" in output and "aws_s3_bucket.reports" in output
    assert _run(["git", "rev-list", "--count", "HEAD"], project, env).stdout.strip() == "1"

    (project / "infra" / "main.tf").write_text(FIXED)
    _run(["git", "add", "infra/main.tf"], project, env)
    accepted = _run(["git", "commit", "-m", "add reports bucket"], project, env, check=False)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "Passed" in accepted.stdout + accepted.stderr
    assert _run(["git", "rev-list", "--count", "HEAD"], project, env).stdout.strip() == "2"

    # Drop environments of older snapshots (this project's config still names the current one).
    _run(["pre-commit", "gc"], project, env, check=False)
