"""The evidence ledger: every scan, admission decision, audit snapshot and waiver change as an
append-only, hash-chained (optionally signed) record, for SOC 2 Type II.

Public API (everything else in this package may change)::

    ledger = open_ledger("evidence.db")                  # or sqlite:///…, postgresql://…
    ledger.append([{"source": "ci", "actor": "…", "subject": "…", "results": [...]}])
    with GroupCommitter(ledger) as gc:                    # admission: batch concurrent requests
        seq = gc.append_sync(entry)                       # returns once the record is durable
    verify_ledger("evidence.db", expect_head="42:ab…")    # -> VerifyResult
    export_records("evidence.db", "2025-01-01", "2025-03-31", "csv", "population.csv")
    render_html(build_report("evidence.db", "2025-01-01", "2025-03-31", controls))
    write_checkpoint("evidence.db", "s3://anchors/prod", "prod", Path("ed25519.pem"))  # or a git tree
"""

from __future__ import annotations

from soc2infra.evidence.anchor_s3 import write_checkpoint
from soc2infra.evidence.backend import display_url
from soc2infra.evidence.export import export_records
from soc2infra.evidence.ledger import Anchor, CommitStats, GroupCommitter, Ledger, open_ledger
from soc2infra.evidence.records import (
    GENESIS_HASH,
    SOURCES,
    EvidenceEntry,
    EvidenceError,
    ResultItem,
    StorageError,
    generate_keypair,
    redact,
    results_from_scan,
)
from soc2infra.evidence.report import build_report, render_html
from soc2infra.evidence.verify import VerifyResult, verify_jsonl, verify_ledger

__all__ = [
    "GENESIS_HASH", "SOURCES", "Anchor", "CommitStats", "EvidenceEntry", "EvidenceError", "GroupCommitter",
    "Ledger", "ResultItem", "StorageError", "VerifyResult", "build_report", "display_url", "export_records",
    "generate_keypair", "open_ledger", "redact", "render_html", "results_from_scan", "verify_jsonl",
    "verify_ledger", "write_checkpoint",
]
