"""``soc2infra controls`` and ``soc2infra explain``: the pack seen from the SOC 2 criteria, and
one rule with its own examples."""

from __future__ import annotations

import json

import click

from soc2infra._cogs.exitcodes import OK
from soc2infra._core.controls import PROVIDERS


@click.command("controls")
@click.option("--provider", type=click.Choice(PROVIDERS), default=None,
              help="Count only this provider's rules.")
@click.option("--format", "fmt", type=click.Choice(("text", "markdown", "json")), default="text",
              show_default=True)
def controls(provider: str | None, fmt: str) -> int:
    """Each SOC 2 criterion with its name and the number of rules per provider."""
    from soc2infra._core.controls import controls_markdown, controls_table, controls_text
    from soc2infra._core.pack import load_pack

    pack = load_pack()
    if fmt == "json":
        click.echo(json.dumps({"controls": controls_table(pack, provider)}, indent=2))
    elif fmt == "markdown":
        click.echo(controls_markdown(pack, provider), nl=False)
    else:
        click.echo(controls_text(pack, provider), nl=False)
    return OK


@click.command("explain")
@click.argument("rule_id")
def explain(rule_id: str) -> int:
    """Title, why it matters, criteria, remediation and the rule's failing and passing examples."""
    from soc2infra._cogs.errors import UserError
    from soc2infra._core.controls import explain_text
    from soc2infra._core.pack import load_pack

    pack = load_pack()
    rule = next((r for r in pack.rules if r.id.lower() == rule_id.lower()), None)
    if rule is None:
        raise UserError(f"no rule {rule_id!r} (soc2infra policy list shows the rule ids)")
    click.echo(explain_text(pack, rule), nl=False)
    return OK
