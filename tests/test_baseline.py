"""Baselines: record today's findings, fail only on new ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soc2infra._cogs.model import Waiver
from soc2infra._core.baseline import (
    BaselineError,
    apply_baseline,
    load_baseline,
    write_baseline,
)
from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan
from soc2infra.cli import main

POLICIES = Path(__file__).parent / "data" / "policies"
PACK_ARGS = ["--policy-dir", str(POLICIES), "--no-builtin-policies", "--no-config"]

OLD = '''
resource "aws_s3_bucket" "old" {
  logging = true
}
'''
NEW = '''
resource "aws_s3_bucket" "new" {
  logging = true
}
'''


def _scan(*paths: Path):
    return scan([str(p) for p in paths], load_pack([POLICIES], builtin=False))


def test_baseline_suppresses_recorded_findings_only(write_tree, tmp_path):
    root = write_tree({"stack/main.tf": OLD})
    bl = tmp_path / "baseline.json"
    assert write_baseline(bl, _scan(root / "stack").findings, "0.1.0") == 1
    (root / "stack" / "new.tf").write_text(NEW)
    result = _scan(root / "stack")
    assert apply_baseline(result.findings, load_baseline(bl)) == 1
    state = {f.resource.address: f.suppressed for f in result.findings}
    assert state == {"aws_s3_bucket.old": True, "aws_s3_bucket.new": False}
    old = next(f for f in result.findings if f.resource.address == "aws_s3_bucket.old")
    assert old.waiver.source == "baseline" and old.waiver.location == str(bl)


def test_baseline_file_is_sorted_reviewable_json(write_tree, tmp_path):
    root = write_tree({"stack/main.tf": NEW + OLD.replace("logging = true", "")})
    (root / "ci").mkdir()
    bl = root / "ci" / "baseline.json"
    write_baseline(bl, _scan(root / "stack").findings, "0.1.0")
    doc = json.loads(bl.read_text())
    assert doc["version"] == 1 and doc["tool"] == {"name": "soc2infra", "version": "0.1.0"}
    rows = [(r["rule_id"], r["address"]) for r in doc["findings"]]
    assert rows == sorted(rows) == [("TEST-STORE-001", "aws_s3_bucket.new"), ("TEST-STORE-001", "aws_s3_bucket.old"),
                                    ("TEST-STORE-002", "aws_s3_bucket.old")]
    # The root module is recorded relative to the baseline file, so the file can move with the repo.
    assert {r["scope"] for r in doc["findings"]} == {"../stack"}
    assert all("line" not in r for r in doc["findings"])


def test_moving_a_resource_to_another_file_keeps_it_baselined(write_tree, tmp_path):
    root = write_tree({"stack/main.tf": "\n" + OLD})
    bl = tmp_path / "baseline.json"
    write_baseline(bl, _scan(root / "stack").findings, "0.1.0")
    (root / "stack" / "main.tf").write_text("")
    (root / "stack" / "buckets.tf").write_text("# moved\n\n\n" + OLD)
    result = _scan(root / "stack")
    assert apply_baseline(result.findings, load_baseline(bl)) == 1


def test_same_address_in_another_root_module_is_new(write_tree, tmp_path):
    root = write_tree({"a/main.tf": OLD, "b/main.tf": OLD})
    bl = root / "baseline.json"
    write_baseline(bl, _scan(root / "a").findings, "0.1.0")
    result = _scan(root / "a", root / "b")
    apply_baseline(result.findings, load_baseline(bl))
    by_root = {(Path(f.resource.meta["root"]).name, f.suppressed) for f in result.findings}
    assert by_root == {("a", True), ("b", False)}


def test_hcl_baseline_applies_to_the_same_resources_in_plan_json(write_tree, tmp_path):
    root = write_tree({"stack/main.tf": OLD})
    bl = tmp_path / "baseline.json"
    write_baseline(bl, _scan(root / "stack").findings, "0.1.0")
    plan = {"format_version": "1.2", "terraform_version": "1.9.5",
            "planned_values": {"root_module": {"resources": [
                {"address": a, "mode": "managed", "type": "aws_s3_bucket", "name": a.split(".")[1],
                 "values": {"logging": True}} for a in ("aws_s3_bucket.old", "aws_s3_bucket.new")]}}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    result = _scan(tmp_path / "plan.json")
    apply_baseline(result.findings, load_baseline(bl))
    assert {f.resource.address: f.suppressed for f in result.findings} == {"aws_s3_bucket.old": True,
                                                                          "aws_s3_bucket.new": False}


def test_already_waived_findings_are_not_recorded(write_tree, tmp_path):
    root = write_tree({"main.tf": "# soc2infra:ignore TEST-STORE-001 demo bucket\n" + OLD})
    bl = tmp_path / "baseline.json"
    assert write_baseline(bl, _scan(root).findings, "0.1.0") == 0


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid JSON"),
    ('{"version": 1}', "'findings' list"),
    ('{"version": 99, "findings": []}', "unsupported baseline version 99"),
    ('{"version": 1, "findings": [{"rule_id": "X"}]}', "findings[0] needs string 'rule_id' and 'address'"),
])
def test_bad_baseline_files(tmp_path, text, message):
    bl = tmp_path / "b.json"
    bl.write_text(text)
    with pytest.raises(BaselineError) as info:
        load_baseline(bl)
    assert info.value.file == str(bl) and message in info.value.problem


# --- through the CLI ------------------------------------------------------------------------------


def test_cli_create_then_scan_fails_only_on_new_findings(write_tree, monkeypatch, capsys):
    root = write_tree({"infra/main.tf": OLD})
    monkeypatch.chdir(root)
    assert main(["baseline", "create", "infra", "-o", "bl.json", *PACK_ARGS]) == 0
    assert "wrote 1 finding to bl.json" in capsys.readouterr().out
    assert main(["scan", "infra", *PACK_ARGS]) == 1
    assert main(["scan", "infra", "--baseline", "bl.json", *PACK_ARGS]) == 0
    capsys.readouterr()

    (root / "infra" / "new.tf").write_text(NEW)
    assert main(["scan", "infra", "--baseline", "bl.json", "--format", "json", *PACK_ARGS]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    state = {f["resource"]["address"]: (f["suppressed"], f.get("waiver", {}).get("source")) for f in findings}
    assert state == {"aws_s3_bucket.old": (True, "baseline"), "aws_s3_bucket.new": (False, None)}


def test_cli_baseline_from_config(write_tree, monkeypatch):
    root = write_tree({"infra/main.tf": OLD})
    monkeypatch.chdir(root)
    (root / ".git").mkdir()
    args = ["--policy-dir", str(POLICIES), "--no-builtin-policies"]
    assert main(["baseline", "create", "infra", *args]) == 0
    assert (root / ".soc2infra-baseline.json").is_file()
    (root / ".soc2infra.yaml").write_text("baseline: .soc2infra-baseline.json\n")
    assert main(["scan", "infra", *args]) == 0


def test_cli_bad_baseline_is_exit_2_with_the_file(write_tree, monkeypatch, capsys):
    root = write_tree({"main.tf": OLD, "bl.json": "[]"})
    monkeypatch.chdir(root)
    assert main(["scan", ".", "--baseline", "bl.json", "--format", "json", *PACK_ARGS]) == 2
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert any(e["file"] == "bl.json" and "not a baseline file" in e["message"] for e in errors)


def test_cli_baseline_create_with_a_broken_file_writes_and_exits_2(write_tree, monkeypatch, capsys):
    root = write_tree({"main.tf": OLD, "broken.tf": 'resource "aws_s3_bucket" "x" {\n'})
    monkeypatch.chdir(root)
    assert main(["baseline", "create", ".", "-o", "bl.json", *PACK_ARGS]) == 2
    err = capsys.readouterr().err
    assert "broken.tf:" in err and "does not cover" in err
    assert json.loads((root / "bl.json").read_text())["findings"]


def test_waiver_record_is_the_model_waiver():
    # The baseline marks findings with the same Waiver type every other waiver uses.
    assert Waiver(source="baseline", reason="r").to_dict() == {"source": "baseline", "reason": "r"}
