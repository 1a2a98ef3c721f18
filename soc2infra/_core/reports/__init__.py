"""Output formats: one scan result rendered as text, JSON, SARIF, JUnit XML or Markdown.

``FORMATS`` is the explicit registry (name → renderer). Each renderer takes a
:class:`ReportInput` and returns the whole report as a string. The format modules are
imported only when their renderer is called, so choosing ``json`` never imports ``rich``
and start-up (pre-commit) stays fast.

Reports never print resource attributes: only the finding's own fields (rule metadata,
message, address, file and line) and its ``details``, which the engine fills with masked
evidence only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soc2infra._cogs.model import Finding, ScanResult
    from soc2infra._core.engine.policy import PolicyPack, Rule

__all__ = ["FORMATS", "ReportInput", "render"]

TOOL_NAME = "soc2infra"


@dataclass(frozen=True)
class ReportInput:
    """Everything a renderer needs: the scan result, the pack it ran, and display options."""

    result: ScanResult
    pack: PolicyPack
    threshold: str = "low"  # severity threshold used for the exit code
    tool_version: str = "0.1.0"
    base_dir: str | os.PathLike[str] = ""  # paths in reports are made relative to this when possible
    color: bool = False  # text only
    include_passes: bool = False  # JSON: add passes[] (shard results, for `soc2infra merge`)

    def rel(self, path: str) -> str:
        """*path* relative to ``base_dir`` when it lies below it, else unchanged.

        Relative paths (the scan already made them relative) and pseudo-files such as
        ``<stdin>`` are returned as they are.
        """
        if not path or not self.base_dir:
            return path
        # Memoized: a report of 20k findings asks for the same few thousand files over and
        # over, and the path arithmetic below dominated text rendering.
        memo = self._rel_memo
        hit = memo.get(path)
        if hit is None:
            hit = memo[path] = self._rel(path)
        return hit

    @cached_property
    def _rel_memo(self) -> dict[str, str]:
        return {}

    def _rel(self, path: str) -> str:
        if not os.path.isabs(path):
            return path
        base = os.path.abspath(os.fspath(self.base_dir))
        target = os.path.abspath(path)
        try:
            if os.path.commonpath([base, target]) != base:
                return path
        except ValueError:  # different drives
            return path
        return os.path.relpath(target, base)

    def location(self, finding: Finding) -> str:
        """``file:line`` of the finding's resource (``file`` alone without a line)."""
        res = finding.resource
        file = self.rel(res.file) or "(no file)"
        return f"{file}:{res.line}" if res.line and res.line > 0 else file

    def root_hint(self, finding: Finding) -> str | None:
        """The finding's Terraform root module when its file lies outside that root (a shared
        module evaluated from several example roots), else None."""
        res = finding.resource
        root = res.meta.get("root")
        if not isinstance(root, str) or not res.file:
            return None
        memo = self._root_hint_memo
        key = (res.file, root)
        if key not in memo:
            file, base = os.path.abspath(res.file), os.path.abspath(root)
            inside = file.startswith(base.rstrip(os.sep) + os.sep)
            memo[key] = None if inside else (self.rel(root) or root)
        return memo[key]

    @cached_property
    def _root_hint_memo(self) -> dict[tuple[str, str], str | None]:
        return {}

    @cached_property
    def rules_by_id(self) -> dict[str, Rule]:
        """The pack's rules by id (disabled ones included)."""
        return {r.id: r for r in self.pack.rules}

    @cached_property
    def blocking(self) -> list[Finding]:
        """Unsuppressed failed findings at or above the threshold (what makes exit code 1)."""
        from soc2infra._cogs.exitcodes import blocking

        return list(blocking(self.result, self.threshold))


def sorted_findings(data: ReportInput, findings: Iterable[Finding]) -> list[Finding]:
    """*findings* in report order: file, line, rule id, address."""
    return sorted(findings, key=lambda f: (data.rel(f.resource.file), f.resource.line, f.rule_id,
                                           f.resource.address))


def _text(data: ReportInput) -> str:
    from soc2infra._core.reports import text

    return text.render(data)


def _json(data: ReportInput) -> str:
    from soc2infra._core.reports import json_report

    return json_report.render(data)


def _sarif(data: ReportInput) -> str:
    from soc2infra._core.reports import sarif

    return sarif.render(data)


def _junit(data: ReportInput) -> str:
    from soc2infra._core.reports import junit

    return junit.render(data)


def _markdown(data: ReportInput) -> str:
    from soc2infra._core.reports import markdown

    return markdown.render(data)


FORMATS: dict[str, Callable[[ReportInput], str]] = {
    "text": _text,
    "json": _json,
    "sarif": _sarif,
    "junit": _junit,
    "markdown": _markdown,
}


def render(fmt: str, data: ReportInput) -> str:
    """Render *data* in format *fmt* (a key of :data:`FORMATS`)."""
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})") from None
    return renderer(data)
