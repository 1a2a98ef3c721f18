"""`terraform show -json plan.out | soc2infra scan -` keeps the inline waivers of the .tf files
in the working directory."""

from __future__ import annotations

import json
import subprocess
import sys

PLAN = {
    "format_version": "1.2", "terraform_version": "1.9.5",
    "planned_values": {"root_module": {"resources": [
        {"address": "aws_kms_key.legacy", "mode": "managed", "type": "aws_kms_key", "name": "legacy",
         "values": {"enable_key_rotation": False, "customer_master_key_spec": "SYMMETRIC_DEFAULT"}},
    ]}},
    "resource_changes": [{"address": "aws_kms_key.legacy", "change": {"actions": ["create"], "after_unknown": {}}}],
    "configuration": {"root_module": {"resources": [
        {"address": "aws_kms_key.legacy", "mode": "managed", "type": "aws_kms_key", "name": "legacy",
         "expressions": {"enable_key_rotation": {"constant_value": False}}}]}},
}


def run_stdin(cwd):
    return subprocess.run([sys.executable, "-m", "soc2infra.cli", "scan", "-", "--format", "json",
                           "--no-config"], input=json.dumps(PLAN), capture_output=True, text=True, cwd=cwd)


def finding(out):
    doc = json.loads(out.stdout)
    return next(f for f in doc["findings"] if f["rule_id"] == "SOC2-AWS-KMS-001")


def test_stdin_plan_takes_waivers_and_lines_from_the_working_directory(tmp_path):
    (tmp_path / "main.tf").write_text(
        '\n# soc2infra:ignore SOC2-AWS-KMS-001 HSM-backed key rotated by the vendor (SEC-9)\n'
        'resource "aws_kms_key" "legacy" {\n  enable_key_rotation = false\n}\n')
    got = finding(run_stdin(tmp_path))
    assert got["suppressed"] is True
    assert got["waiver"]["reason"].startswith("HSM-backed key")
    assert got["resource"]["file"] == "main.tf" and got["resource"]["line"] == 3


def test_stdin_plan_without_configuration_beside_it(tmp_path):
    out = run_stdin(tmp_path)
    assert out.returncode == 1
    assert finding(out)["suppressed"] is False
