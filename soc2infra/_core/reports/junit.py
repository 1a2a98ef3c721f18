"""JUnit XML for CI test widgets (GitLab merge requests, Jenkins, Azure Pipelines).

Shape (documented in ``docs/json-contract.md``):

- one ``<testsuite name="soc2infra.CATEGORY">`` per rule category that has results, in the
  catalog's category order; the rule is the ``classname`` of each test case, so CI tools
  show category → rule → resource;
- one ``<testcase classname=RULE_ID name=ADDRESS>`` per rule × resource evaluated: a
  ``<failure>`` for a failed finding (whatever its severity: the threshold is a gate, not a
  test result), nothing for a pass (``result.passes``), ``<skipped type="unknown">`` for a
  result that could not be decided and ``<skipped type="suppressed">`` with the waiver
  reason for a suppressed one;
- input errors in their own ``<testsuite name="soc2infra.errors">``, one ``<error>`` test
  case each (the suite is present only when there are errors);
- module calls that could not be scanned in ``<testsuite name="soc2infra.not-scanned">``, one
  ``<skipped type="not-scanned">`` test case each, with the reason.

Attributes stay within the common Ant/Jenkins JUnit schema (no ``file`` or ``line`` on
test cases: the location is in the failure body). Warnings are not part of this format.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from soc2infra._cogs.model import CATEGORIES
from soc2infra._core.reports import TOOL_NAME, ReportInput

if TYPE_CHECKING:
    from soc2infra._cogs.model import Finding

SUITE_PREFIX = f"{TOOL_NAME}."
ERRORS_SUITE = f"{TOOL_NAME}.errors"
# Characters XML 1.0 cannot carry at all (escaping does not help).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


COVERAGE_SUITE = "soc2infra.not-scanned"


def _clean(text: str) -> str:
    """*text* with characters XML 1.0 forbids shown as ``\\xNN`` escapes."""
    return _INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _criteria(data: ReportInput, controls: tuple[str, ...]) -> str:
    ctrl = data.pack.controls
    return ", ".join(f"{c} ({ctrl[c].name})" if c in ctrl else c for c in controls)


def _body(data: ReportInput, f: Finding) -> str:
    lines = [
        f.message,
        "",
        f"Rule: {f.rule_id} ({f.severity}): {f.title}",
        f"SOC 2 criteria: {_criteria(data, f.controls)}",
        f"Location: {data.location(f)}",
        f"Resource: {f.resource.address} ({f.resource.type})",
    ]
    root = f.resource.meta.get("root")
    if isinstance(root, str):
        lines.append(f"Root module: {root}")
    if f.details:
        lines.append("Details: " + ", ".join(f"{k}={v}" for k, v in f.details.items()))
    if f.reasons:
        lines.append(f"Undecided because: {f.reason_text}")
    lines.append(f"Remediation: {f.remediation}")
    return "\n".join(lines) + "\n"


def _outcome(data: ReportInput, case: ET.Element, f: Finding) -> str:
    """Add the failure/skipped child for *f* to *case*; returns which one it was."""
    if f.suppressed:
        w = f.waiver
        reason = f"suppressed by {w.source} waiver: {w.reason}" if w else "suppressed"
        el = ET.SubElement(case, "skipped", type="suppressed", message=_clean(reason))
        extra = [f"{k}: {v}" for k, v in (w.to_dict().items() if w else ()) if k not in ("source", "reason")]
        el.text = _clean(_body(data, f) + "".join(f"Waiver {line}\n" for line in extra))
        return "skipped"
    if f.status == "unknown":
        el = ET.SubElement(case, "skipped", type="unknown",
                           message=_clean(f"could not be decided: {f.message}"
                                          + (f" ({f.reason_text})" if f.reasons else "")))
        el.text = _clean(_body(data, f))
        return "skipped"
    el = ET.SubElement(case, "failure", type=f.severity, message=_clean(f.message))
    el.text = _clean(_body(data, f))
    return "failure"


def _suite(parent: ET.Element, name: str, cases: list[ET.Element], counts: dict[str, int],
           properties: dict[str, str]) -> None:
    suite = ET.SubElement(parent, "testsuite", name=name, tests=str(len(cases)),
                          failures=str(counts.get("failure", 0)), errors=str(counts.get("error", 0)),
                          skipped=str(counts.get("skipped", 0)), time="0")
    if properties:
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", name=key, value=_clean(value))
    suite.extend(cases)


def render(data: ReportInput) -> str:
    """The JUnit XML document (UTF-8 declaration, indented)."""
    result = data.result
    rules = data.rules_by_id
    category_of = {f.rule_id: f.category for f in result.findings}

    def category(rule_id: str) -> str:
        rule = rules.get(rule_id)
        return rule.category if rule is not None else category_of.get(rule_id, "other")

    # (rule_id, address) → outcome; findings win over a (never expected) pass for the same pair.
    entries: dict[tuple[str, str], Finding | None] = dict.fromkeys(result.passes)
    for f in result.findings:
        entries[(f.rule_id, f.resource.address)] = f

    by_category: dict[str, list[tuple[str, str]]] = {}
    for key in entries:
        by_category.setdefault(category(key[0]), []).append(key)
    order = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))

    root = ET.Element("testsuites", name=TOOL_NAME)
    properties = {"soc2infra.version": data.tool_version,
                  "pack.digest": result.pack_digest or data.pack.digest,
                  "severity.threshold": data.threshold}
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    for cat in order:
        cases: list[ET.Element] = []
        counts: dict[str, int] = {}
        for rule_id, address in sorted(by_category[cat]):
            case = ET.Element("testcase", classname=_clean(rule_id), name=_clean(address), time="0")
            finding = entries[(rule_id, address)]
            if finding is not None:
                kind = _outcome(data, case, finding)
                counts[kind] = counts.get(kind, 0) + 1
            cases.append(case)
        _suite(root, SUITE_PREFIX + cat, cases, counts, properties)
        totals["tests"] += len(cases)
        for kind, n in counts.items():
            totals[kind] += n

    if result.errors:
        cases = []
        for e in result.errors:
            where = data.rel(e.file) + (f":{e.line}" if e.line else "")
            case = ET.Element("testcase", classname=ERRORS_SUITE, name=_clean(where or "(no file)"), time="0")
            err = ET.SubElement(case, "error", type="error", message=_clean(e.message))
            err.text = _clean(f"{where}: {e.message}\n")
            cases.append(case)
        _suite(root, ERRORS_SUITE, cases, {"error": len(cases)}, properties)
        totals["tests"] += len(cases)
        totals["error"] += len(cases)

    missing = result.coverage.unscanned_modules
    if missing:
        cases = []
        for m in missing:
            case = ET.Element("testcase", classname=COVERAGE_SUITE, name=_clean(m.address), time="0")
            ET.SubElement(case, "skipped", type="not-scanned", message=_clean(f"{m.source}: {m.reason}"))
            cases.append(case)
        _suite(root, COVERAGE_SUITE, cases, {"skipped": len(cases)}, properties)
        totals["tests"] += len(cases)
        totals["skipped"] += len(cases)

    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failure"]))
    root.set("errors", str(totals["error"]))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
