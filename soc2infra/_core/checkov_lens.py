"""A SOC 2 lens over checkov: its Terraform and Kubernetes checks, run in-process through its
Python API, mapped to SOC 2 criteria and merged into soc2infra's own findings.

Teams that already run checkov get its results in soc2infra's terms: every mapped checkov
failure becomes a finding with SOC 2 criteria, a category and a severity
(``policies/catalog-checkov.yaml``, generated from the SOC 2 catalog's cross-references), and
goes through the same waivers, reports and evidence as native findings. When a native rule and a
checkov check test the same catalog check on the same resource, one finding carries both ids
(``details.checkov``). Unmapped checkov ids are left out unless asked for.

checkov takes seconds to import: only ``scan --with-checkov`` imports this module's runner.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soc2infra._cogs.model import Error, Finding, Resource

CHECKOV_VERSION = "3.3.30"
_INDEX_RE = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True, slots=True)
class CheckovMapping:
    """What a checkov check id means in SOC 2 terms."""

    controls: tuple[str, ...]
    category: str
    severity: str
    catalog: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckovRecord:
    """One failed checkov check on one resource, as checkov's report gives it."""

    check_id: str
    name: str
    framework: str  # "terraform" or "kubernetes"
    resource: str  # aws_s3_bucket.x, module.m.aws_s3_bucket.this, Deployment.default.api
    file: str  # absolute path
    line: int
    end_line: int
    guideline: str = ""


def parse_mapping(data: Mapping[str, Any]) -> dict[str, CheckovMapping]:
    """The ``checks:`` table of the mapping file, by checkov id."""
    out: dict[str, CheckovMapping] = {}
    for check_id, entry in (data.get("checks") or {}).items():
        out[str(check_id)] = CheckovMapping(
            controls=tuple(str(c) for c in entry.get("controls", ())),
            category=str(entry.get("category", "integrity")),
            severity=str(entry.get("severity", "medium")),
            catalog=tuple(str(c) for c in entry.get("catalog", ())),
        )
    return out


def run_checkov(targets: Sequence[str],
                var_files: Sequence[Path] = ()) -> tuple[list[CheckovRecord], list[Error]]:
    """Run checkov's Terraform and Kubernetes checks on *targets* (directories or files)."""
    try:
        # Through importlib: checkov is an optional extra, typed or not, and never imported by a
        # default scan.
        kubernetes_runner = importlib.import_module("checkov.kubernetes.runner")
        terraform_runner = importlib.import_module("checkov.terraform.runner")
        RunnerFilter = importlib.import_module("checkov.runner_filter").RunnerFilter  # noqa: N806
    except ImportError:
        hint = "--with-checkov needs checkov: pip install 'soc2infra[checkov]'"
        return [], [Error("<checkov>", None, hint)]
    # checkov logs and prints progress; the scan's own output must stay clean (JSON on stdout).
    logging.getLogger("checkov").setLevel(logging.ERROR)
    records: list[CheckovRecord] = []
    errors: list[Error] = []
    for target in targets:
        if target == "-":
            continue
        path = Path(target)
        for framework, runner_class in (("terraform", terraform_runner.Runner),
                                        ("kubernetes", kubernetes_runner.Runner)):
            if not _has_inputs(path, framework):
                continue
            runner_filter = RunnerFilter(framework=[framework], show_progress_bar=False,
                                         var_files=[str(v) for v in var_files] or None)
            try:
                with redirect_stdout(io.StringIO()):
                    if path.is_dir():
                        reports = runner_class().run(root_folder=str(path), runner_filter=runner_filter)
                    else:
                        reports = runner_class().run(root_folder=None, files=[str(path)],
                                                     runner_filter=runner_filter)
            except Exception as exc:  # noqa: BLE001 - a peer tool's failure is an input error, not ours
                errors.append(Error(str(path), None, f"checkov {framework} checks failed: {exc}"))
                continue
            for report in reports if isinstance(reports, list) else [reports]:
                for rec in report.failed_checks:
                    lines = list(rec.file_line_range or [0, 0])
                    records.append(CheckovRecord(
                        check_id=rec.check_id, name=rec.check_name, framework=framework,
                        resource=str(rec.resource_address or rec.resource), file=str(rec.file_abs_path),
                        line=int(lines[0] or 0), end_line=int(lines[-1] or 0),
                        guideline=str(getattr(rec, "guideline", "") or "")))
    return records, errors


def _has_inputs(path: Path, framework: str) -> bool:
    suffixes = (".tf",) if framework == "terraform" else (".yaml", ".yml", ".json")
    if path.is_file():
        return path.suffix in suffixes
    return any(p.suffix in suffixes for p in _walk(path))


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "node_modules"]
        for name in filenames:
            yield Path(dirpath) / name


def _terraform_key(address: str) -> str:
    return _INDEX_RE.sub("", address)


def _kubernetes_key(res: Resource) -> str:
    ns = res.namespace or "default"
    return f"{res.type}.{ns}.{res.name}"


def merge_into(findings: list[Finding], resources: Sequence[Resource], records: Sequence[CheckovRecord],
               mapping: Mapping[str, CheckovMapping], rule_catalog: Mapping[str, tuple[str, ...]],
               all_checkov: bool = False) -> int:
    """Add checkov's failures to *findings* (in place); returns how many new findings were added.

    A record whose check tests a catalog check that a native finding on the same resource also
    tests is folded into that finding (``details.checkov``); *rule_catalog* maps native rule ids
    to their catalog ids. Unmapped checkov ids are skipped unless *all_checkov*.
    """
    by_key: dict[str, Resource] = {}
    for res in resources:
        key = _terraform_key(res.address) if res.kind == "terraform" else _kubernetes_key(res)
        by_key.setdefault(key, res)
    native: dict[str, list[Finding]] = {}
    for f in findings:
        native.setdefault(f.resource.address, []).append(f)
    added = 0
    seen: set[tuple[str, str]] = set()
    for rec in records:
        meaning = mapping.get(rec.check_id)
        if meaning is None and not all_checkov:
            continue
        key = _terraform_key(rec.resource) if rec.framework == "terraform" else rec.resource
        res = by_key.get(key) or _resource_for(rec)
        if (rec.check_id, res.address) in seen:
            continue  # count/for_each instances checkov reports once per block
        seen.add((rec.check_id, res.address))
        catalog = set(meaning.catalog) if meaning else set()
        same = [f for f in native.get(res.address, []) if catalog & set(rule_catalog.get(f.rule_id, ()))]
        if same:
            for f in same:
                ids = f.details.setdefault("checkov", [])
                if rec.check_id not in ids:
                    ids.append(rec.check_id)
            continue
        findings.append(Finding(
            rule_id=rec.check_id, title=rec.name,
            severity=meaning.severity if meaning else "low",
            category=meaning.category if meaning else "integrity",
            controls=meaning.controls if meaning else (),
            message=f"{rec.name} ({rec.check_id}, checkov {CHECKOV_VERSION}) failed on {res.address}",
            remediation=(f"See {rec.guideline}" if rec.guideline
                         else f"Fix what checkov's {rec.check_id} describes: {rec.name}."),
            resource=res,
            details={"source": "checkov", "catalog": list(meaning.catalog)} if meaning
            else {"source": "checkov", "unmapped": True},
        ))
        added += 1
    return added


def _resource_for(rec: CheckovRecord) -> Resource:
    """A resource for a record soc2infra did not load itself (kept where checkov found it)."""
    if rec.framework == "terraform":
        parts = _terraform_key(rec.resource).split(".")
        rtype = parts[-2] if len(parts) >= 2 else rec.resource
        kind = "terraform"
    else:
        rtype = rec.resource.split(".", 1)[0]
        kind = "kubernetes"
    return Resource(kind=kind, type=rtype, address=rec.resource, attributes={}, file=rec.file, line=rec.line,
                    end_line=rec.end_line, meta={"source": "checkov"})
