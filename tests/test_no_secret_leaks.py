"""Secrets planted in scanned files and in the ledger DSN appear in no output format, no log line,
no parse-cache file and no ledger record: every byte the real CLI writes is grepped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "soc2infra"
SECRETS = {
    "tf": "Tf-Planted-Passw0rd-1",
    "local": "Local-Planted-Token-2",
    "tfvars": "Tfvars-Planted-Key-3",
    "ecs": "Ecs-Planted-Env-4",
    "k8s": "K8s-Planted-Secret-5",
    "dsn": "Dsn-Planted-Passw0rd-6",
}
TREE = {
    "infra/main.tf": f'''
locals {{
  token = "{SECRETS["local"]}"
}}
variable "api_key" {{
  type = string
}}
resource "aws_db_instance" "db" {{
  engine            = "postgres"
  password          = "{SECRETS["tf"]}"
  storage_encrypted = true
}}
resource "aws_lambda_function" "f" {{
  function_name = "f"
  environment {{
    variables = {{
      API_TOKEN = local.token
      API_KEY   = var.api_key
    }}
  }}
}}
resource "aws_ecs_task_definition" "t" {{
  family = "t"
  container_definitions = jsonencode([{{
    name  = "app"
    image = "app:1"
    environment = [{{ name = "DB_PASSWORD", value = "{SECRETS["ecs"]}" }}]
  }}])
}}
''',
    "infra/terraform.tfvars": f'api_key = "{SECRETS["tfvars"]}"\n',
    "k8s/secret.yaml": f'''apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: app}}
stringData:
  password: {SECRETS["k8s"]}
---
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: app}}
spec:
  containers:
    - name: app
      image: app:1
      env:
        - {{name: DB_PASSWORD, value: {SECRETS["k8s"]}}}
''',
}


@pytest.fixture
def planted(write_tree, tmp_path):
    root = write_tree(TREE)
    env = dict(os.environ, SOC2INFRA_CACHE=str(tmp_path / "cache"),
               SOC2INFRA_CACHE_KEY=str(tmp_path / "k" / "key"))
    return root, env


def _leaks(data: bytes) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret.encode() in data]


def test_no_secret_in_any_output_cache_or_ledger(planted, tmp_path):
    root, env = planted
    ledger = tmp_path / "evidence.db"
    written: list[bytes] = []
    for fmt in ("text", "json", "sarif", "junit", "markdown"):
        for _ in range(2):  # the second run reads the parse cache
            out_file = tmp_path / f"report.{fmt}"
            proc = subprocess.run([str(EXE), "scan", "infra", "k8s", "--no-config", "--format", fmt,
                                   "--output-file", str(out_file), "--evidence", str(ledger)],
                                  cwd=root, env=env, capture_output=True, timeout=120, check=False)
            assert proc.returncode == 1, proc.stderr.decode()
            written += [proc.stdout, proc.stderr, out_file.read_bytes()]
    # Every finding it should have made, it made: the secrets were seen, then kept out of the output.
    report = (tmp_path / "report.json").read_text()
    for address in ("aws_db_instance.db", "aws_lambda_function.f", "aws_ecs_task_definition.t", "v1/Pod/app/p"):
        assert address in report
    # A DSN with a password: the failure message shows the URL without it.
    dsn = f"postgresql://soc2:{SECRETS['dsn']}@127.0.0.1:1/evidence?connect_timeout=3"
    proc = subprocess.run([str(EXE), "scan", "infra", "--no-config", "--evidence", dsn], cwd=root, env=env,
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2 and b"[REDACTED]" in proc.stderr
    written += [proc.stdout, proc.stderr]
    proc = subprocess.run([str(EXE), "evidence", "export", str(ledger)], env=env, capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0
    written += [proc.stdout, proc.stderr]
    for chunk in written:
        assert _leaks(chunk) == [], chunk.decode(errors="replace")[:2000]
    cache_files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert cache_files, "the parse cache was not written"
    for path in [*cache_files, *tmp_path.glob("evidence.db*")]:
        assert _leaks(path.read_bytes()) == [], path


def test_cache_entries_are_sealed_with_the_users_key(planted, tmp_path):
    root, env = planted
    run = [str(EXE), "scan", "infra", "--no-config", "--format", "json"]
    first = subprocess.run(run, cwd=root, env=env, capture_output=True, timeout=120, check=False)
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert entries and oct((tmp_path / "k" / "key").stat().st_mode & 0o777) == "0o600"
    # Another user's key (or a poisoned shared cache) opens nothing: the scan parses again, same result.
    other = dict(env, SOC2INFRA_CACHE_KEY=str(tmp_path / "other" / "key"))
    again = subprocess.run(run, cwd=root, env=other, capture_output=True, timeout=120, check=False)
    assert again.returncode == first.returncode == 1 and again.stdout == first.stdout
