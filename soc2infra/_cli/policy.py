"""``soc2infra policy test|list|docs``: work with the policy pack."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from soc2infra._cogs.exitcodes import FINDINGS, OK


@click.group()
def policy() -> None:
    """Work with the policy pack."""


@policy.command("test")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--rule", "rules", multiple=True, help="Only these rule ids.")
@click.option("--builtin/--no-builtin", default=None,
              help="Include the built-in pack (default: only when no DIRS are given).")
def policy_test(dirs: Sequence[Path], rules: Sequence[str], builtin: bool | None) -> int:
    """Run every rule's own pass/fail examples through the real parsers."""
    from soc2infra._core.pack import load_pack
    from soc2infra._core.policytest import test_pack

    pack = load_pack(dirs, builtin=builtin if builtin is not None else not dirs)
    outcomes = test_pack(pack, set(rules) or None)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        for p in o.problems:
            click.echo(f"FAIL {o.rule_id} [{o.example}]: {p}")
    passed = len(outcomes) - len(failed)
    click.echo(f"{passed} passed, {len(failed)} failed ({len(pack.rules)} rules)")
    return FINDINGS if failed else OK


@policy.command("list")
@click.option("--format", "fmt", type=click.Choice(("text", "markdown")), default="text")
@click.option("--policy-dir", multiple=True, type=click.Path(exists=True, path_type=Path))
def policy_list(fmt: str, policy_dir: Sequence[Path]) -> int:
    """List rules with their SOC 2 criteria (markdown: the generated docs/rules.md)."""
    from soc2infra._app.policydocs import rules_markdown
    from soc2infra._core.pack import load_pack

    pack = load_pack(policy_dir)
    if fmt == "markdown":
        click.echo(rules_markdown(pack), nl=False)
        return OK
    for r in pack.rules:
        click.echo(f"{r.id:<26} {r.severity:<8} {r.category:<14} {','.join(r.controls):<22} {r.title}")
    return OK


@policy.command("docs")
@click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("."),
              show_default=True, help="Repository root holding README.md and docs/.")
def policy_docs(repo: Path) -> int:
    """Regenerate docs/rules.md and the README's authentication rule table from the pack."""
    from soc2infra._app.policydocs import write_docs
    from soc2infra._core.pack import load_pack

    for path in write_docs(load_pack(), repo):
        click.echo(f"updated {path}")
    return OK
