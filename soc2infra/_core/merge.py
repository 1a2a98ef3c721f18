"""``soc2infra merge``: combine the JSON results of ``scan --shard I/N`` runs into one result.

Each shard's JSON document (written with ``--shard``, which adds the passing ``(rule, address)``
pairs JUnit needs) is read back into a :class:`ScanResult`; the merged result renders to any
format and gives the exit code a single scan of the whole tree would give. Shards must have run
the same policy pack with the same threshold: anything else is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soc2infra._cogs.errors import UserError
from soc2infra._cogs.model import Coverage, Error, Finding, ModuleRecord, ScanResult, SkippedFile


class MergeError(UserError):
    """Shard results that cannot be merged (unreadable, not a soc2infra result, other packs)."""


def read_document(path: Path) -> dict[str, Any]:
    """One shard's JSON result, checked to be a soc2infra result with its passes."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path}: not a readable JSON result ({exc})") from None
    if not isinstance(doc, dict) or doc.get("tool", {}).get("name") != "soc2infra":
        raise MergeError(f"{path}: not a soc2infra JSON result")
    if "passes" not in doc:
        raise MergeError(f"{path}: no passes recorded; write shard results with "
                         "`scan --shard I/N --format json`")
    return doc


def merge_documents(docs: Sequence[dict[str, Any]]) -> tuple[ScanResult, str]:
    """One result from the shards' documents, and the threshold they ran with."""
    if not docs:
        raise MergeError("nothing to merge")
    digests = {d["pack"]["digest"] for d in docs}
    if len(digests) > 1:
        raise MergeError(f"shards ran different policy packs ({', '.join(sorted(digests))})")
    thresholds = {d["summary"]["threshold"] for d in docs}
    if len(thresholds) > 1:
        raise MergeError(f"shards ran with different severity thresholds ({', '.join(sorted(thresholds))})")
    result = ScanResult(pack_digest=docs[0]["pack"]["digest"], rules_evaluated=docs[0]["pack"]["rules"])
    result.resource_count = 0
    seen_warnings: set[str] = set()
    for doc in docs:
        result.resource_count += int(doc["summary"]["resources"])
        result.findings += [Finding.from_dict(f) for f in doc["findings"]]
        result.findings += [Finding.from_dict(f) for f in doc["unknown"]]
        result.errors += [Error(e["file"], e["line"], e["message"]) for e in doc["errors"]]
        for w in doc["warnings"]:
            if w not in seen_warnings:
                seen_warnings.add(w)
                result.warnings.append(w)
        result.passes += [(str(r), str(a)) for r, a in doc["passes"]]
        cov = doc.get("coverage") or {}
        result.coverage.modules += [ModuleRecord.from_dict(m) for m in cov.get("modules", [])]
        result.coverage.skipped_files += [SkippedFile(f["path"], f["reason"])
                                          for f in cov.get("skipped_files", [])]
    result.coverage = Coverage(sorted(result.coverage.modules, key=lambda m: (m.root, m.address)),
                               result.coverage.skipped_files)
    return result, thresholds.pop()
