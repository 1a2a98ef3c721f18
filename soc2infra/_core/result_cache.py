"""Evaluated results cached per scan unit, so re-scanning an unchanged tree costs a stat per input.

A scan unit is what a cross-resource rule can see (:mod:`soc2infra._core.shard`): a Terraform root
module with the local modules it calls, one plan file, the Kubernetes inputs. Its entry is found
by a key over what the scan was asked to do (tool version, pack digest, options, the unit) and
holds the unit's findings, passes, errors and coverage together with **every input the unit
read**, as recorded by the sources while it was evaluated (:mod:`soc2infra._core.sources.reads`):
``.tf`` files of every module, tfvars and var-files, ``file()``/``templatefile()`` arguments,
modules.json, the chart, overlay and values files, the helm and kubectl binaries, and directory
listings (a new ``.tf`` file changes a unit). An entry is used only when every input still has
its recorded size and modification time, or failing that its recorded content hash; one changed
file re-evaluates only the units that read it.

Entries hold what the JSON report holds (masked details, no attribute values), never literal
secrets. Scans that download modules or read standard input are not cached (their inputs are
not files we can check).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soc2infra import __version__
from soc2infra._cogs.limits import TIME_LIMIT_MARK
from soc2infra._cogs.limits import current as current_limits
from soc2infra._cogs.model import Coverage, Error, Finding, ModuleRecord, ScanResult, SkippedFile
from soc2infra._core.engine.policy import PolicyPack
from soc2infra._core.scan import (
    Inputs,
    ScanOptions,
    discover,
    evaluate_resources,
    load_resources,
    relativize_result,
)
from soc2infra._core.shard import select, terraform_units
from soc2infra._core.sources import cache, reads

CACHE_FORMAT = "2"
RACY_NS = 2_000_000_000


def results_dir() -> Path | None:
    """Where entries live: ``results`` beside the parse cache (``$SOC2INFRA_CACHE`` or the user
    cache); None when caching is off (``SOC2INFRA_NO_CACHE=1``)."""
    parse = cache.cache_dir()
    return parse.parent / "results" if parse is not None else None


@dataclass(slots=True)
class Unit:
    """One scan unit: its identity and the part of the inputs it covers."""

    ident: str
    inputs: Inputs
    own_files: list[Path] = field(default_factory=list)  # inputs known before evaluating


@dataclass(slots=True)
class CacheStats:
    """How a cached scan went (shown with --verbose and measured by bench/)."""

    hits: int = 0
    misses: int = 0


def split_units(inputs: Inputs) -> list[Unit]:
    """The scan units of *inputs* (discovery's own errors are not part of any unit: discovery runs
    on every scan, so they are never cached)."""
    units: list[Unit] = []
    rep_of = terraform_units(inputs.tf_files)
    groups: dict[Path, list[Path]] = {}
    for f in inputs.tf_files:
        groups.setdefault(rep_of[f.parent.resolve()], []).append(f)
    for rep in sorted(groups):
        files = sorted(groups[rep])
        units.append(Unit(f"terraform:{rep}", Inputs(tf_files=files), files))
    for plan in sorted(inputs.plan_files):
        units.append(Unit(f"plan:{plan.resolve()}", Inputs(plan_files=[plan]), [plan]))
    if inputs.manifest_files or inputs.helm_charts or inputs.kustomizations:
        k8s = Inputs(manifest_files=list(inputs.manifest_files), helm_charts=list(inputs.helm_charts),
                     kustomizations=list(inputs.kustomizations))
        every = (*k8s.manifest_files, *k8s.helm_charts, *k8s.kustomizations)
        ident = "kubernetes:" + "\n".join(sorted(str(p.resolve()) for p in every))
        units.append(Unit(ident, k8s, list(inputs.manifest_files)))
    return units


def _options_digest(options: ScanOptions, base: Path) -> str:
    parts = [f"var_files={[str(p.resolve()) for p in options.var_files]}",
             f"helm_values={[str(p.resolve()) for p in options.helm_values]}",
             f"kube={options.kube_version}", f"base={base.resolve()}",
             f"limits={options.limits or current_limits()}"]  # other bounds, other refusals
    return "\n".join(parts)


def unit_key(unit: Unit, pack: PolicyPack, options: ScanOptions, base: Path) -> str:
    """The entry name of *unit* for this pack, tool version and options."""
    h = hashlib.sha256()
    # The digest covers the rule files; --enable/--disable choose among them.
    enabled = ",".join(sorted(r.id for r in pack.rules if r.enabled))
    for part in (CACHE_FORMAT, __version__, pack.digest, enabled, _options_digest(options, base), unit.ident):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------- input fingerprints

def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _listing(directory: str, pattern: str) -> str:
    names = sorted(p.name for p in Path(directory).glob(pattern)) if Path(directory).is_dir() else []
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def fingerprint(paths: Iterable[str]) -> list[list[Any]]:
    """``[path, size, mtime_ns, sha256]`` per file (None fields when absent), and
    ``["listing:DIR\\0PATTERN", sha256 of the matching names]`` per directory listing."""
    out: list[list[Any]] = []
    for p in sorted(set(paths)):
        if p.startswith(reads.LISTING):
            directory, _, pattern = p[len(reads.LISTING):].partition("\0")
            out.append([p, _listing(directory, pattern)])
            continue
        try:
            st = os.stat(p)
        except OSError:
            out.append([p, None, None, None])
            continue
        out.append([p, st.st_size, st.st_mtime_ns, _sha256(p)])
    return out


def still_valid(recorded: list[list[Any]], stored_ns: int = 0) -> bool:
    """Every recorded input unchanged: same size and mtime, or else the same content.

    A file modified within :data:`RACY_NS` of *stored_ns* (when the entry was written) is always
    hashed: a same-size rewrite inside one timestamp tick would otherwise look unchanged (git's
    "racily clean" case)."""
    for item in recorded:
        path = item[0]
        if path.startswith(reads.LISTING):
            directory, _, pattern = path[len(reads.LISTING):].partition("\0")
            if _listing(directory, pattern) != item[1]:
                return False
            continue
        _, size, mtime, digest = item
        try:
            st = os.stat(path)
        except OSError:
            if digest is not None:
                return False
            continue
        if digest is None:
            return False
        if st.st_size == size and st.st_mtime_ns == mtime and st.st_mtime_ns + RACY_NS < stored_ns:
            continue
        if _sha256(path) != digest:
            return False
    return True


# ---------------------------------------------------------------- entries

def result_to_dict(result: ScanResult) -> dict[str, Any]:
    """What an entry keeps of a unit's result: the JSON report's view, no attribute values."""
    return {
        "resources": result.resource_total,
        "findings": [f.to_dict() for f in result.findings],
        "passes": [list(p) for p in result.passes],
        "errors": [e.to_dict() for e in result.errors],
        "warnings": list(result.warnings),
        "coverage": result.coverage.to_dict(),
    }


def result_from_dict(data: dict[str, Any], pack: PolicyPack) -> ScanResult:
    """The inverse of :func:`result_to_dict`."""
    cov = data.get("coverage") or {}
    return ScanResult(
        findings=[Finding.from_dict(f) for f in data["findings"]],
        errors=[Error(e["file"], e["line"], e["message"]) for e in data["errors"]],
        warnings=list(data["warnings"]),
        rules_evaluated=sum(1 for r in pack.rules if r.enabled), pack_digest=pack.digest,
        passes=[(str(r), str(a)) for r, a in data["passes"]],
        coverage=Coverage([ModuleRecord.from_dict(m) for m in cov.get("modules", [])],
                          [SkippedFile(f["path"], f["reason"]) for f in cov.get("skipped_files", [])]),
        resource_count=int(data["resources"]),
    )


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else None


def _store(path: Path, inputs: list[list[Any]], result: ScanResult) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"format": CACHE_FORMAT, "stored_ns": time.time_ns(), "inputs": inputs,
                       "result": result_to_dict(result)}, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed


# ---------------------------------------------------------------- the scan

def _kubernetes_reads(inputs: Inputs, options: ScanOptions) -> None:
    """Note every file a Kubernetes unit depends on (charts and overlays are directories, and
    rendering depends on the helm and kubectl binaries)."""
    from soc2infra._core.sources import kubernetes

    for p in inputs.manifest_files:
        reads.note(p)
    for v in options.helm_values:
        reads.note(v)
    dirs = list(inputs.helm_charts) + list(inputs.kustomizations)
    for k in inputs.kustomizations:
        dirs += sorted(kubernetes.kustomize_bases(k))
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if n != ".git")
            reads.note_listing(dirpath, "*")
            for name in filenames:
                reads.note(Path(dirpath) / name)
    if inputs.helm_charts and (helm := kubernetes.find_helm()):
        reads.note(helm)
    if inputs.kustomizations and (kubectl := kubernetes.find_kubectl()):
        reads.note(kubectl)


def _evaluate_unit(unit: Unit, pack: PolicyPack, options: ScanOptions, base: Path,
                   recorded: set[str]) -> ScanResult:
    with reads.recording(recorded):
        for f in unit.own_files:
            reads.note(f)
        for d in {f.parent for f in unit.inputs.tf_files}:
            reads.note_listing(d, "*.tf")
        if unit.ident.startswith("kubernetes:"):
            _kubernetes_reads(unit.inputs, options)
        coverage = Coverage(skipped_files=list(unit.inputs.skipped))
        resources, errors = load_resources(unit.inputs, options, coverage)
        if any(r.kind == "kubernetes" for r in resources):
            from soc2infra._core.sources import kubernetes

            resources += kubernetes.namespace_resources(resources)
        errors = relativize_result(resources, errors, coverage, base)
        result = evaluate_resources(resources, pack, errors)
        result.coverage = coverage
        return result


def _usable(entry: dict[str, Any] | None) -> bool:
    return entry is not None and still_valid(entry["inputs"], int(entry.get("stored_ns", 0)))


def _prefetch_parses(units: Sequence[Unit], options: ScanOptions) -> None:
    """Parse the Terraform files of every unit to evaluate in one parallel batch (the parse cache
    keeps them), so evaluating units one by one does not parse them one by one."""
    files = sorted({str(f.resolve()) for u in units for f in u.inputs.tf_files})
    if len(files) > 1:
        from soc2infra._core.sources.terraform import parse_files

        parse_files(files, options.jobs)


def scan_uncached_inputs(inputs: Inputs, pack: PolicyPack, options: ScanOptions) -> ScanResult:
    """The plain pipeline over already-discovered *inputs* (one shard's, say), no entries."""
    return _evaluate_unit(Unit("all", inputs), pack, options, options.base_dir or Path.cwd(), set())


def scan_cached(paths: Sequence[str], pack: PolicyPack, options: ScanOptions | None = None,
                shard: tuple[int, int] | None = None, stats: CacheStats | None = None) -> ScanResult:
    """:func:`soc2infra._core.scan.scan` with results cached per unit (same result, faster re-scans)."""
    options = options or ScanOptions()
    base = options.base_dir or Path.cwd()
    inputs = discover(paths)
    if shard is not None:
        inputs = select(inputs, shard[0], shard[1], base)
    directory = results_dir()
    stats = stats if stats is not None else CacheStats()
    merged = ScanResult(rules_evaluated=sum(1 for r in pack.rules if r.enabled), pack_digest=pack.digest)
    merged.resource_count = 0
    if inputs.stdin or options.download_external_modules or directory is None:
        # Nothing to check an entry against: evaluate as a plain scan would.
        parts = [_evaluate_unit(Unit("all", inputs), pack, options, base, set())]
    else:
        # Discovery runs on every scan: its errors and skipped files are never cached.
        found = Coverage(skipped_files=list(inputs.skipped))
        parts = [ScanResult(errors=relativize_result([], list(inputs.errors), found, base), coverage=found,
                            resource_count=0)]
        units = split_units(inputs)
        entries = {u.ident: _load(directory / f"{unit_key(u, pack, options, base)}.json") for u in units}
        misses = [u for u in units if not _usable(entries[u.ident])]
        _prefetch_parses(misses, options)
        for unit in units:
            entry_path = directory / f"{unit_key(unit, pack, options, base)}.json"
            entry = entries[unit.ident]
            if entry is not None and unit not in misses:
                stats.hits += 1
                parts.append(result_from_dict(entry["result"], pack))
                continue
            stats.misses += 1
            recorded: set[str] = set()
            result = _evaluate_unit(unit, pack, options, base, recorded)
            if not any(TIME_LIMIT_MARK in e.message for e in result.errors):
                _store(entry_path, fingerprint(recorded), result)  # a timeout depends on the machine's load
            parts.append(result)
    for part in parts:
        merged.resource_count += part.resource_total
        merged.findings += part.findings
        merged.passes += part.passes
        merged.errors += part.errors
        merged.warnings += [w for w in part.warnings if w not in merged.warnings]
        merged.coverage.modules += part.coverage.modules
        merged.coverage.skipped_files += part.coverage.skipped_files
    return merged

