"""A compact Markdown summary for pull-request comments and CI job summaries.

A headline (✅ or ❌ with the counts), a table of SOC 2 criteria with their open failures,
then collapsed ``<details>`` blocks: findings grouped by criterion (a finding with several
criteria is listed under each), suppressed, undecided and errors. Lists are capped so a
comment stays readable and well under the size limits of code hosts.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from soc2infra._cogs.model import SEVERITIES, control_sort_key
from soc2infra._core.reports import TOOL_NAME, ReportInput, sorted_findings

if TYPE_CHECKING:
    from soc2infra._cogs.model import Finding

MAX_FINDINGS = 50  # finding lines listed under the criteria, all criteria together
MAX_OTHER = 20  # lines listed for suppressed, unknown and errors each
MAX_TEXT = 200  # characters of a message before it is cut
SEVERITY_ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵"}
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def _esc(text: str, limit: int = MAX_TEXT) -> str:
    """One line of *text* safe inside Markdown (tables included), cut at *limit* characters."""
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[:limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", line).replace("&", "&amp;")


def _code(text: str) -> str:
    """*text* as an inline code span, whatever backticks it contains."""
    line = " ".join(text.split())
    if "`" not in line:
        return f"`{line}`"
    return f"`` {line} ``"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _finding_line(data: ReportInput, f: Finding) -> str:
    icon = SEVERITY_ICON.get(f.severity, "⚪")
    root = data.root_hint(f)
    where = data.location(f) + (f" in root {root}" if root is not None else "")
    return (f"- {icon} **{f.severity}** {_code(f.rule_id)} {_code(f.resource.address)}: {_esc(f.message)} "
            f"({_code(where)})")


def _why(f: Finding) -> str:
    """Why an unknown finding is undecided."""
    return f": because {_esc(f.reason_text)}" if f.reasons else ""


def _capped(lines: list[str], limit: int, noun: str) -> list[str]:
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"- …and {len(lines) - limit} more {noun} (see the full report)"]


def _details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def render(data: ReportInput) -> str:
    """The Markdown summary."""
    result = data.result
    open_failures = [f for f in result.failures if not f.suppressed]
    suppressed = [f for f in result.findings if f.suppressed]
    unknown = [f for f in result.unknowns if not f.suppressed]
    failed = bool(result.errors or data.blocking)

    counts = [_plural(len(open_failures), "finding")]
    by_sev = Counter(f.severity for f in open_failures)
    if open_failures:
        counts[0] += " (" + ", ".join(f"{by_sev[s]} {s}" for s in SEVERITIES if by_sev[s]) + ")"
    counts += [f"{len(suppressed)} suppressed", f"{len(unknown)} unknown",
               _plural(len(result.errors), "error")]
    if result.coverage.unscanned_modules:
        counts.append(_plural(len(result.coverage.unscanned_modules), "module") + " not scanned")
    if result.errors:
        verdict = "input errors"
    elif data.blocking:
        verdict = f"{len(data.blocking)} at or above `{data.threshold}`"
    else:
        verdict = f"nothing at or above `{data.threshold}`"
    out = [f"### {'❌' if failed else '✅'} {TOOL_NAME}: {verdict}", "",
           f"{' · '.join(counts)} — {_plural(result.resource_total, 'resource')}, "
           f"{_plural(result.rules_evaluated, 'rule')} checked.", ""]

    by_control: dict[str, list[Finding]] = {}
    for f in sorted_findings(data, open_failures):
        for c in dict.fromkeys(f.controls):
            by_control.setdefault(c, []).append(f)
    controls = sorted(by_control, key=control_sort_key)
    if controls:
        out += ["| SOC 2 criterion | Name | Failing |", "|---|---|---:|"]
        for c in controls:
            name = data.pack.controls[c].name if c in data.pack.controls else ""
            out.append(f"| {_esc(c)} | {_esc(name)} | {len(by_control[c])} |")
        out.append("")
        lines: list[str] = []
        shown = 0
        hidden = 0
        for c in controls:
            group = by_control[c]
            room = max(MAX_FINDINGS - shown, 0)
            if room == 0:
                hidden += len(group)
                continue
            name = data.pack.controls[c].name if c in data.pack.controls else ""
            lines += ["", f"**{_esc(c)}** {_esc(name)}", ""]
            lines += [_finding_line(data, f) for f in group[:room]]
            shown += min(len(group), room)
            hidden += max(len(group) - room, 0)
        if hidden:
            lines += ["", f"…and {hidden} more (see the full report)"]
        out += _details(f"Findings by SOC 2 criterion ({len(open_failures)})", lines[1:])

    if suppressed:
        body = []
        for f in sorted_findings(data, suppressed):
            w = f.waiver
            why = f"{w.source} waiver: {_esc(w.reason)}" if w else "suppressed"
            body.append(f"- {_code(f.rule_id)} {_code(f.resource.address)}: {why}")
        out += _details(f"Suppressed ({len(suppressed)})", _capped(body, MAX_OTHER, "suppressed"))
    if unknown:
        body = [_finding_line(data, f) + _why(f) for f in sorted_findings(data, unknown)]
        out += _details(f"Could not be decided ({len(unknown)})", _capped(body, MAX_OTHER, "undecided"))
    if result.errors:
        body = [f"- {_code(data.rel(e.file) + (f':{e.line}' if e.line else ''))}: {_esc(e.message)}"
                for e in result.errors]
        out += _details(f"Errors ({len(result.errors)})", _capped(body, MAX_OTHER, "errors"))
    missing = result.coverage.unscanned_modules
    if missing:
        body = [f"- {_code(m.address)} ({_code(m.source)}): {_esc(m.reason)}" for m in missing]
        out += _details(f"Modules not scanned ({len(missing)})", _capped(body, MAX_OTHER, "modules"))
    return "\n".join(out).rstrip("\n") + "\n"
