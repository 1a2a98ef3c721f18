"""Terraform HCL source: find root modules, parse their files, evaluate them to resources.

Parsing is the expensive part (python-hcl2's Lark grammar), so parsed files are cached by
content hash and large trees are parsed in parallel worker processes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soc2infra._cogs import limits
from soc2infra._cogs.model import Error, ModuleRecord, Resource
from soc2infra._core.sources import cache, reads
from soc2infra._core.sources.hcl_ast import Body, HclSyntaxError, parse_hcl
from soc2infra._core.sources.hcl_fast import available as fast_parser_available
from soc2infra._core.sources.hcl_fast import parse_hcl_fast
from soc2infra._core.sources.terraform_eval import (
    Env,
    ModuleDef,
    ModuleInstance,
    _Tracked,
    collect_resources,
    evaluate,
    variable_default,
    variable_value,
)
from soc2infra._core.sources.terraform_modules import ModuleFetcher, ModuleResolver, default_module_cache

PARSER_VERSION = "hcl-ast-2"
_IGNORE_RE = re.compile(r"(?:#|//)\s*soc2infra:ignore\s+([A-Za-z0-9_.*-]+)\s*(.*)$")
_COMMENT_LINE = re.compile(r"^\s*(#|//|/\*|\*)")
PARALLEL_THRESHOLD = 48  # files; below this, process start-up costs more than it saves


@dataclass(slots=True)
class ParsedFile:
    """One parsed ``.tf``/``.tfvars`` file: its body, or the error that stopped parsing."""

    path: str
    body: Body | None
    waivers: dict[int, tuple[tuple[str, str, int], ...]] = field(default_factory=dict)
    error: Error | None = None


def parse_text(text: str, path: str, fast: bool | None = None) -> ParsedFile:
    """Parse one file's text (no I/O); errors become a located :class:`Error`.

    The tree-sitter front end is used when available (about 6x faster); it defers to the
    reference parser (python-hcl2) for errors and constructs it does not translate.
    """
    use_fast = fast_parser_available() if fast is None else fast
    try:
        body = parse_hcl_fast(text) if use_fast else parse_hcl(text)
    except HclSyntaxError as exc:
        return ParsedFile(path, None, error=Error(path, exc.line, str(exc)))
    except RecursionError:
        deep = limits.too_deep(text, "expression")
        return ParsedFile(path, None, error=Error(path, deep.line, f"{deep} (expression nesting too deep)"))
    return ParsedFile(path, body, _waivers_by_block(text, body))


def _waivers_by_block(text: str, body: Body) -> dict[int, tuple[tuple[str, str, int], ...]]:
    """Map each top-level block's start line to the ``soc2infra:ignore`` comments that
    apply to it: inside the block, or in the comment lines directly above it."""
    if "soc2infra:ignore" not in text:
        return {}
    lines = text.split("\n")
    found: list[tuple[int, str, str]] = []
    for no, line in enumerate(lines, 1):
        m = _IGNORE_RE.search(line)
        if m:
            found.append((no, m.group(1), m.group(2).strip()))
    out: dict[int, list[tuple[str, str, int]]] = {}
    for no, rule, reason in found:
        for blk in body.blocks:
            inside = blk.line <= no <= blk.end_line
            above = no < blk.line and all(
                _COMMENT_LINE.match(lines[i - 1]) or not lines[i - 1].strip() for i in range(no, blk.line))
            if inside or above:
                out.setdefault(blk.line, []).append((rule, reason, no))
                break
    return {k: tuple(v) for k, v in out.items()}


def _read_cached(path: str) -> tuple[ParsedFile | None, bytes | None, str | None]:
    """(cached result, file bytes, cache key): the result is set on a cache hit or a read error."""
    try:
        data = limits.read_regular(path)
    except limits.LimitExceeded as exc:
        return ParsedFile(path, None, error=Error(path, None, str(exc))), None, None
    except OSError as exc:
        return ParsedFile(path, None, error=Error(path, None, f"cannot read file: {exc.strerror or exc}")), \
            None, None
    key = cache.content_key("tf", data + path.encode(), PARSER_VERSION)
    hit = cache.load(key)
    return (hit if isinstance(hit, ParsedFile) else None), data, key


def _parse_bytes(path: str, data: bytes, key: str | None) -> ParsedFile:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        parsed = ParsedFile(path, None, error=Error(path, line, "not UTF-8 text (binary file?)"))
    else:
        fast = fast_parser_available()  # its import and set-up are not this file's time
        try:
            with limits.file_budget(path):
                parsed = parse_text(text, path, fast)
        except limits.OutOfTime as exc:  # not cached: how long a parse takes depends on the machine
            if exc.file != path:
                raise  # the enclosing budget (a plan's) ran out, not this file's
            return ParsedFile(path, None, error=Error(path, exc.line, str(exc)))
    if key is not None:
        cache.store(key, parsed)
    return parsed


def _parse_path(path: str) -> ParsedFile:
    cached, data, key = _read_cached(path)
    if cached is not None or data is None:
        return cached  # type: ignore[return-value]
    return _parse_bytes(path, data, key)


def parse_files(paths: list[str], jobs: int | None = None) -> dict[str, ParsedFile]:
    """Parse many files: cache hits are loaded here, misses are parsed in parallel worker
    processes when there are enough of them to pay for the workers' start-up."""
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    results: dict[str, ParsedFile] = {}
    misses: list[tuple[str, bytes, str | None]] = []
    for p in paths:
        cached, data, key = _read_cached(p)
        if cached is not None:
            results[p] = cached
        elif data is not None:
            misses.append((p, data, key))
    if jobs <= 1 or len(misses) < PARALLEL_THRESHOLD:
        for p, data, key in misses:
            results[p] = _parse_bytes(p, data, key)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            names = [m[0] for m in misses]
            parsed = pool.map(_parse_path, names, chunksize=max(1, len(names) // (jobs * 8)))
            results.update(zip(names, parsed, strict=True))
    return {p: results[p] for p in paths}


class TerraformLoader:
    """Loads module directories (each parsed once) and evaluates root modules."""

    def __init__(self, parsed: dict[str, ParsedFile], errors: list[Error]) -> None:
        self.parsed = parsed
        self.errors = errors
        self._modules: dict[Path, ModuleDef | None] = {}

    def module(self, directory: Path) -> ModuleDef | None:
        """The parsed module in *directory* (None when it has no ``.tf`` files)."""
        directory = directory.resolve()
        reads.note_listing(directory, "*.tf")
        if directory in self._modules:
            mdef = self._modules[directory]
            for f in mdef.files if mdef is not None else ():
                reads.note(f)  # every unit using a module depends on its files, not only the first
            return mdef
        files = module_files(directory)
        for f in files:
            reads.note(f)
        missing = [f for f in files if f not in self.parsed]
        if missing:
            self.parsed.update(parse_files(missing))
            self.errors.extend(self.parsed[f].error for f in missing if self.parsed[f].error)  # type: ignore[misc]
        if not files:
            self._modules[directory] = None
            return None
        mdef = ModuleDef(directory)
        for f in files:
            pf = self.parsed[f]
            if pf.body is not None:
                mdef.add_file(f, pf.body, pf.waivers)
        self.errors.extend(duplicate_blocks(mdef))
        self._modules[directory] = mdef
        return mdef


def module_files(directory: Path) -> list[str]:
    """The ``.tf`` files of a module directory: regular files only (a directory named
    ``x.tf`` is not one; a dangling symlink is reported by discovery, under its own path)."""
    if not directory.is_dir():
        return []
    return sorted(str(p) for p in directory.glob("*.tf") if limits.is_regular(p))


def duplicate_blocks(mdef: ModuleDef) -> list[Error]:
    """Resources, data sources and module calls declared twice in one module: Terraform refuses
    such a configuration, and silently keeping one would let a file's name decide the verdict."""
    errors: list[Error] = []
    seen: dict[str, tuple[str, int]] = {}
    blocks = [("", b, f) for b, f in mdef.resources] + [("data.", b, f) for b, f in mdef.data] \
        + [("module.", b, f) for b, f in mdef.modules]
    for prefix, blk, file in blocks:
        address = prefix + ".".join(blk.labels)
        first = seen.setdefault(address, (file, blk.line))
        if first != (file, blk.line):
            where = f"{Path(first[0]).name}:{first[1]}"
            errors.append(Error(file, blk.line, f"duplicate {address}: already declared at {where} "
                                "(Terraform refuses a module that declares an address twice)"))
    return errors


def local_module_dirs(mdef: ModuleDef) -> set[Path]:
    """Directories this module calls as local child modules (``source = "./x"``)."""
    out: set[Path] = set()
    for blk, _file in mdef.modules:
        src = blk.body.attrs.get("source")
        if src and src[0][0] == "lit" and isinstance(src[0][1], str) and src[0][1].startswith(("./", "../")):
            out.add((mdef.dir / src[0][1]).resolve())
    return out


def _tfvars_values(loader: TerraformLoader, files: list[Path]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in files:
        reads.note(f)
        if f.suffix == ".json":
            try:
                data = json.loads(limits.read_regular(f).decode("utf-8"))
            except limits.LimitExceeded as exc:
                loader.errors.append(Error(str(f), None, str(exc)))
                continue
            except (OSError, ValueError, RecursionError) as exc:
                loader.errors.append(Error(str(f), None, f"invalid variables file: {exc}"))
                continue
            if isinstance(data, dict):
                values.update(data)
            continue
        pf = _parse_path(str(f))
        if pf.error is not None:
            loader.errors.append(pf.error)
            continue
        assert pf.body is not None
        from soc2infra._core.sources.terraform_eval import _EMPTY_INSTANCE

        for name, (expr, _line) in pf.body.attrs.items():
            values[name] = evaluate(expr, Env(_EMPTY_INSTANCE))
    return values


def root_inputs(mdef: ModuleDef, loader: TerraformLoader, var_files: Iterable[Path]) -> dict[str, _Tracked]:
    """Root variable values: defaults < terraform.tfvars < *.auto.tfvars < --var-file."""
    auto = [mdef.dir / "terraform.tfvars", mdef.dir / "terraform.tfvars.json"]
    auto = [p for p in auto if p.is_file()]
    auto += sorted(mdef.dir.glob("*.auto.tfvars")) + sorted(mdef.dir.glob("*.auto.tfvars.json"))
    for pattern in ("terraform.tfvars*", "*.auto.tfvars*"):
        reads.note_listing(mdef.dir, pattern)
    values = _tfvars_values(loader, auto + list(var_files))
    inputs: dict[str, _Tracked] = {}
    for name, block in mdef.variables.items():
        if name in values:
            inputs[name] = variable_value(block, _Tracked(values[name], frozenset()))
        else:
            default = variable_default(block)
            if default is not None:
                inputs[name] = default
    return inputs


def load_terraform(tf_files: list[Path], var_files: Iterable[Path] = (), base: Path | None = None,
                   jobs: int | None = None, download: bool = False,
                   coverage: list[ModuleRecord] | None = None) -> tuple[list[Resource], list[Error]]:
    """Resources of every root module among the directories holding *tf_files*.

    A directory that another scanned directory calls as a local module is not a root:
    its resources appear once, under the caller's module address, with real inputs.
    Non-local modules are read from where ``terraform init`` put them, or fetched when
    *download* is set; every module call's fate is appended to *coverage*.
    """
    fetcher = ModuleFetcher(default_module_cache()) if download else None
    errors: list[Error] = []
    paths = sorted({str(p.resolve()) for p in tf_files})
    parsed = parse_files(paths, jobs)
    errors.extend(pf.error for pf in parsed.values() if pf.error is not None)
    loader = TerraformLoader(parsed, errors)
    dirs = sorted({Path(p).parent for p in paths})
    mdefs = {d: loader.module(d) for d in dirs}
    children: set[Path] = set()
    for mdef in mdefs.values():
        if mdef is not None:
            children |= local_module_dirs(mdef)
    resources: list[Resource] = []
    var_files = list(var_files)
    for d, mdef in mdefs.items():
        if mdef is None or d in children:
            continue
        budget = limits.current().instances_per_scan - len(resources)
        seconds = limits.current().seconds_per_file * max(1, len(module_files(d)))
        resolver = ModuleResolver(d, fetcher)
        try:
            with limits.deadline(seconds):
                root = ModuleInstance(mdef, "", root_inputs(mdef, loader, var_files), loader.module, d,
                                      resolver=resolver)
                found = collect_resources(root, errors, budget)
        except limits.LimitExceeded as exc:  # in the root's inputs (variable defaults, tfvars)
            errors.append(Error(exc.file or str(d), exc.line, str(exc)))
            continue
        except RecursionError:
            errors.append(Error(str(d), None, "module evaluation recursed too deeply"))
            continue
        finally:
            if coverage is not None:
                for rec in resolver.records:
                    rec.root = str(d)
                coverage.extend(resolver.records)
        for res in found:
            res.meta["root"] = str(d)
            res.meta["scope"] = f"terraform:{d}"
        resources.extend(found)
    return resources, errors
