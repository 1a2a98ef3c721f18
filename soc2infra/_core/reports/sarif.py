"""SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning, Azure DevOps, IDEs).

Choices (documented in ``docs/json-contract.md``):

- ``tool.driver.rules`` lists every enabled rule of the pack, in pack order, so a run
  records what was checked and ``ruleIndex`` is stable between runs. A finding whose
  rule is not in the pack (a custom pack loaded elsewhere) gets a descriptor built from
  the finding itself.
- Levels: critical/high → ``error``, medium → ``warning``, low → ``note``. Unknown results
  are always ``note`` with ``properties.status = "unknown"``. ``security-severity`` carries
  the numeric score GitHub uses to rank alerts.
- Locations are relative to ``%SRCROOT%`` (``base_dir``). A resource without a real file
  (``<stdin>``, an in-memory object) has only a logical location (its address).
- Suppressed findings stay in the results with a ``suppressions`` entry: ``inSource`` for
  inline waivers, ``external`` for waiver files, baselines and cluster waivers.
- Input errors are ``toolExecutionNotifications`` (level ``error``) and make
  ``executionSuccessful`` false; warnings are notifications of level ``warning``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from soc2infra._core.reports import TOOL_NAME, ReportInput, sorted_findings

if TYPE_CHECKING:
    from soc2infra._cogs.model import Finding
    from soc2infra._core.engine.policy import PolicyPack, Rule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
FINGERPRINT_KEY = "soc2infraFindingHash/v1"


def _rule_name(title: str) -> str:
    """A PascalCase identifier from a rule title (SARIF ``name`` should not hold spaces)."""
    return "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", title)) or "Rule"


def _criteria(pack: PolicyPack, controls: tuple[str, ...]) -> list[str]:
    return [f"{c} {pack.controls[c].name}" if c in pack.controls else c for c in controls]


def _descriptor(data: ReportInput, rule_id: str, title: str, severity: str, category: str,
                controls: tuple[str, ...], remediation: str, description: str) -> dict[str, Any]:
    criteria = _criteria(data.pack, controls)
    help_text = f"{remediation}\n\nSOC 2 criteria: {'; '.join(criteria)}."
    help_md = (f"**Remediation.** {remediation}\n\n**SOC 2 criteria:**\n"
               + "".join(f"- {c}\n" for c in criteria) + f"\n**Category:** {category}")
    return {
        "id": rule_id,
        "name": _rule_name(title),
        "shortDescription": {"text": title},
        "fullDescription": {"text": description or title},
        "help": {"text": help_text, "markdown": help_md},
        "defaultConfiguration": {"level": LEVEL.get(severity, "warning")},
        "properties": {
            "tags": [*controls, category],
            "security-severity": SECURITY_SEVERITY.get(severity, "5.5"),
            "severity": severity,
            "category": category,
            "soc2-controls": list(controls),
        },
    }


def _rule_descriptor(data: ReportInput, rule: Rule) -> dict[str, Any]:
    return _descriptor(data, rule.id, rule.title, rule.severity, rule.category, rule.controls,
                       rule.remediation, rule.description)


def _finding_descriptor(data: ReportInput, f: Finding) -> dict[str, Any]:
    return _descriptor(data, f.rule_id, f.title, f.severity, f.category, f.controls, f.remediation, "")


def _is_real_file(path: str) -> bool:
    return bool(path) and not (path.startswith("<") and path.endswith(">"))


def artifact_location(data: ReportInput, path: str) -> dict[str, Any]:
    """An ``artifactLocation``: relative to ``%SRCROOT%``, or a ``file:`` URI outside it."""
    rel = data.rel(path)
    if os.path.isabs(rel):
        return {"uri": Path(rel).as_uri()}
    return {"uri": quote(rel.replace(os.sep, "/"), safe="/"), "uriBaseId": SRCROOT}


def _location(data: ReportInput, f: Finding) -> dict[str, Any]:
    res = f.resource
    loc: dict[str, Any] = {}
    if _is_real_file(res.file):
        start = res.line if res.line and res.line > 0 else 1
        region: dict[str, Any] = {"startLine": start}
        if res.end_line and res.end_line > start:
            region["endLine"] = res.end_line
        loc["physicalLocation"] = {"artifactLocation": artifact_location(data, res.file), "region": region}
    loc["logicalLocations"] = [{"fullyQualifiedName": res.address, "name": res.name,
                                "kind": "resource" if res.kind == "terraform" else "object"}]
    return loc


def _related(data: ReportInput, f: Finding) -> dict[str, Any]:
    """The calling ``module`` block in the root module: the place the user can change."""
    call = f.resource.meta.get("module_call")
    if not isinstance(call, dict) or not _is_real_file(str(call.get("file", ""))):
        return {}
    return {"relatedLocations": [{
        "id": 1,
        "physicalLocation": {"artifactLocation": artifact_location(data, str(call["file"])),
                             "region": {"startLine": max(int(call.get("line", 1)), 1)}},
        "message": {"text": "module call in the root module"},
    }]}


def _suppression(f: Finding) -> dict[str, Any]:
    waiver = f.waiver
    if waiver is None:
        return {"kind": "external", "status": "accepted", "justification": "suppressed"}
    out: dict[str, Any] = {
        "kind": "inSource" if waiver.source == "inline" else "external",
        "status": "accepted",
        "justification": waiver.reason,
        "properties": waiver.to_dict(),
    }
    return out


def _result(data: ReportInput, f: Finding, index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "level": "note" if f.status == "unknown" else LEVEL.get(f.severity, "warning"),
        "message": {"text": f"{f.message}\nRemediation: {f.remediation}"},
        "locations": [_location(data, f)],
        **_related(data, f),
        "partialFingerprints": {FINGERPRINT_KEY: hashlib.sha256(f.fingerprint.encode()).hexdigest()},
        "properties": {
            "status": f.status,
            "severity": f.severity,
            "category": f.category,
            "soc2-controls": list(f.controls),
            "resourceType": f.resource.type,
        },
    }
    if f.details:
        result["properties"]["details"] = f.details
    if f.reasons:
        result["properties"]["unknownReasons"] = [r.to_dict() for r in f.reasons]
        result["message"]["text"] += f"\nUndecided because: {f.reason_text}"
    root = f.resource.meta.get("root")
    if isinstance(root, str):
        result["properties"]["rootModule"] = root
    if f.suppressed:
        result["suppressions"] = [_suppression(f)]
    return result


def _notification(data: ReportInput, level: str, text: str, file: str = "",
                  line: int | None = None) -> dict[str, Any]:
    note: dict[str, Any] = {"level": level, "message": {"text": text}}
    if _is_real_file(file):
        physical: dict[str, Any] = {"artifactLocation": artifact_location(data, file)}
        if line and line > 0:
            physical["region"] = {"startLine": line}
        note["locations"] = [{"physicalLocation": physical}]
    elif file:
        note["message"]["text"] = f"{file}{f':{line}' if line else ''}: {text}"
    return note


def document(data: ReportInput) -> dict[str, Any]:
    """The SARIF log as plain data (what :func:`render` serialises)."""
    result = data.result
    descriptors = [_rule_descriptor(data, r) for r in data.pack.rules if r.enabled]
    index = {d["id"]: i for i, d in enumerate(descriptors)}
    findings = sorted_findings(data, result.failures) + sorted_findings(data, result.unknowns)
    for f in findings:
        if f.rule_id not in index:
            index[f.rule_id] = len(descriptors)
            descriptors.append(_finding_descriptor(data, f))
    notifications = [_notification(data, "error", e.message, e.file, e.line) for e in result.errors]
    notifications += [_notification(data, "warning", str(w)) for w in result.warnings]
    notifications += [_notification(data, "warning", f"{m.address} not scanned ({m.source}): {m.reason}",
                                    m.file, m.line) for m in result.coverage.unscanned_modules]
    invocation: dict[str, Any] = {"executionSuccessful": not result.errors}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run: dict[str, Any] = {
        "tool": {"driver": {
            "name": TOOL_NAME,
            "version": data.tool_version,
            "rules": descriptors,
            "properties": {"packDigest": result.pack_digest or data.pack.digest},
        }},
        "invocations": [invocation],
        "results": [_result(data, f, index[f.rule_id]) for f in findings],
        "columnKind": "unicodeCodePoints",
    }
    if data.base_dir:
        base = Path(os.path.abspath(os.fspath(data.base_dir))).as_uri().rstrip("/") + "/"
        run["originalUriBaseIds"] = {SRCROOT: {"uri": base}}
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render(data: ReportInput) -> str:
    """The SARIF 2.1.0 log as indented JSON with a trailing newline."""
    # No indent: the C encoder is many times faster on large logs, and SARIF is read by tools.
    return json.dumps(document(data), ensure_ascii=False, default=str, separators=(",", ":")) + "\n"
