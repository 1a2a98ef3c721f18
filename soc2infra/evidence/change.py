"""Change linkage for a scan record (CC8.1): which change was scanned, where, by whom.

From the CI environment (GitHub Actions, GitLab CI) and the git work tree: the pull/merge request
number, base and head commits (on a GitHub pull request ``GITHUB_SHA`` is a merge commit that was
never reviewed, so the head commit comes from the event payload), the branch, whether the work
tree had uncommitted changes (a scan of a modified tree is not a scan of HEAD), the tool version
and the CI identity (workflow, run, job, triggering actor). Absent facts are left out, never guessed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soc2infra.evidence.records import TOOL_VERSION


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_facts(cwd: Path) -> dict[str, Any]:
    """HEAD, branch and whether tracked files differ from HEAD (``dirty``), when *cwd* is in git."""
    head = _git(cwd, "rev-parse", "HEAD")
    if not head:
        return {}
    facts: dict[str, Any] = {"head_commit": head}
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        facts["branch"] = branch
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        facts["dirty"] = bool(status)
    return facts


def _github(env: Mapping[str, str]) -> dict[str, Any]:
    facts: dict[str, Any] = {"ci": "github-actions"}
    for key, var in (("repository", "GITHUB_REPOSITORY"), ("workflow", "GITHUB_WORKFLOW_REF"),
                     ("run_id", "GITHUB_RUN_ID"), ("run_attempt", "GITHUB_RUN_ATTEMPT"),
                     ("job", "GITHUB_JOB"),
                     ("actor", "GITHUB_ACTOR"), ("triggering_actor", "GITHUB_TRIGGERING_ACTOR"),
                     ("event", "GITHUB_EVENT_NAME"), ("ref", "GITHUB_REF")):
        if env.get(var):
            facts[key] = env[var]
    change: dict[str, Any] = {}
    if env.get("GITHUB_HEAD_REF"):  # set on pull_request events only
        change["branch"] = env["GITHUB_HEAD_REF"]
        change["base_branch"] = env.get("GITHUB_BASE_REF")
        change["merge_commit"] = env.get("GITHUB_SHA")
    elif env.get("GITHUB_REF_NAME"):
        change["branch"] = env["GITHUB_REF_NAME"]
        change["head_commit"] = env.get("GITHUB_SHA")
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path:
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            event = {}
        pr = event.get("pull_request") if isinstance(event, dict) else None
        if isinstance(pr, dict):
            change["pr_number"] = pr.get("number")
            change["head_commit"] = (pr.get("head") or {}).get("sha")
            change["base_commit"] = (pr.get("base") or {}).get("sha")
    return {"ci_identity": facts, **{k: v for k, v in change.items() if v is not None}}


def _gitlab(env: Mapping[str, str]) -> dict[str, Any]:
    facts: dict[str, Any] = {"ci": "gitlab-ci"}
    for key, var in (("server", "CI_SERVER_URL"), ("repository", "CI_PROJECT_PATH"),
                     ("pipeline_id", "CI_PIPELINE_ID"), ("job_id", "CI_JOB_ID"),
                     ("actor", "GITLAB_USER_LOGIN"),
                     ("event", "CI_PIPELINE_SOURCE")):
        if env.get(var):
            facts[key] = env[var]
    change: dict[str, Any] = {
        "pr_number": env.get("CI_MERGE_REQUEST_IID"),
        "branch": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
        "base_branch": env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
        "base_commit": env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA"),
        # In a merged-results pipeline CI_COMMIT_SHA is the merge commit; the source sha is the head.
        "head_commit": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or env.get("CI_COMMIT_SHA"),
    }
    return {"ci_identity": facts, **{k: v for k, v in change.items() if v}}


def change_context(env: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    """The ``change`` facts of a scan record (see the module docstring)."""
    out: dict[str, Any] = {"tool_version": TOOL_VERSION}
    local = git_facts(cwd)
    out.update(local)
    if env.get("GITHUB_ACTIONS") == "true":
        ci = _github(env)
    elif env.get("GITLAB_CI") == "true":
        ci = _gitlab(env)
    else:
        ci = {}
    # CI facts win over the checkout's (a detached checkout has no branch; a PR's HEAD is a merge).
    out.update(ci)
    if "dirty" in local:
        out["dirty"] = local["dirty"]
    return out
