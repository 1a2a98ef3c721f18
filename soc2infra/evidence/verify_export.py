"""Re-check an export (JSONL or CSV) against the ledger it came from.

An auditor receives a file; before sampling from it they need to know it is what the ledger
holds. For each record in the file:

- **JSONL**: the line re-hashes to its own ``hash`` (so it was not edited after export) and the
  ledger's record at the same seq has that hash and the same canonical body;
- **CSV**: the row's ``record_hash`` is the ledger's hash at that seq, the row is exactly one of
  the rows the export writes for that record (every cell, formula guard included), and every
  row of the record is present (none dropped).

The ledger's chain is verified as well (with the anchor when given), so a match means "the file
equals a record of an intact chain", not just "the file equals whatever the database says now".
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soc2infra.evidence.export import CSV_COLUMNS, result_rows
from soc2infra.evidence.ledger import Anchor, Ledger, open_ledger
from soc2infra.evidence.records import EvidenceError, canonical_json, record_hash
from soc2infra.evidence.verify import KeySpec, VerifyResult, verify_ledger

MAX_PROBLEMS = 50  # enough to act on; the count says how many there were in all


@dataclass(slots=True)
class ExportCheck:
    """Outcome of :func:`verify_export`."""

    path: str
    fmt: str
    lines: int = 0  # data lines read (CSV: without the header)
    records: int = 0  # distinct records referenced
    seq_range: tuple[int, int] | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    chain: VerifyResult | None = None

    @property
    def ok(self) -> bool:
        """True when every line matches the ledger and the ledger's chain is intact."""
        return self.problem_count == 0 and (self.chain is None or self.chain.ok)

    def problem(self, text: str) -> None:
        """Record a mismatch (the first MAX_PROBLEMS are kept verbatim)."""
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "path": self.path, "format": self.fmt, "lines": self.lines,
                "records": self.records, "seq_range": list(self.seq_range) if self.seq_range else None,
                "problem_count": self.problem_count, "problems": list(self.problems),
                "chain": self.chain.to_dict() if self.chain else None}

    def __str__(self) -> str:
        seq = f", seq {self.seq_range[0]}..{self.seq_range[1]}" if self.seq_range else ""
        head = (f"{self.path}: {self.lines} {'rows' if self.fmt == 'csv' else 'lines'} of {self.records} "
                f"records{seq}")
        chain = f"\nledger: {self.chain}" if self.chain else ""
        if self.ok:
            return f"OK: {head} match the ledger{chain}"
        more = (f"\n  … and {self.problem_count - len(self.problems)} more"
                if self.problem_count > len(self.problems) else "")
        return (f"MISMATCH: {head}: {self.problem_count} problem(s)\n  " + "\n  ".join(self.problems)
                + more + chain)


def _detect(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as fh:
        first = fh.readline()
    if first.startswith("{"):
        return "jsonl"
    if first.split(",")[:2] == list(CSV_COLUMNS[:2]):
        return "csv"
    raise EvidenceError(f"{path}:1: neither a JSONL nor a CSV export of soc2infra evidence")


def verify_export(path: Path | str, ledger: str | Path | Ledger, public_key: KeySpec = None,
                  expect_head: str | Anchor | None = None, fmt: str | None = None) -> ExportCheck:
    """Check the export at *path* against *ledger* (see the module docstring)."""
    file = Path(path)
    kind = fmt or _detect(file)
    led = ledger if isinstance(ledger, Ledger) else open_ledger(ledger, create=False)
    try:
        check = ExportCheck(str(file), kind)
        if kind == "jsonl":
            _check_jsonl(file, led, check)
        elif kind == "csv":
            _check_csv(file, led, check)
        else:
            raise EvidenceError(f"unknown export format {kind!r} (use jsonl or csv)")
        check.chain = verify_ledger(led, public_key, expect_head)
        return check
    finally:
        if led is not ledger:
            led.close()


def _span(check: ExportCheck, seqs: set[int]) -> None:
    check.records = len(seqs)
    check.seq_range = (min(seqs), max(seqs)) if seqs else None


def _check_jsonl(path: Path, ledger: Ledger, check: ExportCheck) -> None:
    seqs: set[int] = set()
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            body = line.rstrip("\n")
            if not body:
                continue
            check.lines += 1
            where = f"{path}:{number}"
            try:
                record = json.loads(body)
                seq = int(record["seq"])
            except (ValueError, KeyError, TypeError) as exc:
                check.problem(f"{where}: not a record ({exc})")
                continue
            seqs.add(seq)
            if canonical_json(record) != body:
                check.problem(f"{where}: seq {seq} is not in canonical form (edited after export)")
            elif record_hash(record) != record.get("hash"):
                check.problem(f"{where}: seq {seq} does not match its own hash (edited after export)")
            stored = ledger.get(seq)
            if stored is None:
                check.problem(f"{where}: seq {seq} is not in the ledger")
            elif stored.get("hash") != record.get("hash") or canonical_json(stored) != body:
                check.problem(f"{where}: seq {seq} differs from the ledger's record")
    _span(check, seqs)


def _check_csv(path: Path, ledger: Ledger, check: ExportCheck) -> None:
    seen: dict[int, Counter[str]] = defaultdict(Counter)
    first_line: dict[int, int] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            check.problem(f"{path}:1: the header is not the export's columns ({', '.join(CSV_COLUMNS)})")
            return
        for row in reader:
            check.lines += 1
            number = reader.line_num
            try:
                seq = int(row["seq"])
            except (TypeError, ValueError):
                check.problem(f"{path}:{number}: seq {row.get('seq')!r} is not a number")
                continue
            seen[seq][canonical_json(row)] += 1
            first_line.setdefault(seq, number)
    for seq in sorted(seen):
        where = f"{path}:{first_line[seq]}"
        stored = ledger.get(seq)
        if stored is None:
            check.problem(f"{where}: seq {seq} is not in the ledger")
            continue
        expected = Counter(canonical_json(r) for r in result_rows(stored))
        got = seen[seq]
        if got == expected:
            continue
        hashes = {json.loads(r)["record_hash"] for r in got}
        if hashes != {stored.get("hash")}:
            check.problem(f"{where}: seq {seq}: record_hash differs from the ledger's hash")
        extra, missing = got - expected, expected - got
        if extra:
            check.problem(f"{where}: seq {seq}: {sum(extra.values())} row(s) differ from the ledger's record "
                          "(edited after export)")
        if missing:
            check.problem(f"{where}: seq {seq}: {sum(missing.values())} row(s) of the record are missing "
                          "or changed")
    _span(check, set(seen))
