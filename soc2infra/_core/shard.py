"""Split a scan across CI runners: ``soc2infra scan --shard I/N``.

The grain is the scan unit, the world a cross-resource rule looks at: a Terraform root module
together with the local modules it calls (directories linked by ``source = "./…"`` stay in one
unit), one plan file, and the Kubernetes inputs (manifests, charts and overlays are evaluated as
one cluster). Each unit goes to the shard its key hashes to, so every runner computes the same
split without talking to the others, and a unit never straddles two shards: merging the shards'
JSON results (``soc2infra merge``) gives the findings a single scan would.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

from soc2infra._core.config import ShardError, parse_shard
from soc2infra._core.scan import Inputs

__all__ = ["KUBERNETES_UNIT", "ShardError", "parse_shard", "select", "shard_of", "terraform_units"]

_LOCAL_SOURCE_RE = re.compile(r'^\s*source\s*=\s*"(\.\.?/[^"]*)"', re.MULTILINE)
KUBERNETES_UNIT = "kubernetes"


def shard_of(key: str, count: int) -> int:
    """The 1-based shard of unit *key* among *count* shards (stable across machines)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % count + 1


def _key(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def terraform_units(tf_files: list[Path]) -> dict[Path, Path]:
    """Each directory holding ``.tf`` files → the representative directory of its unit.

    Directories connected by local module calls (either way) form one unit; the representative
    is the smallest path among them, so every runner picks the same one.
    """
    dirs = sorted({p.parent.resolve() for p in tf_files})
    parent = {d: d for d in dirs}

    def find(d: Path) -> Path:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    for d in dirs:
        for f in sorted(d.glob("*.tf")):
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for src in _LOCAL_SOURCE_RE.findall(text):
                child = (d / src).resolve()
                if child in parent:
                    a, b = find(d), find(child)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    return {d: find(d) for d in dirs}


def select(inputs: Inputs, index: int, count: int, base: Path) -> Inputs:
    """The part of *inputs* that shard *index* of *count* scans."""
    if count == 1:
        return inputs
    units = terraform_units(inputs.tf_files)
    tf = [p for p in inputs.tf_files if shard_of(_key(units[p.parent.resolve()], base), count) == index]
    plans = [p for p in inputs.plan_files if shard_of(_key(p, base), count) == index]
    k8s = shard_of(KUBERNETES_UNIT, count) == index
    return replace(
        inputs, tf_files=tf, plan_files=plans,
        manifest_files=inputs.manifest_files if k8s else [],
        helm_charts=inputs.helm_charts if k8s else [],
        kustomizations=inputs.kustomizations if k8s else [],
        stdin=inputs.stdin and index == 1,
        # Discovery problems are reported once, by the first shard.
        errors=inputs.errors if index == 1 else [],
        skipped=inputs.skipped if index == 1 else [],
    )
