"""Staged rollout evidence: what enforcing admission would have rejected, per rule.

While the operator runs with ``admission.mode`` at ``warn`` or ``audit``, each admission record
lists in ``context.would_deny`` the rules that would have rejected the object, and each audit
snapshot lists in ``context.deny_rules`` the rules whose failures are rejected when enforcing.
:class:`RolloutTally` folds the records of a period into one row per rule, so a platform team sees
what switching to ``enforce`` would break before it does:

- **requests** / **objects** / **namespaces**: admission requests (and the distinct objects and
  namespaces) that were let through only because of the mode;
- **failing now**: objects failing that rule in the period's last audit snapshot (they would be
  rejected at their next change), of which **in excluded namespaces** are never enforced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Row:
    requests: int = 0
    dry_runs: int = 0
    objects: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    last_seen: str = ""


@dataclass(slots=True)
class RolloutTally:
    """Accumulates the rollout facts of ledger records (feed them in ledger order)."""

    rows: dict[str, _Row] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    failing_now: dict[str, set[str]] = field(default_factory=dict)
    failing_excluded: dict[str, set[str]] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one ledger record into account (records of other sources are ignored)."""
        found = record.get("context")
        context: Mapping[str, Any] = found if isinstance(found, dict) else {}
        source = record.get("source")
        if source == "admission" and record.get("decision") is not None:  # not a skipped-request count
            mode = str(context.get("mode") or "enforce")
            self.modes[mode] = self.modes.get(mode, 0) + 1
            for rule_id in context.get("would_deny") or ():
                row = self.rows.setdefault(str(rule_id), _Row())
                row.requests += 1
                row.dry_runs += 1 if context.get("dry_run") else 0
                row.objects.add(str(record.get("subject") or ""))
                if context.get("namespace"):
                    row.namespaces.add(str(context["namespace"]))
                row.last_seen = str(record.get("time") or row.last_seen)
        elif source == "audit" and isinstance(context.get("deny_rules"), list):
            self._snapshot(record, set(map(str, context["deny_rules"])),
                           set(map(str, context.get("excluded_namespaces") or ())))

    def _snapshot(self, record: Mapping[str, Any], deny_rules: set[str], excluded: set[str]) -> None:
        # Only the last snapshot counts: it is the cluster as it stands at the end of the period.
        self.failing_now, self.failing_excluded = {}, {}
        for result in record.get("results") or ():
            rule_id = str(result.get("rule_id") or "")
            if rule_id not in deny_rules or result.get("status") != "fail":
                continue
            address = str(result.get("address") or "")
            self.failing_now.setdefault(rule_id, set()).add(address)
            if _namespace_of(address) in excluded:
                self.failing_excluded.setdefault(rule_id, set()).add(address)

    def to_dict(self) -> dict[str, Any]:
        """The report section: admission modes seen and one row per rule, most requests first."""
        rules = sorted(set(self.rows) | set(self.failing_now))
        out: list[dict[str, Any]] = []
        for rule_id in rules:
            row = self.rows.get(rule_id, _Row())
            out.append({"rule_id": rule_id, "requests": row.requests, "dry_runs": row.dry_runs,
                        "objects": len(row.objects), "namespaces": sorted(row.namespaces),
                        "last_seen": row.last_seen or None,
                        "failing_now": len(self.failing_now.get(rule_id, ())),
                        "failing_in_excluded_namespaces": len(self.failing_excluded.get(rule_id, ()))})
        out.sort(key=lambda r: (-r["requests"], -r["failing_now"], r["rule_id"]))
        return {"admission_modes": dict(sorted(self.modes.items())), "rules": out}


def _namespace_of(address: str) -> str | None:
    """The namespace in a Kubernetes address ``group/version/Kind/namespace/name`` (None if none);
    a Namespace object counts as being in itself."""
    parts = address.split("/")
    if len(parts) >= 2 and parts[-2] == "Namespace":
        return parts[-1]
    if len(parts) >= 4 and parts[-3][:1].isupper():
        return parts[-2]
    return None
