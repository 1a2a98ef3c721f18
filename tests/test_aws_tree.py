"""A realistic AWS tree (tests/data/aws_tree: variables, locals, a dynamic selection_tag, count and
for_each, split and inline S3 settings, a module called twice, provider default_tags) gives
exactly the expected backup and logging findings, including unknown where a backup selection's
ARNs come from outside the tree."""

from __future__ import annotations

from pathlib import Path

from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan

TREE = Path(__file__).resolve().parent / "data" / "aws_tree"

RULES = {"SOC2-AWS-BKP-007", "SOC2-AWS-VPC-001", "SOC2-AWS-CT-001", "SOC2-AWS-CT-004", "SOC2-AWS-CT-005",
         "SOC2-AWS-EKS-001", "SOC2-AWS-APIGW-001"}

EXPECTED = {
    # tagged team=legacy: only the selection whose ARNs come from a variable without value could cover it
    ("SOC2-AWS-BKP-007", "aws_db_instance.billing", "unknown"),
    # no versioning or replication, no tag a selection asks for
    ("SOC2-AWS-BKP-007", "aws_s3_bucket.tmp", "fail"),
    # the module instance called with no tags: not selected, 1-day retention, no PITR
    ("SOC2-AWS-BKP-007", "module.scratch.aws_db_instance.this", "fail"),
    ("SOC2-AWS-BKP-007", "module.scratch.aws_dynamodb_table.this", "fail"),
    ("SOC2-AWS-VPC-001", 'aws_vpc.this["data"]', "fail"),           # only the app VPC has a flow log
    ("SOC2-AWS-CT-001", 'aws_cloudtrail.this["regional"]', "fail"),  # multi_region = false from the map
    ("SOC2-AWS-CT-004", 'aws_cloudtrail.this["main"]', "fail"),      # no CloudWatch delivery
    ("SOC2-AWS-CT-004", 'aws_cloudtrail.this["regional"]', "fail"),
    ("SOC2-AWS-CT-005", 'aws_cloudtrail.this["main"]', "fail"),      # no S3 data events (reported once)
    ("SOC2-AWS-APIGW-001", "aws_api_gateway_stage.prod", "fail"),
}


def test_aws_tree_gives_exactly_the_expected_backup_and_logging_findings():
    result = scan([str(TREE)], load_pack())
    assert result.errors == []
    got = {(f.rule_id, f.resource.address, f.status) for f in result.findings if f.rule_id in RULES}
    assert got == EXPECTED
    # Said positively: covered by reference/tag/wildcard/native protection, in both generations.
    covered = {"module.orders.aws_db_instance.this", "module.orders.aws_dynamodb_table.this",
               "aws_ebs_volume.data[0]", "aws_ebs_volume.data[1]", "aws_s3_bucket.reports", "aws_s3_bucket.archive"}
    assert covered <= {r.address for r in result.resources}
    assert not covered & {a for _, a, _ in got}
