"""Orchestrate one scan: discover inputs → sources → resources → engine → result.

This is the only place that knows which source handles which input; each source
stays ignorant of the others and of the engine.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from soc2infra._cogs import limits
from soc2infra._cogs.model import Coverage, Error, Finding, Resource, ScanResult, SkippedFile
from soc2infra._core.config import ScanOptions as ScanOptions  # re-exported: part of the scan API
from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.evaluate import evaluate, scope_of
from soc2infra._core.engine.policy import PolicyPack

SKIP_DIRS = frozenset({".git", ".terraform", "node_modules", ".venv", "venv", "__pycache__", ".tox",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache"})
YAML_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SCANNED_SUFFIXES = (".tf", ".json", *YAML_SUFFIXES)
DANGLING = "dangling symbolic link: its target does not exist"


@dataclass(slots=True)
class Inputs:
    """What discovery found, by source."""

    tf_files: list[Path] = field(default_factory=list)
    plan_files: list[Path] = field(default_factory=list)
    manifest_files: list[Path] = field(default_factory=list)
    helm_charts: list[Path] = field(default_factory=list)
    kustomizations: list[Path] = field(default_factory=list)
    stdin: bool = False
    errors: list[Error] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)  # seen, not read, and why


def discover(paths: Sequence[str]) -> Inputs:
    """Classify every input path (files, directories, ``-`` for standard input)."""
    found = Inputs()
    for raw in paths:
        if raw == "-":
            found.stdin = True
            continue
        path = Path(raw)
        if path.is_dir():
            _walk(path, found)
        elif path.is_file():
            _classify_file(path, found, explicit=True)
        elif path.is_symlink():
            found.errors.append(Error(raw, None, DANGLING))
        elif path.exists():
            found.errors.append(Error(raw, None, "not a regular file (named pipe, socket, device): not read"))
        else:
            found.errors.append(Error(raw, None, "no such file or directory"))
    return found


def _walk(root: Path, found: Inputs) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if "Chart.yaml" in filenames:
            found.helm_charts.append(d)
            dirnames[:] = []  # templates are Go templates, not YAML
            continue
        if any(k in filenames for k in KUSTOMIZATION_FILES):
            found.kustomizations.append(d)
            dirnames[:] = [n for n in dirnames if n not in SKIP_DIRS and not n.startswith(".")]
            # Patches and bases beside a kustomization are fragments, not objects to scan alone.
            filenames = [f for f in filenames if f.endswith(".tf")]
        dirnames[:] = sorted(n for n in dirnames if n not in SKIP_DIRS and not n.startswith("."))
        for name in sorted(filenames):
            path = d / name
            if not path.is_file():  # only regular files are read: a FIFO named pipe.yaml would block
                if path.is_symlink() and not path.exists() and name.endswith(SCANNED_SUFFIXES):
                    found.errors.append(Error(str(path), None, DANGLING))
                continue
            _classify_file(path, found, explicit=False)


def _classify_file(path: Path, found: Inputs, explicit: bool) -> None:
    name = path.name
    if name.endswith(".tf"):
        found.tf_files.append(path)
    elif name.endswith(".json"):
        if _is_plan_file(path):
            found.plan_files.append(path)
        elif explicit or not name.endswith(".tfvars.json"):
            found.manifest_files.append(path)
    elif name.endswith(YAML_SUFFIXES):
        if name == "Chart.yaml" and explicit:
            found.helm_charts.append(path.parent)
        elif name in KUSTOMIZATION_FILES and explicit:
            found.kustomizations.append(path.parent)
        else:
            found.manifest_files.append(path)
    elif explicit and not name.endswith((".tfvars",)):
        found.errors.append(Error(str(path), None, "unsupported file type (expected .tf, .json, .yaml)"))


def _is_plan_file(path: Path) -> bool:
    try:
        head = limits.read_regular(path)[:4096] if path.stat().st_size <= 4096 else _head(path)
    except (OSError, limits.LimitExceeded):
        return False
    return b'"format_version"' in head and (b'"planned_values"' in head or b'"terraform_version"' in head) \
        or path.name.endswith((".tfplan.json", "plan.json"))


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:  # a regular file: discovery read only those
        return fh.read(4096)


def load_resources(inputs: Inputs, options: ScanOptions,
                   coverage: Coverage | None = None) -> tuple[list[Resource], list[Error]]:
    """Run every source over the discovered inputs (module calls are recorded in *coverage*)."""
    resources: list[Resource] = []
    errors: list[Error] = list(inputs.errors)
    limits.reset_charges()
    if inputs.tf_files:
        from soc2infra._core.sources.terraform import load_terraform

        rs, errs = load_terraform(inputs.tf_files, options.var_files, jobs=options.jobs,
                                  download=options.download_external_modules,
                                  coverage=coverage.modules if coverage is not None else None)
        resources += rs
        errors += errs
    if inputs.plan_files or inputs.stdin:
        from soc2infra._core.sources.terraform_plan import load_plan_text

        for p in inputs.plan_files:
            with budgeted(str(p), errors) as out:
                text, err = _read_text(p)
                if err:
                    errors.append(err)
                    continue
                rs, errs = load_plan_text(text, str(p))
                _attach_config_locations(rs, p.parent)
                out.resources, out.errors = rs, errs
            resources += out.resources
            errors += out.errors
    if inputs.stdin:
        with budgeted("<stdin>", errors) as out:
            out.resources, out.errors = _load_stdin(options)
        resources += out.resources
        errors += out.errors
    if inputs.manifest_files or inputs.helm_charts or inputs.kustomizations:
        rs, errs = _load_kubernetes(inputs, options, coverage)
        resources += rs
        errors += errs
    return bounded(resources, errors)


def bounded(resources: list[Resource], errors: list[Error]) -> tuple[list[Resource], list[Error]]:
    """Drop resources nested deeper than ``limits.depth`` (the rules walk values recursively)
    and those past ``limits.instances_per_scan``, each refusal a located error."""
    lim = limits.current()
    kept: list[Resource] = []
    for res in resources:
        try:
            limits.check_depth(res.attributes, lim.depth)
        except limits.LimitExceeded as exc:
            errors.append(Error(res.file, res.line, f"{res.address}: {exc}"))
            continue
        kept.append(res)
    if len(kept) > lim.instances_per_scan:
        extra = kept[lim.instances_per_scan]
        errors.append(Error(extra.file, extra.line, f"more than {lim.instances_per_scan:,} resource "
                            "instances in this scan (limits.instances_per_scan): the rest are not evaluated"))
        kept = kept[:lim.instances_per_scan]
    return kept, errors


def _read_text(path: Path) -> tuple[str, Error | None]:
    try:
        data = limits.read_regular(path)
    except limits.LimitExceeded as exc:
        return "", Error(str(path), None, str(exc))
    except OSError as exc:
        return "", Error(str(path), None, f"cannot read file: {exc.strerror or exc}")
    return _decode(data, str(path))


def _decode(data: bytes, name: str) -> tuple[str, Error | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return "", Error(name, data.count(b"\n", 0, exc.start) + 1, "not UTF-8 text (binary file?)")


def _load_stdin(options: ScanOptions) -> tuple[list[Resource], list[Error]]:
    limit = limits.current().file_bytes
    stream = getattr(sys.stdin, "buffer", None)  # bytes, so bad UTF-8 is a located error, not a crash
    raw = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode("utf-8")
    if len(raw) > limit:
        return [], [Error("<stdin>", None, f"standard input is over the limit of {limit:,} bytes "
                          "(limits.file_bytes)")]
    text, error = _decode(raw, "<stdin>")
    if error is not None:
        return [], [error]
    stripped = text.lstrip()
    if stripped.startswith("{"):
        from soc2infra._core.sources.terraform_plan import load_plan_text, looks_like_plan

        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [Error("<stdin>", exc.lineno, f"invalid JSON: {exc.msg}")]
        except RecursionError:
            deep = limits.too_deep(text, "JSON")
            return [], [Error("<stdin>", deep.line, str(deep))]
        if looks_like_plan(doc):
            resources, errors = load_plan_text(text, "<stdin>")
            # `terraform show -json plan.out | soc2infra scan -` runs in the configuration's
            # directory: its .tf files give locations and inline waivers.
            _attach_config_locations(resources, Path.cwd())
            return resources, errors
    from soc2infra._core.sources import kubernetes

    return kubernetes.load_manifest_text(text, "<stdin>")


def _attach_config_locations(resources: list[Resource], config_dir: Path) -> None:
    """Point plan resources at the ``.tf`` block that declares them (file, line and the
    inline waivers written there), when the configuration sits beside the plan."""
    tf_files = [p for p in sorted(config_dir.glob("*.tf")) if limits.is_regular(p)]
    if not tf_files or not resources:
        return
    from soc2infra._core.sources.terraform import load_terraform
    from soc2infra._core.sources.terraform_plan import strip_indexes

    config, _errors = load_terraform(tf_files)
    by_base = {strip_indexes(r.address): r for r in config}
    for res in resources:
        src = by_base.get(strip_indexes(res.address))
        if src is not None:
            res.meta["plan_file"] = res.file
            res.file, res.line, res.end_line = src.file, src.line, src.end_line
            res.inline_waivers = src.inline_waivers


def _load_kubernetes(inputs: Inputs, options: ScanOptions,
                     coverage: Coverage | None = None) -> tuple[list[Resource], list[Error]]:
    from soc2infra._core.sources import kubernetes

    resources: list[Resource] = []
    errors: list[Error] = []
    for p in inputs.manifest_files:
        with budgeted(str(p), errors) as out:
            text, err = _read_text(p)
            if err:
                errors.append(err)
                continue
            if not kubernetes.looks_like_kubernetes(p, text):
                if coverage is not None:
                    coverage.skipped_files.append(SkippedFile(str(p), kubernetes.not_a_manifest_reason(text)))
                continue
            out.resources, out.errors = kubernetes.load_manifest_text(text, str(p))
        resources += out.resources
        errors += out.errors
    for chart in inputs.helm_charts:
        values = [v for v in options.helm_values if v.exists()]
        with budgeted(str(chart), errors) as out:
            out.resources, out.errors = kubernetes.render_helm_chart(chart, values, options.kube_version)
        resources += out.resources
        errors += out.errors
    # A base rendered through its overlay is not rendered again on its own (it would be
    # reported twice, and in the namespace the overlay replaces).
    bases: set[Path] = set()
    for k in inputs.kustomizations:
        bases |= kubernetes.kustomize_bases(k)
    for k in inputs.kustomizations:
        if k.resolve() in bases:
            continue
        with budgeted(str(k), errors) as out:
            out.resources, out.errors = kubernetes.render_kustomize(k)
        resources += out.resources
        errors += out.errors
    return resources, errors


@dataclass(slots=True)
class _Loaded:
    resources: list[Resource] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)


@contextmanager
def budgeted(file: str, errors: list[Error]) -> Iterator[_Loaded]:
    """Load one input within its share of ``limits.seconds_per_file``: past it, what the
    file gave is dropped and a located error says so; the scan goes on with the next file."""
    out = _Loaded()
    try:
        with limits.file_budget(file):
            yield out
    except limits.OutOfTime as exc:
        out.resources, out.errors = [], []
        errors.append(Error(exc.file or file, exc.line, str(exc)))


def _relative_to(base: Path) -> Callable[[str], str]:
    base_s = str(base.resolve()) + os.sep

    def rel(p: str) -> str:
        if p == base_s[:-1]:
            return "."
        return p[len(base_s):] if p.startswith(base_s) else p

    return rel


def _relativize(resources: Iterable[Resource], errors: list[Error], base: Path) -> list[Error]:
    rel = _relative_to(base)
    for r in resources:
        r.file = rel(r.file)
        call = r.meta.get("module_call")
        if isinstance(call, dict):
            r.meta["module_call"] = {**call, "file": rel(str(call.get("file", "")))}
    return [Error(rel(e.file), e.line, e.message) for e in errors]


def relativize_result(resources: Iterable[Resource], errors: list[Error], coverage: Coverage,
                      base: Path) -> list[Error]:
    """Make every path in a unit's resources, errors and coverage relative to *base*."""
    out = _relativize(resources, errors, base)
    _relativize_coverage(coverage, base)
    limits.relabel_charges(_relative_to(base))
    return out


def _relativize_coverage(coverage: Coverage, base: Path) -> None:
    rel = _relative_to(base)
    for m in coverage.modules:
        m.file, m.root = rel(m.file), rel(m.root)
    coverage.skipped_files = [SkippedFile(rel(f.path), f.reason) for f in coverage.skipped_files]


def scan(paths: Sequence[str], pack: PolicyPack, options: ScanOptions | None = None) -> ScanResult:
    """Scan *paths* with *pack*: the function behind ``soc2infra scan``."""
    options = options or ScanOptions()
    with limits.using(options.limits or limits.current()):
        inputs = discover(paths)
        coverage = Coverage(skipped_files=list(inputs.skipped))
        resources, errors = load_resources(inputs, options, coverage)
    if any(r.kind == "kubernetes" for r in resources):
        from soc2infra._core.sources import kubernetes

        resources += kubernetes.namespace_resources(resources)
    errors = relativize_result(resources, errors, coverage, options.base_dir or Path.cwd())
    result = evaluate_resources(resources, pack, errors)
    result.coverage = coverage
    return result


def evaluate_resources(resources: list[Resource], pack: PolicyPack,
                       errors: list[Error] | None = None) -> ScanResult:
    """Evaluate already-loaded resources and apply inline waivers."""
    from soc2infra._core.waivers import apply_inline_waivers, inline_waiver_errors

    errors = list(errors or [])
    findings, passes = _evaluate_per_file(resources, pack, errors)
    warnings = apply_inline_waivers(findings)
    errors += inline_waiver_errors(resources)
    return ScanResult(resources=resources, findings=findings, errors=errors, warnings=warnings,
                      rules_evaluated=len([r for r in pack.rules if r.enabled]), pack_digest=pack.digest,
                      passes=passes)


def _evaluate_per_file(resources: list[Resource], pack: PolicyPack,
                       errors: list[Error]) -> tuple[list[Finding], list[tuple[str, str]]]:
    """:func:`evaluate`, each file's resources within what is left of the file's time budget
    (``limits.seconds_per_file``, shared with its parsing); a file past it loses its findings
    and gets a located error instead. Cross-resource rules still see the whole scope."""
    findings: list[Finding] = []
    passes: list[tuple[str, str]] = []
    scopes: dict[str, list[Resource]] = {}
    for res in resources:
        scopes.setdefault(scope_of(res), []).append(res)
    for group in scopes.values():
        index = ResourceIndex(group)
        by_file: dict[str, list[Resource]] = {}
        for res in group:
            by_file.setdefault(res.file, []).append(res)
        for file, own in by_file.items():
            try:
                with limits.file_budget(file, "its resources are not evaluated"):
                    f, p = evaluate(group, pack, index, only=own)
            except limits.OutOfTime as exc:
                errors.append(Error(file, own[0].line, str(exc)))
                continue
            findings += f
            passes += p
    return findings, passes
