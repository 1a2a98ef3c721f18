"""Evaluate resources against a compiled pack: the one function every front door calls."""

from __future__ import annotations

from collections.abc import Iterable

from soc2infra._cogs.limits import tick
from soc2infra._cogs.model import Finding, Resource, Unknown, UnknownReason
from soc2infra._core.engine.core import EvalContext, ResourceIndex
from soc2infra._core.engine.paths import start_collecting, stop_collecting
from soc2infra._core.engine.policy import PolicyPack, Rule

MAX_REASONS = 5


def render_message(rule: Rule, resource: Resource) -> str:
    """The rule's message with ``{address}``, ``{type}`` and ``{name}`` filled in."""
    msg = rule.message
    if "{" in msg:
        msg = (msg.replace("{address}", resource.address).replace("{type}", resource.type)
               .replace("{name}", resource.name))
    return msg


def unknown_reasons(seen: list[Unknown]) -> tuple[UnknownReason, ...]:
    """Why a rule could not be decided: the distinct unknowns it met, decisive kinds first
    (a value only known at apply outranks an evaluator gap met on the way)."""
    out: dict[tuple[str, str], UnknownReason] = {}
    for u in seen:
        key = (u.kind, u.reason)
        if key not in out:
            out[key] = UnknownReason(u.kind, u.reason or "a value is not known statically",
                                     u.rtype, u.attr)
    if not out:
        return (UnknownReason("evaluator_limit", "the rule met no recorded unknown value"),)
    return tuple(list(out.values())[:MAX_REASONS])


def scope_of(resource: Resource) -> str:
    """The world a resource belongs to: one Terraform root module, one plan, one set of
    Kubernetes objects. Cross-resource rules never look outside it (two roots may both
    declare ``aws_s3_bucket.x``)."""
    return str(resource.meta.get("scope", ""))


def evaluate(resources: list[Resource], pack: PolicyPack, index: ResourceIndex | None = None,
             only: Iterable[Resource] | None = None) -> tuple[list[Finding], list[tuple[str, str]]]:
    """Run every applicable rule on every resource.

    Without *index*, each scope (:func:`scope_of`) is evaluated with its own index. With
    *index* (admission: one object against the cluster), that index is used for all, and
    *only* limits which resources are evaluated.
    Returns the findings (failed or unknown) and the (rule_id, address) pairs that passed.
    """
    if index is None:
        scopes: dict[str, list[Resource]] = {}
        for res in resources:
            scopes.setdefault(scope_of(res), []).append(res)
        if len(scopes) > 1:
            all_findings: list[Finding] = []
            all_passes: list[tuple[str, str]] = []
            for group in scopes.values():
                f, p = evaluate(group, pack, ResourceIndex(group))
                all_findings += f
                all_passes += p
            return all_findings, all_passes
    idx = index if index is not None else ResourceIndex(resources)
    findings: list[Finding] = []
    passes: list[tuple[str, str]] = []
    for res in (only if only is not None else resources):
        rules = pack.rules_for(res.type)
        if not rules:
            continue
        ctx = EvalContext(res.attributes, res, idx)
        for rule in rules:
            tick()  # a scan bounds each file's time (limits.seconds_per_file); a no-op otherwise
            # An applicability test that is unknown still evaluates the rule, so
            # "maybe applicable" never hides a failure.
            if rule.applies is not None and rule.applies(ctx) is False:
                continue
            ctx.notes.clear()
            seen: list[Unknown] = []
            token = start_collecting(seen)
            try:
                result = rule.predicate(ctx)
            finally:
                stop_collecting(token)
            if result is True:
                passes.append((rule.id, res.address))
                continue
            details = dict(ctx.notes)
            findings.append(Finding(
                rule_id=rule.id, title=rule.title, severity=rule.severity, category=rule.category,
                controls=rule.controls, message=render_message(rule, res), remediation=rule.remediation,
                resource=res, status="fail" if result is False else "unknown", details=details,
                reasons=unknown_reasons(seen) if result is None else (),
            ))
    return findings, passes
