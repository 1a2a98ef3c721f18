"""The JSON report: soc2infra's versioned machine-readable contract.

``docs/json-contract.md`` documents every field and ``result.schema.json`` (next to this
module) is its JSON Schema; the tests validate every rendered document against it. Adding
an optional field is a minor change (``1.x``); removing or renaming one, or changing a
meaning, bumps the major version.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soc2infra._cogs.model import CATEGORIES, SEVERITIES, control_sort_key
from soc2infra._core.reports import TOOL_NAME, ReportInput, sorted_findings

if TYPE_CHECKING:
    from soc2infra._cogs.model import Finding

JSON_SCHEMA_VERSION = "1.1"
SCHEMA_PATH = Path(__file__).with_name("result.schema.json")


def finding_dict(data: ReportInput, finding: Finding) -> dict[str, Any]:
    """``Finding.to_dict()`` with the resource file made relative to ``base_dir``."""
    out = finding.to_dict()
    out["resource"]["file"] = data.rel(finding.resource.file)
    if "module_call" in out["resource"]:
        out["resource"]["module_call"]["file"] = data.rel(out["resource"]["module_call"]["file"])
    return out


def summary(data: ReportInput) -> dict[str, Any]:
    """The ``summary`` object: counts for dashboards and gates.

    ``by_severity``, ``by_category`` and ``by_control`` count *open* failures (failed and not
    suppressed); a finding with several controls counts once under each.
    """
    result = data.result
    failures = result.failures
    open_failures = [f for f in failures if not f.suppressed]
    severity = Counter(f.severity for f in open_failures)
    category = Counter(f.category for f in open_failures)
    control: Counter[str] = Counter()
    for f in open_failures:
        control.update(dict.fromkeys(f.controls, 1))
    by_category = {c: category.get(c, 0) for c in CATEGORIES}
    by_category.update({c: n for c, n in sorted(category.items()) if c not in by_category})
    return {
        "resources": result.resource_total,
        "findings": len(failures),
        "open": len(open_failures),
        "unknown": len(result.unknowns),
        "suppressed": sum(1 for f in failures if f.suppressed),
        "by_severity": {s: severity.get(s, 0) for s in SEVERITIES},
        "by_category": by_category,
        "by_control": {c: control[c] for c in sorted(control, key=control_sort_key)},
        "errors": len(result.errors),
        "modules_not_scanned": len(result.coverage.unscanned_modules),
        "threshold": data.threshold,
        "blocking": len(data.blocking),
    }


def document(data: ReportInput) -> dict[str, Any]:
    """The whole JSON document as plain data (what :func:`render` serialises)."""
    result = data.result
    return {
        "version": JSON_SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": data.tool_version},
        "pack": {"digest": result.pack_digest or data.pack.digest,
                 "rules": result.rules_evaluated or sum(1 for r in data.pack.rules if r.enabled)},
        "summary": summary(data),
        "findings": [finding_dict(data, f) for f in sorted_findings(data, result.failures)],
        "unknown": [finding_dict(data, f) for f in sorted_findings(data, result.unknowns)],
        "errors": [{"file": data.rel(e.file), "line": e.line, "message": e.message}
                   for e in result.errors],
        "warnings": [str(w) for w in result.warnings],
        "coverage": _coverage(data),
        **({"passes": [[r, a] for r, a in sorted(result.passes)]} if data.include_passes else {}),
    }


def _coverage(data: ReportInput) -> dict[str, Any]:
    out = data.result.coverage.to_dict()
    for m in out["modules"]:
        if "file" in m:
            m["file"] = data.rel(m["file"])
    for f in out["skipped_files"]:
        f["path"] = data.rel(f["path"])
    return out


def render(data: ReportInput) -> str:
    """The JSON report with a trailing newline: one line per top-level field and one line per
    item of every list (diff-friendly), each encoded by the C encoder — ``indent=`` would use the
    pure-Python one, which took longer than the rules on a 20,000-resource tree."""
    return dumps_by_line(document(data))


def dumps_by_line(doc: dict[str, Any]) -> str:
    """*doc* as JSON: top-level fields on their own lines, list items one per line."""

    def enc(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            items = ",\n".join(f"    {enc(item)}" for item in value)
            parts.append(f"  {enc(key)}: [\n{items}\n  ]")
        else:
            parts.append(f"  {enc(key)}: {enc(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
