"""Export evidence for an auditor: the records of a period as JSONL or CSV.

- **JSONL**: one record per line, byte for byte the canonical JSON stored in the ledger, so each
  line can be re-hashed independently (``soc2infra.evidence.verify.verify_jsonl``) and checked
  against the ledger (``soc2infra evidence verify-export``).
- Only the records of the :class:`~soc2infra.evidence.population.Population` asked for are
  written: by default every source, with dry-run admission requests left out.
- **CSV**: one row per rule result — the population an auditor samples from — with the record's
  seq, time, source, actor, subject, pack digest and decision repeated on each row, the waiver
  (owner, expiry, reason) for waived results, the context as JSON and the record hash to trace a
  row back to its record. A record with no results (a waiver change, a scan of nothing) still
  gets one row, so the population is complete. Cells that a spreadsheet would run as a formula
  (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from soc2infra.evidence.ledger import Ledger, open_ledger, time_bounds
from soc2infra.evidence.population import Population, PopulationTally
from soc2infra.evidence.records import EvidenceError, canonical_json

FORMATS: tuple[str, ...] = ("jsonl", "csv")
CSV_COLUMNS: tuple[str, ...] = (
    "seq", "time", "source", "actor", "subject", "pack_digest", "decision",
    "rule_id", "status", "severity", "controls", "address",
    "waiver_owner", "waiver_expires", "waiver_reason", "context", "record_hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

TimeBound = datetime | date | str | None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def result_rows(record: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """The CSV rows of one record: one per result, or one with empty rule fields."""
    base = {
        "seq": record.get("seq"), "time": record.get("time"), "source": record.get("source"),
        "actor": record.get("actor"), "subject": record.get("subject"),
        "pack_digest": record.get("pack_digest"), "decision": record.get("decision"),
        "context": canonical_json(record.get("context") or {}), "record_hash": record.get("hash"),
    }
    results = record.get("results") or [{}]
    for result in results:
        waiver = result.get("waiver") or {}
        row = dict(base)
        row.update({
            "rule_id": result.get("rule_id"), "status": result.get("status"),
            "severity": result.get("severity"), "controls": ";".join(result.get("controls") or ()),
            "address": result.get("address"),
            "waiver_owner": waiver.get("owner"), "waiver_expires": waiver.get("expires"),
            "waiver_reason": waiver.get("reason"),
        })
        yield {column: _cell(row.get(column)) for column in CSV_COLUMNS}


def write_records(ledger: Ledger, out: IO[str], start: TimeBound = None, end: TimeBound = None,
                  fmt: str = "jsonl", population: Population | None = None,
                  tally: PopulationTally | None = None) -> int:
    """Write the records with time in ``[start, end)`` that belong to *population* (default: every
    source, dry runs left out) to *out*; returns lines/rows written. *tally*, when given, counts
    what was kept and left out (the export's header for the auditor)."""
    if fmt not in FORMATS:
        raise EvidenceError(f"unknown export format {fmt!r} (use {' or '.join(FORMATS)})")
    lo, hi = time_bounds(start, end)
    tally = tally if tally is not None else PopulationTally(population or Population())
    count = 0
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), lineterminator="\r\n")
        writer.writeheader()
    for row in ledger.iter_rows(lo, hi):
        record = json.loads(row.body)
        if not tally.keep(record):
            continue
        if writer is None:
            out.write(row.body)
            out.write("\n")
            count += 1
            continue
        for line in result_rows(record):
            writer.writerow(line)
            count += 1
    return count


def export_records(url: str | Path | Ledger, start: TimeBound = None, end: TimeBound = None,
                   fmt: str = "jsonl", out: Path | str | IO[str] | None = None,
                   population: Population | None = None, tally: PopulationTally | None = None) -> int:
    """Export the ledger's records between *start* and *end* as JSONL or CSV.

    *url* is a ledger URL (or an open :class:`Ledger`); *start*/*end* are datetimes with a zone,
    dates or ISO strings (a date *end* includes that day); *out* is a file path, an open text
    stream, or None / ``"-"`` for stdout. Returns the number of JSONL lines or CSV rows written
    (CSV: without the header).
    """
    ledger = url if isinstance(url, Ledger) else open_ledger(url, create=False)
    try:
        if out is None or out == "-":
            return write_records(ledger, sys.stdout, start, end, fmt, population, tally)
        if isinstance(out, str | Path):
            with Path(out).open("w", encoding="utf-8", newline="") as fh:
                return write_records(ledger, fh, start, end, fmt, population, tally)
        return write_records(ledger, out, start, end, fmt, population, tally)
    finally:
        if ledger is not url:
            ledger.close()
