"""``soc2infra waiver suggest``: turn admission denials into SOC2Waiver YAML to review.

The input is what a server-side dry run printed (``kubectl apply --dry-run=server`` or ``helm
install --dry-run=server`` stderr): every soc2infra denial names the object, the denying rules and
the namespace a waiver for it belongs in. The output is one ``SOC2Waiver`` per object and rule
(a ``SOC2ClusterWaiver`` for cluster-scoped objects),
with ``owner``, ``reason`` and ``expires`` left as placeholders a person must fill in — an
accepted risk is a decision with an owner, never a copy-paste. Pure text in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import yaml

# "soc2infra: DaemonSet monitoring/node-exporter violates 3 SOC 2 rules:" (no namespace: cluster scoped)
_HEAD = re.compile(r"soc2infra: (?P<kind>[A-Za-z]+) (?:(?P<ns>[a-z0-9.-]+)/)?(?P<name>[^\s/]+) "
                   r"violates \d+ SOC 2 rule")
_RULE = re.compile(r"^\s*- (?P<rule>[A-Z0-9][A-Z0-9-]+) \[")
_WHERE = re.compile(r"in namespace (?P<ns>[a-z0-9.-]+) with selector")
PLACEHOLDER_OWNER = "TODO: team or person who answers for this risk"
PLACEHOLDER_REASON = "TODO: why this is accepted, and what would remove the need"


@dataclass(frozen=True, slots=True)
class Denial:
    """One denied object: its kind, namespace (None: cluster scoped), name, rules and waiver home."""

    kind: str
    namespace: str | None
    name: str
    rules: tuple[str, ...]
    waiver_namespace: str


def parse_denials(text: str) -> list[Denial]:
    """Every soc2infra denial in *text* (kubectl/helm output); duplicates are merged, order kept."""
    out: dict[tuple[str, str | None, str], Denial] = {}
    current: re.Match[str] | None = None
    rules: list[str] = []
    home: str | None = None

    def close() -> None:
        if current is None:
            return
        key = (current["kind"], current["ns"], current["name"])
        old = out.get(key)
        merged = tuple(dict.fromkeys([*(old.rules if old else ()), *rules]))
        out[key] = Denial(key[0], key[1], key[2], merged, home or current["ns"] or "default")

    for line in text.splitlines():
        head = _HEAD.search(line)
        if head:
            close()
            current, rules, home = head, [], None
        elif current is not None and (rule := _RULE.match(line)):
            rules.append(rule["rule"])
        elif current is not None and (where := _WHERE.search(line)):
            home = where["ns"]
            close()
            current = None
    close()
    return list(out.values())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")


def suggest_waivers(denials: list[Denial], today: date | None = None, days: int = 90) -> str:
    """SOC2Waiver YAML documents for *denials*, expiring *days* from *today* (a placeholder too)."""
    expires = ((today or date.today()) + timedelta(days=days)).isoformat()
    docs = []
    for d in denials:
        for rule in d.rules:
            # Cluster-scoped objects get a SOC2ClusterWaiver: no namespace to create it in first.
            meta: dict[str, str] = {"name": _slug(f"{d.name}-{rule.removeprefix('SOC2-')}")}
            if d.namespace is not None:
                meta["namespace"] = d.waiver_namespace
            docs.append({
                "apiVersion": "soc2infra.io/v1alpha1",
                "kind": "SOC2Waiver" if d.namespace is not None else "SOC2ClusterWaiver",
                "metadata": meta,
                "spec": {"rule": rule, "selector": {"kind": d.kind, "name": d.name},
                         "reason": PLACEHOLDER_REASON, "owner": PLACEHOLDER_OWNER, "expires": expires},
            })
    return yaml.safe_dump_all(docs, sort_keys=False) if docs else ""
