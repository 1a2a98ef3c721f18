"""Exit codes, decided in one place: errors win over findings."""

from __future__ import annotations

from enum import IntEnum

from soc2infra._cogs.model import SEVERITIES, Finding, ScanResult


class ExitCode(IntEnum):
    """What every soc2infra process (CLI, operator, helper modules) exits with."""

    OK = 0
    FINDINGS = 1  # blocking findings; for a question ("find X", "verify"), the answer is no
    ERROR = 2  # the user's input or environment: a message, no traceback
    INTERNAL = 3  # a bug: a traceback and the version
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


OK, FINDINGS, ERROR = ExitCode.OK, ExitCode.FINDINGS, ExitCode.ERROR
INTERNAL, INTERRUPTED = ExitCode.INTERNAL, ExitCode.INTERRUPTED


def severity_rank(severity: str) -> int:
    """critical → 0 … low → 3 (lower is more severe)."""
    return SEVERITIES.index(severity)


def blocking(result: ScanResult, threshold: str, fail_on_unknown: bool = False) -> list[Finding]:
    """Unsuppressed findings at or above *threshold* (unknowns only when asked)."""
    limit = severity_rank(threshold)
    return [f for f in result.findings if not f.suppressed and severity_rank(f.severity) <= limit
            and (f.status == "fail" or fail_on_unknown)]


def exit_code(result: ScanResult, threshold: str, fail_on_unknown: bool = False,
              fail_on_unscanned: bool = False) -> int:
    """0 clean, 1 blocking findings (or unscanned modules when asked), 2 errors (errors win)."""
    if result.errors:
        return ERROR
    if fail_on_unscanned and result.coverage.unscanned_modules:
        return FINDINGS
    return FINDINGS if blocking(result, threshold, fail_on_unknown) else OK
