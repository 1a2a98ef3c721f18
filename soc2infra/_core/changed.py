"""Pre-commit: map changed files to the scan units that must be scanned to judge them (the
root modules that call a changed Terraform module, the chart or kustomization holding a
changed manifest)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from soc2infra._core.scan import KUSTOMIZATION_FILES, SKIP_DIRS

TF_SUFFIXES = (".tf", ".tfvars", ".tfvars.json")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_LOCAL_SOURCE_RE = re.compile(r'^\s*source\s*=\s*"(\.\.?/[^"]*)"', re.MULTILINE)


def display_path(path: Path) -> str:
    """*path* relative to the working directory when it lies below it (as reports show files)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def scan_units(files: Iterable[str], repo_root: Path) -> list[str]:
    """Map changed files to what must be scanned to judge them.

    - ``.tf`` / ``.tfvars``: the root modules whose tree holds the file's directory (the
      directory itself, or every root that calls it as a local module, transitively); the
      root's ``.tf`` files are returned, not the directory, so nested roots are not swept in.
    - a file under a Helm chart: the chart (its ``Chart.yaml``); under a kustomization: the
      kustomization file (nearest one wins).
    - any other YAML/JSON file: the file itself.

    Deleted files, files in hidden or vendored directories (``.github``, ``.terraform``,
    ``node_modules``) and dotfiles (``.pre-commit-config.yaml``) are skipped, as a directory
    scan would skip them.
    """
    root = repo_root.resolve()
    targets: dict[str, None] = {}
    tf_dirs: set[Path] = set()
    for raw in files:
        path = Path(raw)
        if not path.is_file() or _hidden(path.resolve(), root, SKIP_DIRS):
            continue
        name = path.name
        if name.endswith(TF_SUFFIXES):
            tf_dirs.add(path.resolve().parent)
        elif name.endswith(MANIFEST_SUFFIXES):
            unit = _enclosing_unit(path.resolve().parent, root, KUSTOMIZATION_FILES)
            targets[display_path(unit) if unit is not None else raw] = None
    if tf_dirs:
        for module_root in _terraform_roots(tf_dirs, root, SKIP_DIRS):
            for tf in sorted(module_root.glob("*.tf")):
                targets[display_path(tf)] = None
    return list(targets)


def _hidden(path: Path, root: Path, skip_dirs: frozenset[str]) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts[-1:]
    return any(p.startswith(".") or p in skip_dirs for p in parts)


def _enclosing_unit(start: Path, root: Path, kustomization_files: Iterable[str]) -> Path | None:
    """The nearest chart (``Chart.yaml``) or kustomization file at or above *start*, within *root*."""
    for d in (start, *start.parents):
        if (d / "Chart.yaml").is_file():
            return d / "Chart.yaml"
        for k in kustomization_files:
            if (d / k).is_file():
                return d / k
        if d == root or root not in d.parents:
            break
    return None


def _terraform_roots(dirs: Iterable[Path], repo_root: Path, skip_dirs: frozenset[str]) -> list[Path]:
    """Root modules containing *dirs*: follow ``source = "./…"`` calls upwards until a module
    nobody in the repository calls. Reads ``.tf`` text with a regex (no parsing): cheap
    enough for pre-commit even on large repositories."""
    callers: dict[Path, set[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(repo_root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs and not d.startswith(".")]
        here = Path(dirpath)
        for name in filenames:
            if not name.endswith(".tf"):
                continue
            try:
                text = (here / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for m in _LOCAL_SOURCE_RE.finditer(text):
                callers.setdefault((here / m.group(1)).resolve(), set()).add(here)
    roots: set[Path] = set()
    for start in dirs:
        seen: set[Path] = set()
        todo = [start]
        found = False
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            up = callers.get(d, set()) - {d}
            if up:
                todo.extend(up)
            else:
                roots.add(d)
                found = True
        if not found:  # a cycle of modules calling each other: scan the changed one as it is
            roots.add(start)
    return sorted(roots)
