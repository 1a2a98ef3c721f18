"""``soc2infra scan`` and ``soc2infra baseline``: options in, exit code out.

The commands resolve settings (flags > config file > defaults), call the core (scan,
waivers, baseline) and render. Heavy modules are imported inside the commands so that
``soc2infra --version`` and pre-commit start quickly.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from soc2infra import __version__
from soc2infra.config import FORMATS, ConfigError, Settings, find_repo_root, load_settings

if TYPE_CHECKING:
    from soc2infra.engine.policy import PolicyPack
    from soc2infra.model import ScanResult

SEVERITY_CHOICES = ("critical", "high", "medium", "low")
TF_SUFFIXES = (".tf", ".tfvars", ".tfvars.json")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_LOCAL_SOURCE_RE = re.compile(r'^\s*source\s*=\s*"(\.\.?/[^"]*)"', re.MULTILINE)


class ConfigFailure(click.ClickException):
    """A bad configuration, waiver or baseline file given on the command line: exit 2."""

    exit_code = 2


def _scan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``scan`` and ``baseline create`` (what to load and how)."""
    options = [
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Configuration file (default: .soc2infra.yaml or [tool.soc2infra] in "
                          "pyproject.toml, found walking up from here)."),
        click.option("--no-config", is_flag=True, help="Ignore configuration files."),
        click.option("--policy-dir", multiple=True, type=click.Path(path_type=Path),
                     help="Extra rule directory (repeatable; adds to the config's policy_dirs)."),
        click.option("--no-builtin-policies", is_flag=True, default=None, hidden=True,
                     help="Load only --policy-dir rules (tests, custom packs)."),
        click.option("--enable", multiple=True, metavar="PATTERN",
                     help="Only run these rules (id glob or category; repeatable)."),
        click.option("--disable", multiple=True, metavar="PATTERN",
                     help="Never run these rules (id glob or category; repeatable)."),
        click.option("--waivers", "waiver_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Waiver file (default: .soc2infra-waivers.yaml at the scan root, repository "
                          "root or here)."),
        click.option("--var-file", multiple=True, type=click.Path(path_type=Path),
                     help="Terraform variables file."),
        click.option("--helm-values", multiple=True, type=click.Path(path_type=Path),
                     help="Helm values file."),
        click.option("--kube-version", default="1.34.0", show_default=True,
                     help="Kubernetes version for helm."),
        click.option("--jobs", "-j", type=int, default=None, help="Parser processes (default: all cores)."),
        click.option("--download-external-modules/--no-download-external-modules", default=None,
                     help="Fetch registry, git and HTTP modules that `terraform init` has not fetched "
                          "(into the user cache; needs network access)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@click.argument("paths", nargs=-1)
@_scan_options
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: text, or the config's format).")
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here (the text summary still goes to the terminal).")
@click.option("--severity-threshold", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Lowest severity that fails the scan (default: low).")
@click.option("--fail-on-unknown/--no-fail-on-unknown", default=None,
              help="Treat undecidable results as failures.")
@click.option("--fail-on-unscanned/--no-fail-on-unscanned", default=None,
              help="Exit 1 when a module could not be scanned (remote source not fetched, …).")
@click.option("--baseline", "baseline_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Only findings absent from this baseline fail (see `soc2infra baseline create`).")
@click.option("--changed-only", is_flag=True,
              help="PATHS are changed files (pre-commit): scan the root modules, charts, kustomizations "
                   "and manifests that contain them.")
@click.option("--evidence", "evidence_ledger", envvar="SOC2INFRA_LEDGER",
              help="Record this scan in the evidence ledger (SQLite file or postgresql://…).")
@click.option("--evidence-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="SOC2INFRA_EVIDENCE_KEY", help="Ed25519 private key that signs the record.")
@click.option("--no-color", is_flag=True, help="Plain text output.")
def scan(paths: Sequence[str], config_file: Path | None, no_config: bool, policy_dir: Sequence[Path],
         no_builtin_policies: bool | None, enable: Sequence[str], disable: Sequence[str],
         waiver_file: Path | None, var_file: Sequence[Path], helm_values: Sequence[Path], kube_version: str,
         jobs: int | None, download_external_modules: bool | None, fmt: str | None,
         output_file: Path | None, severity_threshold: str | None, fail_on_unknown: bool | None,
         fail_on_unscanned: bool | None, baseline_file: Path | None, changed_only: bool,
         evidence_ledger: str | None, evidence_key: Path | None, no_color: bool) -> None:
    """Scan Terraform (HCL or plan JSON) and Kubernetes manifests. Use - for standard input."""
    from soc2infra.exitcodes import OK, exit_code
    from soc2infra.reports import ReportInput, render

    settings = _settings(config_file, no_config, {
        "severity_threshold": severity_threshold, "format": fmt, "fail_on_unknown": fail_on_unknown,
        "enable": enable, "disable": disable, "policy_dirs": policy_dir, "waiver_file": waiver_file,
        "baseline": baseline_file, "builtin_policies": False if no_builtin_policies else None,
        "fail_on_unscanned": fail_on_unscanned, "download_external_modules": download_external_modules,
    })
    if changed_only:
        targets = scan_units(paths, find_repo_root(Path.cwd()) or Path.cwd())
        if not targets:
            sys.exit(OK)  # only files no scan unit contains (docs, CI config): nothing to check
    elif not paths:
        raise click.UsageError("give at least one PATH (a directory, a file, or - for standard input)")
    else:
        targets = list(paths)
    pack, warnings = _load_pack(settings)
    result = _run(targets, pack, var_file, helm_values, kube_version, jobs,
                  settings.download_external_modules)
    result.warnings = warnings + result.warnings
    # Changed files are not scan roots: their waiver file is the repository's.
    _apply_accepted_risks(result, settings, _waiver_dirs([] if changed_only else paths, settings))

    data = ReportInput(result=result, pack=pack, threshold=settings.severity_threshold,
                       tool_version=__version__, base_dir=str(Path.cwd()),
                       color=not no_color and sys.stdout.isatty())
    if output_file is not None:
        output_file.write_text(render(settings.format, data), encoding="utf-8")
        if settings.format != "text":
            click.echo(render("text", data), nl=False)
    else:
        click.echo(render(settings.format, data), nl=False)
    code = exit_code(result, settings.severity_threshold, settings.fail_on_unknown,
                     settings.fail_on_unscanned)
    if evidence_ledger:
        _record_evidence(evidence_ledger, evidence_key, result, pack, targets, code)
    sys.exit(code)


def _record_evidence(url: str, key: Path | None, result: object, pack: object, targets: Sequence[str],
                     code: int) -> None:
    """Append the scan to the ledger; a scan whose evidence cannot be written is an error (2):
    evidence is never silently dropped."""
    from soc2infra.evidence import EvidenceError, open_ledger
    from soc2infra.evidence.scan_record import scan_entry

    try:
        ledger = open_ledger(url, signing_key=key)
        try:
            (seq,) = ledger.append([scan_entry(result, pack, list(targets), code)])  # type: ignore[arg-type]
        finally:
            ledger.close()
    except (EvidenceError, OSError, ValueError) as exc:
        click.echo(f"error: could not record evidence in {url}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"evidence: recorded as #{seq} in {url}", err=True)


@click.group()
def baseline() -> None:
    """Accept today's findings so that only new ones fail."""


@baseline.command("create")
@click.argument("paths", nargs=-1, required=True)
@_scan_options
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Baseline file to write (default: .soc2infra-baseline.json).")
def baseline_create(paths: Sequence[str], config_file: Path | None, no_config: bool,
                    policy_dir: Sequence[Path], no_builtin_policies: bool | None, enable: Sequence[str],
                    disable: Sequence[str], waiver_file: Path | None, var_file: Sequence[Path],
                    helm_values: Sequence[Path], kube_version: str, jobs: int | None,
                    download_external_modules: bool | None, output: Path | None) -> None:
    """Scan PATHS and record every unwaived finding in a baseline file.

    Later scans with `--baseline FILE` (or `baseline:` in the config) fail only on findings
    that are not in it. Findings suppressed by a waiver are not recorded, so they fail again
    when the waiver expires.
    """
    from soc2infra.baseline import DEFAULT_BASELINE_FILE, write_baseline
    from soc2infra.exitcodes import ERROR, OK

    settings = _settings(config_file, no_config, {
        "enable": enable, "disable": disable, "policy_dirs": policy_dir, "waiver_file": waiver_file,
        "builtin_policies": False if no_builtin_policies else None,
        "download_external_modules": download_external_modules,
    })
    # A new baseline never applies the old one: it records everything that is not waived.
    settings = replace(settings, waivers=replace(settings.waivers, baseline=None))
    pack, warnings = _load_pack(settings)
    result = _run(list(paths), pack, var_file, helm_values, kube_version, jobs,
                  settings.download_external_modules)
    _apply_accepted_risks(result, settings, _waiver_dirs(paths, settings))
    target = output or Path(DEFAULT_BASELINE_FILE)
    count = write_baseline(target, result.findings, __version__)
    for w in warnings + result.warnings:
        click.echo(f"warning: {w}", err=True)
    for e in result.errors:
        click.echo(f"error: {e.file}{f':{e.line}' if e.line else ''}: {e.message}", err=True)
    click.echo(f"wrote {count} finding{'s' if count != 1 else ''} to {target}")
    if result.errors:
        click.echo("the baseline does not cover the files above that could not be read", err=True)
    sys.exit(ERROR if result.errors else OK)


def _settings(config_file: Path | None, no_config: bool, flags: dict[str, Any]) -> Settings:
    try:
        return load_settings(flags, config_file=config_file, use_config=not no_config)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None


def _load_pack(settings: Settings) -> tuple[PolicyPack, list[str]]:
    """The policy pack with the configured rule selection applied (and its warnings)."""
    from soc2infra.config import select_rules
    from soc2infra.pack import load_pack

    pack = load_pack(settings.rules.policy_dirs, builtin=settings.rules.builtin)
    return select_rules(pack, settings.rules)


def _run(targets: Sequence[str], pack: PolicyPack, var_file: Sequence[Path], helm_values: Sequence[Path],
         kube_version: str, jobs: int | None, download: bool = False) -> ScanResult:
    from soc2infra.progress import long_task_status
    from soc2infra.scan import ScanOptions
    from soc2infra.scan import scan as run_scan

    options = ScanOptions(var_files=tuple(var_file), helm_values=tuple(helm_values),
                          kube_version=kube_version, jobs=jobs, download_external_modules=download)
    with long_task_status("scanning…"):
        return run_scan(targets, pack, options)


def _waiver_dirs(paths: Iterable[str], settings: Settings) -> list[Path]:
    """Directories a waiver file may sit in, most specific first: the scanned directories
    (or the directories of scanned files), the configuration file's directory, the
    repository root, the working directory."""
    dirs = [(Path(p) if Path(p).is_dir() else Path(p).parent).resolve() for p in paths if p != "-"]
    if settings.source is not None:
        dirs.append(settings.source.parent.resolve())
    cwd = Path.cwd().resolve()
    repo = find_repo_root(cwd)
    return dirs + ([repo] if repo else []) + [cwd]


def _display(path: Path) -> str:
    """*path* relative to the working directory when it lies below it (as reports show files)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _apply_accepted_risks(result: ScanResult, settings: Settings, waiver_dirs: Sequence[Path]) -> None:
    """Waiver file, then baseline: suppress what they accept, record their errors and warnings.

    Inline waivers were already applied by the scan. Problems with these files are errors in
    the result (exit 2), next to the findings, rather than an abort: the report still shows
    everything else.
    """
    from soc2infra.baseline import BaselineError, apply_baseline, load_baseline
    from soc2infra.model import Error
    from soc2infra.waivers import apply_waiver_entries, find_waiver_file, load_waiver_file

    path = settings.waivers.file or find_waiver_file(waiver_dirs)
    if path is not None:
        entries, errors = load_waiver_file(Path(_display(path)))
        result.errors.extend(errors)
        result.warnings.extend(apply_waiver_entries(result.findings, entries, date.today(),
                                                    settings.waivers.warning_days))
    if settings.waivers.baseline is not None:
        try:
            accepted = load_baseline(Path(_display(settings.waivers.baseline)))
        except BaselineError as exc:
            result.errors.append(Error(exc.file, None, exc.problem))
        else:
            apply_baseline(result.findings, accepted)


# --- pre-commit: changed files → scan units ---------------------------------------------------------


def scan_units(files: Iterable[str], repo_root: Path) -> list[str]:
    """Map changed files to what must be scanned to judge them.

    - ``.tf`` / ``.tfvars``: the root modules whose tree holds the file's directory (the
      directory itself, or every root that calls it as a local module, transitively); the
      root's ``.tf`` files are returned, not the directory, so nested roots are not swept in.
    - a file under a Helm chart: the chart (its ``Chart.yaml``); under a kustomization: the
      kustomization file (nearest one wins).
    - any other YAML/JSON file: the file itself.

    Deleted files, files in hidden or vendored directories (``.github``, ``.terraform``,
    ``node_modules``) and dotfiles (``.pre-commit-config.yaml``) are skipped, as a directory
    scan would skip them.
    """
    from soc2infra.scan import KUSTOMIZATION_FILES, SKIP_DIRS

    root = repo_root.resolve()
    targets: dict[str, None] = {}
    tf_dirs: set[Path] = set()
    for raw in files:
        path = Path(raw)
        if not path.is_file() or _hidden(path.resolve(), root, SKIP_DIRS):
            continue
        name = path.name
        if name.endswith(TF_SUFFIXES):
            tf_dirs.add(path.resolve().parent)
        elif name.endswith(MANIFEST_SUFFIXES):
            unit = _enclosing_unit(path.resolve().parent, root, KUSTOMIZATION_FILES)
            targets[_display(unit) if unit is not None else raw] = None
    if tf_dirs:
        for module_root in _terraform_roots(tf_dirs, root, SKIP_DIRS):
            for tf in sorted(module_root.glob("*.tf")):
                targets[_display(tf)] = None
    return list(targets)


def _hidden(path: Path, root: Path, skip_dirs: frozenset[str]) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts[-1:]
    return any(p.startswith(".") or p in skip_dirs for p in parts)


def _enclosing_unit(start: Path, root: Path, kustomization_files: Iterable[str]) -> Path | None:
    """The nearest chart (``Chart.yaml``) or kustomization file at or above *start*, within *root*."""
    for d in (start, *start.parents):
        if (d / "Chart.yaml").is_file():
            return d / "Chart.yaml"
        for k in kustomization_files:
            if (d / k).is_file():
                return d / k
        if d == root or root not in d.parents:
            break
    return None


def _terraform_roots(dirs: Iterable[Path], repo_root: Path, skip_dirs: frozenset[str]) -> list[Path]:
    """Root modules containing *dirs*: follow ``source = "./…"`` calls upwards until a module
    nobody in the repository calls. Reads ``.tf`` text with a regex (no parsing): cheap
    enough for pre-commit even on large repositories."""
    callers: dict[Path, set[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(repo_root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs and not d.startswith(".")]
        here = Path(dirpath)
        for name in filenames:
            if not name.endswith(".tf"):
                continue
            try:
                text = (here / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for m in _LOCAL_SOURCE_RE.finditer(text):
                callers.setdefault((here / m.group(1)).resolve(), set()).add(here)
    roots: set[Path] = set()
    for start in dirs:
        seen: set[Path] = set()
        todo = [start]
        found = False
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            up = callers.get(d, set()) - {d}
            if up:
                todo.extend(up)
            else:
                roots.add(d)
                found = True
        if not found:  # a cycle of modules calling each other: scan the changed one as it is
            roots.add(start)
    return sorted(roots)
