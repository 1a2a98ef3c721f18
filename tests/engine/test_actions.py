"""Admission action resolution: overrides by specificity (never by order), then the rollout mode."""

from __future__ import annotations

import itertools

import pytest

from soc2infra._core.engine.actions import effective_action, matching_override, rule_action

OVERRIDES = [("SOC2-K8S-*", "audit"), ("SOC2-K8S-POD-*", "warn"), ("SOC2-K8S-POD-008", "deny"),
             ("SOC2-K8S-POD-00?", "audit"), ("*", "deny")]


@pytest.mark.parametrize("order", list(itertools.permutations(OVERRIDES)))
def test_the_most_specific_pattern_wins_whatever_the_order(order):
    # Helm sorts map keys: {SOC2-K8S-POD-008: deny, SOC2-K8S-POD-*: warn} arrives glob-first.
    assert rule_action("SOC2-K8S-POD-008", "warn", order) == "deny"  # exact id
    assert rule_action("SOC2-K8S-POD-001", "deny", order) == "audit"  # POD-00? has 15 literals
    assert rule_action("SOC2-K8S-POD-012", "deny", order) == "warn"  # POD-* (13) beats K8S-* (9)
    assert rule_action("SOC2-K8S-RBAC-001", "deny", order) == "audit"
    assert rule_action("SOC2-AWS-S3-001", "warn", order) == "deny"  # only "*" matches


def test_no_override_keeps_the_rules_own_action():
    assert rule_action("SOC2-K8S-POD-001", "deny", [("SOC2-AWS-*", "audit")]) == "deny"
    assert matching_override("SOC2-K8S-POD-001", []) is None


def test_a_pattern_without_wildcards_names_one_rule():
    # No prefix matching: SOC2-X-00 is not SOC2-X-001.
    assert matching_override("SOC2-X-001", [("SOC2-X-00", "deny")]) is None


@pytest.mark.parametrize("mode, deny_rule, warn_rule", [
    ("enforce", "deny", "warn"), ("warn", "warn", "warn"), ("audit", "audit", "audit"),
])
def test_mode_caps_but_never_strengthens(mode, deny_rule, warn_rule):
    assert effective_action("R-1", "deny", (), mode) == deny_rule
    assert effective_action("R-2", "warn", (), mode) == warn_rule
    assert effective_action("R-3", "audit", (), mode) == "audit"
    assert effective_action("R-4", "audit", [("R-4", "deny")], mode) == deny_rule
