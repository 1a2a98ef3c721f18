"""The plan JSON source: planned values, child modules, after_unknown and references."""

from __future__ import annotations

import json

from soc2infra._cogs.model import Unknown
from soc2infra._core.sources.terraform_plan import load_plan_text

PLAN = {
    "format_version": "1.2",
    "terraform_version": "1.9.5",
    "planned_values": {"root_module": {
        "resources": [
            {"address": "aws_s3_bucket.logs", "mode": "managed", "type": "aws_s3_bucket", "name": "logs",
             "values": {"bucket": "acme-logs", "tags": {"a": "b"}}},
            {"address": "data.aws_iam_policy_document.p", "mode": "data", "type": "aws_iam_policy_document",
             "name": "p", "values": {"json": "{}"}},
        ],
        "child_modules": [{
            "address": "module.reports",
            "resources": [
                {"address": "module.reports.aws_s3_bucket.this", "mode": "managed", "type": "aws_s3_bucket",
                 "name": "this", "values": {"bucket": "reports"}},
                {"address": "module.reports.aws_s3_bucket_versioning.this[0]", "mode": "managed",
                 "type": "aws_s3_bucket_versioning", "name": "this", "index": 0,
                 "values": {"versioning_configuration": [{"status": "Enabled"}]}},
            ],
        }],
    }},
    "resource_changes": [
        {"address": "aws_s3_bucket.logs", "change": {"actions": ["create"],
                                                      "after_unknown": {"arn": True, "id": True}}},
        {"address": "module.reports.aws_s3_bucket_versioning.this[0]",
         "change": {"actions": ["create"], "after_unknown": {"bucket": True, "versioning_configuration": [{}]}}},
        {"address": "aws_s3_bucket.gone", "change": {"actions": ["delete"], "after_unknown": {}}},
    ],
    "configuration": {"root_module": {
        "resources": [{"address": "aws_s3_bucket.logs", "mode": "managed", "type": "aws_s3_bucket",
                       "name": "logs", "expressions": {"bucket": {"constant_value": "acme-logs"}}}],
        "module_calls": {"reports": {"source": "./modules/bucket", "module": {"resources": [
            {"address": "aws_s3_bucket.this", "mode": "managed", "type": "aws_s3_bucket", "name": "this",
             "expressions": {"bucket": {"references": ["var.name"]}}},
            {"address": "aws_s3_bucket_versioning.this", "mode": "managed", "type": "aws_s3_bucket_versioning",
             "name": "this", "expressions": {"bucket": {"references": ["aws_s3_bucket.this.id",
                                                                       "aws_s3_bucket.this"]}}},
        ]}}},
    }},
}


def test_resources_modules_and_unknowns():
    resources, errors = load_plan_text(json.dumps(PLAN), "plan.json")
    assert errors == []
    by = {r.address: r for r in resources}
    assert set(by) == {"aws_s3_bucket.logs", "data.aws_iam_policy_document.p",
                       "module.reports.aws_s3_bucket.this", "module.reports.aws_s3_bucket_versioning.this[0]"}
    logs = by["aws_s3_bucket.logs"]
    assert logs.attributes["bucket"] == "acme-logs"
    # Computed by the provider and never configured: absent for rules, not "unknown".
    assert "arn" not in logs.attributes
    assert "acme-logs" in logs.identities
    assert by["data.aws_iam_policy_document.p"].type == "data.aws_iam_policy_document"
    versioning = by["module.reports.aws_s3_bucket_versioning.this[0]"]
    # Configured but known only after apply: set, value unknown.
    assert isinstance(versioning.attributes["bucket"], Unknown) and versioning.attributes["bucket"].nonnull
    assert versioning.references == {"bucket": frozenset({"module.reports.aws_s3_bucket.this"})}


def test_malformed_and_non_plan_json():
    _, errors = load_plan_text('{"format_version": "1.2",\n "planned_values": ', "bad.json")
    assert errors[0].file == "bad.json" and errors[0].line == 2
    _, errors = load_plan_text('{"a": 1}', "x.json")
    assert "not a Terraform plan" in errors[0].message


def test_nested_values_known_after_apply_are_settled_against_the_configuration():
    """A computed value inside a nested block the configuration never wrote (Cloud SQL's
    settings.ip_configuration.ssl_mode when only require_ssl is set) counts as absent, as a
    top-level one does; a nested argument that was written stays present but unknown."""
    plan = {
        "format_version": "1.2",
        "planned_values": {"root_module": {"resources": [
            {"address": "google_sql_database_instance.db", "mode": "managed",
             "type": "google_sql_database_instance", "name": "db",
             "values": {"name": "db", "settings": [{"tier": "db-f1-micro",
                                                     "ip_configuration": [{"require_ssl": True}]}]}},
        ]}},
        "resource_changes": [
            {"address": "google_sql_database_instance.db", "change": {"actions": ["create"], "after_unknown": {
                "settings": [{"backup_configuration": True,
                              "ip_configuration": [{"ssl_mode": True, "private_network": True}]}]}}},
        ],
        "configuration": {"root_module": {"resources": [
            {"address": "google_sql_database_instance.db", "mode": "managed",
             "type": "google_sql_database_instance", "name": "db",
             "expressions": {"name": {"constant_value": "db"}, "settings": [{
                 "tier": {"constant_value": "db-f1-micro"},
                 "ip_configuration": [{"require_ssl": {"constant_value": True},
                                       "private_network": {"references": ["google_compute_network.n.id"]}}],
             }]}},
        ]}},
    }
    resources, errors = load_plan_text(json.dumps(plan), "plan.json")
    assert errors == []
    settings = resources[0].attributes["settings"][0]
    assert "backup_configuration" not in settings
    ip = settings["ip_configuration"][0]
    assert "ssl_mode" not in ip and ip["require_ssl"] is True
    assert isinstance(ip["private_network"], Unknown) and ip["private_network"].nonnull
