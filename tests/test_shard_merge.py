"""`scan --shard I/N` splits scan units deterministically; `soc2infra merge` of the shards'
JSON results gives the unsharded scan's result, finding for finding, in every format, with the
same exit code."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from soc2infra._core.scan import discover
from soc2infra._core.shard import parse_shard, select, shard_of, terraform_units
from soc2infra.cli import main

ROOTS = 9


def build(tmp: Path) -> Path:
    """Nine root modules (three share a local module), a plan and Kubernetes manifests."""
    repo = tmp / "repo"
    (repo / "modules/bucket").mkdir(parents=True)
    (repo / "modules/bucket/main.tf").write_text(
        'variable "name" { type = string }\nresource "aws_s3_bucket" "this" { bucket = var.name }\n')
    for i in range(ROOTS):
        root = repo / f"stacks/s{i}"
        root.mkdir(parents=True)
        text = f'resource "aws_kms_key" "k{i}" {{\n  enable_key_rotation = {"true" if i % 2 else "false"}\n}}\n'
        if i % 3 == 0:
            text += f'module "b" {{\n  source = "../../modules/bucket"\n  name = "b{i}"\n}}\n'
        if i == 4:
            text += 'module "remote" {\n  source = "acme/vpc/aws"\n}\n'
        (root / "main.tf").write_text(text)
    (repo / "k8s").mkdir()
    (repo / "k8s/app.yaml").write_text("""apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "nginx:1.27", securityContext: {privileged: true}}]
""")
    plan = {"format_version": "1.2", "terraform_version": "1.9.0", "planned_values": {"root_module": {
        "resources": [{"address": "aws_kms_key.p", "mode": "managed", "type": "aws_kms_key", "name": "p",
                       "values": {"enable_key_rotation": False}}]}}}
    (repo / "plans").mkdir()
    (repo / "plans/prod.plan.json").write_text(json.dumps(plan))
    return repo


def cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_parse_shard_refuses_bad_values():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0", "2"):
        with pytest.raises(Exception, match="I/N"):
            parse_shard(bad)


def test_units_keep_a_module_with_its_callers_and_every_unit_lands_in_exactly_one_shard(tmp_path):
    repo = build(tmp_path)
    inputs = discover([str(repo)])
    units = terraform_units(inputs.tf_files)
    module_dir = (repo / "modules/bucket").resolve()
    # s0, s3, s6 and the module they call form one unit.
    assert len({units[(repo / f"stacks/s{i}").resolve()] for i in (0, 3, 6)} | {units[module_dir]}) == 1
    seen: list[Path] = []
    for i in (1, 2, 3):
        part = select(inputs, i, 3, repo)
        seen += part.tf_files + part.plan_files + part.manifest_files
    assert sorted(seen) == sorted(inputs.tf_files + inputs.plan_files + inputs.manifest_files)
    assert shard_of("stacks/s1", 3) == shard_of("stacks/s1", 3)  # no randomness


def test_merged_shards_equal_the_unsharded_scan(tmp_path, capsys, monkeypatch):
    repo = build(tmp_path)
    monkeypatch.chdir(repo)
    full_code, full_out = cli(capsys, "scan", ".", "--format", "json", "--no-config")
    full = json.loads(full_out)
    assert full_code == 1 and full["findings"] and full["coverage"]["modules_not_scanned"] == 1

    shard_files = []
    for i in (1, 2, 3):
        out = tmp_path / f"shard-{i}.json"
        code, _ = cli(capsys, "scan", ".", "--shard", f"{i}/3", "--format", "json", "-o", str(out), "--no-config")
        assert code in (0, 1)
        shard_files.append(str(out))
    shards = [json.loads(Path(f).read_text()) for f in shard_files]
    assert sum(bool(s["findings"]) for s in shards) >= 2, "the split must actually spread the work"

    merged_json = tmp_path / "merged.json"
    code, _ = cli(capsys, "merge", *shard_files, "-o", str(merged_json))
    assert code == full_code
    merged = json.loads(merged_json.read_text())
    for key in ("findings", "unknown", "errors", "coverage"):
        assert merged[key] == full[key], key
    assert merged["summary"] == full["summary"]

    # Every format renders from the merged result; JUnit keeps the passes.
    junit = tmp_path / "merged.xml"
    assert cli(capsys, "merge", *shard_files, "-o", str(junit), "--format", "junit")[0] == full_code
    full_junit = tmp_path / "full.xml"
    cli(capsys, "scan", ".", "--format", "junit", "-o", str(full_junit), "--no-config")
    count = lambda p: int(ET.parse(p).getroot().get("tests"))  # noqa: E731
    assert count(junit) == count(full_junit) > len(full["findings"])
    sarif = tmp_path / "merged.sarif"
    assert cli(capsys, "merge", *shard_files, "-o", str(sarif), "--format", "sarif")[0] == full_code
    assert len(json.loads(sarif.read_text())["runs"][0]["results"]) == len(full["findings"]) + len(full["unknown"])


def test_merge_refuses_what_is_not_a_shard_result(tmp_path, capsys, monkeypatch):
    repo = build(tmp_path)
    monkeypatch.chdir(repo)
    plain = tmp_path / "plain.json"
    cli(capsys, "scan", ".", "--format", "json", "-o", str(plain), "--no-config")
    code = main(["merge", str(plain)])
    assert code == 2 and "--shard" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert cli(capsys, "merge", str(tmp_path / "junk.json"))[0] == 2
