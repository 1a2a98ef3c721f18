"""Waivers: accepted findings, each with a reason (and, in the waiver file, an owner and expiry).

Inline waivers (``# soc2infra:ignore RULE-ID reason``) are read by the sources and carried
on each resource; this module decides which findings they suppress.
"""

from __future__ import annotations

from soc2infra.model import Finding, Waiver


def apply_inline_waivers(findings: list[Finding]) -> list[str]:
    """Suppress findings whose resource carries a matching inline waiver with a reason.

    Returns warnings (a waiver without a reason is rejected and does not suppress).
    """
    warnings: list[str] = []
    for f in findings:
        for rule_id, reason, line in f.resource.inline_waivers:
            if rule_id not in (f.rule_id, "*"):
                continue
            where = f"{f.resource.file}:{line}" if f.resource.file else f.resource.address
            if not reason:
                warnings.append(f"{where}: inline waiver for {rule_id} has no reason and is ignored")
                continue
            f.suppressed = True
            f.waiver = Waiver(source="inline", reason=reason, location=where)
            break
    return warnings
