"""The human report for terminals and CI logs (colour rendered with ``rich``).

Layout: open failures grouped by file (each with ``file:line``, severity, rule id, SOC 2
criteria, message, address, masked details and the fix), then suppressed findings, results
that could not be decided, warnings, errors, and one summary line. Nothing from a
finding is ever interpreted as rich markup. With ``color=False`` (pre-commit, CI logs,
files) the output is plain text without ANSI escapes and rich is not even imported, which
keeps the hook's start-up short. Lines are never wrapped, so addresses stay greppable.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from io import StringIO
from typing import TYPE_CHECKING, Any

from soc2infra._cogs.model import SEVERITIES, UNKNOWN_KINDS
from soc2infra._core.reports import TOOL_NAME, ReportInput, sorted_findings

if TYPE_CHECKING:
    from soc2infra._cogs.model import Finding

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}
_DETAIL_LIMIT = 160


MAX_SKIPPED_SHOWN = 10


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _detail_text(details: dict[str, Any]) -> str:
    """Masked details as ``key=value`` pairs, each value shortened for one line."""
    parts = []
    for key, value in details.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        if len(shown) > _DETAIL_LIMIT:
            shown = shown[:_DETAIL_LIMIT - 1] + "…"
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


@lru_cache(maxsize=4096)  # messages and remediations repeat across thousands of findings
def _indented(text: str, prefix: str) -> str:
    """*text* with its continuation lines indented by *prefix* (first line left as is)."""
    return ("\n" + prefix).join(line.rstrip() for line in text.strip().splitlines())


class _Lines:
    """Report lines as (text, style) segments: plain text joins them, colour goes through rich."""

    def __init__(self) -> None:
        self.lines: list[list[tuple[str, str]]] = []

    def add(self, *segments: tuple[str, str] | str) -> None:
        """One line from segments (a bare string has no style)."""
        self.lines.append([(seg, "") if isinstance(seg, str) else seg for seg in segments])

    def blank(self) -> None:
        """An empty line."""
        self.lines.append([])

    def plain(self) -> str:
        """The lines without any styling."""
        return "".join("".join(text for text, _ in line) + "\n" for line in self.lines)

    def ansi(self) -> str:
        """The lines with ANSI styles, rendered by rich (imported only here)."""
        from rich.console import Console
        from rich.text import Text

        out = StringIO()
        console = Console(file=out, force_terminal=True, color_system="standard", highlight=False,
                          markup=False, emoji=False, soft_wrap=True, width=200)
        for line in self.lines:
            console.print(Text.assemble(*line))
        return out.getvalue()


def _finding(lines: _Lines, data: ReportInput, f: Finding, indent: str = "  ") -> None:
    severity = (f.severity.upper(), SEVERITY_STYLE.get(f.severity, ""))
    lines.add(indent, (data.location(f), "bold"), "  ", severity, "  ", (f.rule_id, "bold"),
              (f"  [{', '.join(f.controls)}]", "dim"))
    body = indent + "  "
    lines.add(body + _indented(f.message, body))
    lines.add((f"{body}resource: {f.resource.address}", "dim"))
    root = data.root_hint(f)
    if root is not None:
        lines.add((f"{body}root module: {root}", "dim"))
    if f.details:
        lines.add((f"{body}details: {_detail_text(f.details)}", "dim"))
    lines.add(body, ("fix: ", "green"), _indented(f.remediation, body + "     "))


_ADVICE = {
    "apply_time": "scan a plan (terraform show -json) to decide these",
    "unset_variable": "give the variables a value with --var-file",
    "external_module": "run terraform init so the modules are downloaded, or scan a plan",
    "evaluator_limit": "a gap in soc2infra: please report it",
}


def _advice(kind: str) -> str:
    advice = _ADVICE.get(kind)
    return f": {advice}" if advice else ""


def _section(lines: _Lines, title: str) -> None:
    lines.blank()
    lines.add((title, "bold underline"))


def summary_line(data: ReportInput) -> str:
    """One line with the verdict and the counts (also used as the text report's last line)."""
    result = data.result
    open_failures = [f for f in result.failures if not f.suppressed]
    by_sev = Counter(f.severity for f in open_failures)
    breakdown = ", ".join(f"{by_sev[s]} {s}" for s in SEVERITIES if by_sev[s])
    parts = [_plural(len(open_failures), "finding") + (f" ({breakdown})" if breakdown else "")]
    suppressed = sum(1 for f in result.findings if f.suppressed)
    if suppressed:
        parts.append(f"{suppressed} suppressed")
    if result.unknowns:
        parts.append(f"{len(result.unknowns)} unknown")
    parts.append(_plural(len(result.errors), "error"))
    verdict = "ERROR" if result.errors else ("FAIL" if data.blocking else "PASS")
    scope = f"{_plural(result.resource_total, 'resource')}, {_plural(result.rules_evaluated, 'rule')}"
    gate = f"{len(data.blocking)} at or above {data.threshold}"
    unscanned = len(result.coverage.unscanned_modules)
    notice = f"; {_plural(unscanned, 'module')} not scanned" if unscanned else ""
    return f"{verdict}: {', '.join(parts)} in {scope}; {gate}{notice}"


def render(data: ReportInput) -> str:
    """The text report (ANSI-coloured only when ``data.color``; rich is imported only then)."""
    result = data.result
    open_failures = [f for f in result.failures if not f.suppressed]
    lines = _Lines()
    lines.add((f"{TOOL_NAME} {data.tool_version}", "bold"))

    by_file: dict[str, list[Finding]] = {}
    for f in sorted_findings(data, open_failures):
        by_file.setdefault(data.rel(f.resource.file) or "(no file)", []).append(f)
    if by_file:
        _section(lines, f"Findings ({len(open_failures)} in {_plural(len(by_file), 'file')})")
    for file, findings in by_file.items():
        lines.blank()
        lines.add((file, "bold magenta"))
        for f in findings:
            _finding(lines, data, f)

    suppressed = [f for f in result.findings if f.suppressed]
    if suppressed:
        _section(lines, f"Suppressed ({len(suppressed)})")
        for f in sorted_findings(data, suppressed):
            waiver = f.waiver
            why = f"{waiver.source} waiver: {waiver.reason}" if waiver else "suppressed"
            if waiver is not None and waiver.expires:
                why += f" (expires {waiver.expires})"
            lines.add(f"  {data.location(f)}  {f.rule_id}  {f.resource.address}  ", (why, "dim"))

    unknown = [f for f in result.unknowns if not f.suppressed]
    if unknown:
        _section(lines, f"Could not be decided ({len(unknown)})")
        lines.add(("  Grouped by why; pass --fail-on-unknown to block on them.", "dim"))
        groups: dict[str, list[Finding]] = {}
        for f in sorted_findings(data, unknown):
            kind = f.reasons[0].kind if f.reasons else "evaluator_limit"
            groups.setdefault(kind, []).append(f)
        for kind in sorted(groups, key=lambda k: list(UNKNOWN_KINDS).index(k) if k in UNKNOWN_KINDS else 99):
            lines.blank()
            lines.add((f"  {UNKNOWN_KINDS.get(kind, kind).capitalize()} ({len(groups[kind])}){_advice(kind)}",
                       "bold"))
            for f in groups[kind]:
                lines.blank()
                _finding(lines, data, f, "    ")
                for r in f.reasons:
                    lines.add((f"      because: {r.reason}", "dim"))

    if result.warnings:
        _section(lines, f"Warnings ({len(result.warnings)})")
        for w in result.warnings:
            lines.add((f"  {w}", "yellow"))

    if result.errors:
        _section(lines, f"Errors ({len(result.errors)})")
        for e in result.errors:
            where = data.rel(e.file) + (f":{e.line}" if e.line else "")
            lines.add("  ", (where, "bold red"), f": {e.message}")

    coverage = result.coverage
    if coverage.unscanned_modules or coverage.skipped_files:
        _section(lines, "Not scanned")
        for m in coverage.unscanned_modules:
            where = data.rel(m.file) + (f":{m.line}" if m.line else "")
            lines.add("  ", (m.address, "bold yellow"), f" ({m.source}) at {where}: {m.reason}")
        for sf in coverage.skipped_files[:MAX_SKIPPED_SHOWN]:
            lines.add("  ", (data.rel(sf.path), "bold yellow"), f": {sf.reason}")
        if len(coverage.skipped_files) > MAX_SKIPPED_SHOWN:
            lines.add((f"  …and {len(coverage.skipped_files) - MAX_SKIPPED_SHOWN} more skipped files "
                       "(all of them in the JSON report's coverage.skipped_files)", "dim"))
        if coverage.unscanned_modules:
            lines.add(("  Values coming out of these modules are unknown; pass --fail-on-unscanned "
                       "to block on them.", "dim"))

    lines.blank()
    lines.add((summary_line(data), "bold red" if result.errors or data.blocking else "bold green"))
    return lines.ansi() if data.color else lines.plain()
