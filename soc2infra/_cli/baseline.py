"""``soc2infra baseline create``: accept today's findings so that only new ones fail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from soc2infra._cli.scan import scan_options, settings_from_flags
from soc2infra._cogs.exitcodes import ERROR, OK


@click.group()
def baseline() -> None:
    """Accept today's findings so that only new ones fail."""


@baseline.command("create")
@click.argument("paths", nargs=-1, required=True)
@scan_options
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Baseline file to write (default: .soc2infra-baseline.json).")
def baseline_create(paths: Sequence[str], output: Path | None, **flags: Any) -> int:
    """Scan PATHS and record every unwaived finding in a baseline file.

    Later scans with `--baseline FILE` (or `baseline:` in the config) fail only on findings
    that are not in it. Findings suppressed by a waiver are not recorded, so they fail again
    when the waiver expires.
    """
    from soc2infra._app.run import create_baseline
    from soc2infra._core.baseline import DEFAULT_BASELINE_FILE

    target = output or Path(DEFAULT_BASELINE_FILE)
    count, run = create_baseline(paths, settings_from_flags(flags), target)
    for w in run.warnings + run.result.warnings:
        click.echo(f"warning: {w}", err=True)
    for e in run.result.errors:
        click.echo(f"error: {e.file}{f':{e.line}' if e.line else ''}: {e.message}", err=True)
    click.echo(f"wrote {count} finding{'s' if count != 1 else ''} to {target}")
    if run.result.errors:
        click.echo("the baseline does not cover the files above that could not be read", err=True)
    return ERROR if run.result.errors else OK
