"""Every rule in the built-in pack proves itself with its own examples, through the real parsers."""

from __future__ import annotations

import pytest

from soc2infra.engine.policy import load_pack
from soc2infra.policytest import run_example, structure_problems

PACK = load_pack()


def _cases():
    for rule in PACK.rules:
        for ex in rule.examples:
            yield pytest.param(rule, ex, id=f"{rule.id}::{ex.name}")


@pytest.mark.parametrize("rule, example", list(_cases()))
def test_rule_example(rule, example):
    outcome = run_example(rule, example)
    assert outcome.problems == []


@pytest.mark.parametrize("rule", PACK.rules, ids=[r.id for r in PACK.rules])
def test_rule_structure(rule):
    assert structure_problems(rule) == []


def test_pack_covers_every_category_and_maps_to_known_criteria():
    categories = {r.category for r in PACK.rules}
    assert categories == {"encryption", "authentication", "logging", "backup", "availability", "access",
                          "network", "integrity"}
    for rule in PACK.rules:
        assert all(c in PACK.controls for c in rule.controls)


def test_pack_digest_is_stable():
    assert load_pack().digest == PACK.digest
