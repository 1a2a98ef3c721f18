"""The human report for terminals and CI logs, rendered with ``rich``.

Layout: open failures grouped by file (each with ``file:line``, severity, rule id, SOC 2
criteria, message, address, masked details and the fix), then suppressed findings, results
that could not be decided, warnings, errors, and one summary line. Nothing from a
finding is ever interpreted as rich markup, and with ``color=False`` the output is plain
text without ANSI escapes. Lines are never wrapped, so addresses stay greppable.
"""

from __future__ import annotations

import json
from collections import Counter
from io import StringIO
from typing import TYPE_CHECKING, Any

from soc2infra.model import SEVERITIES
from soc2infra.reports import TOOL_NAME, ReportInput, sorted_findings

if TYPE_CHECKING:
    from rich.console import Console

    from soc2infra.model import Finding

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}
_DETAIL_LIMIT = 160


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


def _indented(text: str, prefix: str) -> str:
    """*text* with its continuation lines indented by *prefix* (first line left as is)."""
    return ("\n" + prefix).join(line.rstrip() for line in text.strip().splitlines())


def _finding(console: Console, data: ReportInput, f: Finding, indent: str = "  ") -> None:
    from rich.text import Text

    head = Text(indent)
    head.append(data.location(f), style="bold")
    head.append("  ")
    head.append(f.severity.upper(), style=SEVERITY_STYLE.get(f.severity, ""))
    head.append("  ")
    head.append(f.rule_id, style="bold")
    head.append(f"  [{', '.join(f.controls)}]", style="dim")
    console.print(head)
    body = indent + "  "
    console.print(Text(body + _indented(f.message, body)))
    console.print(Text(f"{body}resource: {f.resource.address}", style="dim"))
    if f.details:
        console.print(Text(f"{body}details: {_detail_text(f.details)}", style="dim"))
    fix = Text(body)
    fix.append("fix: ", style="green")
    fix.append(_indented(f.remediation, body + "     "))
    console.print(fix)


def _section(console: Console, title: str) -> None:
    from rich.text import Text

    console.print()
    console.print(Text(title, style="bold underline"))


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
    scope = f"{_plural(len(result.resources), 'resource')}, {_plural(result.rules_evaluated, 'rule')}"
    gate = f"{len(data.blocking)} at or above {data.threshold}"
    return f"{verdict}: {', '.join(parts)} in {scope}; {gate}"


def render(data: ReportInput) -> str:
    """The text report (ANSI-coloured only when ``data.color``)."""
    from rich.console import Console
    from rich.text import Text

    out = StringIO()
    console = Console(file=out, force_terminal=data.color, no_color=not data.color,
                      color_system="standard" if data.color else None, highlight=False,
                      markup=False, emoji=False, soft_wrap=True, width=200)
    result = data.result
    open_failures = [f for f in result.failures if not f.suppressed]
    console.print(Text(f"{TOOL_NAME} {data.tool_version}", style="bold"))

    by_file: dict[str, list[Finding]] = {}
    for f in sorted_findings(data, open_failures):
        by_file.setdefault(data.rel(f.resource.file) or "(no file)", []).append(f)
    if by_file:
        _section(console, f"Findings ({len(open_failures)} in {_plural(len(by_file), 'file')})")
    for file, findings in by_file.items():
        console.print()
        console.print(Text(file, style="bold magenta"))
        for f in findings:
            _finding(console, data, f)

    suppressed = [f for f in result.findings if f.suppressed]
    if suppressed:
        _section(console, f"Suppressed ({len(suppressed)})")
        for f in sorted_findings(data, suppressed):
            waiver = f.waiver
            why = f"{waiver.source} waiver: {waiver.reason}" if waiver else "suppressed"
            if waiver is not None and waiver.expires:
                why += f" (expires {waiver.expires})"
            line = Text(f"  {data.location(f)}  {f.rule_id}  {f.resource.address}  ")
            line.append(why, style="dim")
            console.print(line)

    unknown = [f for f in result.unknowns if not f.suppressed]
    if unknown:
        _section(console, f"Could not be decided ({len(unknown)})")
        console.print(Text("  These depend on values only known at apply time or at run time; scan a plan "
                           "or pass --fail-on-unknown to block on them.", style="dim"))
        for f in sorted_findings(data, unknown):
            console.print()
            _finding(console, data, f)

    if result.warnings:
        _section(console, f"Warnings ({len(result.warnings)})")
        for w in result.warnings:
            console.print(Text(f"  {w}", style="yellow"))

    if result.errors:
        _section(console, f"Errors ({len(result.errors)})")
        for e in result.errors:
            where = data.rel(e.file) + (f":{e.line}" if e.line else "")
            line = Text("  ")
            line.append(where, style="bold red")
            line.append(f": {e.message}")
            console.print(line)

    console.print()
    verdict = summary_line(data)
    style = "bold red" if result.errors or data.blocking else "bold green"
    console.print(Text(verdict, style=style))
    return out.getvalue()
