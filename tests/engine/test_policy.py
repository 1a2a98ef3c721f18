"""Policy files: schema errors name the file, the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2infra._core.engine.policy import PolicyError
from soc2infra._core.pack import load_pack

GOOD = """
rules:
  - id: T-X-001
    title: t
    severity: high
    category: encryption
    controls: [CC6.1]
    targets: [aws_s3_bucket]
    condition: {path: a, exists: true}
    message: m
    remediation: r
"""


def write(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "pol"
    d.mkdir(exist_ok=True)
    (d / "x.yaml").write_text(text)
    return d


def test_good_rule_loads_and_indexes(tmp_path):
    pack = load_pack([write(tmp_path, GOOD)], builtin=False)
    assert [r.id for r in pack.by_type["aws_s3_bucket"]] == ["T-X-001"]
    assert pack.rule("T-X-001").action == "deny"  # high → deny by default


@pytest.mark.parametrize("old, new, field", [
    ("severity: high", "severity: huge", "severity"),
    ("category: encryption", "category: crypto", "category"),
    ("controls: [CC6.1]", "controls: [CC99.9]", "controls"),
    ("condition: {path: a, exists: true}", "condition: {path: a}", "condition"),
    ("targets: [aws_s3_bucket]", "targets: ['@nothing']", "targets"),
    ("title: t", "title: ''", "title"),
    ("remediation: r", "remediation: r\n    colour: red", "colour"),
    ("remediation: r", "remediation: r\n    catalog: AWS-S3-ENCRYPTION", "catalog"),
    ("remediation: r", "remediation: r\n    enforcement: strict", "enforcement"),
    ("remediation: r", "remediation: r\n    enforcement: baseline\n    action: warn", "action"),
])
def test_schema_errors_name_file_rule_and_field(tmp_path, old, new, field):
    d = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(PolicyError) as exc:
        load_pack([d], builtin=False)
    err = exc.value
    assert err.file.endswith("x.yaml") and err.rule == "T-X-001" and err.field == field
    assert "x.yaml" in str(err) and "T-X-001" in str(err) and field in str(err)


@pytest.mark.parametrize("level, action", [("baseline", "deny"), ("restricted", "warn"), ("hygiene", "audit")])
def test_enforcement_level_sets_the_default_action_whatever_the_severity(tmp_path, level, action):
    text = GOOD.replace("remediation: r", f"remediation: r\n    enforcement: {level}")
    rule = load_pack([write(tmp_path, text)], builtin=False).rule("T-X-001")
    assert (rule.enforcement, rule.action, rule.severity) == (level, action, "high")


def test_catalog_ids_are_kept_on_the_rule(tmp_path):
    text = GOOD.replace("remediation: r", "remediation: r\n    catalog: [AWS-S3-ENCRYPTION, AWS-S3-KMS]")
    pack = load_pack([write(tmp_path, text)], builtin=False)
    assert pack.rule("T-X-001").catalog == ("AWS-S3-ENCRYPTION", "AWS-S3-KMS")
    assert load_pack([write(tmp_path, GOOD)], builtin=False).rule("T-X-001").catalog == ()


def test_duplicate_ids_rejected(tmp_path):
    d = write(tmp_path, GOOD + GOOD.split("rules:\n", 1)[1])
    with pytest.raises(PolicyError, match="duplicate rule id"):
        load_pack([d], builtin=False)


def test_invalid_yaml_has_a_line(tmp_path):
    d = write(tmp_path, "rules:\n  - id: [unclosed\n")
    with pytest.raises(PolicyError) as exc:
        load_pack([d], builtin=False)
    assert exc.value.line is not None


def test_catalog_undecidable_files_are_not_rule_files(tmp_path):
    from soc2infra._core.pack import policy_files

    (tmp_path / "gcp").mkdir()
    (tmp_path / "gcp" / "storage.yaml").write_text("rules: []\n")
    (tmp_path / "controls.yaml").write_text("controls: []\n")
    (tmp_path / "catalog-undecidable.yaml").write_text("[]\n")
    (tmp_path / "catalog-undecidable-aws.yaml").write_text("[]\n")
    assert [p.name for p in policy_files([tmp_path])] == ["storage.yaml"]


def test_builtin_catalog_undecidable_list_has_the_documented_shape():
    import yaml

    from soc2infra._core.pack import load_pack

    root = Path(__file__).resolve().parents[2] / "policies"
    entries = yaml.safe_load((root / "catalog-undecidable.yaml").read_text())
    assert isinstance(entries, list)
    implemented = {c for r in load_pack().rules for c in r.catalog}
    for entry in entries:
        assert set(entry) == {"id", "reason"} and entry["reason"].strip()
        assert entry["id"].startswith(("GCP-", "AZ-")) and entry["id"] not in implemented
