"""evidence package: a zip whose manifest verifies; per-criterion populations; reproducible samples."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soc2infra.cli import cli
from soc2infra.evidence import Ledger
from soc2infra.evidence.package import build_package, sample_rows, verify_package
from soc2infra.evidence.verify_export import verify_export

CONTROLS = {"CC6.1": ("Logical access", "Access is restricted."), "CC7.2": ("Monitoring", "Anomalies.")}
RULES = {"CC6.1": ["POD-1", "POD-2"], "CC7.2": ["LOG-1"]}

class _Run:
    """What a CLI command returned (commands return their exit code) and printed."""

    def __init__(self, args: list[str]) -> None:
        res = CliRunner().invoke(cli, args, standalone_mode=False)
        if res.exception is not None:
            raise res.exception
        self.exit_code, self.output = int(res.return_value or 0), res.output


@pytest.fixture
def period(ledger: Ledger) -> Ledger:
    entries: list[dict[str, Any]] = []
    for i in range(40):
        entries.append({
            "source": "audit" if i % 4 == 0 else "admission", "actor": "op", "subject": f"obj-{i}",
            "time": f"2025-03-0{1 + i % 5}T10:00:{i:02d}Z",
            "decision": None if i % 4 == 0 else "allow",
            "context": {"cluster": "prod", "dry_run": i % 10 == 9},
            "results": [{"rule_id": "POD-1", "status": "pass" if i % 3 else "fail", "controls": ["CC6.1"],
                         "address": f"apps/v1/Deployment/shop/d{i}"},
                        {"rule_id": "LOG-1", "status": "pass", "controls": ["CC7.2"], "address": f"d{i}"}]})
    entries.sort(key=lambda e: e["time"])
    ledger.append(entries)
    return ledger


def test_package_manifest_verifies_and_tampering_shows(period: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "pkg.zip"
    head = str(period.head())
    manifest = build_package(period, "2025-03-01", "2025-03-05", out, CONTROLS, RULES, expect_head=head)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {"manifest.json", "records.jsonl", "report.json", "report.html", "control-matrix.csv",
                "management-assertion.md", "populations/CC6.1.csv", "populations/CC7.2.csv"} <= names
        stored = json.loads(zf.read("manifest.json"))
        for name, meta in stored["files"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == meta["sha256"], name
        matrix = {r["criterion"]: r for r in csv.DictReader(io.StringIO(zf.read("control-matrix.csv").decode()))}
        cc61 = list(csv.DictReader(io.StringIO(zf.read("populations/CC6.1.csv").decode())))
        (tmp_path / "records.jsonl").write_bytes(zf.read("records.jsonl"))
    assert stored == manifest
    assert stored["checked_against"]["head"] == head and stored["checked_against"]["anchored_through"] == 40
    assert stored["population"]["excluded"] == {"dry_run": 4}
    assert matrix["CC6.1"]["mapped_rules"] == "POD-1;POD-2" and matrix["CC6.1"]["description"]
    assert int(matrix["CC6.1"]["population_rows"]) == len(cc61) == 36
    assert all(r["rule_id"] == "POD-1" for r in cc61)
    assert verify_package(out) == []
    assert verify_export(tmp_path / "records.jsonl", period).ok  # the records in it are the ledger's
    # Edit one file inside the zip: the manifest no longer matches.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data.replace(b"POD-1", b"POD-X") if item.filename.endswith("CC6.1.csv") else data)
    problems = verify_package(tampered)
    assert len(problems) == 1 and "populations/CC6.1.csv sha256" in problems[0]
    res = _Run(["evidence", "verify-package", str(tampered)])
    assert res.exit_code == 1


def test_sample_is_reproducible(period: Ledger, tmp_path: Path) -> None:
    rows = [{"seq": str(i), "rule_id": "R", "address": f"a{i}", "status": "pass"} for i in range(100)]
    first = sample_rows(rows, 25, "audit-2025")
    assert len(first) == 25 and len({r["seq"] for r in first}) == 25
    assert sample_rows(list(reversed(rows)), 25, "audit-2025") == first  # order of input does not matter
    assert sample_rows(rows, 25, "other-seed") != first
    assert sample_rows(rows, 500, "s") == rows
    args = ["evidence", "sample", period.url, "--criterion", "CC6.1", "-n", "5", "--seed", "42"]
    a, b = _Run(args), _Run(args)
    assert a.exit_code == 0, a.output
    body = [line for line in a.output.splitlines() if line.startswith(("seq,", *"0123456789"))]
    assert len(body) == 6 and a.output == b.output  # header + 5 rows, the same both times
    assert "sampled 5 of 36 rows of CC6.1 with seed '42'" in a.output


def test_package_cli(period: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "p.zip"
    res = _Run(["evidence", "package", period.url, "--from", "2025-03-01", "--to",
                                   "2025-03-05", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "36 of 40 records" in res.output
    ok = _Run(["evidence", "verify-package", str(out)])
    assert ok.exit_code == 0 and ok.output.startswith("OK")
    with zipfile.ZipFile(out) as zf:
        matrix = zf.read("control-matrix.csv").decode()
    assert "CC6.1" in matrix  # the real pack's criteria
