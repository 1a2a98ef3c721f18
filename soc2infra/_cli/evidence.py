"""``soc2infra evidence verify|export|report|keygen``: the ledger for SOC 2 Type II auditors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from soc2infra._cogs.errors import UserError
from soc2infra._cogs.exitcodes import FINDINGS, OK

if TYPE_CHECKING:
    from soc2infra.evidence.anchor_s3 import LockMode
    from soc2infra.evidence.population import Population

LEDGER_HELP = "Ledger: a SQLite file, sqlite:///path or postgresql://… (env SOC2INFRA_LEDGER)."
F = TypeVar("F", bound=Callable[..., Any])


def population_options(fn: F) -> F:
    """--cluster, --source and --include-dry-run: which records make up the population."""
    fn = click.option("--include-dry-run", is_flag=True,
                      help="Count dry-run admission requests too (left out by default: they changed "
                           "nothing).")(fn)
    fn = click.option("--source", "sources", multiple=True,
                      type=click.Choice(("admission", "audit", "scan", "waiver")),
                      help="Only records of this source (repeatable; default: all).")(fn)
    fn = click.option("--cluster", "clusters", multiple=True,
                      help="Only records of this cluster id (repeatable; default: all).")(fn)
    return fn


def _population(clusters: Sequence[str], sources: Sequence[str], include_dry_run: bool) -> Population:
    from soc2infra.evidence.population import Population

    return Population(tuple(clusters), tuple(sources), include_dry_run)


def matrix_options(fn: F) -> F:
    """--controls and the prior period: the control matrix and the comparison (report, package)."""
    fn = click.option("--no-prior", is_flag=True, help="Leave out the prior-period comparison.")(fn)
    fn = click.option("--prior-to", help="Last day of the prior period (default: the day before --from).")(fn)
    fn = click.option("--prior-from", help="First day of the prior period (default: as many days as "
                                           "the period, before it).")(fn)
    fn = click.option("--controls", "controls_file", type=click.Path(dir_okay=False, path_type=Path),
                      help="Control file: owner, frequency, test procedure per criterion (default: "
                           ".soc2infra-controls.yaml in the current directory, if any).")(fn)
    return fn


def _prior(start: str | None, end: str | None, prior_from: str | None, prior_to: str | None,
           no_prior: bool) -> tuple[str, str] | None:
    """The prior period asked for: explicit, or the same length before --from (needs --from/--to)."""
    from soc2infra.evidence.compare import prior_window

    if no_prior:
        return None
    if prior_from and prior_to:
        return prior_from, prior_to
    if prior_from or prior_to:
        raise UserError("give both --prior-from and --prior-to (or neither: the same length before --from)")
    if not (start and end):
        return None
    first, last = prior_window(start, end)
    return first.isoformat(), last.isoformat()


def _matrix_inputs(controls_file: Path | None) -> tuple[dict[str, tuple[str, str]], dict[str, list[str]],
                                                          dict[str, Any]]:
    """(criteria, rules per criterion, the control file's settings) for the control matrix."""
    from soc2infra.evidence.control_file import find_control_file, load_control_file

    controls, rules = _pack_tables()
    path = controls_file or find_control_file(Path.cwd())
    if controls_file is not None and not controls_file.is_file():
        raise UserError(f"{controls_file}: no such control file")
    settings = load_control_file(path, sorted(controls)) if path else {}
    return controls, rules, dict(settings)


@contextmanager
def ledger_errors(ledger: str) -> Iterator[None]:
    """A ledger that cannot be used (missing file, unreachable or broken database, truncated file)
    is a user-facing error, exit 2, never a traceback; the message never shows a password."""
    from soc2infra.evidence import EvidenceError
    from soc2infra.evidence.backend import display_url, mask_ledger

    try:
        yield
    except Exception as exc:
        # psycopg's errors too, when a backend did not wrap them (its module is imported lazily).
        expected = isinstance(exc, EvidenceError | OSError | sqlite3.Error)
        if expected or type(exc).__module__.startswith("psycopg"):
            message = mask_ledger(str(exc), ledger)
            where = display_url(ledger)
            raise UserError(message if where in message else f"evidence ledger {where}: {message}") from None
        raise


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

    with ledger_errors(ledger):
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
@population_options
def export_cmd(ledger: str, start: str | None, end: str | None, fmt: str, output: str,
               clusters: Sequence[str], sources: Sequence[str], include_dry_run: bool) -> int:
    """Export the records of a period for an auditor (parameters, seq range and totals on stderr)."""
    from soc2infra.evidence import export_records
    from soc2infra.evidence.population import PopulationTally, describe

    tally = PopulationTally(_population(clusters, sources, include_dry_run))
    with ledger_errors(ledger):
        n = export_records(ledger, start, end, fmt, output, tally=tally)
    where = f" to {output}" if output != "-" else ""
    click.echo(f"wrote {n} {'records' if fmt == 'jsonl' else 'rows'}{where}; {describe(tally.to_dict())}",
               err=True)
    return OK


@evidence.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--format", "fmt", type=click.Choice(("jsonl", "csv")), help="Default: detected from the file.")
@click.option("--public-key", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.option("--expect-head", help="An anchor SEQ:HASH kept outside the ledger.")
@click.option("--json", "as_json", is_flag=True)
def verify_export_cmd(file: Path, ledger: str, fmt: str | None, public_key: Sequence[Path],
                      expect_head: str | None, as_json: bool) -> int:
    """Re-check an export against the ledger: every line's hash, seq and content (exit 1 on a mismatch)."""
    from soc2infra.evidence.verify_export import verify_export

    check = verify_export(file, ledger, list(public_key) or None, expect_head, fmt)
    click.echo(json.dumps(check.to_dict(), indent=2) if as_json else str(check))
    return OK if check.ok else FINDINGS


@evidence.command("report")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--from", "start", help="First day of the observation period (YYYY-MM-DD).")
@click.option("--to", "end", help="Last day of the observation period (included).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("soc2-report.html"), show_default=True, help="The HTML report.")
@click.option("--json-output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report's data as JSON.")
@click.option("--public-key", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.option("--expect-head",
              help="An anchor SEQ:HASH kept outside the ledger that must still be in the chain.")
@population_options
@matrix_options
def report_cmd(ledger: str, start: str | None, end: str | None, output: Path, json_output: Path | None,
               public_key: Sequence[Path], expect_head: str | None, clusters: Sequence[str],
               sources: Sequence[str], include_dry_run: bool, controls_file: Path | None,
               prior_from: str | None, prior_to: str | None, no_prior: bool) -> int:
    """Per SOC 2 criterion: population, runtime compliance, denials, deviation and waiver registers,
    control matrix, prior-period comparison, IaC scans apart, coverage gaps, trend.

    Exits 1 when the chain is broken (the report is still written, with the break named)."""
    from soc2infra.evidence import build_report, render_html
    from soc2infra.evidence.population import describe

    controls, rules, settings = _matrix_inputs(controls_file)
    prior = _prior(start, end, prior_from, prior_to, no_prior)
    with ledger_errors(ledger):
        report = build_report(ledger, start, end, controls, public_key=list(public_key) or None,
                              expect_head=expect_head,
                              population=_population(clusters, sources, include_dry_run),
                              rules_by_control=rules, control_settings=settings, prior=prior)
    output.write_text(render_html(report), encoding="utf-8")
    if json_output is not None:
        json_output.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    click.echo(f"wrote {output}" + (f" and {json_output}" if json_output else ""))
    click.echo(f"population: {describe(report['population'])}")
    verification = report.get("verification") or {}
    if not verification.get("ok", True):
        click.echo(f"evidence chain BROKEN at seq {verification.get('first_bad_seq')}: "
                   f"{verification.get('reason')}. Trust: {verification.get('trust')}", err=True)
        return FINDINGS
    return OK


def _pack_tables() -> tuple[dict[str, tuple[str, str]], dict[str, list[str]]]:
    """Criterion → (name, description), and criterion → rule ids mapped to it, from the pack."""
    from soc2infra._core.pack import load_pack

    pack = load_pack()
    rules: dict[str, list[str]] = {}
    for rule in pack.rules:
        for cid in rule.controls:
            rules.setdefault(cid, []).append(rule.id)
    return {cid: (c.name, c.intent) for cid, c in pack.controls.items()}, rules


@evidence.command("package")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--from", "start", required=True, help="First day of the period (YYYY-MM-DD).")
@click.option("--to", "end", required=True, help="Last day of the period (included).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The zip to write.")
@click.option("--public-key", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.option("--expect-head", help="An anchor SEQ:HASH kept outside the ledger.")
@population_options
@matrix_options
def package_cmd(ledger: str, start: str, end: str, output: Path, public_key: Sequence[Path],
                expect_head: str | None, clusters: Sequence[str], sources: Sequence[str],
                include_dry_run: bool, controls_file: Path | None, prior_from: str | None,
                prior_to: str | None, no_prior: bool) -> int:
    """Write the evidence package: manifest (sha256 of every file), records, report, per-criterion
    populations, headline summary, deviation and waiver registers, control matrix, prior-period
    comparison, management-assertion template. Exits 1 on a broken chain."""
    from soc2infra.evidence.package import build_package
    from soc2infra.evidence.population import describe

    controls, rules, settings = _matrix_inputs(controls_file)
    prior = _prior(start, end, prior_from, prior_to, no_prior)
    with ledger_errors(ledger):
        manifest = build_package(ledger, start, end, output, controls, rules,
                                 population=_population(clusters, sources, include_dry_run),
                                 public_key=list(public_key) or None, expect_head=expect_head,
                                 control_settings=settings, prior=prior)
    click.echo(f"wrote {output} ({len(manifest['files']) + 1} files); {describe(manifest['population'])}")
    if not manifest["verification"].get("ok", False):
        click.echo(f"evidence chain BROKEN: {manifest['verification'].get('trust')}", err=True)
        return FINDINGS
    return OK


@evidence.command("register")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--kind", type=click.Choice(("deviations", "waivers")), required=True,
              help="deviations: one row per rule, resource and cluster that failed at runtime; waivers: one "
                   "row per waiver.")
@click.option("--from", "start", help="First day of the period (YYYY-MM-DD).")
@click.option("--to", "end", help="Last day of the period (included).")
@click.option("--format", "fmt", type=click.Choice(("csv", "json")), default="csv", show_default=True)
@click.option("--output", "-o", default="-", help="File to write (default: standard output).")
@population_options
def register_cmd(ledger: str, kind: str, start: str | None, end: str | None, fmt: str, output: str,
                 clusters: Sequence[str], sources: Sequence[str], include_dry_run: bool) -> int:
    """The deviation or waiver register of a period (the rows the report and package show)."""
    import io

    from soc2infra.evidence import open_ledger
    from soc2infra.evidence.population import PopulationTally, describe
    from soc2infra.evidence.register import DEVIATION_COLUMNS, WAIVER_COLUMNS, registers, write_csv

    population = _population(clusters, sources, include_dry_run)
    tally = PopulationTally(population)
    with ledger_errors(ledger), open_ledger(ledger, create=False) as led:
        deviations, waivers = registers(led, start, end, population, tally)
    rows = deviations if kind == "deviations" else waivers
    buf = io.StringIO(newline="")
    if fmt == "json":
        buf.write(json.dumps(rows, indent=2) + "\n")
    else:
        write_csv(rows, DEVIATION_COLUMNS if kind == "deviations" else WAIVER_COLUMNS, buf)
    if output == "-":
        click.echo(buf.getvalue(), nl=False)
    else:
        Path(output).write_bytes(buf.getvalue().encode("utf-8"))
    click.echo(f"wrote {len(rows)} {kind}{f' to {output}' if output != '-' else ''}; "
               f"{describe(tally.to_dict())}", err=True)
    return OK


@evidence.command("verify-package")
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_package_cmd(package: Path) -> int:
    """Re-hash every file of a package against its manifest (exit 1 on a mismatch)."""
    from soc2infra.evidence.package import verify_package

    problems = verify_package(package)
    for problem in problems:
        click.echo(problem)
    if problems:
        return FINDINGS
    click.echo(f"OK: every file of {package} matches its manifest")
    return OK


@evidence.command("sample")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--criterion", required=True, help="The criterion whose population to sample (e.g. CC6.1).")
@click.option("-n", "size", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--seed", required=True, help="The seed to record in the workpapers (same seed, same sample).")
@click.option("--from", "start", help="First day of the period (YYYY-MM-DD).")
@click.option("--to", "end", help="Last day of the period (included).")
@click.option("--output", "-o", default="-", help="CSV file to write (default: standard output).")
@population_options
def sample_cmd(ledger: str, criterion: str, size: int, seed: str, start: str | None, end: str | None,
               output: str, clusters: Sequence[str], sources: Sequence[str], include_dry_run: bool) -> int:
    """A reproducible random sample of a criterion's population (rows as in the CSV export)."""
    import csv
    import io

    from soc2infra.evidence import open_ledger
    from soc2infra.evidence.export import CSV_COLUMNS
    from soc2infra.evidence.ledger import time_bounds
    from soc2infra.evidence.package import criterion_rows, sample_rows

    population = _population(clusters, sources, include_dry_run)
    with open_ledger(ledger, create=False) as led:
        lo, hi = time_bounds(start, end)
        rows = criterion_rows(led, lo, hi, population).get(criterion, [])
    picked = sample_rows(rows, size, seed)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(picked)
    if output == "-":
        click.echo(buf.getvalue(), nl=False)
    else:
        Path(output).write_bytes(buf.getvalue().encode("utf-8"))
    click.echo(f"sampled {len(picked)} of {len(rows)} rows of {criterion} with seed {seed!r} "
               f"({population.to_dict()})", err=True)
    return OK


def _anchor_target(repo: Path | None, s3_url: str | None) -> None:
    if (repo is None) == (s3_url is None):
        raise click.UsageError("give exactly one anchor target: --git REPO or --s3 s3://BUCKET/PREFIX")


@evidence.command("anchor")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--git", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A git work tree whose pushes the ledger's writer cannot rewrite.")
@click.option("--s3", "s3_url", metavar="s3://BUCKET/PREFIX",
              help="An S3-compatible bucket with Object Lock: one locked object per checkpoint.")
@click.option("--s3-endpoint", envvar="AWS_ENDPOINT_URL",
              help="Endpoint of a non-AWS store such as MinIO (env AWS_ENDPOINT_URL).")
@click.option("--retention-days", type=click.IntRange(min=1), default=400, show_default=True,
              help="--s3: the checkpoint cannot be deleted before this many days.")
@click.option("--lock-mode", type=click.Choice(("COMPLIANCE", "GOVERNANCE"), case_sensitive=False),
              default="COMPLIANCE", show_default=True, help="--s3: the Object Lock retention mode.")
@click.option("--name", default="ledger", show_default=True, help="Which ledger (one anchors file each).")
@click.option("--signing-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ed25519 private key that signs the checkpoint.")
def anchor_cmd(ledger: str, repo: Path | None, s3_url: str | None, s3_endpoint: str | None,
               retention_days: int, lock_mode: str, name: str, signing_key: Path | None) -> int:
    """Write a signed SEQ:HASH checkpoint of the ledger's head (run it on a schedule): a git commit
    and tag, or a new object in an Object Lock bucket."""
    from soc2infra.evidence import write_checkpoint

    _anchor_target(repo, s3_url)
    mode: LockMode = "GOVERNANCE" if lock_mode.upper() == "GOVERNANCE" else "COMPLIANCE"
    with ledger_errors(ledger):
        checkpoint, where = write_checkpoint(ledger, s3_url or str(repo), name, signing_key,
                                             s3_endpoint=s3_endpoint, retention_days=retention_days,
                                             mode=mode)
    click.echo(str(checkpoint.anchor))
    click.echo(f"wrote {where}", err=True)
    return OK


@evidence.command("anchor-head")
@click.option("--git", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--s3", "s3_url", metavar="s3://BUCKET/PREFIX")
@click.option("--s3-endpoint", envvar="AWS_ENDPOINT_URL",
              help="Endpoint of a non-AWS store (env AWS_ENDPOINT_URL).")
@click.option("--name", default="ledger", show_default=True)
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The checkpoint's signature must verify with this key.")
@click.option("--rev", default="HEAD", show_default=True,
              help="--git: read the anchors file at this revision.")
def anchor_head_cmd(repo: Path | None, s3_url: str | None, s3_endpoint: str | None, name: str,
                    public_key: Path | None, rev: str) -> int:
    """Print the newest anchored SEQ:HASH (for --expect-head)."""
    from soc2infra.evidence import EvidenceError

    _anchor_target(repo, s3_url)
    try:
        if s3_url is not None:
            from soc2infra.evidence.anchor_s3 import S3Target, read_s3_anchor

            stored = read_s3_anchor(S3Target.parse(s3_url, s3_endpoint), name, public_key)
            click.echo(str(stored.checkpoint.anchor))
            click.echo(f"from {stored.key} (version {stored.version_id}, written {stored.checkpoint.time}, "
                       f"{stored.lock_mode or 'NOT locked'} until {stored.retain_until or '-'})", err=True)
            return OK
        from soc2infra.evidence.anchor import read_anchor

        assert repo is not None
        click.echo(str(read_anchor(repo, name, public_key, rev).anchor))
    except EvidenceError as exc:
        raise UserError(str(exc)) from None
    return OK


@evidence.command("changes")
@click.argument("ledger", envvar="SOC2INFRA_LEDGER")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The git repository whose merged changes to check.")
@click.option("--branch", default="HEAD", show_default=True, help="The branch changes merge into (main …).")
@click.option("--from", "start", help="First day of the period (YYYY-MM-DD) or ISO time.")
@click.option("--to", "end", help="Last day of the period (included) or ISO time (excluded).")
@click.option("--path", "paths", multiple=True, help="Only changes touching this path (repeatable).")
@click.option("--all", "show_all", is_flag=True, help="List scanned changes too (default: only unscanned).")
@click.option("--json", "as_json", is_flag=True)
def changes_cmd(ledger: str, repo: Path, branch: str, start: str | None, end: str | None,
                paths: Sequence[str], show_all: bool, as_json: bool) -> int:
    """Merged changes (first-parent commits of BRANCH in the period) with no scan record in the
    ledger (CC8.1). Exits 1 when any change was merged without a scan."""
    from soc2infra.evidence import EvidenceError, open_ledger
    from soc2infra.evidence.changes import link_changes, merged_changes
    from soc2infra.evidence.ledger import time_bounds

    try:
        lo, hi = time_bounds(start, end)
        changes = merged_changes(repo, branch, lo, hi, paths)
    except EvidenceError as exc:
        raise UserError(str(exc)) from None
    with ledger_errors(ledger), open_ledger(ledger, create=False) as led:
        statuses = link_changes(changes, led.iter())
    unscanned = [s for s in statuses if not s.scanned]
    shown = statuses if show_all else unscanned
    if as_json:
        click.echo(json.dumps({"branch": branch, "from": start, "to": end, "paths": list(paths),
                               "changes": len(statuses), "unscanned": len(unscanned),
                               "rows": [s.to_dict() for s in shown]}, indent=2))
    else:
        for s in shown:
            c = s.change
            seqs = ", ".join(map(str, s.scans))
            mark = f"scanned (seq {seqs}; {s.linked_by})" if s.scanned else "NOT SCANNED"
            pr = f" #{c.pr_number}" if c.pr_number else ""
            click.echo(f"{c.commit[:12]} {c.time} {mark}{pr} {c.author}: {c.subject}")
        click.echo(f"{len(statuses)} merged change(s) on {branch}, {len(unscanned)} without a scan record",
                   err=True)
    return FINDINGS if unscanned else OK


@evidence.command("keygen")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path), required=False)
def keygen_cmd(private_key: Path, public_key: Path | None) -> int:
    """Create an Ed25519 key pair for signing records (prints the key id)."""
    from soc2infra.evidence import generate_keypair

    click.echo(generate_keypair(private_key, public_key))
    return OK
