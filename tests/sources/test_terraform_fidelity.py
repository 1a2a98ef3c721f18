"""Terraform evaluation as Terraform defines it, on the constructs module-heavy code uses
(issue 18): variable type conversion with optional() defaults, nullable, comparisons with
null, try/can over unknowns, typed unknowns and templates, path functions, and the reason
every unknown carries. Each tree is our own minimal reproduction of a construct."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.evaluate import evaluate
from soc2infra._core.engine.policy import PolicyPack
from soc2infra._core.pack import load_pack
from soc2infra._core.sources.terraform import load_terraform

PACK = load_pack()


def load(root: Path, var_files: tuple[Path, ...] = ()) -> dict[str, Resource]:
    resources, errors = load_terraform(sorted(root.rglob("*.tf")), var_files, jobs=1)
    assert errors == []
    return {r.address: r for r in resources}


def outcomes(rule_id: str, resources: list[Resource]) -> dict[str, str]:
    findings, passes = evaluate(resources, PolicyPack([PACK.rule(rule_id)], {}, ""), ResourceIndex(resources))
    out = {addr: "pass" for _rid, addr in passes}
    out.update({f.resource.address: f.status for f in findings})
    return out


CLUSTER_MODULE = '''
variable "encryption_config" {
  type = object({
    provider_key_arn = optional(string)
    resources        = optional(list(string), ["secrets"])
  })
  default = {}
}

variable "node_groups" {
  type = map(object({
    name      = optional(string)
    disk_size = optional(number, 50)
    labels    = optional(map(string), {})
    taints = optional(map(object({
      key    = string
      effect = optional(string, "NO_SCHEDULE")
    })), {})
  }))
  default = null
}

resource "aws_kms_key" "this" {}

resource "aws_eks_cluster" "this" {
  name     = "c"
  role_arn = "arn:aws:iam::123456789012:role/c"
  dynamic "encryption_config" {
    for_each = var.encryption_config != null ? [var.encryption_config] : []
    content {
      resources = encryption_config.value.resources
      provider {
        key_arn = coalesce(encryption_config.value.provider_key_arn, aws_kms_key.this.arn)
      }
    }
  }
}

resource "aws_eks_node_group" "this" {
  for_each        = var.node_groups != null ? var.node_groups : {}
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = coalesce(each.value.name, each.key)
  disk_size       = each.value.disk_size
  labels          = each.value.labels
  taint_effects   = [for t in values(each.value.taints) : t.effect]
}
'''


def test_optional_defaults_apply_at_every_level_and_the_secrets_rule_passes(write_tree):
    """`encryption_config = {}` means resources = ["secrets"]; nested optional defaults fill
    in inside map(object(... map(object)))."""
    root = write_tree({"modules/cluster/main.tf": CLUSTER_MODULE, "main.tf": '''
data "aws_eks_cluster_auth" "x" { name = "c" }
module "cluster" {
  source = "./modules/cluster"
  node_groups = {
    default = {}
    gpu     = { name = "gpu", taints = { t = { key = "gpu" } } }
  }
}
'''})
    res = load(root)
    cluster = res["module.cluster.aws_eks_cluster.this"]
    assert cluster.attributes["encryption_config"][0]["resources"] == ["secrets"]
    assert outcomes("SOC2-AWS-EKS-002", list(res.values()))["module.cluster.aws_eks_cluster.this"] == "pass"
    default = res['module.cluster.aws_eks_node_group.this["default"]'].attributes
    assert default["node_group_name"] == "default" and default["disk_size"] == 50 and default["labels"] == {}
    gpu = res['module.cluster.aws_eks_node_group.this["gpu"]'].attributes
    assert gpu["node_group_name"] == "gpu" and gpu["taint_effects"] == ["NO_SCHEDULE"]


def test_nullable_false_turns_null_into_the_default_and_tfvars_are_converted(write_tree):
    root = write_tree({
        "main.tf": '''
variable "retention" {
  type     = number
  default  = 30
  nullable = false
}
variable "port" { type = string }
variable "flags" {
  type = object({ enabled = optional(bool, true), level = optional(string, "info") })
  validation {
    condition     = contains(["info", "debug"], var.flags.level)
    error_message = "bad level"
  }
}
resource "x_thing" "t" {
  retention = var.retention
  port      = var.port
  enabled   = var.flags.enabled
  level     = var.flags.level
}
''',
        "terraform.tfvars": 'retention = null\nport = 443\nflags = { level = "debug" }\n',
    })
    attrs = load(root)["x_thing.t"].attributes
    assert attrs == {"retention": 30, "port": "443", "enabled": True, "level": "debug"}


def test_comparison_with_null_and_for_each_over_known_keys_with_unknown_values(write_tree):
    """A collection literal is never null, even with unknown elements; for_each over it has
    known keys, so each instance exists under its own address."""
    root = write_tree({"main.tf": '''
resource "aws_kms_key" "k" {}
locals {
  groups = { a = { key = aws_kms_key.k.arn }, b = { key = aws_kms_key.k.arn } }
}
resource "aws_sns_topic" "t" {
  for_each          = local.groups != null ? local.groups : {}
  name              = each.key
  kms_master_key_id = each.value.key
  has_groups        = length(keys(local.groups)) == 2
  not_null          = aws_kms_key.k.arn != null
}
'''})
    res = load(root)
    assert {a for a in res if a.startswith("aws_sns_topic")} == {'aws_sns_topic.t["a"]', 'aws_sns_topic.t["b"]'}
    attrs = res['aws_sns_topic.t["a"]'].attributes
    assert attrs["name"] == "a" and attrs["has_groups"] is True and attrs["not_null"] is True
    assert isinstance(attrs["kms_master_key_id"], Unknown)
    assert res['aws_sns_topic.t["a"]'].meta.get("existence") is None


def test_try_and_can_treat_unknowns_as_values_not_errors(write_tree):
    root = write_tree({"main.tf": '''
data "aws_caller_identity" "me" {}
locals {
  cfg = { a = 1 }
}
resource "x_thing" "t" {
  fallback_on_error = try(local.cfg.missing, "fallback")
  first_ok          = try(local.cfg.a, "fallback")
  unknown_stays     = try(data.aws_caller_identity.me.account_id, "")
  can_error         = can(local.cfg.missing)
  can_ok            = can(local.cfg.a)
  can_unknown       = can(data.aws_caller_identity.me.account_id)
}
'''})
    attrs = load(root)["x_thing.t"].attributes
    assert attrs["fallback_on_error"] == "fallback" and attrs["first_ok"] == 1
    assert isinstance(attrs["unknown_stays"], Unknown) and attrs["unknown_stays"].kind == "apply_time"
    assert attrs["can_error"] is False and attrs["can_ok"] is True
    assert isinstance(attrs["can_unknown"], Unknown)


PARTITION_ADMIN = '''
data "aws_partition" "current" {}
locals {
  partition = try(data.aws_partition.current.partition, "")
}
resource "aws_iam_role" "r" {
  name               = "r"
  assume_role_policy = "{}"
}
resource "aws_iam_role_policy_attachment" "admin" {
  role       = aws_iam_role.r.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AdministratorAccess"
}
resource "aws_iam_role_policy_attachment" "readonly" {
  role       = aws_iam_role.r.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}
'''


def test_partition_template_administrator_access_attachment_is_found(write_tree):
    """The template's fixed text decides the pattern whatever the partition is."""
    res = load(write_tree({"main.tf": PARTITION_ADMIN}))
    arn = res["aws_iam_role_policy_attachment.admin"].attributes["policy_arn"]
    assert isinstance(arn, Unknown) and arn.parts == ("arn:", None, ":iam::aws:policy/AdministratorAccess")
    assert outcomes("SOC2-AWS-IAM-005", list(res.values())) == {
        "aws_iam_role_policy_attachment.admin": "fail", "aws_iam_role_policy_attachment.readonly": "pass",
        "aws_iam_role.r": "pass"}


def test_typed_unknown_remembers_the_resource_type_and_a_resource_arn_is_never_a_wildcard(write_tree):
    res = load(write_tree({"main.tf": '''
resource "aws_s3_bucket" "b" { bucket = "b" }
resource "aws_iam_policy" "p" {
  name = "p"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:GetObject"], Resource = [aws_s3_bucket.b.arn] }]
  })
}
resource "x_thing" "t" {
  arn = aws_iam_policy.p.arn
}
'''}))
    arn = res["x_thing.t"].attributes["arn"]
    assert (arn.kind, arn.rtype, arn.attr) == ("apply_time", "aws_iam_policy", "arn")
    from soc2infra._core.engine.iam.patterns import resource_is_wildcard
    from soc2infra._core.engine.iam.statements import policies_at

    index = ResourceIndex(list(res.values()))
    [st] = policies_at(res["aws_iam_policy.p"], "policy", index).statements
    assert isinstance(st.resources[0], Unknown)
    assert resource_is_wildcard(st) is False


def test_path_values_and_functions(write_tree):
    root = write_tree({"stack/main.tf": '''
module "m" { source = "./mod" }
resource "x_thing" "t" {
  name   = basename(path.cwd)
  parent = basename(dirname(abspath(path.module)))
  root   = path.root
}
''', "stack/mod/main.tf": '''
resource "x_thing" "inner" {
  module_dir = path.module
  exists     = fileexists("${path.module}/main.tf")
}
'''})
    res = load(root)
    t = res["x_thing.t"].attributes
    assert t == {"name": "stack", "parent": root.name, "root": "."}
    assert res["module.m.x_thing.inner"].attributes == {"module_dir": "mod", "exists": True}


def test_every_unknown_finding_carries_its_reason_and_root(write_tree):
    root = write_tree({"main.tf": '''
variable "who" { type = string }
module "ext" { source = "terraform-aws-modules/kms/aws" }
resource "aws_eks_cluster" "unset" {
  name     = "a"
  role_arn = "r"
  encryption_config {
    resources = [var.who]
    provider { key_arn = "k" }
  }
}
resource "aws_eks_cluster" "ext" {
  name     = "b"
  role_arn = "r"
  encryption_config {
    resources = module.ext.resources
    provider { key_arn = "k" }
  }
}
'''})
    resources = list(load(root).values())
    findings, _ = evaluate(resources, PolicyPack([PACK.rule("SOC2-AWS-EKS-002")], {}, ""),
                           ResourceIndex(resources))
    by_addr = {f.resource.address: f for f in findings}
    assert [r.kind for r in by_addr["aws_eks_cluster.unset"].reasons] == ["unset_variable"]
    assert "var.who" in by_addr["aws_eks_cluster.unset"].reasons[0].reason
    assert [r.kind for r in by_addr["aws_eks_cluster.ext"].reasons] == ["external_module"]
    doc = by_addr["aws_eks_cluster.ext"].to_dict()
    assert doc["reasons"][0]["kind"] == "external_module"
    assert doc["resource"]["root"] == str(root)


def test_an_attachment_of_a_customer_policy_is_never_an_aws_managed_policy(write_tree):
    res = load(write_tree({"main.tf": '''
resource "aws_iam_policy" "p" {
  name   = "AdministratorAccess"
  policy = "{}"
}
resource "aws_iam_role_policy_attachment" "custom" {
  role       = "r"
  policy_arn = aws_iam_policy.p.arn
}
'''}))
    assert outcomes("SOC2-AWS-IAM-005", list(res.values())) == {"aws_iam_role_policy_attachment.custom": "pass"}


def test_json_report_with_reasons_and_root_follows_the_schema(write_tree):
    import json
    import subprocess
    import sys

    import jsonschema

    from soc2infra._core.reports.json_report import JSON_SCHEMA_VERSION

    root = write_tree({"main.tf": PARTITION_ADMIN + '''
variable "keys" { type = list(string) }
resource "aws_eks_cluster" "c" {
  name     = "c"
  role_arn = "r"
  encryption_config {
    resources = var.keys
    provider { key_arn = "k" }
  }
}
'''})
    out = subprocess.run([sys.executable, "-m", "soc2infra.cli", "scan", "--no-config", "-f", "json", str(root)],
                         capture_output=True, text=True, check=False)
    doc = json.loads(out.stdout)
    schema = json.loads((Path(__file__).resolve().parents[2] / "soc2infra" / "_core" / "reports" / "result.schema.json")
                        .read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)
    assert doc["version"] == JSON_SCHEMA_VERSION
    [eks] = [u for u in doc["unknown"] if u["resource"]["address"] == "aws_eks_cluster.c"]
    assert eks["reasons"][0]["kind"] == "unset_variable" and eks["resource"]["root"]


def test_try_falls_back_on_type_errors_and_flatten_keeps_maps_with_unknown_values(write_tree):
    """Corpus shapes: `try(var.obj.attr, false)` on a null object, `try(jsondecode(var.list),
    var.list)`, and a dynamic block over `try(flatten([var.cfg["rule"]]), [])` whose maps hold
    apply-time values: all decided, no placeholder block."""
    res = load(write_tree({"main.tf": '''
variable "compute" {
  type    = object({ enabled = optional(bool, false) })
  default = null
}
variable "grant" {
  type    = any
  default = []
}
resource "aws_kms_key" "k" {}
locals {
  auto   = try(var.compute.enabled, false) == true
  grants = try(jsondecode(var.grant), var.grant)
  sse    = { rule = { apply = { key = aws_kms_key.k.arn, algo = "aws:kms" } } }
}
resource "x_thing" "t" {
  auto   = local.auto
  grants = length(local.grants)
  dynamic "rule" {
    for_each = try(flatten([local.sse["rule"]]), [])
    content {
      algo = rule.value.apply.algo
    }
  }
}
'''}))
    attrs = res["x_thing.t"].attributes
    assert attrs["auto"] is False and attrs["grants"] == 0 and attrs["rule"] == [{"algo": "aws:kms"}]


def test_the_representative_instance_of_an_unknown_for_each_says_why(write_tree):
    res = load(write_tree({"main.tf": '''
variable "names" { type = set(string) }
resource "x_thing" "t" {
  for_each = var.names
  name     = each.value
}
'''}))
    [t] = [r for a, r in res.items() if a.startswith("x_thing.t")]
    assert t.attributes["name"].kind == "unset_variable"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit", "markdown"])
def test_every_format_says_why_a_result_is_unknown_and_in_which_root(write_tree, fmt):
    import subprocess
    import sys

    root = write_tree({"stack-a/main.tf": '''
variable "keys" { type = list(string) }
resource "aws_eks_cluster" "c" {
  name     = "c"
  role_arn = "r"
  encryption_config {
    resources = var.keys
    provider { key_arn = "k" }
  }
}
'''})
    out = subprocess.run([sys.executable, "-m", "soc2infra.cli", "scan", "--no-config", "--enable",
                          "SOC2-AWS-EKS-002", "-f", fmt, str(root)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "var.keys has no value" in out.stdout
    assert "stack-a" in out.stdout


def test_a_resource_list_of_unknown_size_keeps_its_elements_but_not_its_length(write_tree):
    res = load(write_tree({"main.tf": '''
variable "n" { type = number }
resource "aws_s3_bucket" "b" {
  count  = var.n
  bucket = "b"
}
resource "x_thing" "t" {
  arns   = aws_s3_bucket.b[*].arn
  n      = length(aws_s3_bucket.b[*].arn)
  all    = length(aws_s3_bucket.b)
  known  = length(["a", aws_s3_bucket.b[0].arn])
}
'''}))
    attrs = res["x_thing.t"].attributes
    assert isinstance(attrs["arns"][0], Unknown) and attrs["arns"][0].rtype == "aws_s3_bucket"
    assert isinstance(attrs["n"], Unknown) and attrs["n"].kind == "unset_variable"
    assert isinstance(attrs["all"], Unknown) and attrs["known"] == 2


def test_json_documents_with_computed_leaves_are_read_by_json_path_steps(write_tree):
    """`container_definitions = jsonencode([{..., image = aws_ecr_repository.r.repository_url}])`:
    the structure is known, so the privileged check is decided."""
    res = load(write_tree({"main.tf": '''
resource "aws_ecr_repository" "r" { name = "r" }
resource "aws_ecs_task_definition" "ok" {
  family = "ok"
  container_definitions = jsonencode([{ name = "app", image = aws_ecr_repository.r.repository_url,
                                        privileged = false, readonlyRootFilesystem = true }])
}
resource "aws_ecs_task_definition" "bad" {
  family = "bad"
  container_definitions = jsonencode([{ name = "app", image = aws_ecr_repository.r.repository_url,
                                        privileged = true }])
}
'''}))
    got = outcomes("SOC2-AWS-ECS-001", list(res.values()))
    assert got == {"aws_ecs_task_definition.ok": "pass", "aws_ecs_task_definition.bad": "fail"}
    assert res["aws_ecs_task_definition.ok"].attributes["container_definitions"].kind == "apply_time"


def test_a_principal_template_with_unknown_partition_and_account_is_never_everyone(write_tree):
    """`arn:${partition}:iam::${account_id}:root` (terraform-aws-kms) is not Principal "*"."""
    res = load(write_tree({"main.tf": '''
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_iam_policy_document" "key" {
  statement {
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}
data "aws_iam_policy_document" "open" {
  statement {
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }
}
resource "aws_kms_key" "k" {
  policy = data.aws_iam_policy_document.key.json
}
resource "aws_kms_key" "open" {
  policy = data.aws_iam_policy_document.open.json
}
'''}))
    got = outcomes("SOC2-AWS-KMS-003", list(res.values()))
    assert got == {"aws_kms_key.k": "pass", "aws_kms_key.open": "fail"}


def test_an_unknown_arn_keeps_its_layout_and_known_name(write_tree):
    """`aws_s3_bucket.b.arn` is arn:<partition>:s3:::acme-logs: a statement on it does not touch
    other buckets, and an IAM role's ARN carries its path and name."""
    res = load(write_tree({"main.tf": '''
resource "aws_s3_bucket" "b" { bucket = "acme-logs" }
resource "aws_iam_role" "r" {
  name               = "deployer"
  path               = "/ci/"
  assume_role_policy = "{}"
}
resource "aws_iam_policy" "p" {
  name = "p"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:GetObject"], Resource = [aws_s3_bucket.b.arn] }]
  })
}
resource "x_thing" "t" {
  role = aws_iam_role.r.arn
}
'''}))
    from soc2infra._core.engine.core import EvalContext
    from soc2infra._core.engine.registry import compile_condition

    role = res["x_thing.t"].attributes["role"]
    assert role.parts == ("arn:\x00:iam::\x00:role/ci/deployer",)
    index = ResourceIndex(list(res.values()))
    policy = res["aws_iam_policy.p"]

    def decide(pattern: str) -> object:
        cond = compile_condition({"iam_statements": {"where": {"resource_matches": pattern}}})
        return cond(EvalContext(policy.attributes, policy, index))

    assert decide("arn:aws:s3:::other-*") is False
    assert decide("arn:*:s3:::acme-*") is True
    assert decide("arn:aws:s3:::acme-*") is None  # the partition may not be "aws"


def test_a_policy_read_from_a_data_source_is_an_apply_time_unknown_for_every_rule(write_tree):
    """`policy = data.aws_iam_policy.x.policy`: every IAM rule that cannot read it says why
    (apply_time), not only the first one that resolved the attribute."""
    res = load(write_tree({"main.tf": '''
data "aws_iam_policy" "vpc" { name = "SomeTeamPolicy" }
resource "aws_iam_role" "r" {
  name               = "r"
  assume_role_policy = "{}"
}
resource "aws_iam_role_policy" "vpc" {
  role   = aws_iam_role.r.id
  policy = data.aws_iam_policy.vpc.policy
}
'''}))
    resources = list(res.values())
    findings, _ = evaluate(resources, PACK, ResourceIndex(resources))
    unknown = [f for f in findings if f.status == "unknown" and f.resource.address == "aws_iam_role_policy.vpc"]
    assert len(unknown) >= 2
    assert all(f.reasons and all(r.kind == "apply_time" for r in f.reasons) for f in unknown), \
        [(f.rule_id, f.reasons) for f in unknown]


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_a_shared_module_finding_names_its_root_in_human_formats(write_tree, fmt):
    """Two example roots calling one module give the same address and file:line; the root
    module tells them apart."""
    import subprocess
    import sys

    module = 'resource "aws_eks_cluster" "c" {\n  name     = "c"\n  role_arn = "r"\n}\n'
    root = write_tree({"modules/eks/main.tf": module,
                       "examples/one/main.tf": 'module "eks" { source = "../../modules/eks" }\n',
                       "examples/two/main.tf": 'module "eks" { source = "../../modules/eks" }\n'})
    out = subprocess.run([sys.executable, "-m", "soc2infra.cli", "scan", "--no-config", "--enable",
                          "SOC2-AWS-EKS-002", "-f", fmt, str(root / "examples")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stderr
    assert "examples/one" in out.stdout and "examples/two" in out.stdout
