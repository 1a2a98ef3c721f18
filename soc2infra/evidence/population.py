"""Which records make up an auditor's population: filters by cluster, source and dry run.

A population is stated, not implied: every report and export prints the :class:`Population` it
used (with the seq range it covered, the tool version and what each filter left out), so the
numbers an auditor is shown tie to the rows they sample. Dry-run admission requests (a CI gate's
``kubectl --dry-run=server``, a load test) never changed the cluster: they are left out unless
asked for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soc2infra.evidence.records import SCAN_SOURCES, EvidenceError
from soc2infra.evidence.records import TOOL_VERSION as __version__

# The --source names an auditor uses, and the ledger sources each one covers.
SOURCE_GROUPS: dict[str, frozenset[str]] = {
    "admission": frozenset({"admission"}),
    "audit": frozenset({"audit"}),
    "scan": frozenset(SCAN_SOURCES),
    "waiver": frozenset({"waiver"}),
}


def record_cluster(record: Mapping[str, Any]) -> str:
    """The cluster id a record was written for ("" for scans and older records)."""
    context = record.get("context")
    return str(context.get("cluster") or "") if isinstance(context, Mapping) else ""


def is_dry_run(record: Mapping[str, Any]) -> bool:
    """Whether the record is of a dry-run admission request."""
    context = record.get("context")
    return isinstance(context, Mapping) and context.get("dry_run") is True


@dataclass(frozen=True, slots=True)
class Population:
    """Filters applied to the records of a period (empty tuple: no filter on that field)."""

    clusters: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # names from SOURCE_GROUPS
    include_dry_run: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(SOURCE_GROUPS))
        if unknown:
            raise EvidenceError(f"unknown source(s) {', '.join(unknown)} (use {', '.join(SOURCE_GROUPS)})")

    @property
    def ledger_sources(self) -> frozenset[str]:
        """The ledger ``source`` values selected (all when no --source was given)."""
        groups = self.sources or tuple(SOURCE_GROUPS)
        return frozenset().union(*(SOURCE_GROUPS[g] for g in groups))

    def excludes(self, record: Mapping[str, Any]) -> str | None:
        """Why *record* is left out (``source``, ``dry_run``, ``cluster``), or None to keep it."""
        if record.get("source") not in self.ledger_sources:
            return "source"
        if not self.include_dry_run and is_dry_run(record):
            return "dry_run"
        if self.clusters and record_cluster(record) not in self.clusters:
            return "cluster"
        return None

    def to_dict(self) -> dict[str, Any]:
        """The parameters as printed in reports and exports."""
        return {"clusters": list(self.clusters) or "all",
                "sources": list(self.sources) or "all",
                "include_dry_run": self.include_dry_run}


@dataclass(slots=True)
class PopulationTally:
    """What a report or export covered: seq range, records kept and left out (by reason)."""

    population: Population
    first_seq: int | None = None
    last_seq: int | None = None
    kept: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    clusters: Counter[str] = field(default_factory=Counter)

    def keep(self, record: Mapping[str, Any]) -> bool:
        """Count *record* (in the period) and say whether it belongs to the population."""
        seq = record.get("seq")
        if isinstance(seq, int):
            self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        why = self.population.excludes(record)
        if why is not None:
            self.excluded[why] += 1
            return False
        self.kept += 1
        self.clusters[record_cluster(record) or "(none)"] += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        """Parameters, tool version, seq range and totals, for the report/export header."""
        return {
            "parameters": self.population.to_dict(),
            "tool_version": f"soc2infra {__version__}",
            "seq_range": [self.first_seq, self.last_seq] if self.first_seq is not None else None,
            "records_in_period": self.kept + sum(self.excluded.values()),
            "records_in_population": self.kept,
            "excluded": dict(sorted(self.excluded.items())),
            "by_cluster": dict(sorted(self.clusters.items())),
        }


def describe(tally: Mapping[str, Any]) -> str:
    """One line for a terminal: what the population holds and how it was chosen."""
    params = tally["parameters"]
    seq = tally.get("seq_range")
    excluded = ", ".join(f"{n} {why}" for why, n in tally.get("excluded", {}).items()) or "none"
    return (f"{tally['tool_version']}; clusters={_show(params['clusters'])} "
            f"sources={_show(params['sources'])} "
            f"include_dry_run={str(params['include_dry_run']).lower()}; seq {seq[0]}..{seq[1]}"
            if seq else f"{tally['tool_version']}; no record in the period") + (
        f"; {tally['records_in_population']} of {tally['records_in_period']} records in the population "
        f"(excluded: {excluded})")


def _show(value: str | Iterable[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)
