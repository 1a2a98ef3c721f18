"""A rule's effective admission action: its own action, per-rule overrides, and the rollout mode.

One function decides it (:func:`effective_action`), so the webhook, the background audit and the
ValidatingAdmissionPolicy export can never disagree on what a rule does. Overrides are
``(pattern, action)`` pairs where a pattern is a rule id or a shell glob (``SOC2-K8S-POD-*``).
They resolve by specificity, never by order (Helm sorts map keys, so order is not the user's):
an exact id wins over every glob, then the glob with the most literal characters, then the
longer pattern, then the alphabetically first one (only to be deterministic).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Literal

ACTIONS: tuple[str, ...] = ("deny", "warn", "audit")
# Lower = stricter. A cap (mode, unknown results, cross-object rules) picks the weaker of two
# actions, so a cap can never make a rule stricter than its own action.
ACTION_STRENGTH: Mapping[str, int] = {"deny": 0, "warn": 1, "audit": 2}
Mode = Literal["enforce", "warn", "audit"]
MODES: tuple[str, ...] = ("enforce", "warn", "audit")
# The strongest action each rollout mode lets through.
MODE_CAP: Mapping[str, str] = {"enforce": "deny", "warn": "warn", "audit": "audit"}

_WILDCARDS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether *pattern* has shell wildcards (else it names one rule id)."""
    return any(c in _WILDCARDS for c in pattern)


def specificity(pattern: str) -> tuple[int, int, int]:
    """Sort key, higher = more specific: exact id first, then literal characters, then length."""
    if not is_glob(pattern):
        return (1, len(pattern), len(pattern))
    literal = sum(1 for c in pattern if c not in _WILDCARDS)
    return (0, literal, len(pattern))


def matching_override(rule_id: str, overrides: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The most specific ``(pattern, action)`` whose pattern matches *rule_id*, or None."""
    hits = [(p, a) for p, a in overrides if p == rule_id or (is_glob(p) and fnmatch.fnmatchcase(rule_id, p))]
    if not hits:
        return None
    # max by specificity; among equals, the alphabetically first pattern (min) for determinism.
    return min(hits, key=lambda pa: (tuple(-x for x in specificity(pa[0])), pa[0]))


def weaker(a: str, b: str) -> str:
    """The weaker of two actions (deny < warn < audit in strictness order)."""
    return a if ACTION_STRENGTH[a] >= ACTION_STRENGTH[b] else b


def rule_action(rule_id: str, own_action: str, overrides: Iterable[tuple[str, str]] = ()) -> str:
    """What the rule *is* at admission: its own action (from its enforcement level, ``action``
    or severity) unless an override matches, the most specific one winning."""
    hit = matching_override(rule_id, overrides)
    return hit[1] if hit is not None else own_action


def effective_action(rule_id: str, own_action: str, overrides: Iterable[tuple[str, str]] = (),
                     mode: str = "enforce") -> str:
    """What the rule *does* at admission: :func:`rule_action` capped by the rollout *mode*."""
    return weaker(rule_action(rule_id, own_action, overrides), MODE_CAP[mode])
