"""``soc2infra evidence verify|export|report|keygen``: the ledger for SOC 2 Type II auditors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from soc2infra.exitcodes import FINDINGS, OK

LEDGER_HELP = "Ledger: a SQLite file, sqlite:///path or postgresql://… (env SOC2INFRA_LEDGER)."


@click.group()
def evidence() -> None:
    """Verify, export and report on the evidence ledger."""


@evidence.command("verify")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--public-key", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Ed25519 public key(s): every record must be signed by one of them.")
@click.option("--expect-head", help="An anchor SEQ:HASH taken earlier that must still be in the chain.")
@click.option("--expect-count", type=int, help="The ledger must hold at least this many records.")
@click.option("--json", "as_json", is_flag=True)
def verify_cmd(ledger: str, public_key: Sequence[Path], expect_head: str | None, expect_count: int | None,
               as_json: bool) -> int:
    """Check the whole hash chain; name the first broken record (exit 1 when broken)."""
    from soc2infra.evidence import verify_ledger

    result = verify_ledger(ledger, public_key=list(public_key) or None, expect_head=expect_head,
                           expect_count=expect_count)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))
    return OK if result.ok else FINDINGS


@evidence.command("export")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--from", "start", help="First day (YYYY-MM-DD) or ISO time.")
@click.option("--to", "end", help="Last day (included) or ISO time (excluded).")
@click.option("--format", "fmt", type=click.Choice(("jsonl", "csv")), default="jsonl", show_default=True,
              help="jsonl: one record a line; csv: one row per rule result (the population to sample).")
@click.option("--output", "-o", default="-", help="File to write (default: standard output).")
def export_cmd(ledger: str, start: str | None, end: str | None, fmt: str, output: str) -> int:
    """Export the records of a period for an auditor."""
    from soc2infra.evidence import export_records

    n = export_records(ledger, start, end, fmt, output)
    if output != "-":
        click.echo(f"wrote {n} {'records' if fmt == 'jsonl' else 'rows'} to {output}", err=True)
    return OK


@evidence.command("report")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--from", "start", help="First day of the observation period (YYYY-MM-DD).")
@click.option("--to", "end", help="Last day of the observation period (included).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("soc2-report.html"), show_default=True, help="The HTML report.")
@click.option("--json-output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report's data as JSON.")
@click.option("--public-key", multiple=True, type=click.Path(exists=True, path_type=Path))
def report_cmd(ledger: str, start: str | None, end: str | None, output: Path, json_output: Path | None,
               public_key: Sequence[Path]) -> int:
    """Per SOC 2 criterion: population, passes, failures, denials, waivers, coverage gaps, trend."""
    from soc2infra.evidence import build_report, render_html
    from soc2infra.pack import load_pack

    controls = {cid: (c.name, c.intent) for cid, c in load_pack().controls.items()}
    report = build_report(ledger, start, end, controls, public_key=list(public_key) or None)
    output.write_text(render_html(report), encoding="utf-8")
    if json_output is not None:
        json_output.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    click.echo(f"wrote {output}" + (f" and {json_output}" if json_output else ""))
    return OK


@evidence.command("keygen")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path), required=False)
def keygen_cmd(private_key: Path, public_key: Path | None) -> int:
    """Create an Ed25519 key pair for signing records (prints the key id)."""
    from soc2infra.evidence import generate_keypair

    click.echo(generate_keypair(private_key, public_key))
    return OK
