"""docs/coverage.md and docs/controls.md are generated and complete; controls and explain work."""

from __future__ import annotations

import json
from pathlib import Path

from soc2infra._core.controls import controls_markdown, provider_counts
from soc2infra._core.coverage import catalog_index, coverage_markdown, missing_ids, unknown_ids
from soc2infra._core.pack import load_pack
from soc2infra.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_every_catalog_id_has_a_rule_or_a_reason():
    pack = load_pack()
    assert len(catalog_index()) >= 250
    assert missing_ids(pack) == [], "add `catalog:` to a rule or a reason to policies/catalog-undecidable*.yaml"
    assert unknown_ids(pack) == [], "catalog ids that the catalog does not have"


def test_coverage_md_is_up_to_date_and_lists_every_id():
    pack = load_pack()
    text = (ROOT / "docs" / "coverage.md").read_text(encoding="utf-8")
    assert text == coverage_markdown(pack), "regenerate: soc2infra policy docs"
    for check in catalog_index():
        assert f"`{check.id}`" in text
    assert "**missing**" not in text


def test_missing_id_is_reported(tmp_path):
    """A catalog id without rule or reason shows up as missing (the check above can fail)."""
    (tmp_path / "catalog-index.yaml").write_text(
        "checks:\n  - {id: AWS-S3-ENCRYPTION, provider: aws}\n  - {id: AWS-NEW-CHECK, provider: aws}\n")
    (tmp_path / "catalog-undecidable.yaml").write_text("- {id: GCP-X, reason: not in this index}\n")
    pack = load_pack()
    assert missing_ids(pack, tmp_path) == ["AWS-NEW-CHECK"]
    assert "GCP-X" in unknown_ids(pack, tmp_path)
    assert "| `AWS-NEW-CHECK` | — | **missing** |" in coverage_markdown(pack, tmp_path)


def test_controls_md_is_up_to_date():
    text = (ROOT / "docs" / "controls.md").read_text(encoding="utf-8")
    assert text == controls_markdown(load_pack()), "regenerate: soc2infra policy docs"


def test_controls_json_counts_rules_per_provider(capsys):
    assert main(["controls", "--format", "json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["controls"]}
    pack = load_pack()
    expected = sum(1 for r in pack.rules if "A1.2" in r.controls)
    assert rows["A1.2"]["rules"] == expected and rows["A1.2"]["providers"]["aws"] > 0
    assert provider_counts(pack)["aws"] >= 120 and provider_counts(pack)["kubernetes"] >= 40
    assert main(["controls", "--provider", "kubernetes", "--format", "json"]) == 0
    k8s = {r["id"]: r for r in json.loads(capsys.readouterr().out)["controls"]}
    assert set(k8s["A1.2"]["providers"]) == {"kubernetes"}


def test_explain_shows_the_rules_own_examples(capsys):
    assert main(["explain", "SOC2-AWS-S3-007"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SOC2-AWS-S3-007: S3 bucket policies deny requests that do not use TLS")
    assert "CC6.7" in out and "Remediation:" in out and "Why it matters:" in out
    assert out.index("Failing example") < out.index("Passing example")
    assert "aws:SecureTransport" in out


def test_explain_unknown_rule_is_a_user_error(capsys):
    assert main(["explain", "SOC2-NOPE-001"]) == 2
    assert "no rule 'SOC2-NOPE-001'" in capsys.readouterr().err
