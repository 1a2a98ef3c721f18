"""Structural operators: combine conditions (all/any/not), quantify over lists, count,
follow relations between resources, and a few facts about the resource itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soc2infra._cogs.model import Resource, Unknown
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
from soc2infra._core.engine.kubernetes import pod_labels, selector_matches
from soc2infra._core.engine.paths import flatten, parse_path, resolve


def _c_all(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    preds = [env.compile(c, f"{where}[{i}]") for i, c in enumerate(_as_list(arg, where))]

    def pred(ctx: EvalContext) -> Tri:
        unknown = False
        for p in preds:
            r = p(ctx)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    return pred


def _c_any(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    preds = [env.compile(c, f"{where}[{i}]") for i, c in enumerate(_as_list(arg, where))]

    def pred(ctx: EvalContext) -> Tri:
        unknown = False
        for p in preds:
            r = p(ctx)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    return pred


def _c_not(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    inner = env.compile(arg, where)
    return lambda ctx: t_not(inner(ctx))


def _as_list(arg: Any, where: str) -> list[Any]:
    if not isinstance(arg, list) or not arg:
        raise ConditionError("expected a non-empty list of conditions", where)
    return arg


def _quantifier(mode: str) -> Compiler:
    def compile_q(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
        if not isinstance(arg, Mapping) or "path" not in arg or "where" not in arg:
            raise ConditionError(f"{mode} needs 'path' and 'where'", where)
        path = parse_path(str(arg["path"]))
        inner = env.compile(arg["where"], f"{where}.where")

        def pred(ctx: EvalContext) -> Tri:
            items = flatten(resolve(ctx.value, path))
            if any(isinstance(i, Unknown) for i in items):
                return None
            results = [inner(ctx.with_value(i)) for i in items]
            if mode == "for_all":
                return t_and(results)
            if mode == "for_any":
                return t_or(results)
            return t_not(t_or(results))  # for_none

        return pred

    return compile_q


_LINKS = ("referenced_by", "references", "namespace", "selector", "any")


def _c_related(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``related: {types: [...], link: referenced_by|references|namespace|selector|any,
    via: attr.path, where: condition}`` → true when such a related resource exists
    (and, with ``where``, satisfies it)."""
    if not isinstance(arg, Mapping) or "types" not in arg:
        raise ConditionError("related needs 'types'", where)
    types = frozenset([arg["types"]] if isinstance(arg["types"], str) else arg["types"])
    link = arg.get("link", "referenced_by")
    if link not in _LINKS:
        raise ConditionError(f"related.link must be one of {_LINKS}", where + ".link")
    via = arg.get("via")
    inner = env.compile(arg["where"], f"{where}.where") if "where" in arg else None
    # `unresolved: unknown`: a resource of `types` whose `via` cannot be resolved (its value
    # comes from outside the scanned tree) might be the one pointing here, so "none found"
    # becomes unknown instead of false; with link: references, this resource's own `via`
    # may name a matching resource outside the tree.
    unresolved = arg.get("unresolved", "ignore")
    if unresolved not in ("ignore", "unknown"):
        raise ConditionError("related.unresolved must be 'ignore' or 'unknown'", where + ".unresolved")
    if unresolved == "unknown" and (link not in ("referenced_by", "references") or via is None):
        raise ConditionError("related.unresolved: unknown needs link referenced_by or references, and 'via'",
                             where + ".unresolved")

    def candidates(ctx: EvalContext) -> list[Resource]:
        res, idx = ctx.resource, ctx.index
        if link == "referenced_by":
            return idx.referencing(res, types, via)
        if link == "references":
            return idx.referenced_by(res, types, via)
        pool = [r for t in types for r in idx.by_type.get(t, ())]
        if link == "any":
            return pool
        if link == "namespace":
            return [r for r in pool if r.namespace == res.namespace]
        # selector: the related object's label selector (at *via*, default spec.selector)
        # selects this object's pod labels.
        labels = pod_labels(res)
        sel_path = parse_path(via or "spec.selector")
        return [r for r in pool if r.namespace == res.namespace
                and any(selector_matches(s, labels) for s in resolve(r.attributes, sel_path))]

    def pred(ctx: EvalContext) -> Tri:
        results: list[Tri] = []
        for cand in candidates(ctx):
            if inner is None:
                return True
            results.append(inner(EvalContext(cand.attributes, cand, ctx.index, ctx.notes,
                                             ctx.subject or ctx.resource)))
        outcome = t_or(results) if results else False
        if outcome is False and unresolved == "unknown" and via is not None:
            if link == "references":
                mine = ctx.index.unresolved(frozenset([ctx.resource.type]), via)
                return None if any(r is ctx.resource for r in mine) else outcome
            for cand in ctx.index.unresolved(types, via):
                if cand is ctx.resource:
                    continue
                if inner is None or inner(EvalContext(cand.attributes, cand, ctx.index, ctx.notes,
                                                      ctx.subject or ctx.resource)) is not False:
                    return None
        return outcome

    return pred



def _c_count(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``count: {path: P, where: C, gte: n, lte: n}``: how many elements satisfy C."""
    if not isinstance(arg, Mapping) or "path" not in arg:
        raise ConditionError("count needs 'path'", where)
    path = parse_path(str(arg["path"]))
    inner = env.compile(arg["where"], f"{where}.where") if "where" in arg else None
    lo, hi = arg.get("gte"), arg.get("lte")

    def pred(ctx: EvalContext) -> Tri:
        items = flatten(resolve(ctx.value, path))
        yes = maybe = 0
        for i in items:
            r = None if isinstance(i, Unknown) else (True if inner is None else inner(ctx.with_value(i)))
            yes += r is True
            maybe += r is None
        lo_ok = t_or([True if lo is None or yes >= lo else (None if yes + maybe >= lo else False)])
        hi_ok = True if hi is None or yes + maybe <= hi else (None if yes <= hi else False)
        return t_and([lo_ok, hi_ok])

    return pred


def _c_const(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``const: false`` — for resource types that must not exist at all."""
    if not isinstance(arg, bool):
        raise ConditionError("const must be true or false", where)
    return lambda _ctx: arg


def _c_type_in(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``type_in: [aws_iam_policy_attachment]`` — the resource's own type is one of these."""
    types = frozenset([arg] if isinstance(arg, str) else arg or [])
    if not types:
        raise ConditionError("type_in needs a type or a list of types", where)
    return lambda ctx: ctx.resource.type in types



def _c_first_of_type(arg: Any, _spec: Mapping[str, Any], where: str, env: CompileEnv) -> Predicate:
    """``first_of_type: true``: this resource has the smallest address among the resources of
    its type in the scan. Anchors a tree-level rule on one resource, so it is reported once."""
    want = bool_arg(arg, where)

    def pred(ctx: EvalContext) -> Tri:
        peers = ctx.index.by_type.get(ctx.resource.type, ())
        first = min((r.address for r in peers), default=ctx.resource.address)
        return (first == ctx.resource.address) == want

    return pred


STRUCTURAL_OPERATORS: dict[str, Compiler] = {
    "const": _c_const,
    "type_in": _c_type_in,
    "first_of_type": _c_first_of_type,
    "all": _c_all,
    "any": _c_any,
    "not": _c_not,
    "for_all": _quantifier("for_all"),
    "for_any": _quantifier("for_any"),
    "for_none": _quantifier("for_none"),
    "related": _c_related,
    "count": _c_count,
}
"""Operators that shape conditions rather than test one domain; path tests are separate
(:mod:`soc2infra._core.engine.values`)."""
