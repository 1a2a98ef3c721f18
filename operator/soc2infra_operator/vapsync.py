"""``enforcement: vap | hybrid``: the operator installs the exported ValidatingAdmissionPolicies
and keeps them in sync with the pack and the waivers.

- :func:`enforcement_plan` splits the pack: rules with a CEL form go to policies, the rest stay
  on the webhook (``hybrid``) or are left to the background audit (``vap``);
- :func:`webhook_pack` is the pack the webhook still decides with (the CEL rules disabled, so a
  request is never judged twice), :func:`webhook_kinds` the kinds it still registers for;
- :func:`desired_objects` renders the policies and bindings from the pack, the effective actions
  (overrides and mode applied, as at the webhook), the webhook's scope and the live SOC2Waivers;
- :func:`sync` makes the cluster match: create or update what differs, delete managed policies
  that are no longer wanted. It runs at start-up, after every waiver change and on every
  ``resync_seconds`` tick, which also drops waivers that expired (CEL has no clock).

Everything except :func:`sync` (which talks to the API server through ``kube.Kube``) is pure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from soc2infra import PolicyPack
from soc2infra.export.vap import (
    MANAGED_LABEL,
    MANAGED_VALUE,
    ExportScope,
    RulePlan,
    WaiverScope,
    export_objects,
    plan_pack,
)
from soc2infra_operator.settings import OperatorSettings
from soc2infra_operator.waivers import ClusterWaiver

logger = logging.getLogger(__name__)

ENFORCEMENTS = ("webhook", "vap", "hybrid")
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
HASH_ANNOTATION = "soc2infra.io/spec-hash"
PLURALS = {"ValidatingAdmissionPolicy": "validatingadmissionpolicies",
           "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}


@dataclass(frozen=True, slots=True)
class EnforcementPlan:
    """Which rules the API server enforces (CEL) and which the webhook keeps."""

    plans: tuple[RulePlan, ...]

    @property
    def cel_rules(self) -> frozenset[str]:
        """Rule ids enforced by ValidatingAdmissionPolicies."""
        return frozenset(p.rule.id for p in self.plans if p.cel)


def enforcement_plan(pack: PolicyPack, enforcement: str) -> EnforcementPlan:
    """The CEL plans of the pack's Kubernetes rules (none in ``webhook`` mode)."""
    if enforcement == "webhook":
        return EnforcementPlan(())
    return EnforcementPlan(tuple(plan_pack(pack)))


def webhook_pack(pack: PolicyPack, cel_rules: frozenset[str]) -> PolicyPack:
    """A copy of *pack* with the CEL-enforced rules disabled: what the webhook still decides."""
    if not cel_rules:
        return pack
    rules = [dataclasses.replace(r, enabled=False) if r.id in cel_rules else r for r in pack.rules]
    return PolicyPack(rules=rules, controls=pack.controls, digest=pack.digest)


def webhook_kinds(kinds: Sequence[str], pack: PolicyPack, cel_rules: frozenset[str],
                  enforcement: str) -> list[str]:
    """The kinds the webhook registers for: in ``vap`` mode none, in ``hybrid`` mode those a
    rule without a CEL form targets."""
    if enforcement == "webhook":
        return list(kinds)
    if enforcement == "vap":
        return []
    needed = {t for r in pack.rules if r.enabled and r.id not in cel_rules for t in r.targets}
    return [k for k in kinds if k in needed]


def export_scope(settings: OperatorSettings) -> ExportScope:
    """The webhook's scope, for the policies."""
    s = settings.scope
    return ExportScope(excluded_namespaces=s.all_excluded_namespaces, excluded_usernames=s.excluded_usernames,
                       trusted_controllers=s.trusted_controllers, opt_out_key=s.opt_out_key)


def cluster_waiver_scopes(waivers: Iterable[ClusterWaiver], cluster_namespace: str,
                          today: date) -> list[WaiverScope]:
    """Live SOC2Waivers as :class:`WaiverScope`: what ``waivers.entries_for`` + ``match_entry``
    exempt at the webhook, written as address globs, labels and the opt-out requirement."""
    out: list[WaiverScope] = []
    for w in waivers:
        if w.problem or (w.expires is not None and w.expires < today):
            continue
        kind, name = w.kind or "*", w.object_name or "*"
        common = {"rule": w.rule, "labels": w.match_labels, "opt_out": w.opt_out, "origin": w.location}
        if w.cluster:
            # SOC2ClusterWaiver: cluster-scoped objects, or the namespaces it picks by name or label.
            if not w.namespaces and not w.namespace_labels:
                out.append(WaiverScope(address=f"*/{kind}/{name}", cluster_only=True, **common))  # type: ignore[arg-type]
            for glob in w.namespaces:
                out.append(WaiverScope(address=f"*/{kind}/{glob}/{name}", **common))  # type: ignore[arg-type]
            if w.namespace_labels:
                out.append(WaiverScope(address=f"*/{kind}/*/{name}", namespace_labels=w.namespace_labels,
                                       **common))  # type: ignore[arg-type]
            continue
        out.append(WaiverScope(address=f"*/{kind}/{w.namespace}/{name}", **common))  # type: ignore[arg-type]
        if w.namespace == cluster_namespace:
            # Cluster-scoped objects are covered by waivers in the operator's own namespace.
            out.append(WaiverScope(address=f"*/{kind}/{name}", cluster_only=True, **common))  # type: ignore[arg-type]
    return out


def desired_objects(plan: EnforcementPlan, actions: Mapping[str, str], settings: OperatorSettings,
                    waivers: Iterable[ClusterWaiver], today: date, digest: str) -> list[dict[str, Any]]:
    """The policies and bindings the cluster should hold. Pure."""
    cluster_ns = settings.scope.own_namespace or "default"
    scopes = cluster_waiver_scopes(waivers, cluster_ns, today)
    return export_objects(list(plan.plans), actions=actions, scope=export_scope(settings), waivers=scopes,
                          digest=digest)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync changed."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0


def _path(kind: str, name: str | None = None) -> str:
    base = f"{ADMISSION}/{PLURALS[kind]}"
    return f"{base}/{name}" if name else base


def _hash(obj: Mapping[str, Any]) -> str:
    # The API server adds defaults to a stored spec, so the stored and wanted specs are compared
    # through a hash of what we sent, kept in an annotation.
    blob = json.dumps({"spec": obj["spec"], "labels": obj["metadata"].get("labels")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _with_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(obj["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), HASH_ANNOTATION: _hash(obj)}
    return {**obj, "metadata": meta}


def sync(kube: Any, desired: Sequence[Mapping[str, Any]]) -> SyncResult:
    """Create, update and delete the managed policies and bindings so the cluster holds exactly
    *desired*. Bindings are deleted before their policies and created after them."""
    created = updated = deleted = unchanged = 0
    wanted = {(o["kind"], o["metadata"]["name"]): _with_hash(o) for o in desired}
    selector = f"{MANAGED_LABEL}={MANAGED_VALUE}"
    for kind in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"):
        body = kube.call("GET", _path(kind), query={"labelSelector": selector})
        for item in body.get("items") or []:
            name = (item.get("metadata") or {}).get("name")
            want = wanted.get((kind, name))
            if want is None:
                kube.delete(_path(kind, name))
                deleted += 1
            elif ((item.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION) == \
                    want["metadata"]["annotations"][HASH_ANNOTATION]:
                unchanged += 1
                wanted.pop((kind, name))
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        for (k, name), obj in wanted.items():
            if k != kind:
                continue
            status, _ = kube.request("GET", _path(kind, name))
            kube.apply(_path(kind, name), obj)
            if status == 404:
                created += 1
            else:
                updated += 1
    return SyncResult(created, updated, deleted, unchanged)


async def sync_loop(kube: Any, render: Callable[[], list[dict[str, Any]]], wake: asyncio.Event,
                    interval: float) -> None:
    """Sync now, then whenever *wake* is set (pack or waiver change) and every *interval*
    seconds (waiver expiry), until cancelled. A failed round is logged and retried."""
    while True:
        wake.clear()
        try:
            result = await asyncio.to_thread(lambda: sync(kube, render()))
            if result.created or result.updated or result.deleted:
                logger.info("ValidatingAdmissionPolicies: %d created, %d updated, %d deleted, %d unchanged",
                            result.created, result.updated, result.deleted, result.unchanged)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed round must not end enforcement
            logger.exception("ValidatingAdmissionPolicy sync failed")
        try:
            await asyncio.wait_for(wake.wait(), timeout=interval)
            await asyncio.sleep(0.5)  # a burst of waiver events becomes one sync
        except TimeoutError:
            pass
