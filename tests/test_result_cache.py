"""The result cache: a cached scan gives exactly the plain scan's result, an unchanged unit is
not re-evaluated, and every kind of input a unit read invalidates its entry when it changes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.result_cache import CacheStats, results_dir, scan_cached
from soc2infra._core.scan import ScanOptions, scan

SECRET = "Plant3d-Secret-Value-42"

TREE = {
    "app/main.tf": """
variable "retention" { type = number }
locals { policy = file("${path.module}/policy.txt") }
module "bucket" {
  source = "../modules/bucket"
  name   = "app-data"
}
resource "aws_cloudwatch_log_group" "app" {
  name              = "app"
  retention_in_days = var.retention
}
resource "aws_iam_policy" "p" {
  name   = "p"
  policy = local.policy
}
resource "aws_db_instance" "db" {
  engine   = "postgres"
  password = "SECRET"
}
""".replace("SECRET", SECRET),
    "app/terraform.tfvars": "retention = 400\n",
    "app/policy.txt": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
    "modules/bucket/main.tf": """
variable "name" { type = string }
resource "aws_s3_bucket" "this" { bucket = var.name }
resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration { status = "Enabled" }
}
""",
    "other/main.tf": 'resource "aws_kms_key" "k" {\n  enable_key_rotation = false\n}\n',
    "k8s/deploy.yaml": """apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: payments}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: registry.example.com/api:1.0
          securityContext: {privileged: true}
""",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel, text in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def signature(result) -> tuple:
    return (sorted((f.rule_id, f.resource.address, f.status, f.resource.file, f.resource.line, f.suppressed)
                   for f in result.findings),
            sorted(result.passes), result.resource_total, sorted(e.to_dict().items().__repr__()
                                                                 for e in result.errors),
            sorted(json.dumps(m.to_dict(), sort_keys=True) for m in result.coverage.modules))


def cached(tree: Path, pack, options: ScanOptions | None = None) -> tuple[object, CacheStats]:
    stats = CacheStats()
    result = scan_cached([str(tree)], pack, options or ScanOptions(base_dir=tree), stats=stats)
    return result, stats


def touch_write(path: Path, text: str) -> None:
    """Rewrite *path* so that even a same-size edit gets a new mtime."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_cached_scan_equals_plain_scan_and_hits_when_unchanged(tree, pack):
    plain = scan([str(tree)], pack, ScanOptions(base_dir=tree))
    first, stats = cached(tree, pack)
    assert stats.misses == 3 and stats.hits == 0  # two Terraform units and the Kubernetes inputs
    assert signature(first) == signature(plain)
    assert {f.rule_id for f in plain.findings} >= {"SOC2-K8S-POD-001", "SOC2-AWS-KMS-001"}
    again, stats = cached(tree, pack)
    assert (stats.hits, stats.misses) == (3, 0)
    assert signature(again) == signature(plain)


@pytest.mark.parametrize("change", [
    "module source", "tfvars", "file() argument", "new .tf file", "manifest", "same-size edit"])
def test_each_kind_of_input_invalidates_only_its_unit(tree, pack, change):
    cached(tree, pack)
    if change == "module source":
        p = tree / "modules/bucket/main.tf"
        touch_write(p, p.read_text().replace('status = "Enabled"', 'status = "Suspended"'))
    elif change == "tfvars":
        touch_write(tree / "app/terraform.tfvars", "retention = 7\n")
    elif change == "file() argument":
        touch_write(tree / "app/policy.txt", json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    elif change == "new .tf file":
        (tree / "app/extra.tf").write_text('resource "aws_kms_key" "extra" {}\n')
    elif change == "manifest":
        p = tree / "k8s/deploy.yaml"
        touch_write(p, p.read_text().replace("privileged: true", "privileged: false"))
    elif change == "same-size edit":
        p = tree / "app/terraform.tfvars"
        touch_write(p, "retention = 100\n".replace("100", "007"))  # same length, new content
    result, stats = cached(tree, pack)
    assert (stats.hits, stats.misses) == (2, 1), change
    assert signature(result) == signature(scan([str(tree)], pack, ScanOptions(base_dir=tree)))


def test_var_file_and_helm_values_are_part_of_the_key(tree, pack, tmp_path):
    var_file = tmp_path / "prod.tfvars"
    var_file.write_text("retention = 30\n")
    opts = ScanOptions(base_dir=tree, var_files=(var_file,))
    base, _ = cached(tree, pack)
    with_vars, stats = cached(tree, pack, opts)
    assert stats.misses >= 1
    assert signature(with_vars) != signature(base)
    touch_write(var_file, "retention = 400\n")
    again, stats = cached(tree, pack, opts)
    assert (stats.hits, stats.misses) == (1, 2)  # every root module reads the var-file
    assert signature(again) == signature(scan([str(tree)], pack, opts))


def test_a_changed_rule_misses(tree, pack, tmp_path):
    cached(tree, pack)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "extra.yaml").write_text("""
rules:
  - id: T-EXTRA-001
    title: Log groups are named
    severity: low
    category: logging
    controls: [CC7.2]
    targets: [aws_cloudwatch_log_group]
    condition: {path: name, equals: nope}
    message: m
    remediation: r
""")
    other = load_pack([rules])
    assert other.digest != pack.digest
    result, stats = cached(tree, other)
    assert stats.hits == 0
    assert any(f.rule_id == "T-EXTRA-001" for f in result.findings)


def test_entries_hold_no_literal_secret(tree, pack):
    result, _ = cached(tree, pack)
    assert any(f.rule_id.startswith("SOC2-AUTH-CRED") for f in result.findings)
    directory = results_dir()
    assert directory is not None and any(directory.iterdir())
    for entry in directory.iterdir():
        assert SECRET not in entry.read_text()
        assert entry.stat().st_mode & 0o077 == 0


def test_a_corrupt_entry_is_ignored(tree, pack):
    cached(tree, pack)
    directory = results_dir()
    assert directory is not None
    for entry in directory.glob("*.json"):
        entry.write_text("{not json")
    result, stats = cached(tree, pack)
    assert stats.misses == 3
    assert signature(result) == signature(scan([str(tree)], pack, ScanOptions(base_dir=tree)))


def test_warm_rescan_is_fast(tree, pack):
    cached(tree, pack)
    start = time.perf_counter()
    _, stats = cached(tree, pack)
    assert stats.hits == 3
    # A generous bound: a stat per input and three small JSON reads, not an evaluation.
    assert time.perf_counter() - start < 0.5


def test_a_changed_helm_values_file_invalidates_the_kubernetes_unit(tmp_path, pack, require_binary,
                                                                    monkeypatch):
    import shutil

    monkeypatch.setenv("SOC2INFRA_HELM", require_binary("helm"))
    root = tmp_path / "charts"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples/kubernetes/chart", root / "storefront")
    values = tmp_path / "values-prod.yaml"
    values.write_text("replicaCount: 1\n")
    opts = ScanOptions(base_dir=root, helm_values=(values,))
    first, stats = cached(root, pack, opts)
    assert stats.misses == 1 and not first.errors
    assert any(f.rule_id == "SOC2-K8S-AVAIL-005" for f in first.findings)  # one replica, no PDB
    assert cached(root, pack, opts)[1].hits == 1
    touch_write(values, "replicaCount: 3\n")
    second, stats = cached(root, pack, opts)
    assert stats.misses == 1
    assert signature(second) == signature(scan([str(root)], pack, opts))
    # A template edit inside the chart directory invalidates it too.
    tpl = root / "storefront/templates/service.yaml"
    touch_write(tpl, tpl.read_text() + "\n# edited\n")
    assert cached(root, pack, opts)[1].misses == 1


def test_a_changed_module_from_terraform_init_invalidates(tmp_path, pack):
    root = tmp_path / "root"
    fetched = root / ".terraform/modules/vpc"
    fetched.mkdir(parents=True)
    (root / "main.tf").write_text('module "vpc" {\n  source = "acme/vpc/aws"\n}\n')
    (fetched / "main.tf").write_text('resource "aws_kms_key" "k" {\n  enable_key_rotation = true\n}\n')
    (root / ".terraform/modules/modules.json").write_text(json.dumps({"Modules": [
        {"Key": "", "Source": "", "Dir": "."},
        {"Key": "vpc", "Source": "registry.terraform.io/acme/vpc/aws", "Version": "1.0.0",
         "Dir": ".terraform/modules/vpc"}]}))
    first, _ = cached(root, pack)
    assert not any(f.rule_id == "SOC2-AWS-KMS-001" for f in first.findings)
    touch_write(fetched / "main.tf", 'resource "aws_kms_key" "k" {\n  enable_key_rotation = false\n}\n')
    second, stats = cached(root, pack)
    assert stats.misses == 1
    assert any(f.rule_id == "SOC2-AWS-KMS-001" for f in second.findings)


def test_rule_selection_is_part_of_the_key(tree, pack):
    from dataclasses import replace

    full, _ = cached(tree, pack)
    narrowed = replace(pack, rules=[replace(r, enabled=r.id != "SOC2-AWS-KMS-001") for r in pack.rules])
    assert narrowed.digest == pack.digest  # same files, another selection
    result, stats = cached(tree, narrowed)
    assert stats.hits == 0
    assert not any(f.rule_id == "SOC2-AWS-KMS-001" for f in result.findings)
    assert any(f.rule_id == "SOC2-AWS-KMS-001" for f in full.findings)
