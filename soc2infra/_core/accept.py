"""Accepted risk after a scan: the waiver file, then the baseline. Each suppresses the findings
it accepts; problems with either file become errors in the result (exit 2) next to the
findings rather than an abort, so the report still shows everything else. Inline waivers were
already applied by the scan itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from soc2infra._cogs.model import Error, ScanResult
from soc2infra._core.baseline import BaselineError, apply_baseline, load_baseline
from soc2infra._core.changed import display_path
from soc2infra._core.config import Settings, find_repo_root
from soc2infra._core.waivers import apply_waiver_entries, find_waiver_file, load_waiver_file


def waiver_dirs(paths: Iterable[str], settings: Settings) -> list[Path]:
    """Directories a waiver file may sit in, most specific first: the scanned directories
    (or the directories of scanned files), the configuration file's directory, the
    repository root, the working directory."""
    dirs = [(Path(p) if Path(p).is_dir() else Path(p).parent).resolve() for p in paths if p != "-"]
    if settings.source is not None:
        dirs.append(settings.source.parent.resolve())
    cwd = Path.cwd().resolve()
    repo = find_repo_root(cwd)
    return dirs + ([repo] if repo else []) + [cwd]


def apply_accepted_risks(result: ScanResult, settings: Settings, dirs: Sequence[Path]) -> None:
    """Waiver file (from *settings* or found in *dirs*), then baseline: suppress what they
    accept, record their errors and warnings in *result*."""
    path = settings.waivers.file or find_waiver_file(dirs)
    if path is not None:
        entries, errors = load_waiver_file(Path(display_path(path)), settings.waivers.max_days, date.today())
        result.errors.extend(errors)
        result.warnings.extend(apply_waiver_entries(result.findings, entries, date.today(),
                                                    settings.waivers.warning_days))
    if settings.waivers.baseline is not None:
        try:
            accepted = load_baseline(Path(display_path(settings.waivers.baseline)))
        except BaselineError as exc:
            result.errors.append(Error(exc.file, None, exc.problem))
        else:
            apply_baseline(result.findings, accepted)
