"""The Azure and Google Cloud rules on realistic trees of our own: exact findings (including
*unknown* where a diagnostic target, backup policy or snapshot policy comes from outside the
tree), credentials masked in every output format, and the same verdicts from plan JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.reports import ReportInput, render
from soc2infra._core.scan import scan

DATA = Path(__file__).resolve().parent / "data"
PACK = load_pack()
CLOUD_PREFIXES = ("SOC2-AZ-", "SOC2-GCP-", "SOC2-AUTH-")


def _tree_findings(tree: str) -> set[tuple[str, str, str]]:
    result = scan([str(DATA / tree)], PACK)
    assert result.errors == []
    return {(f.rule_id, f.resource.address, f.status) for f in result.findings
            if f.rule_id.startswith(CLOUD_PREFIXES)}


def test_azure_tree_gives_exactly_the_expected_findings():
    assert _tree_findings("cloud_azure") == {
        # azurerm 3.x name enable_https_traffic_only = false; no CMK, no blob diagnostic setting
        ("SOC2-AZ-STORAGE-001", "azurerm_storage_account.legacy", "fail"),
        ("SOC2-AZ-STORAGE-010", "azurerm_storage_account.legacy", "fail"),
        ("SOC2-AZ-STORAGE-011", "azurerm_storage_account.legacy", "fail"),
        # the module called a second time with LRS replication
        ("SOC2-AZ-STORAGE-009", "module.scratch.azurerm_storage_account.this", "fail"),
        # azurerm 3.x name enable_non_ssl_port = true
        ("SOC2-AZ-REDIS-001", "azurerm_redis_cache.sessions", "fail"),
        # literal administrator password, SQL logins still allowed, whole-internet firewall rule
        ("SOC2-AUTH-CRED-001", "azurerm_mssql_server.main", "fail"),
        ("SOC2-AZ-SQL-004", "azurerm_mssql_server.main", "fail"),
        ("SOC2-AZ-SQL-002", "azurerm_mssql_firewall_rule.everyone", "fail"),
        # SSH through a 20-25 range from anywhere
        ("SOC2-AZ-NSG-001", "azurerm_network_security_rule.ssh_anywhere", "fail"),
        # not protected by any backup item, literal admin password
        ("SOC2-AZ-VM-004", "azurerm_windows_virtual_machine.batch", "fail"),
        ("SOC2-AUTH-CRED-001", "azurerm_windows_virtual_machine.batch", "fail"),
        # diagnostic setting target and backup policy come from variables without values
        ("SOC2-AZ-KV-006", "azurerm_key_vault.shared", "unknown"),
        ("SOC2-AZ-VM-004", "azurerm_linux_virtual_machine.jump", "unknown"),
    }


def test_gcp_tree_gives_exactly_the_expected_findings():
    assert _tree_findings("cloud_gcp") == {
        ("SOC2-GCP-KMS-001", "google_kms_crypto_key.archive", "fail"),
        ("SOC2-GCP-LOG-001", "google_logging_project_bucket_config.ops", "fail"),
        # for_each subnet whose dynamic log_config block renders nothing
        ("SOC2-GCP-NET-001", 'google_compute_subnetwork.this["batch"]', "fail"),
        ("SOC2-GCP-FW-001", "google_compute_firewall.rdp_world", "fail"),
        # google 5.x require_ssl accepted; pgAudit flag missing
        ("SOC2-GCP-SQL-005", "google_sql_database_instance.billing", "fail"),
        ("SOC2-AUTH-CRED-001", "google_sql_user.billing", "fail"),
        # the key is reported on its service account
        ("SOC2-GCP-IAM-002", "google_service_account.nodes", "fail"),
        # the module called a second time with reader = allUsers
        ("SOC2-GCP-GCS-003", "module.press.google_storage_bucket_iam_member.reader", "fail"),
        # attached to a snapshot policy named by a variable without a value
        ("SOC2-GCP-DISK-001", "google_compute_disk.cache", "unknown"),
    }


@pytest.mark.parametrize("tree, secrets", [
    ("cloud_azure", ["Winter2026!Sql", "Batch-P@ssw0rd-2026"]),
    ("cloud_gcp", ["Billing-2026-secret"]),
])
@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit", "markdown"])
def test_credentials_are_masked_in_every_format(tree, secrets, fmt):
    result = scan([str(DATA / tree)], PACK)
    out = render(fmt, ReportInput(result, PACK))
    assert "SOC2-AUTH-CRED-001" in out
    for secret in secrets:
        assert secret not in out
        assert secret[2:9] not in out  # not even a fragment beyond the masked prefix
    if fmt == "json":
        details = [f.get("details", {}) for f in json.loads(out)["findings"]
                   if f["rule_id"] == "SOC2-AUTH-CRED-001"]
        assert details and all(d.get("value", "").endswith("******") for d in details)


def _verdicts(path: Path, prefix: str) -> dict[tuple[str, str], str]:
    result = scan([str(path)], PACK)
    assert result.errors == []
    out = {(rid, addr): "pass" for rid, addr in result.passes if rid.startswith(prefix)}
    out.update({(f.rule_id, f.resource.address): f.status for f in result.findings if f.rule_id.startswith(prefix)})
    return out


@pytest.mark.parametrize("provider, prefix, expected", [
    ("azure", "SOC2-AZ-", {
        # resolved through the diagnostic setting / protected item / policy in the plan's configuration
        ("SOC2-AZ-KV-006", "azurerm_key_vault.kv"): "pass",
        ("SOC2-AZ-KV-006", "azurerm_key_vault.bare"): "fail",
        ("SOC2-AZ-KV-001", "azurerm_key_vault.bare"): "fail",
        ("SOC2-AZ-KV-003", "azurerm_key_vault.kv"): "pass",
        ("SOC2-AZ-VM-004", "azurerm_linux_virtual_machine.app"): "pass",
        ("SOC2-AZ-VM-004", "azurerm_windows_virtual_machine.batch"): "fail",
        # both attribute generations
        ("SOC2-AZ-STORAGE-001", "azurerm_storage_account.legacy"): "fail",
        ("SOC2-AZ-REDIS-001", "azurerm_redis_cache.sessions"): "fail",
    }),
    ("gcp", "SOC2-GCP-", {
        ("SOC2-GCP-DISK-001", "google_compute_disk.data"): "pass",
        ("SOC2-GCP-DISK-001", "google_compute_disk.scratch"): "fail",
        ("SOC2-GCP-SQL-002", "google_sql_database_instance.v5"): "pass",
        ("SOC2-GCP-SQL-002", "google_sql_database_instance.v6"): "fail",
        ("SOC2-GCP-SQL-003", "google_sql_database_instance.v5"): "pass",
        ("SOC2-GCP-LOG-002", "google_logging_project_sink.audit"): "pass",
        ("SOC2-GCP-GCS-007", "google_storage_bucket.logs"): "pass",
        ("SOC2-GCP-FW-001", "google_compute_firewall.ssh"): "fail",
    }),
])
def test_plan_json_gives_the_same_verdicts_as_hcl(provider, prefix, expected):
    plans = DATA / "cloud_plans"
    from_hcl = _verdicts(plans / provider, prefix)
    from_plan = _verdicts(plans / f"{provider}.plan.json", prefix)
    for key, verdict in expected.items():
        assert from_hcl.get(key) == verdict, key
    assert from_plan == from_hcl


def test_each_cloud_has_at_least_45_rules_all_mapped_to_catalog_checks():
    for prefix, catalog_prefix in (("SOC2-AZ-", "AZ-"), ("SOC2-GCP-", "GCP-")):
        rules = [r for r in PACK.rules if r.id.startswith(prefix)]
        assert len(rules) >= 45
        assert all(r.catalog and all(c.startswith(catalog_prefix) for c in r.catalog) for r in rules)
