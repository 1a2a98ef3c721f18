"""``soc2infra waiver suggest``: SOC2Waiver YAML from a dry run's denials."""

from __future__ import annotations

from typing import TextIO

import click

from soc2infra._cogs.exitcodes import FINDINGS, OK


@click.group()
def waiver() -> None:
    """Cluster waivers (SOC2Waiver) for accepted risks."""


@waiver.command("suggest")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--days", type=click.IntRange(1, 366), default=90, show_default=True,
              help="expires this many days from today (review it)")
def suggest(source: TextIO, days: int) -> int:
    """Read kubectl/helm dry-run output (SOURCE or stdin) and print one SOC2Waiver per denied object
    and rule, with owner and reason placeholders to fill in. Exit 1 when there was no denial."""
    from soc2infra._core.waiver_suggest import parse_denials, suggest_waivers

    denials = parse_denials(source.read())
    if not denials:
        click.echo("no soc2infra denial found in the input", err=True)
        return FINDINGS
    click.echo(suggest_waivers(denials, days=days), nl=False)
    return OK
