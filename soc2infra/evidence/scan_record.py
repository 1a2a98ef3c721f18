"""The evidence entry for one ``soc2infra scan``: who ran it, on what commit, with which pack,
and the whole evaluated population (passes as well as failures, so an auditor can sample)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from soc2infra._cogs.model import ScanResult
from soc2infra._core.engine.policy import PolicyPack
from soc2infra.evidence.change import change_context
from soc2infra.evidence.records import EvidenceEntry, results_from_scan

# (environment variable, what it names) for the CI systems people use most.
_ACTOR_VARS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "CIRCLE_USERNAME",
               "BITBUCKET_STEP_TRIGGERER_UUID", "USER", "USERNAME")
_COMMIT_VARS = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "CIRCLE_SHA1", "BITBUCKET_COMMIT",
                "GIT_COMMIT")
_RUN_VARS = ("GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILDKITE_BUILD_ID", "CIRCLE_WORKFLOW_ID",
             "BITBUCKET_BUILD_NUMBER", "BUILD_ID")


def scan_source(env: Mapping[str, str]) -> str:
    """``pre-commit`` inside a hook, ``ci`` in a pipeline, ``cli`` otherwise."""
    if env.get("PRE_COMMIT") == "1":
        return "pre-commit"
    return "ci" if env.get("CI", "").lower() in ("true", "1", "yes") else "cli"


def _first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((env[n] for n in names if env.get(n)), None)


def git_commit(cwd: Path) -> str | None:
    """HEAD of the repository at *cwd*, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def scan_entry(result: ScanResult, pack: PolicyPack, paths: Sequence[str], exit_code: int,
               env: Mapping[str, str] | None = None, cwd: Path | None = None) -> EvidenceEntry:
    """The ledger entry recording *result* (decision: pass, fail or error)."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    meta = {r.id: (r.severity, r.controls) for r in pack.rules}
    context: dict[str, object] = {
        "paths": list(paths),
        "commit": _first(env, _COMMIT_VARS) or git_commit(cwd),
        "ci_run": _first(env, _RUN_VARS),
        "repository": env.get("GITHUB_REPOSITORY") or env.get("CI_PROJECT_PATH"),
        "resources": len(result.resources),
        "errors": len(result.errors),
        "exit_code": exit_code,
        # Which modules (and versions) were evaluated and which were not, so an auditor sees
        # whether the population really was the whole configuration.
        "modules": [m.to_dict() for m in result.coverage.modules] or None,
        "modules_not_scanned": len(result.coverage.unscanned_modules) or None,
        "change": change_context(env, cwd),
        # Which variable named the actor: USER/USERNAME is a local login, not a CI identity.
        "actor_from": next((n for n in _ACTOR_VARS if env.get(n)), None),
    }
    return {
        "source": scan_source(env),
        "actor": _first(env, _ACTOR_VARS) or "unknown",
        "subject": " ".join(paths),
        "pack_digest": pack.digest,
        "results": results_from_scan(result, meta),
        "decision": "error" if exit_code == 2 else ("fail" if exit_code == 1 else "pass"),
        "context": {k: v for k, v in context.items() if v is not None},
    }
