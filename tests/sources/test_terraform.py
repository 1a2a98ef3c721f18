"""The Terraform HCL source: every static-resolution feature, through the real parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.sources.terraform import load_terraform


def load(root: Path, var_files: tuple[Path, ...] = ()) -> tuple[dict[str, Resource], list]:
    resources, errors = load_terraform(sorted(root.rglob("*.tf")), var_files, jobs=1)
    return {r.address: r for r in resources}, errors


def test_variables_locals_and_interpolation(write_tree):
    root = write_tree({"main.tf": '''
variable "env" { default = "prod" }
variable "suffix" { default = "x" }
locals {
  name   = "${var.env}-logs-${var.suffix}"
  upper  = upper(local.name)
  tags   = merge({ Team = "sec" }, { Env = var.env })
  nested = { a = { b = [1, 2, 3] } }
}
resource "aws_s3_bucket" "b" {
  bucket = local.name
  tags   = local.tags
  third  = local.nested.a.b[2]
  up     = local.upper
  n      = length(local.nested.a.b) * 2
}
'''})
    res, errors = load(root)
    assert errors == []
    attrs = res["aws_s3_bucket.b"].attributes
    assert attrs["bucket"] == "prod-logs-x"
    assert attrs["tags"] == {"Team": "sec", "Env": "prod"}
    assert attrs["third"] == 3
    assert attrs["up"] == "PROD-LOGS-X"
    assert attrs["n"] == 6


def test_tfvars_precedence(write_tree):
    root = write_tree({
        "main.tf": 'variable "a" { default = "default" }\nvariable "b" { default = "default" }\n'
                   'variable "c" { default = "default" }\n'
                   'resource "x_thing" "t" {\n  a = var.a\n  b = var.b\n  c = var.c\n}\n',
        "terraform.tfvars": 'a = "tfvars"\nb = "tfvars"\nc = "tfvars"\n',
        "z.auto.tfvars": 'b = "auto"\nc = "auto"\n',
        "extra.tfvars": 'c = "var-file"\n',
    })
    res, _ = load(root, (root / "extra.tfvars",))
    assert res["x_thing.t"].attributes == {"a": "tfvars", "b": "auto", "c": "var-file"}


def test_unresolvable_values_are_unknown(write_tree):
    root = write_tree({"main.tf": '''
variable "enc" {}
resource "aws_db_instance" "db" {
  storage_encrypted = var.enc
  kms_key_id        = aws_kms_key.k.arn
  name              = "${var.enc}-db"
}
resource "aws_kms_key" "k" {}
'''})
    res, _ = load(root)
    attrs = res["aws_db_instance.db"].attributes
    assert isinstance(attrs["storage_encrypted"], Unknown)
    assert isinstance(attrs["kms_key_id"], Unknown)
    assert isinstance(attrs["name"], Unknown)
    assert res["aws_db_instance.db"].references["kms_key_id"] == frozenset({"aws_kms_key.k"})


def test_count_on_a_condition_and_count_zero(write_tree):
    root = write_tree({"main.tf": '''
variable "create_logs" { default = false }
variable "replicas" { default = 2 }
resource "aws_s3_bucket" "logs" {
  count  = var.create_logs ? 1 : 0
  bucket = "logs"
}
resource "aws_instance" "web" {
  count = var.replicas
  tags  = { Name = "web-${count.index}" }
}
'''})
    res, _ = load(root)
    assert not any(a.startswith("aws_s3_bucket.logs") for a in res)
    assert res["aws_instance.web[0]"].attributes["tags"] == {"Name": "web-0"}
    assert res["aws_instance.web[1]"].attributes["tags"] == {"Name": "web-1"}


def test_unknown_count_keeps_one_flagged_instance(write_tree):
    root = write_tree({"main.tf": 'variable "n" {}\nresource "aws_instance" "w" {\n  count = var.n\n}\n'})
    res, _ = load(root)
    assert res["aws_instance.w"].meta["existence"] == "unknown"


def test_for_each_map_and_set(write_tree):
    root = write_tree({"main.tf": '''
resource "aws_s3_bucket" "m" {
  for_each = { a = "alpha", b = "beta" }
  bucket   = each.value
}
resource "aws_s3_bucket" "s" {
  for_each = toset(["x", "y"])
  bucket   = "s-${each.key}"
}
'''})
    res, _ = load(root)
    assert res['aws_s3_bucket.m["a"]'].attributes["bucket"] == "alpha"
    assert res['aws_s3_bucket.m["b"]'].attributes["bucket"] == "beta"
    assert res['aws_s3_bucket.s["y"]'].attributes["bucket"] == "s-y"


def test_references_between_resources(write_tree):
    root = write_tree({"main.tf": '''
resource "aws_s3_bucket" "data" { bucket = "acme-data" }
resource "aws_s3_bucket_versioning" "v" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration { status = "Enabled" }
}
resource "aws_s3_bucket_logging" "l" {
  bucket        = aws_s3_bucket.data.bucket
  target_bucket = "elsewhere"
}
'''})
    res, _ = load(root)
    v = res["aws_s3_bucket_versioning.v"]
    assert v.references == {"bucket": frozenset({"aws_s3_bucket.data"})}
    assert isinstance(v.attributes["bucket"], Unknown)  # ids are known only after apply
    assert v.attributes["versioning_configuration"] == [{"status": "Enabled"}]
    # A known attribute of another resource resolves to its value and still records the link.
    assert res["aws_s3_bucket_logging.l"].attributes["bucket"] == "acme-data"
    assert res["aws_s3_bucket_logging.l"].references["bucket"] == frozenset({"aws_s3_bucket.data"})
    assert "acme-data" in res["aws_s3_bucket.data"].identities


def test_local_module_called_twice_with_different_inputs(write_tree):
    root = write_tree({
        "main.tf": '''
module "reports" {
  source  = "./modules/bucket"
  name    = "reports"
  encrypt = true
}
module "scratch" {
  source  = "./modules/bucket"
  name    = "scratch"
  encrypt = false
}
resource "aws_s3_bucket_logging" "l" {
  bucket        = module.reports.id
  target_bucket = module.scratch.name
}
''',
        "modules/bucket/main.tf": '''
variable "name" {}
variable "encrypt" { default = true }
resource "aws_s3_bucket" "this" { bucket = var.name }
resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  count  = var.encrypt ? 1 : 0
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default { sse_algorithm = "aws:kms" }
  }
}
output "id" { value = aws_s3_bucket.this.id }
output "name" { value = aws_s3_bucket.this.bucket }
''',
    })
    res, errors = load(root)
    assert errors == []
    assert res["module.reports.aws_s3_bucket.this"].attributes["bucket"] == "reports"
    assert res["module.scratch.aws_s3_bucket.this"].attributes["bucket"] == "scratch"
    sse = res["module.reports.aws_s3_bucket_server_side_encryption_configuration.this[0]"]
    assert sse.references["bucket"] == frozenset({"module.reports.aws_s3_bucket.this"})
    assert not any(a.startswith("module.scratch.aws_s3_bucket_server_side") for a in res)
    # The child directory is not scanned again as a root with unknown inputs.
    assert "aws_s3_bucket.this" not in res
    logging = res["aws_s3_bucket_logging.l"]
    assert logging.attributes["target_bucket"] == "scratch"
    assert logging.references["bucket"] == frozenset({"module.reports.aws_s3_bucket.this"})


def test_module_with_count_and_for_each(write_tree):
    root = write_tree({
        "main.tf": '''
module "a" {
  source = "./m"
  count  = 2
  name   = "a${count.index}"
}
module "b" {
  source   = "./m"
  for_each = toset(["x"])
  name     = each.key
}
''',
        "m/main.tf": 'variable "name" {}\nresource "aws_sqs_queue" "q" { name = var.name }\n',
    })
    res, _ = load(root)
    assert res["module.a[1].aws_sqs_queue.q"].attributes["name"] == "a1"
    assert res['module.b["x"].aws_sqs_queue.q'].attributes["name"] == "x"


def test_dynamic_blocks(write_tree):
    root = write_tree({"main.tf": '''
variable "ports" { default = [22, 443] }
variable "unknown_ports" {}
resource "aws_security_group" "sg" {
  dynamic "ingress" {
    for_each = var.ports
    content {
      from_port   = ingress.value
      to_port     = ingress.value
      cidr_blocks = ["0.0.0.0/0"]
    }
  }
}
resource "aws_security_group" "u" {
  dynamic "ingress" {
    for_each = var.unknown_ports
    content { from_port = ingress.value }
  }
}
'''})
    res, _ = load(root)
    ingress = res["aws_security_group.sg"].attributes["ingress"]
    assert [b["from_port"] for b in ingress] == [22, 443]
    assert isinstance(res["aws_security_group.u"].attributes["ingress"], Unknown)


def test_policy_syntaxes_become_json_strings(write_tree):
    root = write_tree({
        "main.tf": '''
resource "aws_iam_policy" "enc" {
  policy = jsonencode({ Version = "2012-10-17", Statement = [{ Effect = "Allow", Action = "*" }] })
}
resource "aws_iam_policy" "heredoc" {
  policy = <<-EOT
    {"Statement": [{"Effect": "Deny", "Action": "s3:*"}]}
  EOT
}
resource "aws_iam_policy" "file" {
  policy = file("${path.module}/policy.json")
}
resource "aws_iam_policy" "tpl" {
  policy = templatefile("tpl.json", { action = "ec2:*" })
}
''',
        "policy.json": '{"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}',
        "tpl.json": '{"Statement": [{"Effect": "Allow", "Action": "${action}"}]}',
    })
    res, _ = load(root)
    import json

    assert json.loads(res["aws_iam_policy.enc"].attributes["policy"])["Statement"][0]["Action"] == "*"
    assert json.loads(res["aws_iam_policy.heredoc"].attributes["policy"])["Statement"][0]["Effect"] == "Deny"
    assert json.loads(res["aws_iam_policy.file"].attributes["policy"])["Statement"][0]["Action"] == "kms:*"
    assert json.loads(res["aws_iam_policy.tpl"].attributes["policy"])["Statement"][0]["Action"] == "ec2:*"


def test_conditionals_with_unknown_condition(write_tree):
    root = write_tree({"main.tf": '''
variable "x" {}
resource "t_r" "r" {
  same = var.x ? "AES256" : "AES256"
  diff = var.x ? "AES256" : "none"
  andf = var.x && false
  ort  = var.x || true
  fe   = [for s in ["a", "b"] : upper(s) if s != "b"]
  fo   = { for k, v in { a = 1 } : k => v + 1 }
}
'''})
    attrs = load(root)[0]["t_r.r"].attributes
    assert attrs["same"] == "AES256"
    assert isinstance(attrs["diff"], Unknown)
    assert attrs["andf"] is False
    assert attrs["ort"] is True
    assert attrs["fe"] == ["A"]
    assert attrs["fo"] == {"a": 2}


def test_inline_waiver_comments(write_tree):
    root = write_tree({"main.tf": '''
# soc2infra:ignore SOC2-AWS-S3-001 public website, no data
resource "aws_s3_bucket" "site" {
  bucket = "site"
}

resource "aws_s3_bucket" "other" {
  # soc2infra:ignore SOC2-AWS-S3-002 reason inside
  bucket = "other"
}

resource "aws_s3_bucket" "none" { bucket = "none" }
'''})
    res, _ = load(root)
    assert res["aws_s3_bucket.site"].inline_waivers == (("SOC2-AWS-S3-001", "public website, no data", 2),)
    assert res["aws_s3_bucket.other"].inline_waivers == (("SOC2-AWS-S3-002", "reason inside", 8),)
    assert res["aws_s3_bucket.none"].inline_waivers == ()


@pytest.mark.parametrize("content, line", [
    ('resource "aws_s3_bucket" "a" {\n  bucket = "a"\n', 3),                  # truncated
    ('resource "aws_s3_bucket" "a" {\n  bucket = = "a"\n}\n', 2),             # syntax error
])
def test_malformed_file_is_located_and_others_still_load(write_tree, content, line):
    root = write_tree({"bad.tf": content, "good.tf": 'resource "aws_sqs_queue" "q" { name = "q" }\n'})
    res, errors = load(root)
    assert "aws_sqs_queue.q" in res
    assert len(errors) == 1
    assert errors[0].file.endswith("bad.tf")
    assert errors[0].line == line


def test_binary_and_empty_files(write_tree, tmp_path):
    root = write_tree({"empty.tf": "", "good.tf": 'resource "aws_sqs_queue" "q" {}\n'})
    (root / "blob.tf").write_bytes(b"\x00\x01\xff\xfe" * 10)
    res, errors = load(root)
    assert "aws_sqs_queue.q" in res
    assert [Path(e.file).name for e in errors] == ["blob.tf"]
    assert errors[0].line == 1


def test_parse_cache_returns_identical_resources(write_tree, monkeypatch, tmp_path):
    monkeypatch.setenv("SOC2INFRA_CACHE", str(tmp_path / "c"))
    root = write_tree({"main.tf": 'locals { a = "x" }\nresource "aws_sqs_queue" "q" { name = local.a }\n'})
    first, _ = load(root)
    assert any((tmp_path / "c" / "parse").rglob("*")), "cache was not written"
    second, _ = load(root)
    assert first["aws_sqs_queue.q"].attributes == second["aws_sqs_queue.q"].attributes == {"name": "x"}


def test_parallel_parsing_matches_serial(write_tree):
    files = {f"f{i}.tf": f'resource "aws_sqs_queue" "q{i}" {{ name = "q{i}" }}\n' for i in range(60)}
    root = write_tree(files)
    serial, _ = load_terraform(sorted(root.glob("*.tf")), jobs=1)
    parallel, _ = load_terraform(sorted(root.glob("*.tf")), jobs=2)
    assert [(r.address, r.attributes) for r in serial] == [(r.address, r.attributes) for r in parallel]


def test_pf02_conditional_keeps_both_candidates(write_tree):
    root = write_tree({"main.tf": '''
variable "kms" {}
resource "t_r" "r" {
  algo = var.kms == "" ? "AES256" : "aws:kms"
  key  = var.kms == "" ? null : var.kms
  arn  = aws_kms_key.k.arn
}
resource "aws_kms_key" "k" {}
'''})
    attrs = load(root)[0]["t_r.r"].attributes
    assert attrs["algo"].candidates == ("AES256", "aws:kms")
    assert attrs["key"].candidates is None and not attrs["key"].nonnull
    assert attrs["arn"].nonnull  # another resource's ARN: certainly set once applied
