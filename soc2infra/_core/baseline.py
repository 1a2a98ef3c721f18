"""Baselines: accept the findings a repository already has, so only new ones fail.

A baseline records each finding's identity, not its location: the rule, the resource address
and, for Terraform read from HCL, the root module directory (relative to the baseline file).
Moving a resource to another file, reformatting or adding lines above it keeps it baselined;
renaming the resource makes it new, as it should. The root module is recorded because two
root modules of a monorepo may both declare ``aws_s3_bucket.this``; when either side has no
root module (plan JSON, Kubernetes), rule and address alone decide.

The file is JSON, sorted, so it reviews and diffs well.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from soc2infra._cogs.errors import UserError
from soc2infra._cogs.model import Finding, Waiver

BASELINE_VERSION = 1
DEFAULT_BASELINE_FILE = ".soc2infra-baseline.json"


class BaselineError(UserError):
    """A baseline file that cannot be read; ``file`` and ``problem`` are kept apart for reports."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file, self.problem = file, problem


@dataclass(frozen=True, slots=True)
class BaselineEntry:
    """One accepted finding: rule, resource address and (optionally) root module."""

    rule_id: str
    address: str
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    """The accepted findings of one baseline file."""

    entries: frozenset[BaselineEntry]
    path: str
    created: str = ""
    pairs: frozenset[tuple[str, str]] = frozenset()  # (rule_id, address) of every entry

    @classmethod
    def of(cls, entries: Iterable[BaselineEntry], path: str, created: str = "") -> Baseline:
        """A baseline of *entries*, with its (rule, address) index built."""
        entries = frozenset(entries)
        return cls(entries, path, created, frozenset((e.rule_id, e.address) for e in entries))

    def covers(self, rule_id: str, address: str, scope: str | None) -> bool:
        """True when a finding with this identity is accepted."""
        if BaselineEntry(rule_id, address, scope) in self.entries:
            return True
        # A scoped finding matches an unscoped entry and vice versa (plan JSON ↔ HCL).
        if BaselineEntry(rule_id, address, None) in self.entries:
            return True
        return scope is None and (rule_id, address) in self.pairs


def finding_scope(finding: Finding, base: Path) -> str | None:
    """The finding's root module directory relative to *base* (posix), or None."""
    root = finding.resource.meta.get("root")
    if not root:
        return None
    rel = os.path.relpath(Path(root).resolve(), base.resolve())
    return Path(rel).as_posix()


def baseline_document(findings: Iterable[Finding], base: Path, tool_version: str,
                      today: date | None = None) -> dict[str, object]:
    """The JSON document for a baseline of *findings* (suppressed ones are left out: they are
    already accepted by a waiver, and must fail again if that waiver expires)."""
    rows: dict[tuple[str, str, str], dict[str, object]] = {}
    for f in findings:
        if f.suppressed:
            continue
        scope = finding_scope(f, base)
        row: dict[str, object] = {"rule_id": f.rule_id, "address": f.resource.address}
        if scope is not None:
            row["scope"] = scope
        # For the reviewer only; matching ignores these.
        row["severity"] = f.severity
        if f.resource.file:
            row["file"] = f.resource.file
        rows[(f.rule_id, f.resource.address, scope or "")] = row
    return {
        "version": BASELINE_VERSION,
        "tool": {"name": "soc2infra", "version": tool_version},
        "created": (today or date.today()).isoformat(),
        "findings": [rows[k] for k in sorted(rows)],
    }


def write_baseline(path: Path, findings: Iterable[Finding], tool_version: str) -> int:
    """Write a baseline of *findings* to *path*; returns how many entries it holds."""
    doc = baseline_document(findings, path.parent, tool_version)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return len(doc["findings"])  # type: ignore[arg-type]


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file. Raises :class:`BaselineError` naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(str(path), f"cannot read baseline: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(str(path), f"not a baseline file (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise BaselineError(str(path), "not a baseline file (expected an object with a 'findings' list)")
    if data.get("version") != BASELINE_VERSION:
        raise BaselineError(str(path), f"unsupported baseline version {data.get('version')!r} "
                            f"(this soc2infra reads version {BASELINE_VERSION})")
    entries: set[BaselineEntry] = set()
    for i, row in enumerate(data["findings"]):
        if not isinstance(row, dict) or not isinstance(row.get("rule_id"), str) \
                or not isinstance(row.get("address"), str):
            raise BaselineError(str(path), f"findings[{i}] needs string 'rule_id' and 'address'")
        scope = row.get("scope")
        entries.add(BaselineEntry(row["rule_id"], row["address"], scope if isinstance(scope, str) else None))
    return Baseline.of(entries, str(path), str(data.get("created", "")))


def apply_baseline(findings: Iterable[Finding], baseline: Baseline) -> int:
    """Suppress findings the baseline accepts (``Waiver(source="baseline")``); returns the count."""
    base = Path(baseline.path).parent
    waiver = Waiver(source="baseline", reason=f"accepted in baseline created {baseline.created}".strip(),
                    location=baseline.path)
    count = 0
    for f in findings:
        if f.suppressed:
            continue
        if baseline.covers(f.rule_id, f.resource.address, finding_scope(f, base)):
            f.suppressed = True
            f.waiver = waiver
            count += 1
    return count
