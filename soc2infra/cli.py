"""Command-line front door: the command groups, listed explicitly, and the one top-level error
handler. Each command parses options, calls the core and returns an exit code; no business
logic lives here. Heavy modules are imported inside commands to keep start-up fast for
pre-commit.

Exit codes (:mod:`soc2infra._cogs.exitcodes`): 0 clean, 1 findings, 2 user errors (any
:class:`~soc2infra._cogs.errors.UserError`, a bad flag), 3 bugs (with a traceback), 130 Ctrl-C.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from soc2infra import __version__
from soc2infra._cogs.exitcodes import ERROR, INTERNAL, INTERRUPTED, OK


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soc2infra")
def cli() -> None:
    """soc2infra: SOC 2 controls for Terraform and Kubernetes, from pre-commit to admission."""


@cli.result_callback()
@click.pass_context
def _exit_with(ctx: click.Context, code: object) -> None:
    # Every command returns its exit code; this turns it into the process's (click's own runner,
    # as tests and pre-commit use it, would otherwise exit 0 whatever a command returned).
    if isinstance(code, int) and code != OK:
        ctx.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code so tests can call the CLI in-process."""
    from soc2infra._cogs.errors import UserError

    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="soc2infra",
                        standalone_mode=False)
    except SystemExit as exc:  # a library that exits on its own
        return exc.code if isinstance(exc.code, int) else ERROR
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        return INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return ERROR
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        return ERROR
    except Exception as exc:  # noqa: BLE001 - the one top-level handler for bugs
        import traceback

        traceback.print_exc()
        click.echo(f"internal error: {exc.__class__.__name__}: {exc} (soc2infra {__version__})", err=True)
        return INTERNAL
    # A command returns its exit code; --help and --version return nothing (0).
    return code if isinstance(code, int) else OK


def _register_commands() -> None:
    # Command groups live in their own modules, listed explicitly (nothing registers on import).
    from soc2infra._cli.baseline import baseline
    from soc2infra._cli.controls import controls, explain
    from soc2infra._cli.evidence import evidence
    from soc2infra._cli.export import export
    from soc2infra._cli.lab import lab
    from soc2infra._cli.merge import merge
    from soc2infra._cli.policy import policy
    from soc2infra._cli.scan import scan
    from soc2infra._cli.waiver import waiver

    for command in (scan, baseline, policy, lab, evidence, controls, explain, waiver, export, merge):
        cli.add_command(command)


_register_commands()

if __name__ == "__main__":
    sys.exit(main())
