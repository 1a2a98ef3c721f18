"""Change linkage of scan records (CC8.1): real git for the work tree, CI environments as dicts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from soc2infra.evidence.change import change_context
from soc2infra.evidence.records import TOOL_VERSION


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "feature/x")
    _git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "one")
    (tmp_path / "main.tf").write_text("# v1\n", encoding="utf-8")
    _git(tmp_path, "add", "main.tf")
    _git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "two")
    return tmp_path


def test_local_scan_records_head_branch_and_dirty_tree(repo: Path) -> None:
    clean = change_context({}, repo)
    head = _git(repo, "rev-parse", "HEAD")
    assert clean == {"tool_version": TOOL_VERSION, "head_commit": head, "branch": "feature/x", "dirty": False}
    (repo / "main.tf").write_text("# v2, not committed\n", encoding="utf-8")
    assert change_context({}, repo)["dirty"] is True  # not "the clean HEAD"


def test_github_pull_request_records_the_head_not_the_merge_commit(repo: Path, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 17, "head": {"sha": "h" * 40},
                                                  "base": {"sha": "b" * 40}}}), encoding="utf-8")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "m" * 40, "GITHUB_HEAD_REF": "feature/x",
           "GITHUB_BASE_REF": "main", "GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "pull_request",
           "GITHUB_REPOSITORY": "acme/infra", "GITHUB_RUN_ID": "99", "GITHUB_ACTOR": "octocat",
           "GITHUB_WORKFLOW_REF": "acme/infra/.github/workflows/ci.yml@refs/pull/17/merge"}
    ctx = change_context(env, repo)
    assert (ctx["pr_number"], ctx["head_commit"], ctx["base_commit"]) == (17, "h" * 40, "b" * 40)
    assert (ctx["merge_commit"], ctx["branch"], ctx["base_branch"]) == ("m" * 40, "feature/x", "main")
    assert ctx["ci_identity"]["ci"] == "github-actions" and ctx["ci_identity"]["run_id"] == "99"
    assert ctx["ci_identity"]["workflow"].endswith("ci.yml@refs/pull/17/merge")
    assert ctx["dirty"] is False and ctx["tool_version"] == TOOL_VERSION


def test_gitlab_merge_request(repo: Path) -> None:
    env = {"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "5", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "fix",
           "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_DIFF_BASE_SHA": "b" * 40,
           "CI_COMMIT_SHA": "c" * 40, "CI_PIPELINE_ID": "7", "GITLAB_USER_LOGIN": "dev"}
    ctx = change_context(env, repo)
    assert (ctx["pr_number"], ctx["branch"], ctx["base_commit"], ctx["head_commit"]) == ("5", "fix", "b" * 40,
                                                                                        "c" * 40)
    assert ctx["ci_identity"] == {"ci": "gitlab-ci", "pipeline_id": "7", "actor": "dev"}


def test_outside_git_only_the_version(tmp_path: Path) -> None:
    assert change_context({}, tmp_path) == {"tool_version": TOOL_VERSION}
