"""Generated files never drift: docs/rules.md is exactly what the pack renders."""

from __future__ import annotations

from pathlib import Path

from soc2infra._app.policydocs import rules_markdown
from soc2infra._core.pack import load_pack

ROOT = Path(__file__).resolve().parent.parent


def test_rules_md_is_up_to_date():
    expected = rules_markdown(load_pack())
    actual = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert actual == expected, "regenerate: soc2infra policy docs"


def test_readme_lists_the_authentication_rules_with_their_criteria():
    from soc2infra._app.policydocs import README_END, README_START, readme_section

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(README_START):readme.index(README_END) + len(README_END)]
    assert block == readme_section(load_pack()), "regenerate: soc2infra policy docs"
    assert "SOC2-AUTH-IAM-001" in block and "CC6.1" in block


def test_readme_shows_the_rule_counts_per_provider():
    from soc2infra._app.policydocs import COUNTS_END, COUNTS_START, readme_counts

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(COUNTS_START):readme.index(COUNTS_END) + len(COUNTS_END)]
    assert block == readme_counts(load_pack()), "regenerate: soc2infra policy docs"
    assert "aws " in block and "kubernetes " in block


def test_vap_md_lists_where_every_kubernetes_rule_is_enforced():
    from soc2infra.export.vap import DOCS_END, DOCS_START, docs_section

    text = (ROOT / "docs" / "vap.md").read_text(encoding="utf-8")
    block = text[text.index(DOCS_START):text.index(DOCS_END) + len(DOCS_END)]
    assert block == docs_section(load_pack()), "regenerate: soc2infra policy docs"
    assert "| SOC2-K8S-NET-004 |" in block and "| webhook | reads other objects (related: NetworkPolicy" in block
