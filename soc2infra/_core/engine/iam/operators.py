"""The declarative IAM operators: over a resource (``iam_statements``, ``iam_trust``,
``iam_effective_statements``) and over one statement inside their ``where``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from soc2infra._cogs.model import Unknown
from soc2infra._core.engine.core import (
    CompileEnv,
    Compiler,
    ConditionError,
    EvalContext,
    Predicate,
    Tri,
    bool_arg,
    t_and,
    t_not,
    t_or,
)
from soc2infra._core.engine.iam.attachments import ManagedPolicies, effective_policies, principal_for
from soc2infra._core.engine.iam.patterns import (
    _any_of,
    condition_matches,
    covers_action,
    covers_all_actions,
    grants_write,
    matches_action,
    overlap_by_shape,
    pattern_covers,
    patterns_overlap,
    resource_is_wildcard,
    shape_admits,
    shape_overlaps,
)
from soc2infra._core.engine.iam.statements import (
    DATA_DOCUMENT,
    PolicySet,
    Statement,
    StatementView,
    Value,
    _cache,
    document_policies,
    policies_at,
    unknown_shape,
)
from soc2infra._core.engine.paths import note_unknown


def _names(arg: Any, where: str, lower: bool = True) -> frozenset[str]:
    items = arg if isinstance(arg, list) else [arg]
    if not items or not all(isinstance(i, (str, bool, int)) for i in items):
        raise ConditionError("expected a string or a list of strings", where)
    out = []
    for i in items:
        text = ("true" if i else "false") if isinstance(i, bool) else str(i)
        out.append(text.lower() if lower else text)
    return frozenset(out)


def _statement(ctx: EvalContext) -> Statement | None:
    value = ctx.value
    return value.statement if isinstance(value, StatementView) else None


def _statement_test(test: Callable[[Statement], Tri]) -> Predicate:
    """A predicate over the statement in ``ctx.value`` (false outside ``where`` of an IAM operator)."""

    def pred(ctx: EvalContext) -> Tri:
        st = _statement(ctx)
        return False if st is None else test(st)

    return pred


def _over_queries(queries: frozenset[str], test: Callable[[Statement, str], Tri]) -> Predicate:
    return _statement_test(lambda st: t_or([test(st, q) for q in sorted(queries)]))


# --------------------------------------------------------------------------- statement-level operators

def _c_effect(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``effect: Allow`` (or Deny), case-insensitive."""
    wanted = _names(arg, where)

    def test(st: Statement) -> Tri:
        return None if isinstance(st.effect, Unknown) else st.effect.lower() in wanted

    return _statement_test(test)


def _c_action_matches(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``action_matches: "iam:Pass*"`` (or a list): the statement applies to at least one such action."""
    return _over_queries(_names(arg, where, lower=False), matches_action)


def _c_covers_action(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``covers_action: "iam:*"`` (or a list, any of): the statement applies to every such action."""
    return _over_queries(_names(arg, where, lower=False), covers_action)


def _c_allows_action(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``allows_action: "iam:*"``: an Allow statement covering every such action."""
    queries = _names(arg, where, lower=False)

    def test(st: Statement) -> Tri:
        effect = None if isinstance(st.effect, Unknown) else st.effect.lower() == "allow"
        return t_and([effect, t_or([covers_action(st, q) for q in sorted(queries)])])

    return _statement_test(test)


def _c_covers_all_actions(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``covers_all_actions: true`` or ``{except_services: [iam, sts]}``."""
    if arg is True:
        services: frozenset[str] = frozenset()
    elif isinstance(arg, Mapping) and set(arg) <= {"except_services"}:
        services = _names(arg.get("except_services", []) or [""], f"{where}.except_services") - {""}
    else:
        raise ConditionError("covers_all_actions takes true or {except_services: [...]}", where)
    return _statement_test(lambda st: covers_all_actions(st, services))


def _c_grants_write(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``grants_write: true``: the statement's actions include a non-read action."""
    want = bool_arg(arg, where)
    return _statement_test(lambda st: grants_write(st) if want else t_not(grants_write(st)))


def _c_resource_is_wildcard(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``resource_is_wildcard: true``: Resource ``*`` (or NotResource)."""
    want = bool_arg(arg, where)
    return _statement_test(lambda st: resource_is_wildcard(st) if want else t_not(resource_is_wildcard(st)))


def _c_resource_matches(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``resource_matches: "arn:aws:s3:::logs*"``: some Resource overlaps the pattern."""
    queries = _names(arg, where, lower=False)

    def test(st: Statement) -> Tri:
        if st.not_resources:
            return t_not(_any_of(st.not_resources, lambda r: any(pattern_covers(r, q) for q in queries)))
        return _any_of(st.resources, lambda r: any(patterns_overlap(r, q) for q in queries),
                       overlap_by_shape(queries))

    return _statement_test(test)


def _c_has_condition(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``has_condition: {key: aws:MultiFactorAuthPresent, operator: [Bool], values: [false]}``:
    the statement has a condition matching every filter given (each one or a list)."""
    if not isinstance(arg, Mapping) or not arg or not set(arg) <= {"key", "operator", "values"}:
        raise ConditionError("has_condition takes a mapping of key, operator and/or values", where)
    keys = _names(arg["key"], f"{where}.key") if "key" in arg else None
    ops = _names(arg["operator"], f"{where}.operator") if "operator" in arg else None
    vals = _names(arg["values"], f"{where}.values") if "values" in arg else None
    return _statement_test(lambda st: t_or([condition_matches(c, ops, keys, vals) for c in st.conditions]))


def _c_principal_types(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``principal_types: [AWS]``: the statement names a principal of one of these types
    (AWS, Service, Federated, CanonicalUser; ``"Principal": "*"`` counts as AWS)."""
    wanted = _names(arg, where)

    def test(st: Statement) -> Tri:
        types = tuple(t for t, _i in st.principals)
        return _any_of(types, lambda t: t.lower() in wanted)

    return _statement_test(test)


def _ident_by_shape(ident: Unknown, exact: frozenset[str] | None, globs: frozenset[str] | None) -> Tri:
    """An unknown principal decided by its fixed text: ``arn:${partition}:iam::${account}:root``
    can never be ``"*"``, whatever the partition and account are."""
    shape = unknown_shape(ident)
    if shape is None:
        return None
    could = (exact is not None and any(shape_admits(shape[0], e) for e in exact)) \
        or (globs is not None and any(shape_overlaps(shape[0], g) for g in globs))
    return None if could else False


def _c_principal_matches(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``principal_matches: {type: AWS, identifiers: ["*"]}``: a principal of that type whose
    identifier equals one of *identifiers*, or matches one of the shell patterns in ``glob``."""
    if not isinstance(arg, Mapping) or not set(arg) <= {"type", "identifiers", "glob"}:
        raise ConditionError("principal_matches takes {type, identifiers and/or glob}", where)
    types = _names(arg["type"], f"{where}.type") if "type" in arg else None
    exact = _names(arg["identifiers"], f"{where}.identifiers", lower=False) if "identifiers" in arg else None
    globs = _names(arg["glob"], f"{where}.glob", lower=False) if "glob" in arg else None

    def one(ptype: Value, ident: Value) -> Tri:
        parts: list[Tri] = []
        if types is not None:
            parts.append(None if isinstance(ptype, Unknown) else ptype.lower() in types)
        if exact is not None or globs is not None:
            if isinstance(ident, Unknown):
                parts.append(_ident_by_shape(ident, exact, globs))
            else:
                parts.append((exact is not None and ident in exact)
                             or (globs is not None and any(fnmatch.fnmatchcase(ident, g) for g in globs)))
        return t_and(parts)

    return _statement_test(lambda st: t_or([one(t, i) for t, i in st.principals]))


# --------------------------------------------------------------------------- document-level operators

QUANTIFIERS = ("any", "all", "none")


def _statement_query(arg: Any, where: str, allowed: set[str],
                     env: CompileEnv) -> tuple[Predicate | None, str]:
    if not isinstance(arg, Mapping) or not set(arg) <= allowed:
        raise ConditionError(f"expected a mapping with keys among {sorted(allowed)}", where)
    quantifier = arg.get("quantifier", "any")
    if quantifier not in QUANTIFIERS:
        raise ConditionError(f"quantifier must be one of {', '.join(QUANTIFIERS)}", f"{where}.quantifier")
    inner = env.compile(arg["where"], f"{where}.where") if "where" in arg else None
    return inner, quantifier


def _describe(st: Statement, position: int) -> dict[str, str]:
    return {"statement": st.sid or f"#{position + 1}", "policy": st.origin}


def quantify(policies: PolicySet, inner: Predicate | None, quantifier: str, ctx: EvalContext) -> Tri:
    """Apply *inner* to every statement and combine with *quantifier* (any | all | none),
    Kleene style: an uncertain statement can only make the result unknown, and so can a gap.
    The deciding statement and any gaps are written to ``ctx.notes`` (they become finding details)."""
    results: list[Tri] = []
    hit: dict[str, str] | None = None
    miss: dict[str, str] | None = None
    views: dict[Statement, StatementView] = _cache(ctx.index).setdefault("views", {})
    for position, (st, certain) in enumerate(policies.entries):
        view = views.get(st)
        if view is None:
            view = views[st] = st.view()  # built once per scan: many rules ask about the same statements
        r = True if inner is None else inner(EvalContext(view, ctx.resource, ctx.index, ctx.notes))
        if r is None:
            _note_statement_unknown(st)
        if r is True and hit is None and certain:
            hit = _describe(st, position)
        if r is False and miss is None and certain:
            miss = _describe(st, position)
        if quantifier == "all":
            results.append(r if certain or r is True else None)
        else:
            results.append(r if certain or r is False else None)
    results += [None] * len(policies.gaps)
    if quantifier == "all":
        outcome = t_and(results)
    else:
        outcome = t_or(results)
        outcome = t_not(outcome) if quantifier == "none" else outcome
    _note(ctx, outcome, quantifier, hit, miss, policies)
    return outcome


def _note_statement_unknown(st: Statement) -> None:
    """Record the first unknown field of an undecided statement as the reason."""
    fields: list[Any] = [st.effect, *st.actions, *st.not_actions, *st.resources, *st.not_resources]
    fields += [v for pair in (*st.principals, *st.not_principals) for v in pair]
    fields += [v for c in st.conditions for v in (c.operator, c.key, *c.values)]
    for v in fields:
        if isinstance(v, Unknown):
            note_unknown(v)
            return


def _gap_unknown(gap: str, kinds: dict[str, str]) -> Unknown:
    """A policy gap as an unknown with its kind (for the reason shown in reports)."""
    return Unknown(gap, kind=kinds.get(gap, "evaluator_limit"))


def _note(ctx: EvalContext, outcome: Tri, quantifier: str, hit: dict[str, str] | None,
          miss: dict[str, str] | None, policies: PolicySet) -> None:
    gaps = policies.gaps
    if outcome is None and gaps:
        ctx.notes["unresolved"] = sorted(set(gaps))
        for gap in sorted(set(gaps)):
            note_unknown(_gap_unknown(gap, policies.gap_kinds))
    if outcome is False and quantifier == "none" and hit is not None:
        ctx.notes["matching_statement"] = hit
    if outcome is False and quantifier == "all" and miss is not None:
        ctx.notes["failing_statement"] = miss


def _c_iam_statements(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``iam_statements: {path: policy, where: C, quantifier: any|all|none}``: the statements
    of the policy document(s) at *path* (default ``policy``; a policy document data source
    is its own document) tested with C."""
    inner, quantifier = _statement_query(arg, where, {"path", "where", "quantifier"}, env)
    path = arg.get("path")

    def pred(ctx: EvalContext) -> Tri:
        res = ctx.resource
        if path is None and res.type == DATA_DOCUMENT:
            found = document_policies(res, ctx.index)
        else:
            found = policies_at(res, str(path or "policy"), ctx.index)
        return quantify(found, inner, quantifier, ctx)

    return pred


def _c_iam_trust(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``iam_trust: {where: C, quantifier: any|all|none}``: the statements of a role's trust
    policy (``assume_role_policy``)."""
    inner, quantifier = _statement_query(arg, where, {"where", "quantifier"}, env)
    def pred(ctx: EvalContext) -> Tri:
        return quantify(policies_at(ctx.resource, "assume_role_policy", ctx.index), inner, quantifier, ctx)

    return pred


def _c_iam_effective_statements(arg: Any, _spec: Mapping[str, Any], where: str,
                                env: CompileEnv) -> Predicate:
    """``iam_effective_statements: {where: C, quantifier: any|all|none, via: user}``: every
    statement that applies to the principal (inline and attached policies, and for a user
    those of its groups). On a login profile or access key the principal is its user;
    *via* names another attribute holding a principal."""
    inner, quantifier = _statement_query(arg, where, {"where", "quantifier", "via"}, env)
    via = arg.get("via")
    managed = ManagedPolicies.from_data(env.data)

    def pred(ctx: EvalContext) -> Tri:
        principal = principal_for(ctx.resource, ctx.index, via)
        if isinstance(principal, Unknown):
            ctx.notes["unresolved"] = [principal.reason]
            return None
        ctx.notes["principal"] = principal.label
        return quantify(effective_policies(principal, ctx.index, managed), inner, quantifier, ctx)

    return pred




IAM_OPERATORS: dict[str, Compiler] = {
    # over a resource
    "iam_statements": _c_iam_statements,
    "iam_trust": _c_iam_trust,
    "iam_effective_statements": _c_iam_effective_statements,
    # over one statement (inside `where`)
    "effect": _c_effect,
    "action_matches": _c_action_matches,
    "covers_action": _c_covers_action,
    "allows_action": _c_allows_action,
    "covers_all_actions": _c_covers_all_actions,
    "grants_write": _c_grants_write,
    "resource_is_wildcard": _c_resource_is_wildcard,
    "resource_matches": _c_resource_matches,
    "has_condition": _c_has_condition,
    "principal_types": _c_principal_types,
    "principal_matches": _c_principal_matches,
}
"""IAM operators, listed in the condition language by :mod:`soc2infra._core.engine.registry`."""
