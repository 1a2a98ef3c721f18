"""Every rule in the built-in pack proves itself with its own examples, through the real parsers."""

from __future__ import annotations

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.policytest import run_example, structure_problems

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


K8S_RULES = [r for r in PACK.rules if r.id.startswith("SOC2-K8S-")]
# Pod Security baseline controls, and the non-pod objects no chart needs by default: denied.
BASELINE = {"POD-001", "POD-007", "POD-008", "POD-009", "POD-010", "POD-011", "POD-015", "POD-016",
            "RBAC-001", "RBAC-002", "RBAC-005", "NET-002", "SECRET-001", "SECRET-002"}


def test_every_kubernetes_rule_has_an_enforcement_level():
    assert K8S_RULES and [r.id for r in K8S_RULES if r.enforcement is None] == []


def test_baseline_denies_restricted_warns_hygiene_audits():
    denied = {r.id.removeprefix("SOC2-K8S-") for r in K8S_RULES if r.action == "deny"}
    assert denied == BASELINE
    by_id = {r.id.removeprefix("SOC2-K8S-"): r for r in K8S_RULES}
    # Restricted-level pod hardening and the RBAC rules charts legitimately trip only warn.
    for rid in ("POD-002", "POD-003", "POD-004", "POD-006", "POD-012", "RBAC-003", "RBAC-007", "NET-001",
                "NET-003"):
        assert (by_id[rid].enforcement, by_id[rid].action) == ("restricted", "warn"), rid
    for rid in ("IMAGE-002", "AVAIL-002", "NS-001"):
        assert (by_id[rid].enforcement, by_id[rid].action) == ("hygiene", "audit"), rid
