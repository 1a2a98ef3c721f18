"""Plan JSON parity for the AWS rules added with the SOC 2 catalog: the same configuration as HCL
and as `terraform show -json` output gives the same verdicts. The plan documents are built by
hand in the shape Terraform writes them (planned_values, resource_changes.after_unknown,
configuration expressions with references)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan

PACK = load_pack()


def plan_doc(resources: list[dict[str, Any]]) -> str:
    """A plan of managed root-module resources: {address, values, refs: {attr: [address...]},
    unknown: [attr...]} — unknown attributes are computed at apply (arn, id …)."""
    planned, changes, config = [], [], []
    for r in resources:
        rtype, name = r["address"].split(".", 1)
        base = {"address": r["address"], "mode": "managed", "type": rtype, "name": name}
        planned.append({**base, "values": r["values"]})
        changes.append({**base, "change": {"actions": ["create"],
                                           "after_unknown": {a: True for a in r.get("unknown", ["arn", "id"])}}})
        exprs: dict[str, Any] = {k: {"constant_value": v} for k, v in r["values"].items()}
        for attr, targets in r.get("refs", {}).items():
            exprs[attr] = {"references": [f"{t}.id" for t in targets] + list(targets)}
        config.append({**base, "expressions": exprs})
    return json.dumps({"format_version": "1.2", "terraform_version": "1.9.5",
                       "planned_values": {"root_module": {"resources": planned}},
                       "resource_changes": changes,
                       "configuration": {"root_module": {"resources": config}}})


def verdicts(tmp_path, name: str, text: str, rules: set[str]) -> set[tuple[str, str, str]]:
    path = tmp_path / name
    path.write_text(text)
    result = scan([str(path)], PACK)
    assert result.errors == []
    return {(f.rule_id, f.resource.address, f.status) for f in result.findings if f.rule_id in rules}


CASES = {
    "s3-policy": (
        """
        resource "aws_s3_bucket" "a" { bucket = "acme-a" }
        resource "aws_s3_bucket" "b" { bucket = "acme-b" }
        resource "aws_s3_bucket_policy" "a" {
          bucket = aws_s3_bucket.a.id
          policy = jsonencode({ Version = "2012-10-17", Statement = [{ Effect = "Deny", Principal = "*",
            Action = "s3:*", Resource = "arn:aws:s3:::acme-a/*",
            Condition = { Bool = { "aws:SecureTransport" = "false" } } }] })
        }
        resource "aws_s3_bucket_policy" "b" {
          bucket = aws_s3_bucket.b.id
          policy = jsonencode({ Version = "2012-10-17", Statement = [{ Effect = "Allow", Principal = "*",
            Action = "s3:GetObject", Resource = "arn:aws:s3:::acme-b/*" }] })
        }
        """,
        [
            {"address": "aws_s3_bucket.a", "values": {"bucket": "acme-a"}},
            {"address": "aws_s3_bucket.b", "values": {"bucket": "acme-b"}},
            {"address": "aws_s3_bucket_policy.a", "values": {"policy": json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": "arn:aws:s3:::acme-a/*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})},
             "refs": {"bucket": ["aws_s3_bucket.a"]}, "unknown": ["id", "bucket"]},
            {"address": "aws_s3_bucket_policy.b", "values": {"policy": json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme-b/*"}]})},
             "refs": {"bucket": ["aws_s3_bucket.b"]}, "unknown": ["id", "bucket"]},
        ],
        {"SOC2-AWS-S3-007", "SOC2-AWS-S3-008"},
    ),
    "ecs-json": (
        """
        resource "aws_ecs_task_definition" "ok" {
          family = "ok"
          container_definitions = jsonencode([{ name = "app", image = "app:1", readonlyRootFilesystem = true,
            logConfiguration = { logDriver = "awslogs" } }])
        }
        resource "aws_ecs_task_definition" "bad" {
          family = "bad"
          container_definitions = jsonencode([{ name = "app", image = "app:1", privileged = true }])
        }
        """,
        [
            {"address": "aws_ecs_task_definition.ok", "values": {"family": "ok", "container_definitions": json.dumps(
                [{"name": "app", "image": "app:1", "readonlyRootFilesystem": True,
                  "logConfiguration": {"logDriver": "awslogs"}}])}},
            {"address": "aws_ecs_task_definition.bad", "values": {"family": "bad", "container_definitions": json.dumps(
                [{"name": "app", "image": "app:1", "privileged": True}])}},
        ],
        {"SOC2-AWS-ECS-001", "SOC2-AWS-ECS-002", "SOC2-AWS-ECS-003"},
    ),
    "backup-selection": (
        """
        resource "aws_backup_plan" "p" {
          name = "p"
          rule {
            rule_name         = "daily"
            target_vault_name = "v"
            lifecycle { delete_after = 35 }
          }
        }
        resource "aws_db_instance" "a" {
          identifier = "a"
          engine     = "postgres"
        }
        resource "aws_db_instance" "b" {
          identifier = "b"
          engine     = "postgres"
        }
        resource "aws_backup_selection" "s" {
          name         = "s"
          plan_id      = aws_backup_plan.p.id
          iam_role_arn = "arn:aws:iam::111122223333:role/backup"
          resources    = [aws_db_instance.a.arn]
        }
        """,
        [
            {"address": "aws_backup_plan.p", "values": {"name": "p", "rule": [
                {"rule_name": "daily", "target_vault_name": "v", "lifecycle": [{"delete_after": 35}]}]}},
            {"address": "aws_db_instance.a", "values": {"identifier": "a", "engine": "postgres"}},
            {"address": "aws_db_instance.b", "values": {"identifier": "b", "engine": "postgres"}},
            {"address": "aws_backup_selection.s", "values": {"name": "s",
                                                             "iam_role_arn": "arn:aws:iam::111122223333:role/backup"},
             "refs": {"plan_id": ["aws_backup_plan.p"], "resources": ["aws_db_instance.a"]},
             "unknown": ["id", "plan_id", "resources"]},
        ],
        {"SOC2-AWS-BKP-007"},
    ),
    "logging": (
        """
        resource "aws_apigatewayv2_stage" "a" {
          api_id = "x"
          name   = "a"
          access_log_settings {
            destination_arn = "arn:aws:logs:us-east-1:111122223333:log-group:api"
            format          = "$context.requestId"
          }
        }
        resource "aws_apigatewayv2_stage" "b" {
          api_id = "x"
          name   = "b"
        }
        resource "aws_lambda_permission" "p" {
          statement_id  = "p"
          action        = "lambda:InvokeFunction"
          function_name = "f"
          principal     = "sns.amazonaws.com"
        }
        """,
        [
            {"address": "aws_apigatewayv2_stage.a", "values": {"api_id": "x", "name": "a", "access_log_settings": [
                {"destination_arn": "arn:aws:logs:us-east-1:111122223333:log-group:api",
                 "format": "$context.requestId"}]}},
            {"address": "aws_apigatewayv2_stage.b", "values": {"api_id": "x", "name": "b", "access_log_settings": []}},
            {"address": "aws_lambda_permission.p", "values": {"statement_id": "p", "action": "lambda:InvokeFunction",
                                                              "function_name": "f", "principal": "sns.amazonaws.com",
                                                              "source_arn": None, "source_account": None}},
        ],
        {"SOC2-AWS-APIGW-001", "SOC2-AWS-LAMBDA-001"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_gives_the_same_verdicts_as_hcl(tmp_path, case):
    hcl, plan_resources, rules = CASES[case]
    from_hcl = verdicts(tmp_path, "main.tf", hcl, rules)
    from_plan = verdicts(tmp_path, "plan.json", plan_doc(plan_resources), rules)
    assert from_hcl == from_plan
    assert any(status == "fail" for _, _, status in from_hcl)  # each case has something to find
