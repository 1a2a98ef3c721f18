"""Prior-period comparison: the same numbers for the period before, and the change.

An auditor reading a Type II report asks "is this better or worse than last time?". The prior
period defaults to one of the same length ending where the current one starts
(:func:`prior_window`); the comparison puts, per criterion, the population (records), runtime
failures, runtime compliance and deviations opened/remediated side by side, plus the headline
numbers. Both periods use the same population filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from soc2infra.evidence.records import EvidenceError

# (name in the comparison, how to read it from a report's criterion)
_CRITERION_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("population", ("population", "records")),
    ("failures", ("failures",)),
    ("compliance", ("compliance",)),
    ("deviations_opened", ("deviations", "opened")),
    ("deviations_remediated", ("deviations", "remediated")),
)


def prior_window(start: str, end: str) -> tuple[date, date]:
    """The period of the same number of days that ends the day before *start* (dates, inclusive)."""
    try:
        first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
    except ValueError as exc:
        raise EvidenceError(f"the prior period needs --from and --to as dates: {exc}") from None
    if last < first:
        raise EvidenceError(f"--to {end} is before --from {start}")
    length = (last - first).days + 1
    return first - timedelta(days=length), first - timedelta(days=1)


def _get(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _delta(current: Any, prior: Any) -> Any:
    if isinstance(current, int | float) and isinstance(prior, int | float):
        return round(current - prior, 2)
    return None


def compare(current: Mapping[str, Any], prior: Mapping[str, Any]) -> dict[str, Any]:
    """The ``prior_period`` section of a report: *prior* is the report of the prior window."""
    before = {c["id"]: c for c in prior.get("criteria", [])}
    rows = []
    for c in current.get("criteria", []):
        p = before.get(c["id"], {})
        row: dict[str, Any] = {"id": c["id"], "name": c.get("name", "")}
        for name, path in _CRITERION_FIELDS:
            now_value, then_value = _get(c, path), _get(p, path)
            row[name] = {"current": now_value, "prior": then_value, "delta": _delta(now_value, then_value)}
        rows.append(row)
    headline = {key: {"current": value, "prior": (prior.get("headline") or {}).get(key),
                      "delta": _delta(value, (prior.get("headline") or {}).get(key))}
                for key, value in (current.get("headline") or {}).items()}
    return {"period": {k: prior.get("period", {}).get(k) for k in ("from", "to", "days")},
            "population": prior.get("population"), "headline": headline, "criteria": rows}
