"""``soc2infra export vap``: the Kubernetes rules as ValidatingAdmissionPolicies (CEL)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import click

from soc2infra._cogs.exitcodes import OK


@click.group()
def export() -> None:
    """Export the policy pack to other enforcement points."""


@export.command("vap")
@click.option("--rules", "rules", multiple=True,
              help="Rule ids or globs (repeat or comma-separate; default: every Kubernetes rule).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for one <policy>.yaml per rule (default: all documents to standard output).")
@click.option("--policy-dir", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.option("--exclude-namespace", "excluded", multiple=True,
              help="Namespaces the policies skip (default: the webhook's kube-system, kube-public, "
                   "kube-node-lease).")
@click.option("--waivers", "waiver_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Waiver file whose live Kubernetes entries exempt objects (as at the webhook).")
def export_vap(rules: Sequence[str], output: Path | None, policy_dir: Sequence[Path], excluded: Sequence[str],
               waiver_file: Path | None) -> int:
    """Write a ValidatingAdmissionPolicy and its binding for every rule CEL can express, and list
    the rules that stay on the webhook with the reason."""
    import yaml

    from soc2infra._cogs.errors import UserError
    from soc2infra._core.pack import load_pack
    from soc2infra._core.waivers import load_waiver_file
    from soc2infra.export.vap import ExportScope, export_objects, file_waiver_scopes, plan_pack, summarize

    pack = load_pack(policy_dir)
    patterns = [p.strip() for r in rules for p in r.split(",") if p.strip()]
    plans = plan_pack(pack)
    if patterns:
        plans = [p for p in plans if any(fnmatch.fnmatchcase(p.rule.id, pat) for pat in patterns)]
        if not plans:
            raise UserError(f"--rules {', '.join(patterns)} matches no Kubernetes rule")
    scope = ExportScope(excluded_namespaces=tuple(excluded)) if excluded else ExportScope()
    waivers = []
    if waiver_file is not None:
        entries, errors = load_waiver_file(waiver_file)
        if errors:
            raise UserError("; ".join(f"{e.file}:{e.line or 1}: {e.message}" for e in errors))
        waivers = file_waiver_scopes(entries, date.today())
    objects = export_objects(plans, scope=scope, waivers=waivers, digest=pack.digest)
    if output is None:
        click.echo(yaml.safe_dump_all(objects, sort_keys=False, width=10_000), nl=False)
    else:
        output.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(objects), 2):
            name = objects[i]["metadata"]["name"]
            text = yaml.safe_dump_all(objects[i:i + 2], sort_keys=False, width=10_000)
            (output / f"{name}.yaml").write_text(text, encoding="utf-8")
    s = summarize(plans)
    where = f" in {output}" if output else ""
    click.echo(f"{len(s.cel)} rules exported as ValidatingAdmissionPolicy{where}; "
               f"{len(s.webhook)} stay on the webhook; {len(s.scan_only)} are scan only", err=True)
    for rule_id, reason in s.webhook:
        click.echo(f"  webhook only  {rule_id}: {reason}", err=True)
    return OK
