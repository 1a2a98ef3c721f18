"""Generated files never drift: docs/rules.md is exactly what the pack renders."""

from __future__ import annotations

from pathlib import Path

from soc2infra.engine.policy import load_pack
from soc2infra.policydocs import rules_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_rules_md_is_up_to_date():
    expected = rules_markdown(load_pack())
    actual = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert actual == expected, "regenerate: soc2infra policy list --format markdown > docs/rules.md"
