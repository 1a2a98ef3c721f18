"""``soc2infra scan``: options in, exit code out.

The flags become one :class:`~soc2infra._core.config.Settings` (flags > config file > defaults),
the core (:mod:`soc2infra._app.run`) scans, and this module renders. A new scan option is one
``click.option`` in :func:`scan_options` (or on :func:`scan`) plus its field in
``Settings``. Heavy modules are imported inside the command so that ``soc2infra --version``
and pre-commit start quickly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from soc2infra import __version__
from soc2infra._cogs.exitcodes import OK
from soc2infra._core.config import Settings, load_settings
from soc2infra._core.reports import FORMATS

SEVERITY_CHOICES = ("critical", "high", "medium", "low")
F = TypeVar("F", bound=Callable[..., Any])


def scan_options(func: F) -> F:
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


def settings_from_flags(flags: dict[str, Any]) -> Settings:
    """The one options object: the configuration file (unless ``--no-config``) under the flags."""
    config_file = flags.pop("config_file", None)
    no_config = bool(flags.pop("no_config", False))
    if flags.get("no_builtin_policies"):
        flags["builtin_policies"] = False
    flags["policy_dirs"] = flags.pop("policy_dir", ())
    return load_settings(flags, config_file=config_file, use_config=not no_config)


@click.command()
@click.argument("paths", nargs=-1)
@scan_options
@click.option("--format", "-f", "format", type=click.Choice(list(FORMATS)), default=None,
              help="Output format (default: text, or the config's format).")
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here (the text summary still goes to the terminal).")
@click.option("--severity-threshold", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Lowest severity that fails the scan (default: low).")
@click.option("--fail-on-unknown/--no-fail-on-unknown", default=None,
              help="Treat undecidable results as failures.")
@click.option("--fail-on-unscanned/--no-fail-on-unscanned", default=None,
              help="Exit 1 when a module could not be scanned (remote source not fetched, …).")
@click.option("--baseline", "baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Only findings absent from this baseline fail (see `soc2infra baseline create`).")
@click.option("--changed-only", is_flag=True,
              help="PATHS are changed files (pre-commit): scan the root modules, charts, kustomizations "
                   "and manifests that contain them.")
@click.option("--evidence", "evidence_ledger", envvar="SOC2INFRA_LEDGER",
              help="Record this scan in the evidence ledger (SQLite file or postgresql://…).")
@click.option("--evidence-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="SOC2INFRA_EVIDENCE_KEY", help="Ed25519 private key that signs the record.")
@click.option("--shard", "shard", default=None, metavar="I/N",
              help="Scan only the I-th of N deterministic parts of the scan units (a CI matrix job); "
                   "combine the JSON results with `soc2infra merge`.")
@click.option("--with-checkov", is_flag=True,
              help="Also run checkov's Terraform and Kubernetes checks "
                   "(pip install 'soc2infra[checkov]') and merge their SOC 2-relevant findings.")
@click.option("--all-checkov", is_flag=True,
              help="With --with-checkov: keep checkov ids with no SOC 2 mapping.")
@click.option("--no-cache", is_flag=True, help="Evaluate everything again (no result cache).")
@click.option("--no-color", is_flag=True, help="Plain text output.")
def scan(paths: Sequence[str], **flags: Any) -> int:
    """Scan Terraform (HCL or plan JSON) and Kubernetes manifests. Use - for standard input."""
    from soc2infra._app.run import (
        ScanRun,
        record_scan,
        run_scan,
        scan_exit_code,
        scan_targets,
        selected_pack,
    )
    from soc2infra._cogs.progress import long_task_status
    from soc2infra._core.reports import ReportInput, render

    settings = settings_from_flags(flags)
    if not paths and not settings.changed_only:
        raise click.UsageError("give at least one PATH (a directory, a file, or - for standard input)")
    targets = scan_targets(paths, settings)
    if settings.changed_only and not targets:
        return OK  # only files no scan unit contains (docs, CI config): nothing to check
    pack, warnings = selected_pack(settings)
    with long_task_status("scanning…"):
        result = run_scan(paths, targets, pack, settings)
    result.warnings = warnings + result.warnings

    data = ReportInput(result=result, pack=pack, threshold=settings.severity_threshold,
                       tool_version=__version__, base_dir=str(Path.cwd()),
                       color=settings.output.color and sys.stdout.isatty(),
                       include_passes=settings.pipeline.shard is not None)
    if settings.output.file is not None:
        settings.output.file.write_text(render(settings.format, data), encoding="utf-8")
        if settings.format != "text":
            click.echo(render("text", data), nl=False)
    else:
        click.echo(render(settings.format, data), nl=False)
    code = scan_exit_code(result, settings)
    if settings.evidence.ledger:
        seq = record_scan(ScanRun(targets, pack, result, code), settings)
        from soc2infra.evidence.backend import display_url

        click.echo(f"evidence: recorded as #{seq} in {display_url(settings.evidence.ledger or '')}", err=True)
    return code
