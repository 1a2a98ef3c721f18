"""Provider features real trees use: default_tags in effective tags (through aliases and module
`providers` maps), terraform.workspace, and blocks that are not resources (moved, import, removed,
check, lifecycle preconditions) read without error."""

from __future__ import annotations

from pathlib import Path

from soc2infra._cogs.model import is_unknown
from soc2infra._core.sources.terraform import load_terraform

ROOT = """
provider "aws" {
  region = "us-east-1"
  default_tags {
    tags = { backup = "daily", owner = "platform" }
  }
}
provider "aws" {
  alias  = "eu"
  region = "eu-west-1"
  default_tags {
    tags = { backup = "weekly" }
  }
}
variable "extra" {
  type = map(string)
}
resource "aws_s3_bucket" "own_tags_win" {
  bucket = "a"
  tags   = { owner = "data" }
}
resource "aws_s3_bucket" "aliased" {
  provider = aws.eu
  bucket   = "b"
}
resource "aws_s3_bucket" "unknown_tags" {
  bucket = "c"
  tags   = var.extra
}
module "passed_eu" {
  source    = "./child"
  providers = { aws = aws.eu }
}
module "inherits_default" {
  source = "./child"
}
moved {
  from = aws_s3_bucket.old
  to   = aws_s3_bucket.own_tags_win
}
import {
  to = aws_s3_bucket.aliased
  id = "b"
}
removed {
  from = aws_s3_bucket.gone
  lifecycle {
    destroy = false
  }
}
check "site_up" {
  data "http" "site" {
    url = "https://example.com"
  }
  assert {
    condition     = data.http.site.status_code == 200
    error_message = "down"
  }
}
"""

CHILD = """
resource "aws_ebs_volume" "data" {
  availability_zone = "eu-west-1a"
  size              = 10
  tags              = { Name = "data-${terraform.workspace}" }
  lifecycle {
    precondition {
      condition     = true
      error_message = "never"
    }
  }
}
"""


def load(tmp_path: Path) -> dict:
    (tmp_path / "main.tf").write_text(ROOT)
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "main.tf").write_text(CHILD)
    resources, errors = load_terraform([tmp_path / "main.tf"])
    assert errors == []
    return {r.address: r for r in resources}


def test_default_tags_merge_under_the_resource_tags(tmp_path):
    res = load(tmp_path)
    assert res["aws_s3_bucket.own_tags_win"].attributes["tags_all"] == {"backup": "daily", "owner": "data"}
    assert res["aws_s3_bucket.own_tags_win"].attributes["tags"] == {"owner": "data"}  # as configured


def test_a_resource_uses_the_aliased_configuration_it_names(tmp_path):
    assert load(tmp_path)["aws_s3_bucket.aliased"].attributes["tags_all"] == {"backup": "weekly"}


def test_modules_inherit_the_default_or_get_what_providers_passes(tmp_path):
    res = load(tmp_path)
    assert res["module.passed_eu.aws_ebs_volume.data"].attributes["tags_all"] == {
        "backup": "weekly", "Name": "data-default"}
    assert res["module.inherits_default.aws_ebs_volume.data"].attributes["tags_all"] == {
        "backup": "daily", "owner": "platform", "Name": "data-default"}


def test_unknown_resource_tags_make_effective_tags_unknown(tmp_path):
    assert is_unknown(load(tmp_path)["aws_s3_bucket.unknown_tags"].attributes["tags_all"])


def test_moved_import_removed_check_and_preconditions_are_not_resources(tmp_path):
    res = load(tmp_path)
    types = {r.type for r in res.values()}
    assert "http" not in types and "data.http" not in types
    assert not any("old" in a or "gone" in a or "site" in a for a in res)
    assert "lifecycle" not in res["module.passed_eu.aws_ebs_volume.data"].attributes
