"""The headline numbers of a period, each defined once.

Every headline number an auditor is shown — the HTML report's cards, ``report.json``'s
``headline`` and the package's ``summary.csv`` — is computed here by :func:`compute_headline`
from the report's own tallies and registers, and every output reads the result rather than
re-deriving it. Each number has one name, one label and one written definition
(:data:`HEADLINE`), printed next to it, so two outputs cannot disagree on what "denials" means.

Two mismatches this removes: the denials card used to add up per-criterion denials (a request
denied for two criteria counted twice), where ``denied_requests`` counts admission *requests*;
and per-criterion failures were counted over every source while compliance was computed over
the state sources only — both now come from the runtime audit snapshots (IaC scans apart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Metric:
    """One headline number: its key in JSON/CSV, its label in HTML, and what it counts."""

    key: str
    label: str
    definition: str


HEADLINE: tuple[Metric, ...] = (
    Metric("records", "records in the population",
           "Ledger records of the period kept by the population filters (cluster, source, dry run)."),
    Metric("admission_requests", "admission requests",
           "Admission records with a decision: one per API request the webhook evaluated."),
    Metric("skipped_requests", "requests skipped (out of scope)",
           "Admission requests the operator did not evaluate (excluded namespaces and users, trusted "
           "controllers …), from its skipped-request count records."),
    Metric("denied_requests", "denied admission requests",
           "Admission records whose decision is deny (each request once, whatever the criteria)."),
    Metric("admitted_with_failures", "requests admitted with a failed rule",
           "Admission records allowed or warned about while a rule failed (each request once)."),
    Metric("audit_snapshots", "audit snapshots",
           "Audit records: runs of the background audit (the detective control)."),
    Metric("coverage_gap_days", "days without an audit snapshot",
           "Days of the period with no audit record."),
    Metric("deviations", "deviations",
           "Rows of the deviation register: (rule, resource, cluster) that failed at runtime."),
    Metric("deviations_open", "deviations open at the end",
           "Deviation register rows with status open or waived (not remediated by the period's end)."),
    Metric("deviations_waived", "of which waived",
           "Deviation register rows with status waived (failing, accepted by a waiver in force)."),
    Metric("deviations_remediated", "deviations remediated",
           "Deviation register rows with status remediated (a later observation passed or the object "
           "was gone)."),
    Metric("waivers", "waivers", "Rows of the waiver register."),
    Metric("waivers_active", "waivers in force at the end",
           "Waiver register rows with status active (not revoked, not expired, usable)."),
    Metric("runtime_compliance", "runtime compliance %",
           "passes / (passes + failures) over the rule evaluations of the audit snapshots."),
    Metric("iac_compliance", "IaC scan compliance %",
           "passes / (passes + failures) over the rule evaluations of IaC scans (ci, pre-commit, cli); "
           "reported apart from runtime compliance."),
)
HEADLINE_KEYS: tuple[str, ...] = tuple(m.key for m in HEADLINE)
SUMMARY_COLUMNS: tuple[str, ...] = ("metric", "label", "value", "definition")


def percent(passes: int, failures: int) -> float | None:
    """passes / (passes + failures) in percent, two decimals; None when nothing was evaluated."""
    total = passes + failures
    return round(100.0 * passes / total, 2) if total else None


def compute_headline(*, records: int, by_source: Mapping[str, int], decisions: Mapping[str, int],
                     skipped_requests: int, admitted_with_failures: int, coverage_gap_days: int,
                     runtime: tuple[int, int],
                     iac: tuple[int, int], deviations: Sequence[Mapping[str, Any]],
                     waivers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The headline numbers (keys of :data:`HEADLINE`, in that order).

    *decisions* is keyed ``source:decision``; *runtime* and *iac* are (passes, failures).
    """
    status = [str(d.get("status")) for d in deviations]
    out: dict[str, Any] = {
        "records": records,
        "admission_requests": sum(n for key, n in decisions.items() if key.startswith("admission:")),
        "skipped_requests": skipped_requests,
        "denied_requests": int(decisions.get("admission:deny", 0)),
        "admitted_with_failures": admitted_with_failures,
        "audit_snapshots": int(by_source.get("audit", 0)),
        "coverage_gap_days": coverage_gap_days,
        "deviations": len(status),
        "deviations_open": sum(1 for s in status if s in ("open", "waived")),
        "deviations_waived": status.count("waived"),
        "deviations_remediated": status.count("remediated"),
        "waivers": len(waivers),
        "waivers_active": sum(1 for w in waivers if w.get("status") == "active"),
        "runtime_compliance": percent(*runtime),
        "iac_compliance": percent(*iac),
    }
    assert tuple(out) == HEADLINE_KEYS
    return out


def format_value(value: Any, key: str) -> str:
    """How a headline value is printed (the same text in HTML and CSV)."""
    if value is None:
        return "n/a"
    if key.endswith("_compliance"):
        return f"{value:.2f}"
    return str(value)


def summary_rows(headline: Mapping[str, Any]) -> list[dict[str, str]]:
    """``summary.csv``: one row per headline number, with its label and definition."""
    return [{"metric": m.key, "label": m.label, "value": format_value(headline.get(m.key), m.key),
             "definition": m.definition} for m in HEADLINE]
