"""Admission decisions as pure functions: AdmissionReview request → Resource → engine → Decision → response.

Nothing here talks to Kopf, the API server or the ledger. :func:`decide` takes the request, the
compiled :class:`AdmissionPolicy`, the cluster waivers and (optionally) the objects the last
audit saw, and returns a :class:`Decision` value; :func:`build_response` turns a decision into
what the API server gets back (allowed, status message, warnings). ``handlers.py`` only adapts
Kopf's keyword arguments to :class:`ReviewRequest` and the response to ``kopf.AdmissionError`` /
``warnings.append``.

The same engine call as ``soc2infra scan`` decides which rules fail (``evaluate`` on the
Resource that :func:`soc2infra._core.sources.kubernetes.object_to_resource` builds); what is
admission-specific is only *what a failure does* (the rule's action after overrides) and the
scope (excluded namespaces and users, trusted controllers, cluster waivers).

Why one module of about 650 lines: the request, the decision and the response are one pure
pipeline with its wire shapes; splitting it would spread one decision over several files.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, TypedDict, TypeVar

from soc2infra import (
    Finding,
    LimitExceeded,
    PolicyPack,
    Resource,
    ResourceIndex,
    check_json_depth,
    depth_limit,
    effective_action,
    evaluate,
    match_entry,
    object_to_resource,
    rule_action,
    weaker,
)
from soc2infra_operator import provenance
from soc2infra_operator.settings import OperatorSettings, ScopeSettings
from soc2infra_operator.waivers import ClusterWaiver, ObjectFacts, entries_for, grants_opt_out, object_facts

CHECKED_OPERATIONS = ("CREATE", "UPDATE")
DENY_CODE = 403
MAX_WARNING_CHARS = 250  # the API server truncates longer admission warnings
MAX_MESSAGE_RULES = 10  # a denial lists at most this many rules (the rest are counted)

Verdict = Literal["allow", "deny", "warn", "waived", "skip", "error"]


# --------------------------------------------------------------------------- wire shapes

class UserInfo(TypedDict, total=False):
    """``request.userInfo`` of an AdmissionReview."""

    username: str
    uid: str
    groups: list[str]


class RequestPayload(TypedDict, total=False):
    """The parts of ``AdmissionReview.request`` this module reads."""

    uid: str
    kind: dict[str, str]
    resource: dict[str, str]
    subResource: str
    namespace: str
    name: str
    operation: str
    userInfo: UserInfo
    object: Any
    oldObject: Any
    dryRun: bool


class ResponseStatus(TypedDict):
    """``response.status`` of a denial."""

    code: int
    message: str


class ResponsePayload(TypedDict, total=False):
    """``AdmissionReview.response``: what the API server is told."""

    uid: str
    allowed: bool
    warnings: list[str]
    status: ResponseStatus


class AdmissionReview(TypedDict, total=False):
    """An ``admission.k8s.io/v1`` AdmissionReview: a request in, the same kind with a response out."""

    apiVersion: str
    kind: str
    request: RequestPayload
    response: ResponsePayload


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """One admission request, normalised; built from a raw review or from Kopf's kwargs."""

    operation: str
    obj: Any
    uid: str = ""
    namespace: str | None = None  # request.namespace (the API server's view)
    old: Any = None
    dry_run: bool = False
    username: str = ""
    groups: tuple[str, ...] = ()
    resource: str = ""  # group/version/plural, for messages and evidence
    subresource: str | None = None
    user_uid: str = ""  # userInfo.uid: ties a record to the API server's audit log

    @property
    def actor(self) -> dict[str, Any]:
        """Who asked, for evidence."""
        return {"username": self.username, "uid": self.user_uid, "groups": list(self.groups)}

    @property
    def object_ref(self) -> tuple[str, str]:
        """The object's (uid, resourceVersion): the new object, or the old one on DELETE."""
        for candidate in (self.obj, self.old):
            meta = _mapping(_mapping(candidate).get("metadata"))
            if meta:
                return _text(meta.get("uid")), _text(meta.get("resourceVersion"))
        return "", ""


# The uid of the AdmissionReview being served. Kopf does not hand it to handlers, so the webhook
# server's guard sets it around each request (context variables follow the request's task).
CURRENT_REVIEW_UID: ContextVar[str] = ContextVar("soc2infra_review_uid", default="")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def request_from_review(review: AdmissionReview | RequestPayload | Any) -> ReviewRequest:
    """Normalise an ``AdmissionReview`` (the whole document or just its ``request``); never raises:
    the wire data is not trusted to have the declared shape."""
    data = _mapping(review)
    req: Mapping[str, Any] = _mapping(data.get("request")) if "request" in data else data
    user = _mapping(req.get("userInfo"))
    res = _mapping(req.get("resource"))
    groups = user.get("groups")
    return ReviewRequest(
        operation=_text(req.get("operation")).upper(), obj=req.get("object"), uid=_text(req.get("uid")),
        namespace=_text(req.get("namespace")) or None, old=req.get("oldObject"),
        dry_run=req.get("dryRun") is True, username=_text(user.get("username")),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
        resource="/".join(p for p in (_text(res.get("group")), _text(res.get("version")),
                                      _text(res.get("resource"))) if p),
        subresource=_text(req.get("subResource")) or None, user_uid=_text(user.get("uid")),
    )


# --------------------------------------------------------------------------- policy

@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Everything :func:`decide` needs besides the request: the pack and resolved actions."""

    pack: PolicyPack
    actions: Mapping[str, str]  # rule id → effective action (overrides and mode applied)
    mode: str = "enforce"
    # Rule id → action after overrides but before the mode cap: what the rule *is* (the audit
    # reports a failure of a deny rule as "fail" even while the operator only warns).
    rule_actions: Mapping[str, str] = field(default_factory=dict)
    # Rule id → kinds it looks up on other objects: these rules' verdicts depend on other objects.
    relations: Mapping[str, frozenset[str]] = field(default_factory=dict)
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    unknown_action: str = "warn"
    cross_object_action: str = "warn"
    waiver_warning_days: int = 14
    cluster_waiver_namespace: str = "default"
    depth_limit: int | None = None  # limits.depth, read once at build (None: read per request)

    @property
    def cross_object(self) -> frozenset[str]:
        """Rules whose verdict depends on other objects."""
        return frozenset(self.relations)

    @classmethod
    def build(cls, pack: PolicyPack, settings: OperatorSettings,
              relations: Mapping[str, frozenset[str]] | None = None) -> AdmissionPolicy:
        """Resolve every rule's action once (:mod:`soc2infra._core.engine.actions`): the rule's own action,
        the most specific override, then the mode cap."""
        adm = settings.admission
        rule_actions = {r.id: rule_action(r.id, r.action, adm.actions) for r in pack.rules}
        actions = {r.id: effective_action(r.id, r.action, adm.actions, adm.mode) for r in pack.rules}
        return cls(pack=pack, actions=actions, mode=adm.mode, rule_actions=rule_actions,
                   relations=dict(relations or {}),
                   scope=settings.scope,
                   unknown_action=adm.unknown_action, cross_object_action=adm.cross_object_action,
                   waiver_warning_days=adm.waiver_warning_days,
                   cluster_waiver_namespace=settings.scope.own_namespace or "default",
                   depth_limit=depth_limit())


# Built-in kinds and their API group: webhooks and the audit pin these groups, so a custom
# resource that happens to share a kind name (Knative's Service) is not judged by the wrong rules.
BUILTIN_GROUPS: dict[str, str] = {
    "Pod": "", "Service": "", "ConfigMap": "", "Secret": "", "ServiceAccount": "", "Namespace": "",
    "PersistentVolumeClaim": "", "PersistentVolume": "", "ReplicationController": "",
    "Deployment": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "ReplicaSet": "apps",
    "Job": "batch", "CronJob": "batch",
    "Ingress": "networking.k8s.io", "NetworkPolicy": "networking.k8s.io",
    "Role": "rbac.authorization.k8s.io", "ClusterRole": "rbac.authorization.k8s.io",
    "RoleBinding": "rbac.authorization.k8s.io", "ClusterRoleBinding": "rbac.authorization.k8s.io",
    "StorageClass": "storage.k8s.io", "PodDisruptionBudget": "policy",
    "HorizontalPodAutoscaler": "autoscaling",
}
# Kinds rules target that are configuration files, never API objects (scanned in CI only).
FILE_ONLY_KINDS = frozenset({"EncryptionConfiguration", "AdmissionConfiguration", "Policy"})


def kubernetes_kinds(pack: PolicyPack) -> list[str]:
    """Kubernetes kinds some enabled rule targets (Terraform types are lower_snake_case)."""
    return sorted(t for t in pack.target_types if t[:1].isupper() and "_" not in t)


def rule_relations(pack: PolicyPack) -> dict[str, frozenset[str]]:
    """Rule id → kinds its condition looks up on *other* objects (``related: {types: …}``).

    Admission caps these rules (see ``AdmissionSettings.cross_object_action``) and the audit
    lists these kinds too, so cross-object rules see a NetworkPolicy or a PDB.
    """
    kinds = kubernetes_kinds(pack)
    return {rule.id: rule.related_types for rule in pack.rules
            if rule.related_types and any(t in kinds for t in rule.targets)}


# --------------------------------------------------------------------------- decision

@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One rule that did not pass on the object (its :class:`~soc2infra._cogs.model.Finding`), and
    what it does at admission."""

    finding: Finding
    action: str  # effective action: deny | warn | audit
    cross_object: bool = False
    # The action with admission.mode at enforce: what a staged rollout will do once it enforces.
    enforced_action: str = ""
    waiver: dict[str, Any] | None = None  # the waiver that suppresses it (model.Waiver.to_dict())
    waiver_status: str = "none"  # none | active | expiring | expired

    @property
    def rule_id(self) -> str:
        """The rule's id."""
        return self.finding.rule_id

    @property
    def title(self) -> str:
        """The rule's title."""
        return self.finding.title

    @property
    def severity(self) -> str:
        """The rule's severity."""
        return self.finding.severity

    @property
    def category(self) -> str:
        """The rule's category."""
        return self.finding.category

    @property
    def controls(self) -> tuple[str, ...]:
        """The SOC 2 criteria the rule evidences."""
        return self.finding.controls

    @property
    def message(self) -> str:
        """What is wrong with this object."""
        return self.finding.message

    @property
    def remediation(self) -> str:
        """What to change."""
        return self.finding.remediation

    @property
    def status(self) -> str:
        """``fail`` or ``unknown``."""
        return self.finding.status

    @property
    def waived(self) -> bool:
        """Suppressed by a live waiver."""
        return self.waiver is not None and self.waiver_status in ("active", "expiring")

    @property
    def would_deny(self) -> bool:
        """Not denied now only because admission.mode is warn or audit."""
        return self.enforced_action == "deny" and self.action != "deny" and not self.waived


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission request (a value: evidence and response are built from it)."""

    verdict: Verdict
    allowed: bool
    address: str = ""
    kind: str = ""
    namespace: str | None = None
    name: str = ""
    operation: str = ""
    dry_run: bool = False
    actor: Mapping[str, Any] = field(default_factory=dict)
    outcomes: tuple[RuleOutcome, ...] = ()
    passed: tuple[str, ...] = ()  # rule ids that passed
    notes: tuple[str, ...] = ()  # extra warnings (expiring/expired waivers, ignored opt-outs)
    reason: str = ""  # why a request was skipped or could not be evaluated
    request_uid: str = ""
    object_uid: str = ""  # metadata.uid of the object (empty when the request carries none)
    resource_version: str = ""  # metadata.resourceVersion: which version of the object was decided
    mode: str = "enforce"  # admission.mode when decided
    waiver_namespace: str = ""  # where a SOC2Waiver for this object goes (cluster scoped: own namespace)
    images: tuple[dict[str, str], ...] = ()  # container images, with digests when pinned (provenance.py)
    gitops: Mapping[str, str] = field(default_factory=dict)  # GitOps tracking labels/annotations

    @property
    def evaluated(self) -> bool:
        """Whether the engine ran (skips and unreadable objects are not evaluated)."""
        return self.verdict not in ("skip", "error")

    @property
    def denials(self) -> list[RuleOutcome]:
        """Outcomes that reject the object."""
        return [o for o in self.outcomes if o.action == "deny" and not o.waived]

    @property
    def would_deny(self) -> list[str]:
        """Rules that would have rejected the object with admission.mode at enforce."""
        return [o.rule_id for o in self.outcomes if o.would_deny]

    @property
    def warnings(self) -> list[RuleOutcome]:
        """Outcomes that admit the object with a warning."""
        return [o for o in self.outcomes if o.action == "warn" and not o.waived]


def _skip(req: ReviewRequest, reason: str, **kw: Any) -> Decision:
    # The namespace is kept (and nothing else of the object): skipped requests are counted per
    # namespace into the ledger (evidence.skipped_record).
    meta = _mapping(_mapping(req.obj if req.obj is not None else req.old).get("metadata"))
    namespace = req.namespace or _text(meta.get("namespace")) or None
    return Decision(verdict="skip", allowed=True, operation=req.operation, dry_run=req.dry_run,
                    actor=req.actor, reason=reason, request_uid=req.uid, namespace=namespace, **kw)


def _glob_any(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def scope_check(req: ReviewRequest, scope: ScopeSettings) -> str | None:
    """Why this request is out of scope, or None when it must be checked. Pure."""
    if req.operation not in CHECKED_OPERATIONS:
        return f"operation {req.operation or '(none)'} is not checked"
    if req.subresource:
        return f"subresource {req.subresource} is not checked"
    obj = _mapping(req.obj)
    meta = _mapping(obj.get("metadata"))
    kind = _text(obj.get("kind"))
    namespace = req.namespace or _text(meta.get("namespace")) or None
    if kind == "Namespace":
        namespace = _text(meta.get("name")) or req.namespace
    excluded = scope.all_excluded_namespaces
    if namespace and namespace in excluded:
        return f"namespace {namespace} is excluded"
    if req.username and _glob_any(req.username, scope.excluded_usernames):
        return f"user {req.username} is excluded"
    if req.operation == "UPDATE" and meta.get("deletionTimestamp"):
        # Controllers remove finalizers from objects being deleted; blocking that would leave them
        # stuck in Terminating for ever, and a deleted object needs no control.
        return "object is being deleted"
    if req.username and _glob_any(req.username, scope.trusted_controllers):
        owners = meta.get("ownerReferences")
        controlled = isinstance(owners, list) and any(isinstance(o, dict) and o.get("controller") is True
                                                      for o in owners)
        if controlled:
            return f"created by {req.username} for its controlling owner (checked at the owner's admission)"
    return None


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """*obj* without ``metadata.managedFields`` (a shallow copy when it has them).

    The API server's record of which client set which field is bookkeeping, not configuration:
    no rule reads it, and it is often the largest and deepest part of an object, which every
    walk of the object (the depth limit, the rules) would otherwise pay for at each review.
    """
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def decide(req: ReviewRequest, policy: AdmissionPolicy, waivers: Sequence[ClusterWaiver] = (),
           context: Sequence[Resource] = (), today: date | None = None) -> Decision:
    """Decide one admission request. Pure and total: never raises on a strange object.

    *context* holds objects other rules may look at (from the last audit: NetworkPolicies,
    PodDisruptionBudgets, ServiceAccounts …); the object under review replaces its own older
    version there. *today* decides waiver expiry (UTC date; injected for tests).
    """
    today = today or date.today()
    why = scope_check(req, policy.scope)
    if why is not None:
        return _skip(req, why)
    if not isinstance(req.obj, dict):
        return Decision(verdict="error", allowed=False, operation=req.operation, dry_run=req.dry_run,
                        actor=req.actor, reason="the request carries no object that can be read",
                        request_uid=req.uid)
    obj = without_managed_fields(req.obj)
    try:
        # The rules walk objects recursively: refuse what they could not hold.
        check_json_depth(obj, policy.depth_limit)
    except LimitExceeded as exc:
        return Decision(verdict="error", allowed=False, operation=req.operation, dry_run=req.dry_run,
                        actor=req.actor, reason=f"the object is {exc}", request_uid=req.uid)
    if req.namespace and not _text(_mapping(obj.get("metadata")).get("namespace")) \
            and _text(obj.get("kind")) != "Namespace":
        # The API server fills metadata.namespace from the URL; a hand-made review may not.
        obj = {**obj, "metadata": {**_mapping(obj.get("metadata")), "namespace": req.namespace}}
    resource = object_to_resource(obj, file="admission")
    annotated = tuple(rule for rule, _reason, _line in resource.inline_waivers)
    # Annotation waivers are opt-outs here: they count only where a SOC2Waiver grants them.
    resource.inline_waivers = ()
    related_kinds = frozenset(k for r in policy.pack.rules_for(resource.type)
                              for k in policy.relations.get(r.id, ()))
    index = context_index(context, related_kinds).plus(resource)
    findings, passes = evaluate([resource], policy.pack, index, only=[resource])
    facts = object_facts(obj, resource.address, resource.type, resource.namespace
                         if resource.attributes.get("_namespace") is not None else None,
                         resource.name, policy.scope.opt_out_key, annotated,
                         namespace_labels(obj, resource.namespace, context))
    outcomes, notes = _outcomes(findings, facts, policy, waivers, today)
    if facts.opted_out and not grants_opt_out(facts, waivers, policy.cluster_waiver_namespace, today):
        notes.append(f"{policy.scope.opt_out_key} on {resource.address} is ignored: no SOC2Waiver with "
                     "optOut grants it here")
    deny = any(o.action == "deny" and not o.waived for o in outcomes)
    warn = any(o.action == "warn" and not o.waived for o in outcomes)
    verdict: Verdict = "deny" if deny else "warn" if warn else "waived" if any(o.waived for o in outcomes) \
        else "allow"
    return Decision(
        verdict=verdict, allowed=not deny, address=resource.address, kind=resource.type,
        namespace=facts.namespace, name=resource.name, operation=req.operation, dry_run=req.dry_run,
        actor=req.actor, outcomes=tuple(outcomes), passed=tuple(rule for rule, _addr in passes),
        notes=tuple(dict.fromkeys(notes)), request_uid=req.uid, mode=policy.mode,
        object_uid=req.object_ref[0], resource_version=req.object_ref[1],
        waiver_namespace=facts.namespace if facts.namespace is not None else policy.cluster_waiver_namespace,
        images=tuple(provenance.images(obj)), gitops=provenance.gitops(obj),
    )


# The context is the same tuple for every request between two audits (Runtime.context): what is
# derived from it is kept with it (a tuple cannot change; other sequences are read every time).
_DERIVED: dict[tuple[int, object], tuple[Sequence[Resource], Any]] = {}
_T = TypeVar("_T")


def _derived(context: Sequence[Resource], key: object, build: Callable[[], _T]) -> _T:
    if not isinstance(context, tuple):
        return build()
    slot = (id(context), key)
    hit = _DERIVED.get(slot)
    if hit is not None and hit[0] is context:
        return hit[1]  # type: ignore[no-any-return]
    if len(_DERIVED) > 64:  # older audits' contexts
        _DERIVED.clear()
    value = build()
    _DERIVED[slot] = (context, value)
    return value


def context_index(context: Sequence[Resource], kinds: frozenset[str]) -> ResourceIndex:
    """The index over the context's objects of *kinds*, built once per context (a request adds its
    object with :meth:`ResourceIndex.plus`: a cluster's thousands of objects are not re-indexed
    per request)."""
    return _derived(context, kinds, lambda: ResourceIndex([r for r in context if r.type in kinds]))


def namespace_labels(obj: Any, namespace: str | None, context: Sequence[Resource]) -> dict[str, str]:
    """The labels of the object's namespace (SOC2ClusterWaiver namespaceSelector): a Namespace's
    own, else those of the Namespace the last audit listed (none for a namespace created since)."""
    if _text(_mapping(obj).get("kind")) == "Namespace":
        labels = _mapping(_mapping(_mapping(obj).get("metadata")).get("labels"))
        return {str(k): str(v) for k, v in labels.items()}
    if namespace is None:
        return {}
    table = _derived(context, "namespace-labels", lambda: _namespace_table(context))
    return dict(table.get(namespace, {}))


def _namespace_table(context: Sequence[Resource]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for r in context:
        if r.type == "Namespace" and r.name not in table:  # the first, as a scan in order finds
            labels = _mapping(_mapping(r.attributes.get("metadata")).get("labels"))
            table[r.name] = {str(k): str(v) for k, v in labels.items()}
    return table


def _outcomes(findings: Sequence[Finding], facts: ObjectFacts, policy: AdmissionPolicy,
              waivers: Sequence[ClusterWaiver], today: date) -> tuple[list[RuleOutcome], list[str]]:
    entries = entries_for(facts, waivers, policy.cluster_waiver_namespace)
    outcomes: list[RuleOutcome] = []
    notes: list[str] = []
    for f in findings:
        action = policy.actions.get(f.rule_id, "warn")
        enforced = policy.rule_actions.get(f.rule_id, action)
        cross = f.rule_id in policy.cross_object
        if f.status == "unknown":
            action, enforced = weaker(action, policy.unknown_action), weaker(enforced, policy.unknown_action)
        if cross:
            action = weaker(action, policy.cross_object_action)
            enforced = weaker(enforced, policy.cross_object_action)
        entry, status = match_entry(entries, f.rule_id, facts.address, today, policy.waiver_warning_days)
        waiver = entry.to_waiver().to_dict() if entry is not None else None
        if entry is not None and status == "expiring":
            notes.append(f"{f.rule_id} on {facts.address} is waived by {entry.location} until "
                         f"{entry.expires} (renew it or fix the finding)")
        elif entry is not None and status == "expired":
            notes.append(f"{entry.location} for {f.rule_id} expired on {entry.expires} and no longer applies")
        outcomes.append(RuleOutcome(finding=f, action=action, cross_object=cross, waiver=waiver,
                                    waiver_status=status, enforced_action=enforced))
    return outcomes, notes


# --------------------------------------------------------------------------- response

@dataclass(frozen=True, slots=True)
class AdmissionResponse:
    """What the API server is told: allowed or not, the status message and the warnings."""

    allowed: bool
    code: int = 200
    message: str = ""
    warnings: tuple[str, ...] = ()


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = text.find(". ")
    return text[: cut + 1] if 0 < cut < 200 else text


def _clip(text: str, limit: int = MAX_WARNING_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def warning_text(outcome: RuleOutcome) -> str:
    """One admission warning: rule id, criteria, what is wrong, how to fix it (≤ 250 characters)."""
    unknown = " (could not be decided)" if outcome.status == "unknown" else ""
    later = " (re-checked by the background audit)" if outcome.cross_object else ""
    staged = " (denied once admission.mode is enforce)" if outcome.would_deny else ""
    head = f"{outcome.rule_id} [{', '.join(outcome.controls)}]{staged}{unknown}{later}"
    return _clip(f"{head}: {outcome.message}. Fix: {_first_sentence(outcome.remediation)}")


def denial_message(decision: Decision) -> str:
    """The status message of a rejected request: every denying rule with its SOC 2 criteria and fix."""
    if decision.verdict == "error":
        return f"soc2infra could not check this request: {decision.reason}"
    denials = decision.denials
    where = f"{decision.kind} {decision.namespace + '/' if decision.namespace else ''}{decision.name}"
    lines = [f"soc2infra: {where} violates {len(denials)} SOC 2 rule{'s' if len(denials) != 1 else ''}:"]
    for o in denials[:MAX_MESSAGE_RULES]:
        lines.append(f"- {o.rule_id} [{', '.join(o.controls)}] {o.title}: {o.message}. "
                     f"Fix: {' '.join(o.remediation.split())}")
    if len(denials) > MAX_MESSAGE_RULES:
        lines.append(f"- … and {len(denials) - MAX_MESSAGE_RULES} more")
    rules = ", ".join(o.rule_id for o in denials)
    lines.append(f"To accept the risk instead, waive it: a SOC2Waiver per rule ({rules}) in namespace "
                 f"{decision.waiver_namespace or 'default'} with selector {{kind: {decision.kind}, name: "
                 f"{decision.name}}}, reason, owner and expires; `soc2infra waiver suggest` writes them from "
                 "this message.")
    return "\n".join(lines)


def build_response(decision: Decision) -> AdmissionResponse:
    """Turn a decision into the API server's answer. Pure."""
    warnings = [warning_text(o) for o in decision.warnings]
    warnings += [_clip(n) for n in decision.notes]
    if decision.allowed:
        return AdmissionResponse(allowed=True, warnings=tuple(warnings))
    return AdmissionResponse(allowed=False, code=DENY_CODE, message=denial_message(decision),
                             warnings=tuple(warnings))


def review_response(review: AdmissionReview | Any, response: AdmissionResponse) -> AdmissionReview:
    """A complete ``AdmissionReview`` reply for *review* (used by tests and the benchmark; Kopf
    builds its own from the handler's outcome)."""
    data = _mapping(review)
    req = _mapping(data.get("request"))
    out: ResponsePayload = {"uid": _text(req.get("uid")), "allowed": response.allowed}
    if response.warnings:
        out["warnings"] = list(response.warnings)
    if not response.allowed:
        out["status"] = {"code": response.code, "message": response.message}
    return {"apiVersion": _text(data.get("apiVersion")) or "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": out}


def unreadable_review(review: Any) -> str | None:
    """Why an AdmissionReview cannot be handed to Kopf (which would answer HTTP 500 on it), or
    None. The API server never sends such a review; this guards the endpoint itself. Pure."""
    if not isinstance(review, dict):
        return "the admission review is not a JSON object"
    req = review.get("request")
    if not isinstance(req, dict):
        return "the admission review has no request"
    res = req.get("resource")
    if not isinstance(res, dict) or not all(isinstance(res.get(k), str) for k in ("group", "version",
                                                                                  "resource")):
        return "the admission request names no resource"
    for key in ("object", "oldObject"):
        obj = req.get(key)
        if obj is not None and (not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict)):
            return f"request.{key} is not a Kubernetes object"
    if not isinstance(req.get("userInfo", {}), dict):
        return "request.userInfo is not a mapping"
    return None


def failure_decision(req: ReviewRequest, reason: str, fail_closed: bool) -> Decision:
    """The decision when the control itself could not operate (evidence not committed, internal
    error): rejected when *fail_closed*, otherwise admitted with a warning."""
    note = f"soc2infra could not operate ({reason}); admitted because the failure policy is Ignore"
    return Decision(verdict="error", allowed=not fail_closed, operation=req.operation, dry_run=req.dry_run,
                    object_uid=req.object_ref[0], resource_version=req.object_ref[1],
                    actor=req.actor, reason=reason, notes=() if fail_closed else (note,), request_uid=req.uid)


def replace_verdict(decision: Decision, **changes: Any) -> Decision:
    """A copy of *decision* with some fields changed (decisions are immutable values)."""
    return dataclasses.replace(decision, **changes)
