"""The SOC 2 lens over checkov: `scan --with-checkov` runs checkov 3.3.30 in-process in an
environment where `soc2infra[checkov]` is installed (scripts/test.sh builds it beside the test
environment, since checkov pins its own dependency versions), maps its findings to SOC 2
criteria and merges them with the native findings without duplicates. A default scan never
imports checkov."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soc2infra._cogs.model import Finding, Resource
from soc2infra._core.checkov_lens import CheckovRecord, merge_into, parse_mapping

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "policies" / "catalog-checkov.yaml"


def checkov_env() -> Path:
    """The soc2infra entry point of the environment with the checkov extra."""
    exe = Path(os.environ.get("SOC2INFRA_CHECKOV_ENV", ROOT / ".venv-checkov")) / "bin" / "soc2infra"
    if not exe.exists():
        message = f"{exe} missing: scripts/test.sh installs soc2infra[checkov] there"
        pytest.skip(message)  # a failure under CI=true (tests/conftest.py)
    return exe


def test_the_mapping_covers_at_least_150_checkov_ids_with_criteria():
    mapping = parse_mapping(yaml.safe_load(MAPPING.read_text()))
    assert len(mapping) >= 150
    assert all(m.controls and m.catalog for m in mapping.values())
    assert mapping["CKV_AWS_19"].controls[0] == "CC6.1"  # S3 default encryption


def _res(address: str) -> Resource:
    return Resource("terraform", address.rsplit(".", 2)[-2], address, {}, "main.tf", 1)


def test_merge_folds_same_catalog_check_and_adds_the_rest():
    mapping = parse_mapping({"checks": {
        "CKV_AWS_7": {"controls": ["CC6.1"], "category": "encryption", "severity": "medium",
                      "catalog": ["AWS-KMS-ROTATION"]},
        "CKV_AWS_21": {"controls": ["A1.2"], "category": "backup", "severity": "medium",
                       "catalog": ["AWS-S3-VERSIONING"]}}})
    key, bucket = _res("aws_kms_key.k"), _res("module.m.aws_s3_bucket.b[0]")
    native = Finding("SOC2-AWS-KMS-001", "rotation", "medium", "encryption", ("CC6.1",), "m", "r", key)
    findings = [native]
    records = [CheckovRecord("CKV_AWS_7", "rotation", "terraform", "aws_kms_key.k", "/x/main.tf", 1, 3),
               CheckovRecord("CKV_AWS_21", "versioning", "terraform", "module.m.aws_s3_bucket.b", "/x/m.tf", 1, 3),
               CheckovRecord("CKV_AWS_999", "unmapped", "terraform", "aws_kms_key.k", "/x/main.tf", 1, 3)]
    added = merge_into(findings, [key, bucket], records, mapping, {"SOC2-AWS-KMS-001": ("AWS-KMS-ROTATION",)})
    assert added == 1 and len(findings) == 2
    assert native.details["checkov"] == ["CKV_AWS_7"]  # one finding carries both ids
    new = findings[1]
    assert (new.rule_id, new.resource.address, new.controls) == ("CKV_AWS_21", "module.m.aws_s3_bucket.b[0]",
                                                                  ("A1.2",))
    assert merge_into(findings, [key], records[2:], mapping, {}, all_checkov=True) == 1
    assert findings[-1].details["unmapped"] is True


def test_a_default_scan_never_imports_checkov(tmp_path):
    (tmp_path / "main.tf").write_text('resource "aws_kms_key" "k" {}\n')
    code = ("import sys; from soc2infra.cli import main; main(['scan', sys.argv[1], '--no-config', '-f', 'json']);"
            "assert not any(m == 'checkov' or m.startswith('checkov.') for m in sys.modules), 'checkov imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert "checkov imported" not in proc.stderr and proc.returncode in (0, 1), proc.stderr


def test_with_checkov_on_the_examples(tmp_path):
    exe = checkov_env()
    env = {**os.environ, "SOC2INFRA_CACHE": str(tmp_path / "cache")}
    runs = {}
    for flag in ([], ["--with-checkov"]):
        proc = subprocess.run([str(exe), "scan", "examples/terraform", "--no-config", "--format", "json", *flag],
                              cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 1, proc.stderr
        runs[bool(flag)] = json.loads(proc.stdout)
    native, lens = runs[False], runs[True]
    by_id = {}
    for f in lens["findings"]:
        by_id.setdefault(f["rule_id"], []).append(f)
    checkov_only = [f for f in lens["findings"] if f["rule_id"].startswith("CKV")]
    assert checkov_only, "mapped checkov findings are added"
    assert all(f["controls"] and f["details"]["source"] == "checkov" for f in checkov_only)
    folded = [f for f in lens["findings"] if "checkov" in f.get("details", {})]
    assert folded, "native findings of the same catalog check carry the checkov id"
    # No duplicates: one finding per (rule, resource), and no checkov finding repeats a native
    # finding of the same catalog check on the same resource.
    keys = [(f["rule_id"], f["resource"]["address"]) for f in lens["findings"]]
    assert len(keys) == len(set(keys))
    folded_ids = {(c, f["resource"]["address"]) for f in folded for c in f["details"]["checkov"]}
    assert not folded_ids & {(f["rule_id"], f["resource"]["address"]) for f in checkov_only}
    # The native findings are all still there.
    assert {(f["rule_id"], f["resource"]["address"]) for f in native["findings"]} <= set(keys)
