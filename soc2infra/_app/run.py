"""One ``soc2infra scan`` or ``baseline create`` end to end, without the terminal: settings →
policy pack (with the rule selection) → scan → accepted risks → exit code, and the evidence
record. The CLI parses flags into :class:`~soc2infra._core.config.Settings`, calls these and renders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from soc2infra._cogs.exitcodes import exit_code
from soc2infra._cogs.model import ScanResult
from soc2infra._core.accept import apply_accepted_risks, waiver_dirs
from soc2infra._core.baseline import write_baseline
from soc2infra._core.changed import scan_units
from soc2infra._core.config import Settings, find_repo_root, select_rules
from soc2infra._core.engine.policy import PolicyPack
from soc2infra._core.pack import load_pack
from soc2infra._core.pipeline import run_pipeline
from soc2infra.evidence.records import EvidenceError


@dataclass(slots=True)
class ScanRun:
    """What a scan produced: the targets scanned, the pack used, the result and its exit code."""

    targets: list[str]
    pack: PolicyPack
    result: ScanResult
    code: int
    warnings: list[str] = field(default_factory=list)


def scan_targets(paths: Sequence[str], settings: Settings) -> list[str]:
    """What to scan: *paths* as given, or (``changed_only``) the scan units holding them."""
    if settings.changed_only:
        return scan_units(paths, find_repo_root(Path.cwd()) or Path.cwd())
    return list(paths)


def selected_pack(settings: Settings) -> tuple[PolicyPack, list[str]]:
    """The policy pack with the configured rule selection applied (and its warnings)."""
    pack = load_pack(settings.rules.policy_dirs, builtin=settings.rules.builtin)
    return select_rules(pack, settings.rules)


def run_scan(paths: Sequence[str], targets: list[str], pack: PolicyPack, settings: Settings) -> ScanResult:
    """Scan *targets* and apply the waiver file and baseline. *paths* are what the user named:
    changed files are not scan roots, so their waiver file is the repository's."""
    result = run_pipeline(targets, pack, settings.inputs, settings.pipeline)
    apply_accepted_risks(result, settings, waiver_dirs([] if settings.changed_only else paths, settings))
    return result


def scan_exit_code(result: ScanResult, settings: Settings) -> int:
    """0 clean, 1 blocking findings (or unscanned modules when asked), 2 errors (errors win)."""
    return exit_code(result, settings.severity_threshold, settings.fail_on_unknown,
                     settings.fail_on_unscanned)


class EvidenceNotRecorded(EvidenceError):
    """A scan whose evidence cannot be written is an error: evidence is never silently dropped."""


def record_scan(run: ScanRun, settings: Settings) -> int:
    """Append the scan to the configured ledger; returns the record's sequence number."""
    # Imported here: the ledger's dependencies (cryptography, a database driver) are only paid
    # for by scans that record evidence.
    from soc2infra.evidence.ledger import open_ledger
    from soc2infra.evidence.scan_record import scan_entry

    url = settings.evidence.ledger
    assert url is not None, "record_scan needs settings.evidence.ledger"
    try:
        ledger = open_ledger(url, signing_key=settings.evidence.key)
        try:
            (seq,) = ledger.append([scan_entry(run.result, run.pack, run.targets, run.code)])
        finally:
            ledger.close()
    except (EvidenceError, OSError, ValueError) as exc:
        from soc2infra.evidence.backend import display_url, mask_ledger

        # Drivers quote the connection string in their errors: never show its password.
        message, where = mask_ledger(str(exc), url), display_url(url)
        raise EvidenceNotRecorded(f"could not record evidence: "
                                  f"{message if where in message else f'{where}: {message}'}") from exc
    return seq


def create_baseline(paths: Sequence[str], settings: Settings, output: Path) -> tuple[int, ScanRun]:
    """Scan *paths* and write every unwaived finding to *output*; returns the count and the run.
    A new baseline never applies the old one: it records everything that is not waived."""
    settings = replace(settings, waivers=replace(settings.waivers, baseline=None), changed_only=False)
    pack, warnings = selected_pack(settings)
    result = run_scan(paths, list(paths), pack, settings)
    from soc2infra import __version__

    count = write_baseline(output, result.findings, __version__)
    return count, ScanRun(list(paths), pack, result, scan_exit_code(result, settings), warnings)
