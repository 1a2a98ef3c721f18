"""Waivers in the cluster: the namespaced ``SOC2Waiver`` custom resource.

A SOC2Waiver accepts one rule (or a glob of rules) for the objects its selector picks in its own
namespace, with a reason, an owner, an optional ticket and an expiry date::

    apiVersion: soc2infra.io/v1alpha1
    kind: SOC2Waiver
    metadata: {name: legacy-api-root, namespace: payments}
    spec:
      rule: SOC2-K8S-POD-003
      selector: {kind: Deployment, name: legacy-api, matchLabels: {app: legacy}}
      reason: vendor image runs as root until v5 (migration planned)
      owner: payments-team@example.com
      ticket: SEC-1234
      expires: "2026-03-31"
      approvedBy: security-lead@example.com   # valid only when that user sets it (approval.py)

Each waiver becomes a :class:`soc2infra._core.waivers.WaiverEntry` whose ``resource`` is an address
pattern (``*/<kind>/<namespace>/<name>``), so the CLI's pure :func:`soc2infra._core.waivers.match_waiver`
decides rule globs, name globs and expiry exactly as it does for the waiver file: a waiver is valid
through its expiry date and stops applying the day after. Labels cannot be written in an address,
so ``matchLabels`` is checked here before the entry is built.

The opt-out label or annotation ``soc2infra.io/exempt`` on an object does nothing by itself (anyone
who can create the object could write it). A waiver with ``optOut: true`` *grants* it: such a
waiver applies only to selected objects that carry the opt-out (any value), or a
``soc2infra.io/ignore`` annotation naming the rule — delegating the decision to the namespace team
while the grant keeps an owner and an expiry. Cluster-scoped objects (ClusterRoles …) are covered by
waivers in the operator's own namespace.

``SOC2ClusterWaiver`` (cluster scoped, same spec) is for what one namespace cannot hold: it covers
cluster-scoped objects, or — with ``namespaces`` (names/globs, matched by name so the waiver can be
applied before the namespace exists) or ``namespaceSelector.matchLabels`` (the namespace's labels
as the operator last saw them) — namespaced objects in any namespace it picks.

Everything here is pure; the Kopf watch that feeds :class:`WaiverStore` lives in ``handlers.py``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from soc2infra import WaiverEntry, as_mapping, as_text
from soc2infra_operator import approval as approval_rule
from soc2infra_operator.approval import Identity

GROUP = "soc2infra.io"
VERSION = "v1alpha1"
KIND = "SOC2Waiver"
PLURAL = "soc2waivers"
CLUSTER_KIND = "SOC2ClusterWaiver"
CLUSTER_PLURAL = "soc2clusterwaivers"
IGNORE_ANNOTATION = "soc2infra.io/ignore"


@dataclass(frozen=True, slots=True)
class ClusterWaiver:
    """One SOC2Waiver, validated. ``problem`` is set when it is unusable (it then never applies)."""

    namespace: str
    name: str
    rule: str
    kind: str | None = None
    object_name: str | None = None  # glob
    match_labels: tuple[tuple[str, str], ...] = ()
    reason: str = ""
    owner: str = ""
    ticket: str | None = None
    expires: date | None = None
    opt_out: bool = False
    problem: str | None = None
    cluster: bool = False  # a SOC2ClusterWaiver (namespace is "")
    namespaces: tuple[str, ...] = ()  # cluster waivers: namespace name globs
    namespace_labels: tuple[tuple[str, str], ...] = ()  # cluster waivers: namespaceSelector.matchLabels
    approved_by: str = ""  # spec.approvedBy
    approval: str = "none"  # none | unverified | self | independent (approval_rule.approval_status)
    created_by: Identity | None = None  # from the stamps the webhook verified
    requested_by: Identity | None = None
    approver: Identity | None = None
    uid: str = ""
    resource_version: str = ""
    generation: int = 0

    @property
    def location(self) -> str:
        """How messages and evidence name this waiver."""
        if self.cluster:
            return f"SOC2ClusterWaiver {self.name}"
        return f"SOC2Waiver {self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (evidence records, audit snapshots)."""
        out: dict[str, Any] = {
            "namespace": self.namespace, "name": self.name, "rule": self.rule, "reason": self.reason,
            "owner": self.owner, "expires": self.expires.isoformat() if self.expires else None,
        }
        if self.ticket:
            out["ticket"] = self.ticket
        selector: dict[str, Any] = {k: v for k, v in (("kind", self.kind), ("name", self.object_name)) if v}
        if self.match_labels:
            selector["matchLabels"] = dict(self.match_labels)
        if selector:
            out["selector"] = selector
        if self.opt_out:
            out["optOut"] = True
        if self.cluster:
            out["cluster"] = True
            if self.namespaces:
                out["namespaces"] = list(self.namespaces)
            if self.namespace_labels:
                out["namespaceSelector"] = {"matchLabels": dict(self.namespace_labels)}
        if self.approved_by:
            out["approvedBy"] = self.approved_by
        out["approval"] = self.approval
        for key, who in (("createdBy", self.created_by), ("requestedBy", self.requested_by),
                         ("approver", self.approver)):
            if who is not None:
                out[key] = dict(who)
        if self.uid:
            out["uid"] = self.uid
            out["resourceVersion"] = self.resource_version
            out["generation"] = self.generation
        if self.problem:
            out["problem"] = self.problem
        return out

    @property
    def approved_for_entry(self) -> str | None:
        """The approver to show on suppressed findings: only a verified approval counts."""
        return self.approved_by if self.approval in ("self", "independent") else None




def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = as_text(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def waiver_from_object(obj: Any, require_independent: bool = False) -> ClusterWaiver:
    """Validate a SOC2Waiver object as received from the API; never raises.

    Missing reason, owner or expiry make the waiver unusable, as in the waiver file: an accepted
    risk nobody owns and nobody revisits is exactly what an auditor asks about. With
    *require_independent* (``waivers.require_independent_approval``) a waiver without an
    independent, verified approval is pending and unusable as well.
    """
    data = as_mapping(obj)
    meta = as_mapping(data.get("metadata"))
    spec = as_mapping(data.get("spec"))
    selector = as_mapping(spec.get("selector"))
    labels = as_mapping(selector.get("matchLabels"))
    rule = as_text(spec.get("rule"))
    expires = _parse_date(spec.get("expires"))
    problem = None
    reason, owner = as_text(spec.get("reason")), as_text(spec.get("owner"))
    for key, value in (("rule", rule), ("reason", reason), ("owner", owner)):
        if not value:
            problem = f"spec.{key} is required"
            break
    if problem is None and expires is None:
        problem = "spec.expires must be an ISO date (YYYY-MM-DD)"
    annotations = as_mapping(meta.get("annotations"))
    approver_name = as_text(spec.get("approvedBy"))
    status = approval_rule.approval_status(annotations, approver_name)
    if problem is None and require_independent and status != "independent":
        why = {"none": "awaiting approval: spec.approvedBy is not set",
               "self": "self-approved: another user must approve it",
               "unverified": f"the approval by {approver_name} is not verified (set while soc2infra was not "
                             "checking waivers): the approver sets spec.approvedBy again"}[status]
        problem = f"{why} (waivers.require_independent_approval)"
    generation = meta.get("generation")
    cluster = as_text(data.get("kind")) == CLUSTER_KIND
    listed = spec.get("namespaces")
    names: list[Any] = listed if cluster and isinstance(listed, list) else []
    ns_labels = as_mapping(as_mapping(spec.get("namespaceSelector")).get("matchLabels"))
    return ClusterWaiver(
        namespace="" if cluster else as_text(meta.get("namespace")) or "default",
        name=as_text(meta.get("name")) or "<unnamed>", cluster=cluster,
        namespaces=tuple(as_text(n) for n in names if as_text(n)),
        namespace_labels=tuple(sorted((str(k), as_text(v)) for k, v in ns_labels.items())) if cluster else (),
        rule=rule, kind=as_text(selector.get("kind")) or None,
        object_name=as_text(selector.get("name")) or None,
        match_labels=tuple(sorted((str(k), as_text(v)) for k, v in labels.items())),
        reason=reason, owner=owner, ticket=as_text(spec.get("ticket")) or None,
        expires=expires, opt_out=spec.get("optOut") is True, problem=problem,
        approved_by=approver_name, approval=status,
        created_by=approval_rule.decode(annotations.get(approval_rule.CREATED_BY)),
        requested_by=approval_rule.decode(annotations.get(approval_rule.REQUESTED_BY)),
        approver=approval_rule.decode(annotations.get(approval_rule.APPROVED_BY)),
        uid=as_text(meta.get("uid")), resource_version=as_text(meta.get("resourceVersion")),
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
    )


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What waiver selection needs to know about the object under review."""

    address: str
    kind: str
    namespace: str | None  # None: cluster scoped
    name: str
    labels: Mapping[str, str]
    opted_out: bool  # carries the opt-out label or annotation
    ignore_rules: tuple[str, ...] = ()  # rule ids (globs) named in a soc2infra.io/ignore annotation
    namespace_labels: Mapping[str, str] = field(default_factory=dict)  # its namespace's, when known


def object_facts(obj: Any, address: str, kind: str, namespace: str | None, name: str,
                 opt_out_key: str, ignore_rules: Iterable[str] = (),
                 namespace_labels: Mapping[str, str] | None = None) -> ObjectFacts:
    """Collect :class:`ObjectFacts` from a raw object; never raises."""
    meta = as_mapping(as_mapping(obj).get("metadata"))
    labels = {str(k): as_text(v) for k, v in as_mapping(meta.get("labels")).items()}
    annotations = as_mapping(meta.get("annotations"))
    opted = opt_out_key in labels or opt_out_key in annotations
    return ObjectFacts(address=address, kind=kind, namespace=namespace, name=name, labels=labels,
                       opted_out=opted, ignore_rules=tuple(ignore_rules),
                       namespace_labels=dict(namespace_labels or {}))


def _selected(waiver: ClusterWaiver, facts: ObjectFacts) -> bool:
    return all(facts.labels.get(k) == v for k, v in waiver.match_labels)


def _in_scope(waiver: ClusterWaiver, facts: ObjectFacts, cluster_waiver_namespace: str) -> bool:
    """Whether the waiver may cover the object at all: a namespaced SOC2Waiver covers its own
    namespace (cluster-scoped objects: the operator's); a SOC2ClusterWaiver without namespaces or
    namespaceSelector covers cluster-scoped objects, with them the namespaces they pick."""
    if not waiver.cluster:
        home = facts.namespace if facts.namespace is not None else cluster_waiver_namespace
        return waiver.namespace == home
    if facts.namespace is None:
        return not waiver.namespaces and not waiver.namespace_labels
    by_name = any(fnmatch.fnmatchcase(facts.namespace, g) for g in waiver.namespaces)
    by_label = bool(waiver.namespace_labels) and all(
        facts.namespace_labels.get(k) == v for k, v in waiver.namespace_labels)
    return by_name or by_label


def _pattern(waiver: ClusterWaiver, facts: ObjectFacts) -> str:
    kind = waiver.kind or "*"
    name = waiver.object_name or "*"
    if facts.namespace is None:
        return f"*/{kind}/{name}"
    return f"*/{kind}/{facts.namespace}/{name}"


def _entry(waiver: ClusterWaiver, rule: str, resource: str, reason: str) -> WaiverEntry:
    return WaiverEntry(rule=rule, resource=resource, reason=reason, source="cluster", owner=waiver.owner,
                       ticket=waiver.ticket, expires=waiver.expires, location=waiver.location,
                       approved_by=waiver.approved_for_entry)


def entries_for(facts: ObjectFacts, waivers: Sequence[ClusterWaiver],
                cluster_waiver_namespace: str) -> list[WaiverEntry]:
    """The waiver entries that may apply to one object, for :func:`soc2infra._core.waivers.match_waiver`.

    Only waivers in scope (see :func:`_in_scope`) whose labels select it are considered; rule,
    kind/name and expiry are left to ``match_waiver``.
    """
    out: list[WaiverEntry] = []
    for w in waivers:
        if w.problem or not _in_scope(w, facts, cluster_waiver_namespace) or not _selected(w, facts):
            continue
        pattern = _pattern(w, facts)
        if not w.opt_out:
            out.append(_entry(w, w.rule, pattern, w.reason))
        elif facts.opted_out:
            out.append(_entry(w, w.rule, pattern, f"opt-out granted: {w.reason}"))
        else:
            # The soc2infra.io/ignore annotation names rules; the grant covers those it also covers.
            grant = _entry(w, w.rule, "*", "")
            for annotated in facts.ignore_rules:
                if grant.matches(annotated, facts.address):
                    out.append(_entry(w, annotated, pattern, f"opt-out granted: {w.reason}"))
    return out


def grants_opt_out(facts: ObjectFacts, waivers: Sequence[ClusterWaiver], cluster_waiver_namespace: str,
                   today: date) -> bool:
    """Whether some live opt-out waiver selects this object (used to explain an ignored opt-out)."""
    for w in waivers:
        live = w.opt_out and not w.problem and (w.expires is None or w.expires >= today)
        if live and _in_scope(w, facts, cluster_waiver_namespace) and _selected(w, facts) \
                and _entry(w, "*", _pattern(w, facts), "").matches("*", facts.address):
            return True
    return False


class WaiverStore:
    """The SOC2Waivers this replica knows about, kept current by a watch.

    Reads return an immutable snapshot (a tuple), so an admission evaluated while the watch
    delivers an update sees one consistent set.
    """

    def __init__(self, require_independent: bool = False) -> None:
        self._items: dict[tuple[str, str], ClusterWaiver] = {}
        self._snapshot: tuple[ClusterWaiver, ...] = ()
        self.require_independent = require_independent  # waivers.require_independent_approval

    def upsert(self, obj: Any) -> ClusterWaiver:
        """Add or replace the waiver described by a raw object."""
        waiver = waiver_from_object(obj, self.require_independent)
        self._items[(waiver.namespace, waiver.name)] = waiver
        self._snapshot = tuple(self._items.values())
        return waiver

    def delete(self, namespace: str, name: str) -> ClusterWaiver | None:
        """Forget a waiver; returns what was known about it."""
        gone = self._items.pop((namespace, name), None)
        self._snapshot = tuple(self._items.values())
        return gone

    def replace_all(self, objects: Iterable[Any]) -> None:
        """Replace the whole set (a fresh list from the API)."""
        self._items = {}
        for obj in objects:
            w = waiver_from_object(obj, self.require_independent)
            self._items[(w.namespace, w.name)] = w
        self._snapshot = tuple(self._items.values())

    def snapshot(self) -> tuple[ClusterWaiver, ...]:
        """Every known waiver."""
        return self._snapshot

    def __len__(self) -> int:
        return len(self._items)
