"""Populations: --cluster, --source, --include-dry-run on report and export, stated in their output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soc2infra import __version__
from soc2infra.cli import cli
from soc2infra.evidence import Ledger, build_report, export_records
from soc2infra.evidence.population import Population, PopulationTally
from soc2infra.evidence.records import EvidenceError


class _Run:
    """What a CLI command returned (commands return their exit code) and printed."""

    def __init__(self, args: list[str]) -> None:
        res = CliRunner().invoke(cli, args, standalone_mode=False)
        if res.exception is not None:
            raise res.exception
        self.exit_code, self.output = int(res.return_value or 0), res.output


def _admission(cluster: str, dry: bool, status: str = "fail") -> dict[str, Any]:
    return {"source": "admission", "actor": "alice", "subject": "apps/v1/Deployment/shop/api",
            "decision": "deny" if status == "fail" else "allow", "time": "2025-03-02T10:00:00Z",
            "results": [{"rule_id": "POD-1", "status": status, "controls": ["CC6.1"],
                         "address": "apps/v1/Deployment/shop/api"}],
            "context": {"cluster": cluster, "dry_run": dry, "request_uid": "r-1", "operation": "CREATE"}}


@pytest.fixture
def mixed(ledger: Ledger) -> Ledger:
    """Two clusters, real and dry-run admissions, an audit snapshot, a scan and a waiver change."""
    ledger.append([
        _admission("prod", False), _admission("prod", True), _admission("prod", True),
        _admission("staging", False, "pass"), _admission("staging", True),
        {"source": "audit", "actor": "op", "subject": "cluster:prod", "time": "2025-03-02T12:00:00Z",
         "context": {"cluster": "prod"},
         "results": [{"rule_id": "POD-1", "status": "pass", "controls": ["CC6.1"], "address": "x"}]},
        {"source": "ci", "actor": "octocat", "subject": "repo", "time": "2025-03-02T13:00:00Z",
         "decision": "pass", "results": [{"rule_id": "TF-1", "status": "pass", "controls": ["CC8.1"]}]},
        {"source": "waiver", "actor": "bob", "subject": "w", "time": "2025-03-02T14:00:00Z",
         "context": {"event": "ADDED"}},
    ])
    return ledger


def test_dry_runs_are_left_out_by_default(mixed: Ledger) -> None:
    report = build_report(mixed, "2025-03-01", "2025-03-03", {})
    pop = report["population"]
    assert (pop["records_in_period"], pop["records_in_population"]) == (8, 5)
    assert pop["excluded"] == {"dry_run": 3} and pop["seq_range"] == [1, 8]
    assert pop["tool_version"] == f"soc2infra {__version__}"
    assert report["totals"]["by_source"]["admission"] == 2
    cc61 = next(c for c in report["criteria"] if c["id"] == "CC6.1")
    assert cc61["denials"] == 1  # the dry-run denials are not denials of real requests
    with_dry = build_report(mixed, "2025-03-01", "2025-03-03", {}, population=Population(include_dry_run=True))
    assert with_dry["totals"]["by_source"]["admission"] == 5
    assert next(c for c in with_dry["criteria"] if c["id"] == "CC6.1")["denials"] == 4


def test_cluster_and_source_filters(mixed: Ledger) -> None:
    prod = build_report(mixed, None, None, {}, population=Population(clusters=("prod",)))
    assert prod["totals"]["by_source"] == {"admission": 1, "audit": 1}
    assert prod["population"]["excluded"] == {"cluster": 3, "dry_run": 3} or \
        prod["population"]["excluded"] == {"dry_run": 3, "cluster": 3}
    scans = build_report(mixed, None, None, {}, population=Population(sources=("scan", "waiver")))
    assert scans["totals"]["by_source"] == {"ci": 1, "waiver": 1}
    with pytest.raises(EvidenceError, match="unknown source"):
        Population(sources=("nope",))


def test_export_totals_tie_to_the_rows(mixed: Ledger) -> None:
    out = io.StringIO()
    tally = PopulationTally(Population(clusters=("staging",), include_dry_run=True))
    n = export_records(mixed, None, None, "csv", out, tally=tally)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert n == len(rows) == tally.kept == 2
    assert {r["seq"] for r in rows} == {"4", "5"}
    jl = io.StringIO()
    assert export_records(mixed, None, None, "jsonl", jl) == 5  # default: no dry runs
    assert all(not json.loads(line)["context"].get("dry_run") for line in jl.getvalue().splitlines())


def test_cli_prints_parameters_seq_range_version_and_totals(mixed: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "pop.csv"
    res = _Run(["evidence", "export", mixed.url, "--format", "csv", "-o", str(out),
                              "--cluster", "prod", "--source", "admission"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 rows" in res.output and f"soc2infra {__version__}" in res.output
    assert "clusters=prod sources=admission include_dry_run=false; seq 1..8" in res.output
    assert "1 of 8 records in the population" in res.output
    html = tmp_path / "r.html"
    res = _Run(["evidence", "report", mixed.url, "-o", str(html), "--include-dry-run",
                              "--source", "admission"])
    assert res.exit_code == 0, res.output
    assert "include_dry_run=true" in res.output and "5 of 8 records" in res.output
    assert 'id="population"' in html.read_text(encoding="utf-8")


def test_audit_snapshots_count_for_cc71_and_cc41(mixed: Ledger) -> None:
    """A snapshot shows the detective control ran: it is CC7.1/CC4.1 evidence whatever rules it held."""
    report = build_report(mixed, None, None, {"CC7.1": ("n", "i"), "CC4.1": ("n", "i"), "CC9.9": ("n", "i")})
    by_id = {c["id"]: c for c in report["criteria"]}
    for cid in ("CC7.1", "CC4.1"):
        assert by_id[cid]["audit_snapshots"] == 1 and by_id[cid]["population"]["records"] == 1
        assert by_id[cid]["days_with_evidence"] == 1
    assert by_id["CC9.9"]["audit_snapshots"] == 0 and by_id["CC9.9"]["population"]["records"] == 0
    admissions_only = build_report(mixed, None, None, {}, population=Population(sources=("admission",)))
    assert all(c["audit_snapshots"] == 0 for c in admissions_only["criteria"])


def test_probes_and_image_pinning_are_not_claimed_as_recovery_monitoring_or_change_evidence() -> None:
    from soc2infra._core.pack import load_pack

    rules = {r.id: r for r in load_pack().rules}
    for rid in ("SOC2-K8S-AVAIL-003", "SOC2-K8S-AVAIL-004", "SOC2-K8S-IMAGE-001", "SOC2-K8S-IMAGE-002"):
        assert not {"A1.2", "CC7.2", "CC8.1"} & set(rules[rid].controls), rid
