"""evidence changes: merged changes of a real git repository without a scan record in the ledger.

The repository is built here with git (merge commits, a squash, direct pushes, a docs-only change,
one change outside the period); scan records come from real ``soc2infra scan --evidence`` runs
in that repository (SQLite and PostgreSQL ledgers).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra.cli import main
from soc2infra.evidence import Ledger
from soc2infra.evidence.change import change_context
from soc2infra.evidence.changes import changes_report, merged_changes

TF_OK = 'resource "aws_s3_bucket" "b%d" { bucket = "acme-b" }\n'


class Repo:
    """A git repository whose commits carry fixed dates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, date: str = "2026-03-01T10:00:00+00:00") -> str:
        env = dict(os.environ, GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
                   GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com",
                   GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, rel: str, text: str, message: str, date: str) -> str:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self.git("add", rel)
        self.git("commit", "-q", "-m", message, date=date)
        return self.git("rev-parse", "HEAD")


def _record(repo: Repo, ledger: Ledger, **env: str) -> None:
    """The scan record a pull request's pipeline writes: its change facts read by change_context
    from this repository and *env* (a whole scan per PR would only make the test slower)."""
    ledger.append([{"source": "ci", "actor": "ci-bot", "subject": "infra", "decision": "pass",
                    "results": [], "context": {"change": change_context({"CI": "true", **env}, repo.path)}}])


def _scan(repo: Repo, ledger_url: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """A real `soc2infra scan --evidence` of the repository's infra/ as a CI job would run it."""
    for key in ("GITHUB_ACTIONS", "GITLAB_CI", "GITHUB_SHA", "GITHUB_HEAD_REF", "GITHUB_REF_NAME",
                "GITHUB_EVENT_PATH", "CI_COMMIT_SHA"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CI", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo.path)
    code = main(["scan", "infra", "--no-config", "--format", "json", "--evidence", ledger_url])
    assert code in (0, 1)


@pytest.fixture
def history(tmp_path: Path, ledger_url: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """main: before-period, PR #1 (merge commit, scanned on its head), PR #2 (squash, scanned by PR
    number), a direct push scanned on main, a docs-only push, an unscanned push, PR #3 unscanned."""
    repo = Repo(tmp_path / "repo")
    c: dict[str, str] = {"repo": str(repo.path)}
    c["old"] = repo.commit("infra/main.tf", TF_OK % 0, "initial", "2026-01-15T09:00:00+00:00")
    # PR #1, merged with a merge commit; its pipeline scanned the head commit.
    repo.git("checkout", "-q", "-b", "feat-1")
    c["pr1_head"] = repo.commit("infra/one.tf", TF_OK % 1, "add bucket one", "2026-03-02T09:00:00+00:00")
    _record(repo, ledger)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "feat-1", "-m", "Merge pull request #1 from acme/feat-1",
             date="2026-03-02T12:00:00+00:00")
    c["pr1_merge"] = repo.git("rev-parse", "HEAD")
    # PR #2, squash-merged: its head commit never reaches main; the scan names the PR number.
    repo.git("checkout", "-q", "-b", "feat-2")
    repo.commit("infra/two.tf", TF_OK % 2, "wip", "2026-03-03T09:00:00+00:00")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 2, "head": {"sha": repo.git("rev-parse", "HEAD")},
                                                  "base": {"sha": c["pr1_merge"]}}}), encoding="utf-8")
    _record(repo, ledger, GITHUB_ACTIONS="true", GITHUB_HEAD_REF="feat-2", GITHUB_BASE_REF="main",
            GITHUB_EVENT_PATH=str(event), GITHUB_SHA="f" * 40)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--squash", "feat-2")
    repo.git("commit", "-q", "-m", "Add bucket two (#2)", date="2026-03-03T12:00:00+00:00")
    c["pr2_squash"] = repo.git("rev-parse", "HEAD")
    # A direct push, scanned by the pipeline on main after it landed.
    c["push_scanned"] = repo.commit("infra/three.tf", TF_OK % 3, "hotfix", "2026-03-04T09:00:00+00:00")
    _scan(repo, ledger_url, monkeypatch)
    # A docs-only push (not under infra/) and a push nobody scanned.
    c["docs"] = repo.commit("docs/readme.md", "hello\n", "docs", "2026-03-05T09:00:00+00:00")
    c["push_unscanned"] = repo.commit("infra/four.tf", TF_OK % 4, "sneaky change",
                                      "2026-03-06T09:00:00+00:00")
    # PR #3, merged with a merge commit, never scanned.
    repo.git("checkout", "-q", "-b", "feat-3")
    c["pr3_head"] = repo.commit("infra/five.tf", TF_OK % 5, "add bucket five", "2026-03-07T09:00:00+00:00")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "feat-3", "-m", "Merge pull request #3 from acme/feat-3",
             date="2026-03-07T12:00:00+00:00")
    c["pr3_merge"] = repo.git("rev-parse", "HEAD")
    capsys.readouterr()
    return c


def test_merged_changes_follow_the_first_parent_history(history: dict[str, str]) -> None:
    repo = Path(history["repo"])
    changes = merged_changes(repo, "main", "2026-03-01T00:00:00.000000Z", "2026-04-01T00:00:00.000000Z")
    assert [c.commit for c in changes] == [history[k] for k in ("pr1_merge", "pr2_squash", "push_scanned",
                                                                 "docs", "push_unscanned", "pr3_merge")]
    assert history["pr1_head"] not in {c.commit for c in changes}  # a merged commit, not a change
    assert [c.pr_number for c in changes] == ["1", "2", None, None, None, "3"]
    assert changes[0].merged == (history["pr1_head"],)
    only_infra = merged_changes(repo, "main", None, None, ["infra"])
    assert history["docs"] not in {c.commit for c in only_infra} and history["old"] in {c.commit for c in only_infra}


def test_changes_without_a_scan_are_listed(history: dict[str, str], ledger: Ledger) -> None:
    statuses = changes_report(ledger, Path(history["repo"]), "main", "2026-03-01", "2026-03-31", ["infra"])
    by_commit = {s.change.commit: s for s in statuses}
    assert set(by_commit) == {history[k] for k in ("pr1_merge", "pr2_squash", "push_scanned",
                                                   "push_unscanned", "pr3_merge")}
    assert by_commit[history["pr1_merge"]].linked_by == "merged head"
    assert by_commit[history["pr2_squash"]].linked_by == "pr number"
    assert by_commit[history["push_scanned"]].linked_by == "commit"
    assert [s.change.commit for s in statuses if not s.scanned] == [history["push_unscanned"],
                                                                     history["pr3_merge"]]
    # The push was scanned for real (9 findings: decision fail); the PR records passed.
    assert by_commit[history["push_scanned"]].decisions == ["fail"]
    assert by_commit[history["pr1_merge"]].decisions == ["pass"]


def test_cli_lists_unscanned_changes_and_exits_1(history: dict[str, str], ledger_url: str, ledger: Ledger,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evidence", "changes", ledger_url, "--repo", history["repo"], "--branch", "main",
            "--from", "2026-03-01", "--to", "2026-03-31", "--path", "infra"]
    assert main(args) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert [line.split()[0] for line in lines] == [history["push_unscanned"][:12], history["pr3_merge"][:12]]
    assert all("NOT SCANNED" in line for line in lines) and "#3" in lines[1]
    assert "5 merged change(s) on main, 2 without a scan record" in out.err

    assert main([*args, "--json", "--all"]) == 1
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (data["changes"], data["unscanned"], len(data["rows"])) == (5, 2, 5)
    # Before any of the unscanned changes: every change in that period was scanned, exit 0.
    assert main(["evidence", "changes", ledger_url, "--repo", history["repo"], "--branch", "main",
                 "--from", "2026-03-01", "--to", "2026-03-04"]) == 0


def test_cli_bad_repository_is_a_user_error(tmp_path: Path, ledger: Ledger, ledger_url: str,
                                            make_entry: Callable[..., dict[str, Any]],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ledger.append([make_entry(0)])
    assert main(["evidence", "changes", ledger_url, "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "git log --first-parent failed: fatal: not a git repository" in err and "ledger" not in err
