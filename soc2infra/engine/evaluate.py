"""Evaluate resources against a compiled pack: the one function every front door calls."""

from __future__ import annotations

from collections.abc import Iterable

from soc2infra.engine.conditions import EvalContext, ResourceIndex
from soc2infra.engine.policy import PolicyPack, Rule
from soc2infra.model import Finding, Resource


def render_message(rule: Rule, resource: Resource) -> str:
    """The rule's message with ``{address}``, ``{type}`` and ``{name}`` filled in."""
    msg = rule.message
    if "{" in msg:
        msg = (msg.replace("{address}", resource.address).replace("{type}", resource.type)
               .replace("{name}", resource.name))
    return msg


def evaluate(resources: list[Resource], pack: PolicyPack, index: ResourceIndex | None = None,
             only: Iterable[Resource] | None = None) -> tuple[list[Finding], list[tuple[str, str]]]:
    """Run every applicable rule on every resource.

    *index* spans all resources (cross-resource rules look there); *only* limits which
    resources are evaluated (admission evaluates one object against a cluster index).
    Returns the findings (failed or unknown) and the (rule_id, address) pairs that passed.
    """
    idx = index if index is not None else ResourceIndex(resources)
    findings: list[Finding] = []
    passes: list[tuple[str, str]] = []
    for res in (only if only is not None else resources):
        rules = pack.rules_for(res.type)
        if not rules:
            continue
        ctx = EvalContext(res.attributes, res, idx)
        for rule in rules:
            # An applicability test that is unknown still evaluates the rule, so
            # "maybe applicable" never hides a failure.
            if rule.applies is not None and rule.applies(ctx) is False:
                continue
            ctx.notes.clear()
            result = rule.predicate(ctx)
            if result is True:
                passes.append((rule.id, res.address))
                continue
            details = dict(ctx.notes)
            findings.append(Finding(
                rule_id=rule.id, title=rule.title, severity=rule.severity, category=rule.category,
                controls=rule.controls, message=render_message(rule, res), remediation=rule.remediation,
                resource=res, status="fail" if result is False else "unknown", details=details,
            ))
    return findings, passes
