"""Command-line front door. Commands parse options, call the core and return an exit code;
no business logic lives here. Heavy modules are imported inside commands to keep
start-up fast for pre-commit."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from soc2infra import __version__
from soc2infra.exitcodes import ERROR, INTERNAL, OK


class UsageFailure(Exception):
    """A problem with the command line or configuration: exit 2 with a message."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soc2infra")
def cli() -> None:
    """soc2infra: SOC 2 controls for Terraform and Kubernetes, from pre-commit to admission."""


@cli.group()
def policy() -> None:
    """Work with the policy pack."""


@policy.command("test")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--rule", "rules", multiple=True, help="Only these rule ids.")
@click.option("--builtin/--no-builtin", default=None,
              help="Include the built-in pack (default: only when no DIRS are given).")
def policy_test(dirs: Sequence[Path], rules: Sequence[str], builtin: bool | None) -> None:
    """Run every rule's own pass/fail examples through the real parsers."""
    from soc2infra.pack import load_pack
    from soc2infra.policytest import test_pack

    pack = load_pack(dirs, builtin=builtin if builtin is not None else not dirs)
    outcomes = test_pack(pack, set(rules) or None)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        for p in o.problems:
            click.echo(f"FAIL {o.rule_id} [{o.example}]: {p}")
    passed = len(outcomes) - len(failed)
    click.echo(f"{passed} passed, {len(failed)} failed ({len(pack.rules)} rules)")
    sys.exit(1 if failed else OK)


@policy.command("list")
@click.option("--format", "fmt", type=click.Choice(("text", "markdown")), default="text")
@click.option("--policy-dir", multiple=True, type=click.Path(exists=True, path_type=Path))
def policy_list(fmt: str, policy_dir: Sequence[Path]) -> None:
    """List rules with their SOC 2 criteria (markdown: the generated docs/rules.md)."""
    from soc2infra.pack import load_pack
    from soc2infra.policydocs import rules_markdown

    pack = load_pack(policy_dir)
    if fmt == "markdown":
        click.echo(rules_markdown(pack), nl=False)
        return
    for r in pack.rules:
        click.echo(f"{r.id:<26} {r.severity:<8} {r.category:<14} {','.join(r.controls):<22} {r.title}")


@policy.command("docs")
@click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("."),
              show_default=True, help="Repository root holding README.md and docs/.")
def policy_docs(repo: Path) -> None:
    """Regenerate docs/rules.md and the README's authentication rule table from the pack."""
    from soc2infra.pack import load_pack
    from soc2infra.policydocs import write_docs

    for path in write_docs(load_pack(), repo):
        click.echo(f"updated {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code so tests can call the CLI in-process."""
    from soc2infra.errors import UserError

    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="soc2infra", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else ERROR
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return ERROR
    except (UserError, UsageFailure) as exc:
        click.echo(f"error: {exc}", err=True)
        return ERROR
    except Exception as exc:  # noqa: BLE001 - the one top-level handler for bugs
        import traceback

        traceback.print_exc()
        click.echo(f"internal error: {exc.__class__.__name__}: {exc} (soc2infra {__version__})", err=True)
        return INTERNAL
    return OK


def _register_commands() -> None:
    # Commands that live in their own modules, listed explicitly.
    from soc2infra.cli_controls import controls, explain
    from soc2infra.cli_evidence import evidence
    from soc2infra.cli_export import export
    from soc2infra.cli_lab import lab
    from soc2infra.cli_scan import baseline, scan
    from soc2infra.cli_waiver import waiver

    cli.add_command(scan)
    cli.add_command(baseline)
    cli.add_command(lab)
    cli.add_command(evidence)
    cli.add_command(controls)
    cli.add_command(explain)
    cli.add_command(waiver)
    cli.add_command(export)


_register_commands()

if __name__ == "__main__":
    sys.exit(main())
