"""export: JSONL (the stored bytes) and CSV (one row per rule result) for a period."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from soc2infra.evidence import EvidenceError, Ledger, export_records
from soc2infra.evidence.export import CSV_COLUMNS


@pytest.fixture
def period_ledger(ledger: Ledger) -> Ledger:
    ledger.append([
        {"source": "ci", "actor": "ci@github", "subject": "repo@abc123", "pack_digest": "sha256:p1",
         "decision": "fail", "time": "2025-01-01T09:00:00Z",
         "context": {"commit": "abc123", "ci_run": "https://ci/run/1"},
         "results": [
             {"rule_id": "S3-001", "status": "pass", "severity": "high", "controls": ["CC6.1", "C1.1"],
              "address": "aws_s3_bucket.logs"},
             {"rule_id": "S3-002", "status": "fail", "severity": "medium", "controls": ["CC7.2"],
              "address": "=HYPERLINK(\"http://evil\")"},
         ]},
        {"source": "waiver", "actor": "alice", "subject": "waivers/S3-003", "time": "2025-01-02T09:00:00Z",
         "context": {"change": "added"}},
        {"source": "admission", "actor": "bob", "subject": "apps/v1/Deployment/ns/a", "decision": "deny",
         "time": "2025-01-03T09:00:00Z",
         "results": [{"rule_id": "K8S-1", "status": "waived", "controls": ["CC6.8"], "address": "a",
                      "waiver": {"owner": "carol", "expires": "2025-02-01", "reason": "migration"}}]},
    ])
    return ledger


def test_jsonl_is_the_stored_records(period_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    assert export_records(period_ledger, None, None, "jsonl", out) == 3
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == list(period_ledger.iter())
    assert lines == [row.body for row in period_ledger.iter_rows()]


def test_period_filter(period_ledger: Ledger) -> None:
    buf = io.StringIO()
    assert export_records(period_ledger, "2025-01-02", "2025-01-03", "jsonl", buf) == 2
    assert [json.loads(x)["seq"] for x in buf.getvalue().splitlines()] == [2, 3]
    buf = io.StringIO()
    assert export_records(period_ledger, "2025-01-02", "2025-01-02T23:00:00Z", "jsonl", buf) == 1


def test_csv_one_row_per_result(period_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "population.csv"
    assert export_records(period_ledger, "2025-01-01", "2025-01-31", "csv", out) == 4
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["seq"], r["rule_id"], r["status"]) for r in rows] == [
        ("1", "S3-001", "pass"), ("1", "S3-002", "fail"), ("2", "", ""), ("3", "K8S-1", "waived")]
    first = rows[0]
    assert first["controls"] == "CC6.1;C1.1" and first["source"] == "ci" and first["decision"] == "fail"
    assert json.loads(first["context"]) == {"ci_run": "https://ci/run/1", "commit": "abc123"}
    assert first["record_hash"] == period_ledger.get(1)["hash"]
    assert rows[1]["address"].startswith("'=HYPERLINK")  # not run as a formula by a spreadsheet
    assert (rows[3]["waiver_owner"], rows[3]["waiver_expires"], rows[3]["waiver_reason"]) == (
        "carol", "2025-02-01", "migration")


def test_export_by_url_and_to_stdout(period_ledger: Ledger, ledger_url: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert export_records(ledger_url, None, None, "jsonl", "-") == 3
    assert len(capsys.readouterr().out.splitlines()) == 3
    with pytest.raises(EvidenceError, match="format"):
        export_records(period_ledger, None, None, "xml", io.StringIO())
