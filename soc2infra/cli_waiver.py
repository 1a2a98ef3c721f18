"""``soc2infra waiver suggest``: SOC2Waiver YAML from a dry run's denials."""

from __future__ import annotations

import sys

import click


@click.group()
def waiver() -> None:
    """Cluster waivers (SOC2Waiver) for accepted risks."""


@waiver.command("suggest")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--days", type=click.IntRange(1, 366), default=90, show_default=True,
              help="expires this many days from today (review it)")
def suggest(source: click.utils.LazyFile, days: int) -> None:
    """Read kubectl/helm dry-run output (SOURCE or stdin) and print one SOC2Waiver per denied object
    and rule, with owner and reason placeholders to fill in. Exit 1 when there was no denial."""
    from soc2infra.waiver_suggest import parse_denials, suggest_waivers

    denials = parse_denials(source.read())
    if not denials:
        click.echo("no soc2infra denial found in the input", err=True)
        sys.exit(1)
    click.echo(suggest_waivers(denials, days=days), nl=False)
