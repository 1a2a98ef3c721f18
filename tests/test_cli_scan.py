"""``soc2infra scan`` end to end: exit codes, bad input, standard input, configuration,
waiver files, rule selection and the changed-files mode behind the pre-commit hook."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from soc2infra._core.changed import scan_units
from soc2infra.cli import main

POLICIES = Path(__file__).parent / "data" / "policies"
PACK_ARGS = ["--policy-dir", str(POLICIES), "--no-builtin-policies", "--no-config"]

COMPLIANT = 'resource "aws_s3_bucket" "good" {\n  encrypted = true\n  logging   = true\n}\n'
UNENCRYPTED = 'resource "aws_s3_bucket" "bad" {\n  logging = true\n}\n'  # TEST-STORE-001, high
UNLOGGED = 'resource "aws_s3_bucket" "quiet" {\n  encrypted = true\n}\n'  # TEST-STORE-002, low


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["scan", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def open_findings(doc: dict) -> set[tuple[str, str]]:
    return {(f["rule_id"], f["resource"]["address"]) for f in doc["findings"] if not f["suppressed"]}


# --- exit codes ---------------------------------------------------------------------------------------


def test_exit_0_when_clean(write_tree, capsys):
    root = write_tree({"main.tf": COMPLIANT})
    code, doc = run_json(capsys, str(root), *PACK_ARGS)
    assert code == 0 and doc["findings"] == [] and doc["errors"] == []


def test_exit_1_on_findings_and_the_threshold_decides(write_tree, capsys):
    root = write_tree({"main.tf": UNLOGGED})
    code, doc = run_json(capsys, str(root), *PACK_ARGS)
    assert code == 1 and open_findings(doc) == {("TEST-STORE-002", "aws_s3_bucket.quiet")}
    assert main(["scan", str(root), "--severity-threshold", "medium", *PACK_ARGS]) == 0
    (root / "bad.tf").write_text(UNENCRYPTED)
    assert main(["scan", str(root), "--severity-threshold", "high", *PACK_ARGS]) == 1
    assert main(["scan", str(root), "--severity-threshold", "critical", *PACK_ARGS]) == 0


def test_malformed_tf_is_exit_2_with_file_and_line_and_other_files_still_scanned(write_tree, capsys, monkeypatch):
    root = write_tree({"a/bad.tf": UNENCRYPTED, "b/broken.tf": 'resource "aws_s3_bucket" "x" {\n  encrypted = \n}\n',
                       "c/truncated.tf": 'resource "aws_s3_bucket" "y" {\n  encrypted = true\n'})
    monkeypatch.chdir(root)
    code, doc = run_json(capsys, ".", *PACK_ARGS)
    assert code == 2  # errors win over findings
    errors = {(e["file"], e["line"]) for e in doc["errors"]}
    assert (os.path.join("b", "broken.tf"), 2) in errors  # the line with the dangling `=`
    assert any(f == os.path.join("c", "truncated.tf") and line for f, line in errors)  # where the input ran out
    assert ("TEST-STORE-001", "aws_s3_bucket.bad") in open_findings(doc)


def test_binary_file_is_an_error(write_tree, capsys):
    root = write_tree({"main.tf": COMPLIANT})
    (root / "blob.tf").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage")
    code, doc = run_json(capsys, str(root), *PACK_ARGS)
    assert code == 2
    assert [e["file"].endswith("blob.tf") for e in doc["errors"]] == [True]


def test_empty_file_is_fine(write_tree, capsys):
    root = write_tree({"main.tf": COMPLIANT, "empty.tf": ""})
    code, doc = run_json(capsys, str(root), *PACK_ARGS)
    assert (code, doc["errors"]) == (0, [])


def test_missing_path_is_exit_2(tmp_path, capsys):
    code, doc = run_json(capsys, str(tmp_path / "nope"), *PACK_ARGS)
    assert code == 2 and doc["errors"][0]["file"].endswith("nope")


def test_no_paths_is_a_usage_error(capsys):
    assert main(["scan", *PACK_ARGS]) == 2
    assert "PATH" in capsys.readouterr().err


def test_unknown_results_block_only_when_asked(write_tree, capsys):
    root = write_tree({"main.tf": 'variable "enc" {}\n'
                                  'resource "aws_s3_bucket" "u" {\n  encrypted = var.enc\n  logging = true\n}\n'})
    code, doc = run_json(capsys, str(root), *PACK_ARGS)
    assert code == 0
    assert main(["scan", str(root), "--fail-on-unknown", *PACK_ARGS]) == 1


def test_output_file_gets_the_report_and_the_terminal_the_summary(write_tree, tmp_path, capsys):
    root = write_tree({"main.tf": UNENCRYPTED})
    out = tmp_path / "report.json"
    assert main(["scan", str(root), "--format", "json", "-o", str(out), *PACK_ARGS]) == 1
    assert open_findings(json.loads(out.read_text())) == {("TEST-STORE-001", "aws_s3_bucket.bad")}
    printed = capsys.readouterr().out
    assert "TEST-STORE-001" in printed and not printed.lstrip().startswith("{")


# --- standard input -------------------------------------------------------------------------------


PLAN = {
    "format_version": "1.2", "terraform_version": "1.9.5",
    "planned_values": {"root_module": {"resources": [
        {"address": "aws_s3_bucket.p", "mode": "managed", "type": "aws_s3_bucket", "name": "p",
         "values": {"logging": True, "encrypted": False}}]}},
    "resource_changes": [{"address": "aws_s3_bucket.p", "change": {"actions": ["create"], "after_unknown": {}}}],
}


def test_plan_from_stdin_in_process(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(PLAN)))
    code, doc = run_json(capsys, "-", *PACK_ARGS)
    assert code == 1 and open_findings(doc) == {("TEST-STORE-001", "aws_s3_bucket.p")}


def test_plan_from_a_real_pipe():
    # `terraform show -json plan.out | soc2infra scan -`, through the installed console script.
    exe = Path(sys.executable).parent / "soc2infra"
    proc = subprocess.run([str(exe), "scan", "-", "--format", "json", *PACK_ARGS], input=json.dumps(PLAN),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert open_findings(json.loads(proc.stdout)) == {("TEST-STORE-001", "aws_s3_bucket.p")}


def test_invalid_json_on_stdin_is_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"format_version": "1.2", '))
    code, doc = run_json(capsys, "-", *PACK_ARGS)
    assert code == 2 and doc["errors"][0]["file"] == "<stdin>"


# --- configuration ---------------------------------------------------------------------------------


@pytest.fixture
def repo(write_tree, monkeypatch):
    root = write_tree({"infra/main.tf": UNLOGGED})
    (root / ".git").mkdir()
    monkeypatch.chdir(root)
    return root


def _config(root: Path, text: str) -> None:
    (root / ".soc2infra.yaml").write_text(f"policy_dirs: [{POLICIES}]\nbuiltin_policies: false\n" + text)


def test_config_threshold_and_flag_override(repo):
    _config(repo, "severity_threshold: high\n")
    assert main(["scan", "infra"]) == 0  # the low finding is below the configured threshold
    assert main(["scan", "infra", "--severity-threshold", "low"]) == 1  # the flag wins
    assert main(["scan", "infra", "--no-config", "--policy-dir", str(POLICIES), "--no-builtin-policies"]) == 1


def test_config_format_and_disabled_categories(repo, capsys):
    _config(repo, "format: json\ndisable: [logging]\n")
    assert main(["scan", "infra"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert main(["scan", "infra", "--format", "text"]) == 0
    assert not capsys.readouterr().out.lstrip().startswith("{")


def test_config_in_pyproject(repo):
    (repo / "pyproject.toml").write_text(f'[tool.soc2infra]\npolicy_dirs = ["{POLICIES}"]\n'
                                         'builtin_policies = false\nseverity_threshold = "high"\n')
    assert main(["scan", "infra"]) == 0


def test_explicit_config_file(repo, tmp_path):
    cfg = tmp_path / "strict.yaml"
    cfg.write_text(f"policy_dirs: [{POLICIES}]\nbuiltin_policies: false\nseverity_threshold: critical\n")
    assert main(["scan", "infra", "--config", str(cfg)]) == 0


def test_bad_config_is_exit_2_naming_file_and_key(repo, capsys):
    (repo / ".soc2infra.yaml").write_text("severity_threshold: high\noutput: sarif\n")
    assert main(["scan", "infra"]) == 2
    err = capsys.readouterr().err
    assert ".soc2infra.yaml:2" in err and "key 'output'" in err


def test_enable_and_disable_flags(repo):
    args = ["--no-config", "--policy-dir", str(POLICIES), "--no-builtin-policies"]
    assert main(["scan", "infra", *args, "--disable", "TEST-STORE-002"]) == 0
    assert main(["scan", "infra", *args, "--enable", "encryption"]) == 0
    assert main(["scan", "infra", *args, "--enable", "TEST-*"]) == 1


# --- waiver file -------------------------------------------------------------------------------------


def _waivers(root: Path, expires: date, **extra: str) -> Path:
    fields = {"rule": "TEST-STORE-002", "resource": "aws_s3_bucket.quiet", "reason": "audit logs go elsewhere",
              "owner": "platform@example.com", "ticket": "SEC-7", "expires": expires.isoformat(), **extra}
    body = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in fields.items() if v)
    path = root / ".soc2infra-waivers.yaml"
    path.write_text("waivers:\n  -" + body[3:])
    return path


def test_waiver_file_at_repo_root_suppresses_and_json_shows_the_waiver(repo, capsys):
    _waivers(repo, date.today() + timedelta(days=90))
    code, doc = run_json(capsys, "infra", *PACK_ARGS)
    assert code == 0
    (f,) = doc["findings"]
    assert f["suppressed"] is True
    assert f["waiver"] == {"source": "file", "reason": "audit logs go elsewhere", "owner": "platform@example.com",
                           "ticket": "SEC-7", "expires": (date.today() + timedelta(days=90)).isoformat(),
                           "location": ".soc2infra-waivers.yaml:2"}


def test_expired_waiver_fails_the_scan_again(repo, capsys):
    _waivers(repo, date.today() - timedelta(days=1))
    code, doc = run_json(capsys, "infra", *PACK_ARGS)
    assert code == 1
    assert open_findings(doc) == {("TEST-STORE-002", "aws_s3_bucket.quiet")}
    assert "expired" in json.dumps(doc.get("warnings", [])) + capsys.readouterr().err


def test_waiver_due_soon_warns_but_suppresses(repo, capsys):
    _waivers(repo, date.today() + timedelta(days=3))
    code, doc = run_json(capsys, "infra", *PACK_ARGS)
    assert code == 0
    assert "in 3 days" in json.dumps(doc.get("warnings", [])) + capsys.readouterr().err


def test_waiver_warning_days_from_config(repo, capsys):
    _waivers(repo, date.today() + timedelta(days=20))
    _config(repo, "waiver_warning_days: 30\n")
    code, doc = run_json(capsys, "infra")
    assert code == 0 and "in 20 days" in json.dumps(doc.get("warnings", []))


def test_waiver_without_owner_is_rejected_exit_2(repo, capsys):
    _waivers(repo, date.today() + timedelta(days=90), owner="")
    code, doc = run_json(capsys, "infra", *PACK_ARGS)
    assert code == 2
    (err,) = doc["errors"]
    assert err["file"] == ".soc2infra-waivers.yaml" and err["line"] == 2 and "missing 'owner'" in err["message"]
    assert open_findings(doc) == {("TEST-STORE-002", "aws_s3_bucket.quiet")}  # a rejected waiver never suppresses


def test_waiver_file_approver_reaches_the_finding(repo, capsys):
    _waivers(repo, date.today() + timedelta(days=30), approvedBy="security-lead@example.com")
    code, doc = run_json(capsys, "infra", *PACK_ARGS)
    assert code == 0
    (f,) = doc["findings"]
    assert f["suppressed"] and f["waiver"]["approved_by"] == "security-lead@example.com"


def test_max_waiver_days_rejects_a_long_waiver_with_file_and_line(repo, capsys):
    _waivers(repo, date.today() + timedelta(days=200))
    _config(repo, "max_waiver_days: 90\n")
    code, doc = run_json(capsys, "infra")
    assert code == 2
    (err,) = doc["errors"]
    assert err["file"] == ".soc2infra-waivers.yaml" and err["line"] == 2
    assert "200 days away" in err["message"] and "max_waiver_days allows at most 90" in err["message"]
    assert open_findings(doc) == {("TEST-STORE-002", "aws_s3_bucket.quiet")}  # it never suppresses
    _waivers(repo, date.today() + timedelta(days=90))  # exactly the maximum is allowed
    code, doc = run_json(capsys, "infra")
    assert code == 0 and not doc["errors"]


def test_explicit_waiver_file_and_scan_root_lookup(repo, tmp_path, capsys):
    elsewhere = tmp_path / "w"
    elsewhere.mkdir()
    path = _waivers(elsewhere, date.today() + timedelta(days=90))
    assert main(["scan", "infra", *PACK_ARGS]) == 1
    assert main(["scan", "infra", "--waivers", str(path), *PACK_ARGS]) == 0
    # A waiver file inside the scanned directory is found too.
    (repo / "infra" / ".soc2infra-waivers.yaml").write_text(path.read_text())
    assert main(["scan", "infra", *PACK_ARGS]) == 0


# --- changed files → scan units (pre-commit) ---------------------------------------------------------


@pytest.fixture
def mono(write_tree, monkeypatch):
    root = write_tree({
        "envs/prod/main.tf": 'module "b" {\n  source = "../../modules/bucket"\n}\n' + UNLOGGED,
        "envs/prod/terraform.tfvars": 'x = "y"\n',
        "envs/prod/other.tf": "",
        "modules/bucket/main.tf": 'module "n" {\n  source = "./nested"\n}\n',
        "modules/bucket/nested/main.tf": UNENCRYPTED,
        "standalone/main.tf": COMPLIANT,
        "cycle/a/main.tf": 'module "b" {\n  source = "../b"\n}\n',
        "cycle/b/main.tf": 'module "a" {\n  source = "../a"\n}\n',
        "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n",
        "charts/app/templates/deploy.yaml": "kind: Deployment\n",
        "k/base/kustomization.yaml": "resources: [deploy.yaml]\n",
        "k/base/deploy.yaml": "kind: Deployment\n",
        "k8s/pod.yaml": "kind: Pod\n",
        "plans/plan.json": "{}",
        ".github/workflows/ci.yml": "on: push\n",
        ".pre-commit-config.yaml": "repos: []\n",
        "node_modules/x/y.yaml": "a: 1\n",
        "README.md": "# hi\n",
    })
    (root / ".git").mkdir()
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("changed, expected", [
    (["modules/bucket/nested/main.tf"], ["envs/prod/main.tf", "envs/prod/other.tf"]),
    (["modules/bucket/main.tf", "envs/prod/main.tf"], ["envs/prod/main.tf", "envs/prod/other.tf"]),
    (["envs/prod/terraform.tfvars"], ["envs/prod/main.tf", "envs/prod/other.tf"]),
    (["standalone/main.tf"], ["standalone/main.tf"]),
    (["cycle/a/main.tf"], ["cycle/a/main.tf"]),
    (["charts/app/templates/deploy.yaml"], ["charts/app/Chart.yaml"]),
    (["charts/app/Chart.yaml"], ["charts/app/Chart.yaml"]),
    (["k/base/deploy.yaml"], ["k/base/kustomization.yaml"]),
    (["k8s/pod.yaml", "plans/plan.json"], ["k8s/pod.yaml", "plans/plan.json"]),
    ([".github/workflows/ci.yml", ".pre-commit-config.yaml", "node_modules/x/y.yaml", "README.md"], []),
    (["deleted/main.tf", "gone.yaml"], []),
])
def test_scan_units(mono, changed, expected):
    assert scan_units(changed, mono) == [str(Path(p)) for p in expected]


def test_changed_only_scans_the_root_that_calls_the_changed_module(mono, capsys):
    code, doc = run_json(capsys, "--changed-only", "modules/bucket/nested/main.tf", *PACK_ARGS)
    assert code == 1
    # The nested module's resource gets its full address through the root that calls it,
    # and the root's own resources are judged too; nothing from other roots is scanned.
    assert open_findings(doc) == {("TEST-STORE-001", "module.b.module.n.aws_s3_bucket.bad"),
                                  ("TEST-STORE-002", "aws_s3_bucket.quiet")}


def test_changed_only_with_nothing_scannable_is_clean(mono, capsys):
    assert main(["scan", "--changed-only", "README.md", ".pre-commit-config.yaml", *PACK_ARGS]) == 0
    assert main(["scan", "--changed-only", "standalone/main.tf", *PACK_ARGS]) == 0


# --- progress indicator ----------------------------------------------------------------------------


def test_progress_only_after_the_delay_and_only_when_enabled(capsys):
    import time

    from soc2infra._cogs.progress import long_task_status

    with long_task_status("quick", enabled=True, delay=5):
        pass  # finishes before the delay: nothing drawn, nothing imported late
    with long_task_status("never", enabled=False, delay=0):
        time.sleep(0.05)
    assert capsys.readouterr().err == ""
    with long_task_status("slow", enabled=True, delay=0):
        time.sleep(0.3)  # the spinner starts and is stopped cleanly on exit (transient)
