"""Compile the declarative condition language into three-valued predicates.

A compiled predicate takes an :class:`EvalContext` and returns ``True`` (holds),
``False`` (does not hold) or ``None`` (unknown: it depends on a value that cannot be
decided statically). ``all``/``any``/``not`` follow Kleene logic, so an unknown can
never turn into a silent pass.

The language is documented in ``docs/policy-language.md``. Operators live in the
explicit registry :data:`OPERATORS`; adding one means adding a compiler function there.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soc2infra.engine.paths import flatten, parse_path, resolve
from soc2infra.model import Resource, Unknown

Tri = bool | None
Predicate = Callable[["EvalContext"], Tri]


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``field`` names the offending key path."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class EvalContext:
    """What a predicate sees: the current value (resource attributes or a list element),
    the resource being evaluated and the index of every resource in the scan."""

    value: Any
    resource: Resource
    index: ResourceIndex
    notes: dict[str, Any] = field(default_factory=dict)
    # The resource the rule is about, when `resource` is a related one (inside related.where).
    subject: Resource | None = None

    def with_value(self, value: Any) -> EvalContext:
        """Same resource and index, a new current value (for quantifiers)."""
        return EvalContext(value, self.resource, self.index, self.notes, self.subject)


class ResourceIndex:
    """Lookup tables over all resources of one scan, built once, used by cross-resource rules."""

    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources
        self.by_type: dict[str, list[Resource]] = {}
        self.by_address: dict[str, Resource] = {}
        # address → [(referencing resource, attribute path)]
        self.inbound: dict[str, list[tuple[Resource, str]]] = {}
        # identity value (bucket name, ARN …) → resources having it
        self.by_identity: dict[str, list[Resource]] = {}
        self._value_tables: dict[tuple[str, str], dict[str, list[Resource]]] = {}
        for res in resources:
            self.by_type.setdefault(res.type, []).append(res)
            self.by_address[res.address] = res
            for path, targets in res.references.items():
                for target in targets:
                    self.inbound.setdefault(target, []).append((res, path))
            for ident in res.identities:
                self.by_identity.setdefault(ident, []).append(res)

    def referencing(self, target: Resource, types: frozenset[str], via: str | None) -> list[Resource]:
        """Resources of *types* whose attribute *via* (or any attribute) refers to *target*,
        by reference expression or by literal value equal to one of its identities."""
        found: dict[int, Resource] = {}
        for res, path in self.inbound.get(target.address, ()):
            if res.type in types and (via is None or _path_under(path, via)):
                found[id(res)] = res
        if target.identities and via is not None:
            for t in types:
                by_value = self._values_at(t, via)
                for ident in target.identities:
                    for res in by_value.get(ident, ()):
                        found[id(res)] = res
        return list(found.values())

    def _values_at(self, rtype: str, via: str) -> dict[str, list[Resource]]:
        """String value at *via* → resources of *rtype* holding it; built once per pair so
        literal-reference lookups stay linear in the number of resources."""
        key = (rtype, via)
        table = self._value_tables.get(key)
        if table is None:
            table = {}
            vpath = parse_path(via)
            for res in self.by_type.get(rtype, ()):
                for v in resolve(res.attributes, vpath):
                    if isinstance(v, str):
                        table.setdefault(v, []).append(res)
            self._value_tables[key] = table
        return table

    def referenced_by(self, source: Resource, types: frozenset[str], via: str | None) -> list[Resource]:
        """Resources of *types* that *source* refers to (from attribute *via*, or any)."""
        out: dict[int, Resource] = {}
        for path, targets in source.references.items():
            if via is not None and not _path_under(path, via):
                continue
            for addr in targets:
                res = self.by_address.get(addr)
                if res is not None and res.type in types:
                    out[id(res)] = res
        if via is not None:
            for v in resolve(source.attributes, parse_path(via)):
                if isinstance(v, str):
                    for res in self.by_identity.get(v, ()):
                        if res.type in types:
                            out[id(res)] = res
        return list(out.values())


def _path_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


# --------------------------------------------------------------------------- logic

def t_and(values: list[Tri]) -> Tri:
    """Kleene AND."""
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def t_or(values: list[Tri]) -> Tri:
    """Kleene OR."""
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def t_not(value: Tri) -> Tri:
    """Kleene NOT."""
    return None if value is None else not value


# --------------------------------------------------------------------------- compiler

Compiler = Callable[[Any, Mapping[str, Any], str], Predicate]


def compile_condition(spec: Any, where: str = "condition") -> Predicate:
    """Compile a condition mapping into a predicate; raise :class:`ConditionError` on bad input."""
    if not isinstance(spec, Mapping) or not spec:
        raise ConditionError("a condition must be a non-empty mapping", where)
    if "path" in spec:
        return _compile_path_test(spec, where)
    keys = [k for k in spec if k in OPERATORS]
    if len(keys) != 1:
        raise ConditionError(
            f"a condition needs exactly one of: path, {', '.join(sorted(OPERATORS))} (got {sorted(spec)})",
            where,
        )
    key = keys[0]
    return OPERATORS[key](spec[key], spec, f"{where}.{key}")


def _c_all(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    preds = [compile_condition(c, f"{where}[{i}]") for i, c in enumerate(_as_list(arg, where))]

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


def _c_any(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    preds = [compile_condition(c, f"{where}[{i}]") for i, c in enumerate(_as_list(arg, where))]

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


def _c_not(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    inner = compile_condition(arg, where)
    return lambda ctx: t_not(inner(ctx))


def _as_list(arg: Any, where: str) -> list[Any]:
    if not isinstance(arg, list) or not arg:
        raise ConditionError("expected a non-empty list of conditions", where)
    return arg


def _quantifier(mode: str) -> Compiler:
    def compile_q(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
        if not isinstance(arg, Mapping) or "path" not in arg or "where" not in arg:
            raise ConditionError(f"{mode} needs 'path' and 'where'", where)
        path = parse_path(str(arg["path"]))
        inner = compile_condition(arg["where"], f"{where}.where")

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


def _c_related(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
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
    inner = compile_condition(arg["where"], f"{where}.where") if "where" in arg else None

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
        labels = _pod_labels(res)
        sel_path = parse_path(via or "spec.selector")
        return [r for r in pool if r.namespace == res.namespace
                and any(_selector_matches(s, labels) for s in resolve(r.attributes, sel_path))]

    def pred(ctx: EvalContext) -> Tri:
        results: list[Tri] = []
        for cand in candidates(ctx):
            if inner is None:
                return True
            results.append(inner(EvalContext(cand.attributes, cand, ctx.index, ctx.notes,
                                             ctx.subject or ctx.resource)))
        return t_or(results) if results else False

    return pred


def _pod_labels(res: Resource) -> dict[str, str]:
    for path in ("_pod_metadata.labels", "spec.template.metadata.labels", "metadata.labels"):
        got = resolve(res.attributes, parse_path(path))
        if got and isinstance(got[0], dict):
            return {str(k): str(v) for k, v in got[0].items()}
    return {}


def _selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels + matchExpressions); an empty
    selector selects everything, as in a PodDisruptionBudget or NetworkPolicy."""
    if not isinstance(selector, dict):
        return False
    plain = {k: v for k, v in selector.items() if k not in ("matchLabels", "matchExpressions")}
    match_labels = dict(selector.get("matchLabels") or {}, **plain)
    for k, v in match_labels.items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr.get("key"), expr.get("operator"), [str(v) for v in expr.get("values") or []]
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _c_count(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``count: {path: P, where: C, gte: n, lte: n}``: how many elements satisfy C."""
    if not isinstance(arg, Mapping) or "path" not in arg:
        raise ConditionError("count needs 'path'", where)
    path = parse_path(str(arg["path"]))
    inner = compile_condition(arg["where"], f"{where}.where") if "where" in arg else None
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


# --------------------------------------------------------------------------- path tests

def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _norm(v: Any) -> Any:
    # Terraform and YAML spell booleans and numbers as strings often enough
    # ("true", "30") that comparisons must see through it.
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "false"):
            return low == "true"
        n = _num(v)
        if n is not None:
            return n
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _is_empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def _cidr_overlaps_any(v: Any, nets: list[ipaddress._BaseNetwork]) -> bool:
    try:
        net = ipaddress.ip_network(str(v), strict=False)
    except ValueError:
        return False
    return any(net.version == n.version and net.overlaps(n) for n in nets)


def _value_test(op: str, arg: Any, where: str) -> Callable[[Any], bool]:
    """A two-valued test of one known value."""
    if op == "equals":
        a = _norm(arg)
        return lambda v: _norm(v) == a
    if op == "not_equals":
        a = _norm(arg)
        return lambda v: _norm(v) != a
    if op in ("in", "not_in"):
        if not isinstance(arg, list):
            raise ConditionError(f"{op} needs a list", where)
        vals = {_hashable(_norm(a)) for a in arg}
        if op == "in":
            return lambda v: _hashable(_norm(v)) in vals
        return lambda v: _hashable(_norm(v)) not in vals
    if op in ("gte", "gt", "lte", "lt"):
        bound = _num(arg)
        if bound is None:
            raise ConditionError(f"{op} needs a number", where)
        cmp = {"gte": float.__ge__, "gt": float.__gt__, "lte": float.__le__, "lt": float.__lt__}[op]
        return lambda v: (n := _num(v)) is not None and cmp(n, bound)
    if op in ("matches", "not_matches"):
        try:
            rx = re.compile(str(arg))
        except re.error as exc:
            raise ConditionError(f"bad regular expression: {exc}", where) from None
        if op == "matches":
            return lambda v: isinstance(v, str) and rx.search(v) is not None
        return lambda v: not (isinstance(v, str) and rx.search(v) is not None)
    if op in ("glob", "not_glob"):
        pats = [str(a) for a in (arg if isinstance(arg, list) else [arg])]
        def hit(v: Any) -> bool:
            return isinstance(v, str) and any(fnmatch.fnmatchcase(v, p) for p in pats)

        return hit if op == "glob" else (lambda v: not hit(v))
    if op in ("contains", "not_contains"):
        def has(v: Any) -> bool:
            if isinstance(v, list):
                return any(_norm(x) == _norm(arg) for x in v)
            if isinstance(v, dict):
                return arg in v
            return isinstance(v, str) and str(arg) in v
        return has if op == "contains" else (lambda v: not has(v))
    if op == "empty":
        want = bool(arg)
        return lambda v: _is_empty(v) == want
    if op == "truthy":
        want = bool(arg)
        return lambda v: (_norm(v) not in (False, 0.0, None, "", "false") and not _is_empty(v)) == want
    if op in ("cidr_overlaps", "not_cidr_overlaps"):
        nets = [ipaddress.ip_network(str(a), strict=False) for a in (arg if isinstance(arg, list) else [arg])]
        if op == "cidr_overlaps":
            return lambda v: _cidr_overlaps_any(v, nets)
        return lambda v: not _cidr_overlaps_any(v, nets)
    if op in ("length_gte", "length_lte"):
        n = int(arg)
        if op == "length_gte":
            return lambda v: hasattr(v, "__len__") and len(v) >= n
        return lambda v: hasattr(v, "__len__") and len(v) <= n
    raise ConditionError(f"unknown operator {op!r}", where)


def _hashable(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


# Operators about a single scalar: on a list of plain values they test each element
# (combined with the quantifier), so `{path: cidr_blocks, matches: "/0$"}` means what it says.
ELEMENTWISE = frozenset({"in", "not_in", "gte", "gt", "lte", "lt", "matches", "not_matches", "glob",
                         "not_glob", "cidr_overlaps", "not_cidr_overlaps"})
OPERAND_REFS = ("$root", "$subject")

VALUE_OPERATORS = (
    "equals", "not_equals", "in", "not_in", "gte", "gt", "lte", "lt", "matches", "not_matches",
    "glob", "not_glob", "contains", "not_contains", "empty", "truthy", "cidr_overlaps",
    "not_cidr_overlaps", "length_gte", "length_lte",
)
_PATH_KEYS = {"path", "default", "quantifier", "exists", *VALUE_OPERATORS}


def _compile_path_test(spec: Mapping[str, Any], where: str) -> Predicate:
    """``{path: P, <op>: arg, default: v, quantifier: all|any}``.

    Values reached through lists are combined with ``quantifier`` (default ``all``).
    When nothing is at P: ``exists: false`` holds, ``exists: true`` fails, other tests
    use ``default`` when given and otherwise fail.
    """
    unknown_keys = set(spec) - _PATH_KEYS
    if unknown_keys:
        raise ConditionError(f"unknown key(s) {sorted(unknown_keys)} in path test", where)
    path = parse_path(str(spec["path"]))
    ops = [k for k in spec if k in VALUE_OPERATORS or k == "exists"]
    if len(ops) != 1:
        raise ConditionError("a path test needs exactly one operator", where)
    op = ops[0]
    has_default = "default" in spec
    default = spec.get("default")
    quant = spec.get("quantifier", "all")
    if quant not in ("all", "any"):
        raise ConditionError("quantifier must be 'all' or 'any'", where + ".quantifier")

    if op == "exists":
        want = bool(spec["exists"])

        def pred_exists(ctx: EvalContext) -> Tri:
            vals = resolve(ctx.value, path)
            if not vals:
                return not want
            if all(isinstance(v, Unknown) and not v.nonnull for v in vals):
                return None
            return want

        return pred_exists

    arg = spec[op]
    dynamic = isinstance(arg, Mapping) and len(arg) == 1 and next(iter(arg)) in OPERAND_REFS
    ref_kind, ref_path = "", ()
    if dynamic:
        ref_kind = next(iter(arg))
        ref_path = parse_path(str(arg[ref_kind]))
        test = _value_test(op, [] if op in ("in", "not_in") else "", f"{where}.{op}")  # validates op
    else:
        test = _value_test(op, arg, f"{where}.{op}")
    elementwise = op in ELEMENTWISE

    def test_one(v: Any, test: Callable[[Any], bool]) -> Tri:
        if isinstance(v, Unknown):
            if v.candidates is None:
                return None
            # Every value the expression can take: all comply → pass, none → fail.
            outcomes = [(test(default) if has_default else False) if c is None else test(c)
                        for c in v.candidates]
            return True if all(outcomes) else (False if not any(outcomes) else None)
        if elementwise and isinstance(v, list):
            if not v:
                return quant == "all"  # vacuous truth, as in for_all
            inner = [test_one(x, test) for x in v]
            return t_and(inner) if quant == "all" else t_or(inner)
        if op in ("equals", "not_equals", "in", "not_in") and _contains_unknown(v):
            return None
        return test(v)

    def operand_test(ctx: EvalContext) -> Callable[[Any], bool] | None:
        """The test with its operand read from the resource (``$root``) or from the rule's
        subject (``$subject``, inside ``related.where``); None when the operand is unknown."""
        owner = ctx.resource if ref_kind == "$root" else (ctx.subject or ctx.resource)
        got = flatten(resolve(owner.attributes, ref_path))
        if any(isinstance(g, Unknown) for g in got):
            return None
        if op in ("in", "not_in"):
            return _value_test(op, got, where)
        if not got:
            return None
        return _value_test(op, got[0], where)

    def pred(ctx: EvalContext) -> Tri:
        current = test
        if dynamic:
            resolved = operand_test(ctx)
            if resolved is None:
                return None
            current = resolved
        vals = resolve(ctx.value, path)
        if not vals:
            if has_default:
                return current(default)
            return False
        results = [test_one(v, current) for v in vals]
        return t_and(results) if quant == "all" else t_or(results)

    return pred


def _contains_unknown(v: Any) -> bool:
    if isinstance(v, Unknown):
        return True
    if isinstance(v, list):
        return any(_contains_unknown(x) for x in v)
    if isinstance(v, dict):
        return any(_contains_unknown(x) for x in v.values())
    return False


def _c_const(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``const: false`` — for resource types that must not exist at all."""
    if not isinstance(arg, bool):
        raise ConditionError("const must be true or false", where)
    return lambda _ctx: arg


def _c_type_in(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``type_in: [aws_iam_policy_attachment]`` — the resource's own type is one of these."""
    types = frozenset([arg] if isinstance(arg, str) else arg or [])
    if not types:
        raise ConditionError("type_in needs a type or a list of types", where)
    return lambda ctx: ctx.resource.type in types


OPERATORS: dict[str, Compiler] = {
    "const": _c_const,
    "type_in": _c_type_in,
    "all": _c_all,
    "any": _c_any,
    "not": _c_not,
    "for_all": _quantifier("for_all"),
    "for_any": _quantifier("for_any"),
    "for_none": _quantifier("for_none"),
    "related": _c_related,
    "count": _c_count,
}
"""Explicit registry of structural operators; path tests are handled separately.
Domain operators (IAM statements, secrets) are added here by name, not by import side effects."""


def _register_domain_operators() -> None:
    # Domain operators live in their own modules (they import this one), and are listed
    # here explicitly rather than registering themselves on import.
    from soc2infra.engine.iam import IAM_OPERATORS
    from soc2infra.engine.secrets import SECRET_OPERATORS

    for table in (IAM_OPERATORS, SECRET_OPERATORS):
        clash = set(table) & set(OPERATORS)
        if clash:
            raise RuntimeError(f"operator name clash: {sorted(clash)}")
        OPERATORS.update(table)


_register_domain_operators()
