"""No output format ever contains a secret written in the scanned files.

The tree below puts literal credentials everywhere the credentials-in-code rules look
(resource arguments, nested blocks, environment maps, provider blocks, variable defaults,
tfvars). Every report format is rendered from the scan and searched for each literal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.reports import ReportInput, render
from soc2infra._core.scan import ScanOptions, scan

FORMATS = ("text", "json", "sarif", "junit", "markdown")

# Each literal is unique, so a hit names the place it leaked from.
SECRETS = {
    "resource": "Leak-Resource-Password-7c1e",
    "nested": "Leak-Nested-Master-User-9a2f",
    "env": "Leak-Lambda-Env-Token-3b8d",
    "provider_key": "AKIALEAKPROVIDERKEY00",
    "provider_secret": "Leak/Provider/Secret/Key/5e6a",
    "variable": "Leak-Variable-Default-1f4c",
    "tfvars": "Leak-Tfvars-Value-8d0b",
    "ssm": "Leak-SecureString-Value-2c7e",
}

TREE = {
    "main.tf": f"""
provider "aws" {{
  region     = "eu-west-1"
  access_key = "{SECRETS['provider_key']}"
  secret_key = "{SECRETS['provider_secret']}"
}}

variable "api_token" {{
  type    = string
  default = "{SECRETS['variable']}"
}}

variable "admin_password" {{
  type      = string
  sensitive = true
}}

resource "aws_db_instance" "app" {{
  identifier        = "app"
  engine            = "postgres"
  instance_class    = "db.t4g.micro"
  allocated_storage = 20
  username          = "app"
  password          = "{SECRETS['resource']}"
}}

resource "aws_opensearch_domain" "search" {{
  domain_name = "search"
  advanced_security_options {{
    enabled                        = true
    internal_user_database_enabled = true
    master_user_options {{
      master_user_name     = "admin"
      master_user_password = "{SECRETS['nested']}"
    }}
  }}
}}

resource "aws_lambda_function" "api" {{
  function_name = "api"
  role          = "arn:aws:iam::111122223333:role/api"
  handler       = "main.handler"
  runtime       = "python3.12"
  filename      = "api.zip"
  environment {{
    variables = {{
      UPSTREAM_TOKEN = "{SECRETS['env']}"
      API_TOKEN      = var.api_token
    }}
  }}
}}

resource "azurerm_mssql_server" "sql" {{
  name                         = "sql"
  resource_group_name          = "rg"
  location                     = "westeurope"
  version                      = "12.0"
  administrator_login          = "sqladmin"
  administrator_login_password = var.admin_password
}}

resource "aws_ssm_parameter" "db" {{
  name  = "/prod/db/password"
  type  = "SecureString"
  value = "{SECRETS['ssm']}"
}}
""",
    "terraform.tfvars": f'admin_password = "{SECRETS["tfvars"]}"\n',
}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("leaky")
    for rel, text in TREE.items():
        (root / rel).write_text(text, encoding="utf-8")
    pack = load_pack()
    result = scan([str(root / "main.tf")], pack, ScanOptions(base_dir=root))
    return root, pack, result


def test_the_tree_really_has_credential_findings(scanned):
    _root, _pack, result = scanned
    assert result.errors == []
    found = {(f.rule_id, f.resource.address) for f in result.findings}
    assert {
        ("SOC2-AUTH-CRED-001", "aws_db_instance.app"),
        ("SOC2-AUTH-CRED-001", "aws_opensearch_domain.search"),
        ("SOC2-AUTH-CRED-001", "aws_lambda_function.api"),
        ("SOC2-AUTH-CRED-001", "azurerm_mssql_server.sql"),
        ("SOC2-AUTH-CRED-002", "provider.aws"),
        ("SOC2-AUTH-CRED-003", "var.api_token"),
        ("SOC2-AUTH-CRED-004", "aws_ssm_parameter.db"),
    } <= found


def test_finding_details_are_masked(scanned):
    _root, _pack, result = scanned
    for finding in result.findings:
        if finding.rule_id.startswith("SOC2-AUTH-CRED") and "value" in finding.details:
            assert finding.details["value"].endswith("******")
            assert finding.details["value"] not in SECRETS.values()


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_format_contains_a_secret(scanned, fmt):
    root, pack, result = scanned
    report = ReportInput(result=result, pack=pack, threshold="low", tool_version="0.1.0",
                         base_dir=Path(root), color=False)
    output = render(fmt, report)
    text = output.decode("utf-8") if isinstance(output, bytes) else str(output)
    assert "SOC2-AUTH-CRED-001" in text  # the report is about these findings at all
    leaked = sorted(name for name, secret in SECRETS.items() if secret in text)
    assert leaked == [], f"{fmt} output contains the secret(s) from: {', '.join(leaked)}"
