"""``soc2infra scan`` and ``soc2infra baseline``: options in, exit code out."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from soc2infra import __version__

FORMATS = ("text", "json", "sarif", "junit", "markdown")
SEVERITY_CHOICES = ("critical", "high", "medium", "low")


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default=None, help="Output format.")
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here (the text summary still goes to the terminal).")
@click.option("--severity-threshold", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Lowest severity that fails the scan (default: low).")
@click.option("--policy-dir", multiple=True, type=click.Path(exists=False, path_type=Path),
              help="Extra rule directory (repeatable).")
@click.option("--var-file", multiple=True, type=click.Path(path_type=Path), help="Terraform variables file.")
@click.option("--helm-values", multiple=True, type=click.Path(path_type=Path), help="Helm values file.")
@click.option("--kube-version", default="1.34.0", show_default=True, help="Kubernetes version for helm.")
@click.option("--fail-on-unknown", is_flag=True, help="Treat undecidable results as failures.")
@click.option("--jobs", "-j", type=int, default=None, help="Parser processes (default: all cores).")
@click.option("--no-color", is_flag=True, help="Plain text output.")
def scan(paths: Sequence[str], fmt: str | None, output_file: Path | None, severity_threshold: str | None,
         policy_dir: Sequence[Path], var_file: Sequence[Path], helm_values: Sequence[Path], kube_version: str,
         fail_on_unknown: bool, jobs: int | None, no_color: bool) -> None:
    """Scan Terraform (HCL or plan JSON) and Kubernetes manifests. Use - for standard input."""
    from soc2infra.engine.policy import load_pack
    from soc2infra.exitcodes import exit_code
    from soc2infra.reports import ReportInput, render
    from soc2infra.scan import ScanOptions
    from soc2infra.scan import scan as run_scan

    threshold = severity_threshold or "low"
    pack = load_pack(policy_dir)
    result = run_scan(paths, pack, ScanOptions(var_files=tuple(var_file), helm_values=tuple(helm_values),
                                               kube_version=kube_version, jobs=jobs))
    fmt = fmt or "text"
    color = not no_color and sys.stdout.isatty()
    data = ReportInput(result=result, pack=pack, threshold=threshold, tool_version=__version__,
                       base_dir=str(Path.cwd()), color=color)
    if output_file is not None:
        output_file.write_text(render(fmt, data), encoding="utf-8")
        if fmt != "text":
            click.echo(render("text", data), nl=False)
    else:
        click.echo(render(fmt, data), nl=False)
    sys.exit(exit_code(result, threshold, fail_on_unknown))



@click.group()
def baseline() -> None:
    """Record current findings so only new ones fail (not implemented yet)."""
