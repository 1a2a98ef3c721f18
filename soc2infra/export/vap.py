"""ValidatingAdmissionPolicy + binding objects for the Kubernetes rules of a pack.

:func:`plan_pack` decides, per Kubernetes rule, whether it has a CEL form (and why not when it
does not); :func:`policy_objects` turns a compiled rule into its ``ValidatingAdmissionPolicy``
and ``ValidatingAdmissionPolicyBinding``. Both are pure: the CLI (``soc2infra export vap``)
writes the result to files, the operator (``enforcement: vap | hybrid``) applies it.

What the objects carry, and why:

- ``validationActions`` from the rule's effective action: deny → ``[Deny]``, warn → ``[Warn]``,
  audit → ``[Audit]`` (the caller passes the action after its own overrides);
- ``failurePolicy``: ``Fail`` for deny rules (a control that cannot run must not admit
  silently, as the webhook's default), ``Ignore`` for warn/audit rules (they never block);
- the webhook's scope: excluded namespaces as the binding's ``namespaceSelector`` (by the
  immutable ``kubernetes.io/metadata.name`` label), excluded users, trusted controllers and
  objects being deleted as a ``matchCondition``;
- waivers as a ``matchCondition`` of the policy: the policy is not evaluated for an object a
  live waiver covers (see :class:`WaiverScope` and docs/vap.md). Expired waivers are left out
  when the objects are generated, so whoever applies them regenerates at least daily.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soc2infra._core.engine.policy import PolicyPack, Rule
from soc2infra.export.cel import (
    POD_VARIABLES,
    WORKLOAD_KINDS,
    CompiledCondition,
    NotCompilable,
    cel_string,
    compile_rule_condition,
)
from soc2infra.export.k8s_schema import KINDS, KindInfo

__all__ = [
    "DEFAULT_EXCLUDED_NAMESPACES", "DEFAULT_EXCLUDED_USERNAMES", "DEFAULT_TRUSTED_CONTROLLERS",
    "MANAGED_LABEL", "MANAGED_VALUE", "ExportScope", "RulePlan", "Summary", "WaiverScope", "export_objects",
    "file_waiver_scopes", "plan_pack", "policy_objects", "summarize",
]

API_VERSION = "admissionregistration.k8s.io/v1"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_VALUE = "soc2infra"
RULE_LABEL = "soc2infra.io/rule"
DIGEST_ANNOTATION = "soc2infra.io/pack-digest"
VALIDATION_ACTIONS = {"deny": ["Deny"], "warn": ["Warn"], "audit": ["Audit"]}
OPERATIONS = ["CREATE", "UPDATE"]
IGNORE_ANNOTATION = "soc2infra.io/ignore"
# Kinds rules target that are configuration files, never API objects (scanned in CI only).
FILE_ONLY_KINDS = frozenset({"EncryptionConfiguration", "AdmissionConfiguration", "Policy"})

# The webhook's scope defaults: the operator's settings import these (one copy for both paths).
DEFAULT_EXCLUDED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
DEFAULT_EXCLUDED_USERNAMES = ("system:apiserver",)
DEFAULT_TRUSTED_CONTROLLERS = (
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:replication-controller",
    "system:kube-controller-manager",
)
DEFAULT_OPT_OUT_KEY = "soc2infra.io/exempt"


@dataclass(frozen=True, slots=True)
class ExportScope:
    """Which requests the policies see: the same scope as the webhook's."""

    excluded_namespaces: tuple[str, ...] = DEFAULT_EXCLUDED_NAMESPACES
    excluded_usernames: tuple[str, ...] = DEFAULT_EXCLUDED_USERNAMES
    trusted_controllers: tuple[str, ...] = DEFAULT_TRUSTED_CONTROLLERS
    opt_out_key: str = DEFAULT_OPT_OUT_KEY


@dataclass(frozen=True, slots=True)
class WaiverScope:
    """What one waiver exempts, in the terms CEL can test.

    ``rule`` and ``address`` are globs with the waiver file's meaning (``*`` any run of
    characters, ``?`` one): the address is ``<apiVersion>/<Kind>/<namespace>/<name>``
    (cluster scoped: without the namespace), exactly the webhook's resource address.
    ``labels`` must all be on the object. ``opt_out``: the object must also carry the opt-out
    label/annotation, or a ``soc2infra.io/ignore`` annotation naming the rule (a SOC2Waiver
    with ``optOut: true`` grants the namespace team's own opt-out).
    """

    rule: str
    address: str = "*"
    labels: tuple[tuple[str, str], ...] = ()
    opt_out: bool = False
    origin: str = ""  # "SOC2Waiver payments/legacy", "waivers.yaml:12", for the reader
    cluster_only: bool = False  # applies to cluster-scoped objects only
    # labels the object's namespace must carry (SOC2ClusterWaiver namespaceSelector.matchLabels)
    namespace_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RulePlan:
    """One Kubernetes rule: its CEL form for the kinds it targets, or why it has none."""

    rule: Rule
    kinds: tuple[KindInfo, ...] = ()
    compiled: CompiledCondition | None = None
    reason: str = ""  # why the rule stays on the webhook (empty when compiled)
    admission: bool = True  # False: targets only configuration files (scan only)

    @property
    def cel(self) -> bool:
        """Whether the rule is enforced by a ValidatingAdmissionPolicy."""
        return self.compiled is not None


def is_kubernetes_kind(target: str) -> bool:
    """Kubernetes kinds are CamelCase; Terraform types are lower_snake_case."""
    return target[:1].isupper() and "_" not in target


def kubernetes_rules(pack: PolicyPack) -> list[Rule]:
    """Enabled rules that target at least one Kubernetes kind, in pack order."""
    return [r for r in pack.rules if r.enabled and any(is_kubernetes_kind(t) for t in r.targets)]


def plan_rule(rule: Rule) -> RulePlan:
    """Compile one rule for every kind it targets; identical CEL for every kind is required
    (one policy per rule)."""
    kinds = [t for t in rule.targets if is_kubernetes_kind(t)]
    if all(k in FILE_ONLY_KINDS for k in kinds):
        return RulePlan(rule, reason="checks a configuration file, not an API object (soc2infra scan only)",
                        admission=False)
    unknown = [k for k in kinds if k not in KINDS and k not in FILE_ONLY_KINDS]
    if unknown:
        return RulePlan(rule, reason=f"targets kinds without a built-in schema ({', '.join(unknown)})")
    infos = tuple(KINDS[k] for k in kinds if k in KINDS)
    if rule.condition_data is None:
        return RulePlan(rule, infos, reason="the loader kept no condition data")
    results: dict[str, CompiledCondition] = {}
    try:
        for info in infos:
            results[info.kind] = compile_rule_condition(rule.condition_data, rule.when_data, info)
    except NotCompilable as exc:
        return RulePlan(rule, infos, reason=str(exc))
    forms = {c.expression for c in results.values()}
    expression = forms.pop() if len(forms) == 1 else _by_kind(rule, infos)
    variables: list[str] = []
    for c in results.values():
        variables += [v for v in c.variables if v not in variables]
    compiled = CompiledCondition(expression=expression, variables=tuple(n for n in POD_VARIABLES
                                                                         if n in variables))
    return RulePlan(rule, infos, compiled=compiled)


def _by_kind(rule: Rule, infos: Sequence[KindInfo]) -> str:
    """One expression per group of kinds that compile alike, chosen by ``object.kind``. Each branch
    reads through ``dyn(object)``: it is type-checked against every matched kind's schema, also
    those (a Service) that lack the fields another kind's branch reads (a Deployment's template)."""
    groups: dict[str, list[str]] = {}
    for info in infos:
        dyn = compile_rule_condition(rule.condition_data, rule.when_data, info, root="dyn(object)")
        expr = dyn.expression
        groups.setdefault(expr, []).append(info.kind)
    out = "false"
    for expr, kinds in reversed(list(groups.items())):
        names = ", ".join(cel_string(k) for k in kinds)
        out = f"(object.kind in [{names}] ? ({expr}) : {out})"
    return out


def plan_pack(pack: PolicyPack, rule_ids: Iterable[str] | None = None) -> list[RulePlan]:
    """A :class:`RulePlan` for every Kubernetes rule of the pack (or the ones in *rule_ids*)."""
    wanted = set(rule_ids) if rule_ids else None
    return [plan_rule(r) for r in kubernetes_rules(pack) if wanted is None or r.id in wanted]


# --------------------------------------------------------------------------- objects

def policy_name(rule_id: str) -> str:
    """``SOC2-K8S-POD-001`` → ``soc2infra-soc2-k8s-pod-001`` (a DNS subdomain)."""
    return "soc2infra-" + re.sub(r"[^a-z0-9-]+", "-", rule_id.lower()).strip("-")


def failure_policy(action: str) -> str:
    """Fail closed for deny rules, open for rules that never block."""
    return "Fail" if action == "deny" else "Ignore"


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = text.find(". ")
    return text[: cut + 1] if 0 < cut < 200 else text


def _address_expr() -> str:
    # The webhook's resource address: apiVersion/Kind/namespace/name (no namespace when cluster scoped).
    return ("object.apiVersion + '/' + object.kind + '/' + "
            "(has(object.metadata.namespace) && object.metadata.namespace != '' ? "
            "object.metadata.namespace + '/' : '') + "
            "(has(object.metadata.name) ? object.metadata.name : '')")


def message_expression(rule: Rule) -> str:
    """CEL building the message the webhook gives: rule id, SOC 2 criteria, message, fix."""
    parts: list[str] = [cel_string(f"{rule.id} [{', '.join(rule.controls)}]: ")]
    for piece in re.split(r"(\{address\}|\{type\}|\{name\})", " ".join(rule.message.split())):
        if piece == "{address}":
            parts.append(f"({_address_expr()})")
        elif piece == "{type}":
            parts.append("object.kind")
        elif piece == "{name}":
            parts.append("(has(object.metadata.name) ? object.metadata.name : '')")
        elif piece:
            parts.append(cel_string(piece))
    parts.append(cel_string(f". Fix: {_first_sentence(rule.remediation)}"))
    return " + ".join(parts)


def _static_message(rule: Rule) -> str:
    msg = " ".join(rule.message.split()).replace("{address}", "the object").replace("{type}", "object") \
        .replace("{name}", "the object")
    return f"{rule.id} [{', '.join(rule.controls)}]: {msg}. Fix: {_first_sentence(rule.remediation)}"


def _glob_re(pattern: str) -> str:
    """A waiver glob (``*`` any run, ``?`` one character, the rest literal) as anchored RE2."""
    out = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return f"^(?s:{out})$"


def _glob_match(pattern: str, value: str) -> bool:
    return re.fullmatch(_glob_re(pattern)[1:-1], value) is not None


def _user_matches(globs: Sequence[str]) -> str:
    # Exact names as one list membership test: every policy evaluates this on every request, and a
    # regular expression per name costs far more than a lookup.
    exact = [g for g in globs if "*" not in g and "?" not in g]
    terms = [f"request.userInfo.username in [{', '.join(cel_string(g) for g in exact)}]"] if exact else []
    terms += [f"request.userInfo.username.matches({cel_string(_glob_re(g))})"
              for g in globs if g not in exact]
    return " || ".join(terms) or "false"


def scope_condition(scope: ExportScope) -> str | None:
    """CEL that is true when the webhook would check the request (users, controllers, deletion)."""
    terms: list[str] = []
    if scope.excluded_usernames:
        terms.append(f"!({_user_matches(scope.excluded_usernames)})")
    if scope.trusted_controllers:
        trusted = _user_matches(scope.trusted_controllers)
        terms.append(f"!(({trusted}) && has(object.metadata.ownerReferences) "
                     "&& object.metadata.ownerReferences.exists(o, has(o.controller) && o.controller))")
    terms.append("!(request.operation == 'UPDATE' && has(object.metadata.deletionTimestamp))")
    return " && ".join(terms) if terms else None


def _map_has(meta: str, key: str) -> str:
    return f"(has({meta}.labels) && {cel_string(key)} in {meta}.labels)"


def _pod_template_annotations() -> str:
    """The pod template's annotations of a workload, or {} (dyn: the path differs by kind)."""
    return ("(object.kind == 'CronJob' ? "
            "(has(dyn(object).spec.jobTemplate.spec.template.metadata) && "
            "has(dyn(object).spec.jobTemplate.spec.template.metadata.annotations) ? "
            "dyn(object).spec.jobTemplate.spec.template.metadata.annotations : dyn({})) : "
            "object.kind != 'Pod' && has(dyn(object).spec.template) "
            "&& has(dyn(object).spec.template.metadata) "
            "&& has(dyn(object).spec.template.metadata.annotations) ? "
            "dyn(object).spec.template.metadata.annotations : dyn({}))")


def waiver_condition(rule: Rule, waivers: Sequence[WaiverScope], scope: ExportScope,
                     kinds: Sequence[KindInfo]) -> str | None:
    """CEL that is true when no waiver exempts the object from *rule* (None: no waiver applies)."""
    mine = [w for w in waivers if _glob_match(w.rule, rule.id)]
    if not mine:
        return None
    meta = "object.metadata"
    terms: list[str] = []
    for w in mine:
        address = cel_string(_glob_re(w.address))
        parts = [] if w.address == "*" else [f"({_address_expr()}).matches({address})"]
        if w.cluster_only:
            parts.append(f"(!has({meta}.namespace) || {meta}.namespace == '')")
        for k, v in w.namespace_labels:
            ns_labels = "namespaceObject.metadata.labels"
            parts.append(f"(namespaceObject != null && has({ns_labels}) && {cel_string(k)} in {ns_labels} && "
                         f"{ns_labels}[{cel_string(k)}] == {cel_string(v)})")
        for k, v in w.labels:
            parts.append(f"({_map_has(meta, k)} && {meta}.labels[{cel_string(k)}] == {cel_string(v)})")
        if w.opt_out:
            named = f"(^|[;\\n])\\s*{re.escape(rule.id)}(\\s|$)"
            ann = cel_string(IGNORE_ANNOTATION)
            sources = [f"(has({meta}.annotations) && {ann} in {meta}.annotations && "
                       f"{meta}.annotations[{ann}].matches({cel_string(named)}))"]
            if any(k.kind in WORKLOAD_KINDS and k.kind != "Pod" for k in kinds):
                tpl = _pod_template_annotations()
                sources.append(f"({cel_string(IGNORE_ANNOTATION)} in {tpl} && "
                               f"string({tpl}[{cel_string(IGNORE_ANNOTATION)}]).matches({cel_string(named)}))")
            key = cel_string(scope.opt_out_key)
            opted = (f"({_map_has(meta, scope.opt_out_key)} || (has({meta}.annotations) && "
                     f"{key} in {meta}.annotations))")
            parts.append("(" + " || ".join([opted, *sources]) + ")")
        terms.append("(" + " && ".join(parts or ["true"]) + ")")
    return f"!({' || '.join(terms)})"


def namespace_selector(excluded: Sequence[str]) -> dict[str, Any]:
    """Every namespace except *excluded*, by the API server's immutable name label."""
    if not excluded:
        return {}
    return {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                  "values": sorted(set(excluded))}]}


def _resource_rules(kinds: Sequence[KindInfo]) -> list[dict[str, Any]]:
    by_group: dict[tuple[str, str], list[str]] = {}
    for k in kinds:
        by_group.setdefault((k.group, k.version), []).append(k.plural)
    return [{"apiGroups": [g], "apiVersions": [v], "operations": list(OPERATIONS),
             "resources": sorted(set(p)), "scope": "*"} for (g, v), p in sorted(by_group.items())]


def policy_objects(plan: RulePlan, action: str, scope: ExportScope = ExportScope(),
                   waivers: Sequence[WaiverScope] = (), digest: str = "") -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its binding for one compiled rule. Pure."""
    if plan.compiled is None:
        raise ValueError(f"{plan.rule.id} has no CEL form: {plan.reason}")
    rule = plan.rule
    name = policy_name(rule.id)
    labels = {MANAGED_LABEL: MANAGED_VALUE, RULE_LABEL: rule.id}
    annotations = {DIGEST_ANNOTATION: digest} if digest else {}
    conditions: list[dict[str, str]] = []
    in_scope = scope_condition(scope)
    if in_scope:
        conditions.append({"name": "soc2infra-scope", "expression": in_scope})
    not_waived = waiver_condition(rule, waivers, scope, plan.kinds)
    if not_waived:
        conditions.append({"name": "soc2infra-waivers", "expression": not_waived})
    spec: dict[str, Any] = {
        "failurePolicy": failure_policy(action),
        "matchConstraints": {"matchPolicy": "Equivalent", "resourceRules": _resource_rules(plan.kinds)},
    }
    if conditions:
        spec["matchConditions"] = conditions
    if plan.compiled.variables:
        spec["variables"] = [{"name": v, "expression": POD_VARIABLES[v]} for v in plan.compiled.variables]
    spec["validations"] = [{
        "expression": plan.compiled.expression,
        "message": _static_message(rule),
        "messageExpression": message_expression(rule),
        "reason": "Forbidden",
    }]
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    policy = {"apiVersion": API_VERSION, "kind": "ValidatingAdmissionPolicy", "metadata": metadata,
              "spec": spec}
    binding_spec: dict[str, Any] = {"policyName": name, "validationActions": list(VALIDATION_ACTIONS[action])}
    selector = namespace_selector(scope.excluded_namespaces)
    if selector:
        binding_spec["matchResources"] = {"namespaceSelector": selector}
    binding = {"apiVersion": API_VERSION, "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": name, "labels": dict(labels)}, "spec": binding_spec}
    return [policy, binding]


def export_objects(plans: Sequence[RulePlan], actions: Mapping[str, str] | None = None,
                   scope: ExportScope = ExportScope(), waivers: Sequence[WaiverScope] = (),
                   digest: str = "") -> list[dict[str, Any]]:
    """Policies and bindings for every compiled plan; *actions* overrides rules' own actions."""
    out: list[dict[str, Any]] = []
    for plan in plans:
        if plan.cel:
            action = (actions or {}).get(plan.rule.id, plan.rule.action)
            out += policy_objects(plan, action, scope, waivers, digest)
    return out


# --------------------------------------------------------------------------- docs

@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for reports and the docs."""

    cel: list[str] = field(default_factory=list)
    webhook: list[tuple[str, str]] = field(default_factory=list)
    scan_only: list[tuple[str, str]] = field(default_factory=list)


def summarize(plans: Sequence[RulePlan]) -> Summary:
    """Which rules compile, which stay on the webhook (with reasons), which are scan-only."""
    s = Summary()
    for p in plans:
        if p.cel:
            s.cel.append(p.rule.id)
        elif p.admission:
            s.webhook.append((p.rule.id, p.reason))
        else:
            s.scan_only.append((p.rule.id, p.reason))
    return s


DOCS_START = "<!-- generated: vap rules (soc2infra policy docs) -->"
DOCS_END = "<!-- end of generated vap rules -->"


def docs_section(pack: PolicyPack) -> str:
    """The generated block of docs/vap.md: every Kubernetes rule and where it is enforced."""
    plans = plan_pack(pack)
    s = summarize(plans)
    lines = [DOCS_START, "",
             f"{len(s.cel)} of {len(plans)} Kubernetes rules compile to CEL; {len(s.webhook)} stay on the "
             f"webhook; scan only (configuration files, not API objects): {len(s.scan_only)}.", "",
             "| Rule | Action | Enforced by | Why not CEL |", "|---|---|---|---|"]
    for p in plans:
        where = "ValidatingAdmissionPolicy" if p.cel else "webhook" if p.admission else "scan only"
        why = p.reason.replace("|", "\\|") if not p.cel else ""
        lines.append(f"| {p.rule.id} | {p.rule.action} | {where} | {why} |")
    lines += ["", DOCS_END]
    return "\n".join(lines)


# --------------------------------------------------------------------------- waivers

def file_waiver_scopes(entries: Iterable[Any], today: Any) -> list[WaiverScope]:
    """Live waiver-file entries (:class:`soc2infra._core.waivers.WaiverEntry`) whose resource can be a
    Kubernetes address (``apiVersion/Kind/…``), as :class:`WaiverScope`. Expired entries are
    dropped: they no longer exempt anything at the webhook either."""
    out: list[WaiverScope] = []
    for e in entries:
        if e.expires is not None and e.expires < today:
            continue
        if "/" not in e.resource and e.resource != "*":
            continue  # a Terraform address
        out.append(WaiverScope(rule=e.rule, address=e.resource, origin=e.location or "waiver file"))
    return out
