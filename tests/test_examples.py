"""The bundled example tree gives exactly the expected findings (issue 2's acceptance tree:
split S3 resources, variables, locals, a local module called twice with different inputs and
`count` on a condition)."""

from __future__ import annotations

from pathlib import Path

from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_TERRAFORM = {
    ("SOC2-AWS-CW-001", "aws_cloudwatch_log_group.app"),       # 30-day retention
    ("SOC2-AWS-CW-002", "aws_cloudwatch_log_group.app"),       # no CMK
    ("SOC2-AUTH-CRED-005", "aws_db_instance.orders"),          # password not managed by RDS
    ("SOC2-AWS-RDS-007", "aws_db_instance.orders"),            # no log exports
    ("SOC2-AUTH-CRED-005", "aws_db_instance.reporting"),
    ("SOC2-AWS-RDS-001", "aws_db_instance.reporting"),         # everything left at defaults
    ("SOC2-AWS-RDS-002", "aws_db_instance.reporting"),
    ("SOC2-AWS-RDS-003", "aws_db_instance.reporting"),
    ("SOC2-AWS-RDS-004", "aws_db_instance.reporting"),
    ("SOC2-AWS-RDS-005", "aws_db_instance.reporting"),
    ("SOC2-AWS-RDS-006", "aws_db_instance.reporting"),
    ("SOC2-AWS-RDS-007", "aws_db_instance.reporting"),
    ("SOC2-AWS-KMS-001", "aws_kms_key.legacy"),                # no rotation
    ("SOC2-AWS-S3-001", "aws_s3_bucket.scratch"),              # no split resources at all
    ("SOC2-AWS-S3-002", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-S3-003", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-S3-004", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-S3-006", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-EC2-004", "aws_security_group.bastion"),        # SSH from 0.0.0.0/0
    # The module called with versioning = false: no versioning; not a log target, so it needs
    # access logging; AES256 is not a customer-managed key.
    ("SOC2-AWS-S3-002", "module.tmp_exports.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-S3-003", "module.tmp_exports.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-S3-006", "module.tmp_exports.aws_s3_bucket.this[0]"),
    # Catalog rules (issue 17): no enhanced monitoring; buckets other than `data` have no TLS-only
    # bucket policy and no expiry; the log-target bucket is exempt from replication only.
    ("SOC2-AWS-RDS-011", "aws_db_instance.orders"),
    ("SOC2-AWS-RDS-011", "aws_db_instance.reporting"),
    ("SOC2-AWS-S3-007", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-S3-007", "module.audit_logs.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-S3-007", "module.tmp_exports.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-S3-010", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-S3-010", "module.tmp_exports.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-S3-011", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-S3-011", "module.audit_logs.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-S3-011", "module.tmp_exports.aws_s3_bucket.this[0]"),
    # Backup coverage: no aws_backup_selection in this tree, so only native protection counts
    # (orders keeps 7 days of automated backups; `data` is versioned and replicated).
    ("SOC2-AWS-BKP-007", "aws_db_instance.reporting"),
    ("SOC2-AWS-BKP-007", "aws_s3_bucket.scratch"),
    ("SOC2-AWS-BKP-007", "module.audit_logs.aws_s3_bucket.this[0]"),
    ("SOC2-AWS-BKP-007", "module.tmp_exports.aws_s3_bucket.this[0]"),
}


def test_terraform_example_gives_exactly_the_expected_findings():
    result = scan([str(ROOT / "examples" / "terraform")], load_pack())
    assert result.errors == []
    got = {(f.rule_id, f.resource.address) for f in result.findings}
    assert got == EXPECTED_TERRAFORM
    assert all(f.status == "fail" for f in result.findings)
    # What must NOT be reported, said positively: the split-resource bucket and the audit-log
    # bucket (a logging target, created because count's condition is true) are compliant.
    addresses = {r.address for r in result.resources}
    assert "module.audit_logs.aws_s3_bucket.this[0]" in addresses
    assert not any(a == "aws_s3_bucket.data" for _, a in got)


def test_whole_example_tree_scans_without_errors():
    result = scan([str(ROOT / "examples")], load_pack())
    assert result.errors == []
    kinds = {r.kind for r in result.resources}
    assert kinds == {"terraform", "kubernetes"}
    assert any(f.suppressed for f in result.findings)  # the inline waiver in the demo


def test_related_resources_never_cross_root_modules(write_tree):
    root = write_tree({
        "a/main.tf": 'resource "aws_s3_bucket" "x" { bucket = "a-x" }\n'
                     'resource "aws_s3_bucket_server_side_encryption_configuration" "x" {\n'
                     '  bucket = aws_s3_bucket.x.id\n'
                     '  rule {\n    apply_server_side_encryption_by_default { sse_algorithm = "AES256" }\n  }\n}\n',
        "b/main.tf": 'resource "aws_s3_bucket" "x" { bucket = "b-x" }\n',
    })
    result = scan([str(root)], load_pack())
    s3_001 = {(f.resource.file.split("/")[-2], f.resource.address) for f in result.findings
              if f.rule_id == "SOC2-AWS-S3-001"}
    assert s3_001 == {("b", "aws_s3_bucket.x")}
