"""Merged changes without a scan record (CC8.1): did every change that reached a branch pass the gate?

A *merged change* is a commit on the branch's first-parent history in the period (optionally only
those touching given paths): a merge commit (a pull request merged with a merge commit), or a
commit pushed or squash-merged onto the branch. It counts as scanned when a scan record of the
ledger (``source`` ci, cli or pre-commit; its ``context.change``, see :mod:`.change`) names

- the change's own commit (``head_commit``, ``merge_commit`` or ``commit``) — a scan of the branch
  after the merge; or
- for a merge commit, a commit it merged (its second parent and further parents): the pull
  request's head commit, scanned in the pull request's pipeline; or
- the pull request number that a squash or merge commit's subject names (GitHub writes
  ``Merge pull request #N`` and ``Title (#N)``; GitLab ``See merge request group/project!N``):
  the head commit of a squashed pull request no longer exists on the branch.

Nothing else is guessed: a change that matches none of these is listed as unscanned, with the
facts an auditor needs to follow it up (commit, date, author, subject).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soc2infra.evidence.ledger import Ledger, time_bounds
from soc2infra.evidence.records import SCAN_SOURCES, EvidenceError

_PR_PATTERNS = (re.compile(r"^Merge pull request #(\d+)\b"), re.compile(r"\(#(\d+)\)\s*$"),
                re.compile(r"See merge request [\w./-]*!(\d+)", re.M))


@dataclass(frozen=True, slots=True)
class Change:
    """One commit on the branch's first-parent history."""

    commit: str
    parents: tuple[str, ...]
    time: str  # committer date, ISO 8601 with offset: when the change reached the branch
    author: str
    subject: str
    pr_number: str | None = None  # from the commit message, when it names one

    @property
    def merged(self) -> tuple[str, ...]:
        """The commits a merge commit brought in (empty for a plain or squashed commit)."""
        return self.parents[1:]


@dataclass(slots=True)
class ChangeStatus:
    """A change and the scan records that cover it."""

    change: Change
    scans: list[int] = field(default_factory=list)  # seqs of matching scan records
    linked_by: str | None = None  # how the first match was made
    decisions: list[str] = field(default_factory=list)

    @property
    def scanned(self) -> bool:
        """At least one scan record covers the change."""
        return bool(self.scans)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        c = self.change
        return {"commit": c.commit, "time": c.time, "author": c.author, "subject": c.subject,
                "merge": len(c.parents) > 1, "pr_number": c.pr_number, "scanned": self.scanned,
                "linked_by": self.linked_by, "scan_seqs": self.scans, "scan_decisions": self.decisions}


def _pr_number(message: str) -> str | None:
    for pattern in _PR_PATTERNS:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120,
                             check=False)
    except OSError as exc:
        raise EvidenceError(f"git could not run: {exc}") from exc
    if out.returncode != 0:
        raise EvidenceError(f"{repo}: git {' '.join(args[:2])} failed: {out.stderr.strip()}")
    return out.stdout


def merged_changes(repo: Path, branch: str, start: str | None = None, end: str | None = None,
                   paths: Sequence[str] = ()) -> list[Change]:
    """First-parent commits of *branch* in ``[start, end)`` (ISO times), oldest first."""
    args = ["log", "--first-parent", "--format=%H%x1f%P%x1f%cI%x1f%an <%ae>%x1f%B%x1e"]
    if start:
        args.append(f"--since={time_key(start)}")
    if end:
        args.append(f"--until={time_key(end)}")
    args += [branch, "--", *paths] if paths else [branch, "--"]
    changes = []
    for chunk in _git(repo, *args).split("\x1e"):
        fields = chunk.strip("\n").split("\x1f")
        if len(fields) != 5:
            continue
        commit, parents, time, author, message = fields
        # --since/--until compare commit dates loosely (whole seconds, local parsing): re-check.
        if (start and time_key(time) < time_key(start)) or (end and time_key(time) >= time_key(end)):
            continue
        changes.append(Change(commit, tuple(parents.split()), time, author,
                              message.strip().splitlines()[0] if message.strip() else "",
                              _pr_number(message)))
    changes.reverse()
    return changes


def time_key(stamp: str) -> str:
    """An ISO time as a UTC string that sorts (``Z`` form)."""
    from datetime import UTC, datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scan_index(records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, list[tuple[int, str]]],
                                                               dict[str, list[tuple[int, str]]]]:
    """commit → [(seq, decision)] and PR number → [(seq, decision)] over the scan records."""
    by_commit: dict[str, list[tuple[int, str]]] = {}
    by_pr: dict[str, list[tuple[int, str]]] = {}
    for record in records:
        if record.get("source") not in SCAN_SOURCES:
            continue
        context = record.get("context") if isinstance(record.get("context"), Mapping) else {}
        assert isinstance(context, Mapping)
        change = context.get("change") if isinstance(context.get("change"), Mapping) else {}
        assert isinstance(change, Mapping)
        hit = (int(record["seq"]), str(record.get("decision", "")))
        commits = {change.get("head_commit"), change.get("merge_commit"), context.get("commit")}
        for commit in commits:
            if isinstance(commit, str) and commit:
                by_commit.setdefault(commit, []).append(hit)
        if change.get("pr_number") not in (None, ""):
            by_pr.setdefault(str(change["pr_number"]), []).append(hit)
    return by_commit, by_pr


def _lookup(index: Mapping[str, list[tuple[int, str]]], commit: str) -> list[tuple[int, str]]:
    """Exact match, or an abbreviated commit id (at least 7 characters) recorded by a CI system."""
    if commit in index:
        return index[commit]
    return [hit for key, hits in index.items() if len(key) >= 7 and commit.startswith(key) for hit in hits]


def link_changes(changes: Sequence[Change], records: Iterable[Mapping[str, Any]]) -> list[ChangeStatus]:
    """Each change with the scan records that cover it (see the module docstring for the rules)."""
    by_commit, by_pr = _scan_index(records)
    out = []
    for change in changes:
        status = ChangeStatus(change)
        for how, hits in (("commit", _lookup(by_commit, change.commit)),
                          ("merged head", [h for c in change.merged for h in _lookup(by_commit, c)]),
                          ("pr number", by_pr.get(change.pr_number or "", []))):
            for seq, decision in hits:
                if seq not in status.scans:
                    status.scans.append(seq)
                    status.decisions.append(decision)
                    status.linked_by = status.linked_by or how
        out.append(status)
    return out


def changes_report(ledger: Ledger, repo: Path, branch: str, start: str | None = None,
                   end: str | None = None, paths: Sequence[str] = ()) -> list[ChangeStatus]:
    """The merged changes of *branch* in the period and their scan records in *ledger*.

    *start*/*end* as for reports (``YYYY-MM-DD``: whole days, ``end`` included). Scans are taken
    from the whole ledger: a pull request is often scanned before the period in which it merges,
    and commit dates are the committer's clock, not the ledger's.
    """
    lo, hi = time_bounds(start, end)
    changes = merged_changes(repo, branch, lo, hi, paths)
    return link_changes(changes, ledger.iter())
