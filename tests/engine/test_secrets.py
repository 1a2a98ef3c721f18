"""Credentials in code: which values count as literal secrets, where they are found (resources,
provider blocks, variable defaults) and that findings only ever carry a masked value."""

from __future__ import annotations

import json

import pytest

from soc2infra._core.engine.secrets import find_secrets, is_literal_secret, is_sensitive_name, mask
from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan

PACK = load_pack()
SECRET = "Sup3r-Secret-Example-Value-42"


@pytest.mark.parametrize("name, expected", [
    ("password", True), ("master_password", True), ("admin_password", True), ("secret_key", True),
    ("access_key", True), ("client_secret", True), ("token", True), ("DB_PASSWORD", True),
    ("github-token", True), ("administrator_login_password", True),
    ("password_length", False), ("manage_master_user_password", False), ("kms_key_id", False),
    ("token_validity_units", False), ("secret_arn", False), ("public_key", False),
])
def test_sensitive_names(name, expected):
    assert is_sensitive_name(name) is expected


@pytest.mark.parametrize("value, expected", [
    ("hunter2", True), ("", False), ("  ", False), ("true", False), (True, False), (8, False),
    ("arn:aws:secretsmanager:eu-west-1:111122223333:secret:db", False),
    ("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/db)", False),
])
def test_literal_secret_values(value, expected):
    assert is_literal_secret(value) is expected


def test_mask_never_reveals_length_or_a_short_secret():
    assert mask(SECRET) == "Su******"
    assert mask("abc") == "******"
    assert mask("a" * 11) == mask("b" * 5) == "******"


def test_find_secrets_walks_blocks_maps_and_sensitive_blocks():
    attrs = {
        "master_password": "pw-literal-1",
        "environment": [{"variables": {"API_TOKEN": "tok-literal-2", "LOG_LEVEL": "info"}}],
        "set_sensitive": [{"name": "db.password", "value": "pw-literal-3"}],
        "password_length": 32,
    }
    assert sorted(find_secrets(attrs)) == [
        ("environment.variables.API_TOKEN", "tok-literal-2"),
        ("master_password", "pw-literal-1"),
        ("set_sensitive.value", "pw-literal-3"),  # its value, not the name of the chart setting
    ]


def _auth_findings(root):
    result = scan([str(p) for p in sorted(root.glob("*.tf"))], PACK)
    assert result.errors == []
    return {(f.rule_id, f.resource.address): f for f in result.findings if f.rule_id.startswith("SOC2-AUTH-CRED")}


def test_resource_provider_and_variable_secrets_are_found_and_masked(write_tree):
    root = write_tree({"main.tf": f"""
provider "aws" {{
  region     = "eu-west-1"
  secret_key = "{SECRET}"
}}

variable "db_password" {{
  type    = string
  default = "{SECRET}-var"
}}

resource "aws_db_instance" "direct" {{
  identifier        = "direct"
  engine            = "postgres"
  instance_class    = "db.t4g.micro"
  allocated_storage = 20
  username          = "app"
  password          = "{SECRET}-direct"
}}

resource "aws_db_instance" "via_var" {{
  identifier        = "via-var"
  engine            = "postgres"
  instance_class    = "db.t4g.micro"
  allocated_storage = 20
  username          = "app"
  password          = var.db_password
}}
"""})
    findings = _auth_findings(root)
    assert set(findings) == {
        ("SOC2-AUTH-CRED-002", "provider.aws"),
        ("SOC2-AUTH-CRED-003", "var.db_password"),
        ("SOC2-AUTH-CRED-001", "aws_db_instance.direct"),
        # via_var is reported once, on the variable; both instances still fail CRED-005
        ("SOC2-AUTH-CRED-005", "aws_db_instance.direct"),
        ("SOC2-AUTH-CRED-005", "aws_db_instance.via_var"),
    }
    assert findings[("SOC2-AUTH-CRED-001", "aws_db_instance.direct")].details == {
        "argument": "password", "value": "Su******"}
    assert findings[("SOC2-AUTH-CRED-002", "provider.aws")].details == {"argument": "secret_key", "value": "Su******"}
    for finding in findings.values():
        text = json.dumps(finding.to_dict())
        assert SECRET not in text


def test_values_that_are_not_in_code_pass(write_tree):
    root = write_tree({"main.tf": """
variable "db_password" {
  type      = string
  sensitive = true
}

data "aws_secretsmanager_secret_version" "db" {
  secret_id = "prod/db"
}

resource "random_password" "cache" {
  length = 32
}

resource "aws_rds_cluster" "from_store" {
  cluster_identifier = "from-store"
  engine             = "aurora-postgresql"
  master_username    = "app"
  master_password    = data.aws_secretsmanager_secret_version.db.secret_string
}

resource "aws_db_instance" "from_var" {
  identifier        = "from-var"
  engine            = "postgres"
  instance_class    = "db.t4g.micro"
  allocated_storage = 20
  username          = "app"
  password          = var.db_password
}

resource "aws_elasticache_replication_group" "cache" {
  replication_group_id = "cache"
  description          = "cache"
  auth_token           = random_password.cache.result
}
"""})
    findings = _auth_findings(root)
    assert [k for k in findings if k[0] in ("SOC2-AUTH-CRED-001", "SOC2-AUTH-CRED-003")] == []


def test_tfvars_literal_is_reported_on_the_resource(write_tree):
    root = write_tree({
        "main.tf": """
variable "admin_password" {
  type      = string
  sensitive = true
}

resource "azurerm_mssql_server" "sql" {
  name                         = "sql"
  resource_group_name          = "rg"
  location                     = "westeurope"
  version                      = "12.0"
  administrator_login          = "sqladmin"
  administrator_login_password = var.admin_password
}
""",
        "terraform.tfvars": f'admin_password = "{SECRET}"\n',
    })
    findings = _auth_findings(root)
    assert set(findings) == {("SOC2-AUTH-CRED-001", "azurerm_mssql_server.sql")}
    assert findings[("SOC2-AUTH-CRED-001", "azurerm_mssql_server.sql")].details["argument"] == \
        "administrator_login_password"


def test_provider_in_a_child_module_and_aliases_get_distinct_addresses(write_tree):
    root = write_tree({
        "main.tf": """
provider "aws" {
  alias  = "replica"
  region = "us-east-1"
}

module "db" {
  source = "./modules/db"
}
""",
        "modules/db/main.tf": f"""
provider "postgresql" {{
  host     = "db.internal"
  password = "{SECRET}"
}}
""",
    })
    findings = _auth_findings(root)
    assert set(findings) == {("SOC2-AUTH-CRED-002", "module.db.provider.postgresql")}
    result = scan([str(root / "main.tf")], PACK)
    assert {r.address for r in result.resources if r.type.startswith("provider.")} == {
        "provider.aws.replica", "module.db.provider.postgresql"}
