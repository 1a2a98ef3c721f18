"""Compare soc2infra and checkov verdicts per resource on the pack's own AWS or Kubernetes examples.

    python bench/checkov_disagreements.py OUT_DIR [CHECKOV] [CATALOG_JSON] [aws|kubernetes]

Writes every AWS rule example (terraform) into OUT_DIR/<rule>/<n>/main.tf, runs checkov
(--framework terraform) and soc2infra on each, and, for every catalog check that names checkov
ids (policies/catalog-index.yaml has no cross-references, so the ids are listed here from the
catalog's xref field via --catalog), compares the verdict on each resource both tools evaluate.
Prints one JSON line per disagreement and a summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan


def _address_key(address: str) -> str:
    """Kubernetes addresses (group/version/Kind/ns/name) as checkov names them (Kind.ns.name)."""
    parts = address.split("/")
    return ".".join(parts[-3:]) if len(parts) >= 4 else address


def main(out: Path, checkov: str, catalog_json: Path, provider: str = "aws") -> None:
    """Write the trees, run both tools, print the disagreements."""
    k8s = provider == "kubernetes"
    source, prefix, framework = ("kubernetes", "CKV_K8S_", "kubernetes") if k8s else ("terraform", "CKV_AWS_", "terraform")
    pack = load_pack()
    catalog = {c["id"]: c for c in json.loads(catalog_json.read_text())["checks"]}
    dirs: list[tuple[str, Path]] = []
    for rule in pack.rules:
        if not rule.enabled or not rule.targets or rule.targets[0].startswith("aws_") == k8s or not rule.id.startswith(
                "SOC2-K8S-" if k8s else "SOC2-"):
            continue
        for i, ex in enumerate(rule.examples):
            if ex.source != source:
                continue
            d = out / rule.id / str(i)
            d.mkdir(parents=True, exist_ok=True)
            (d / ("manifest.yaml" if k8s else "main.tf")).write_text(ex.text)
            for name, text in ex.files.items():
                (d / name).parent.mkdir(parents=True, exist_ok=True)
                (d / name).write_text(text)
            dirs.append((rule.id, d))
    ck_by_rule = {r.id: {ck for cid in r.catalog for ck in catalog.get(cid, {}).get("xref", {}).get("checkov", [])
                         if ck.startswith(prefix)} for r in pack.rules}  # CKV2 graph checks excluded
    all_ids = sorted({c for ids in ck_by_rule.values() for c in ids})
    # One checkov run over every example directory; results are mapped back by file path.
    proc = subprocess.run([checkov, "-d", str(out), "--framework", framework, "-o", "json", "--quiet",
                           "--compact", "--skip-download", "--check", ",".join(all_ids)],
                          capture_output=True, text=True, check=False)
    report = json.loads(proc.stdout or "{}")
    reports = report if isinstance(report, list) else [report]
    ck: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)  # (dir, resource) -> check -> verdict
    for rep in reports:
        results = rep.get("results", {}) if isinstance(rep, dict) else {}
        for status, key in (("pass", "passed_checks"), ("fail", "failed_checks")):
            for c in results.get(key, []):
                folder = str(Path(str(c.get("file_path", ""))).parent).lstrip("/")
                ck[(folder, c.get("resource", ""))][c.get("check_id", "")] = status
    disagreements, compared = [], 0
    for rule_id, d in dirs:
        rule = next(r for r in pack.rules if r.id == rule_id)
        ck_ids = ck_by_rule.get(rule_id, set())
        if not ck_ids:
            continue
        folder = str(d.relative_to(out))
        result = scan([str(d)], pack)
        ours: dict[str, str] = defaultdict(lambda: "pass")
        evaluated = {r.address for r in result.resources if r.type in rule.targets}
        for f in result.findings:
            if f.rule_id == rule_id:
                ours[f.resource.address] = f.status
        for addr in sorted(evaluated):
            key = _address_key(addr) if k8s else addr
            verdicts = {cid: v for cid, v in ck.get((folder, key), {}).items() if cid in ck_ids}
            if not verdicts:
                continue
            compared += 1
            theirs = "fail" if "fail" in verdicts.values() else "pass"
            if ours[addr] != theirs:
                disagreements.append({"rule": rule_id, "resource": addr, "example": folder,
                                      "soc2infra": ours[addr], "checkov": verdicts})
    for d in disagreements:
        print(json.dumps(d))
    print(json.dumps({"compared": compared, "disagreements": len(disagreements)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "checkov",
         Path(sys.argv[3]) if len(sys.argv) > 3 else Path("../shared/docs/soc2-catalog.json"),
         sys.argv[4] if len(sys.argv) > 4 else "aws")
