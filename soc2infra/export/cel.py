"""Compile the condition language to CEL, for ValidatingAdmissionPolicy.

A pure function of a rule's condition *data* (``Rule.condition_data``/``when_data``) and the
kind it is compiled for. The result reads the object under review the way the engine reads the
:class:`~soc2infra._cogs.model.Resource` that ``object_to_resource`` builds:

- paths walk lists implicitly, as ``engine.paths.resolve`` does; the compiler knows where the
  lists are from the Kubernetes API types (:mod:`soc2infra.export.k8s_schema`), so a step onto a
  list becomes ``.all()``/``.exists()`` and a step onto a field a ``has()`` test;
- a path test holds as in the engine: the values reached are combined with the quantifier, and
  when nothing is reached the ``default`` (evaluated here, it is a constant) or false decides;
- the normalized pod view (``_pod``, ``_pod_metadata``, ``_containers``, ``_all_containers``)
  becomes policy ``variables`` that select the pod spec by kind (:data:`POD_VARIABLES`);
- comparisons keep the engine's leniency (``"true"`` equals ``true``, ``"30"`` equals ``30``),
  written for the static type of the value.

Conditions CEL cannot express raise :class:`NotCompilable` with the reason: other objects
(``related``, ``$subject``), domain operators (IAM documents, secret detection), regular
expressions RE2 does not accept, and paths through values whose shape is unknown.

Why one module of about 570 lines: it is one compiler — path walking, the pod view, every
operator's CEL form and the refusals share one environment and must agree with each other.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soc2infra._core.engine.paths import parse_path
from soc2infra.export.k8s_schema import (
    ANY,
    CONTAINERS,
    OBJECT_META,
    POD_SPEC,
    STR,
    KindInfo,
    Ty,
    field_type,
)


class NotCompilable(Exception):
    """A condition with no CEL form; the message is the reason (listed in docs/vap.md)."""


# Pod-bearing kinds whose pod spec sits at spec.template.spec; Pod and CronJob are special.
POD_VARIABLES: dict[str, str] = {
    # dyn(): the three branches have different static types (PodSpec through three kinds'
    # schemas); the type checker accepts a dyn value and the runtime value keeps its types.
    "pod": ("object.kind == 'Pod' ? dyn(object.spec) : object.kind == 'CronJob' ? "
            "dyn(object).spec.jobTemplate.spec.template.spec : dyn(object).spec.template.spec"),
    "podMeta": ("object.kind == 'Pod' ? dyn(object.metadata) : object.kind == 'CronJob' ? "
                "(has(dyn(object).spec.jobTemplate.spec.template.metadata) ? "
                "dyn(object).spec.jobTemplate.spec.template.metadata : dyn({})) : "
                "(has(dyn(object).spec.template.metadata) ? dyn(object).spec.template.metadata : dyn({}))"),
    "containers": "has(variables.pod.containers) ? variables.pod.containers : []",
    "allContainers": ("variables.containers + "
                      "(has(variables.pod.initContainers) ? variables.pod.initContainers : []) + "
                      "(has(variables.pod.ephemeralContainers) ? variables.pod.ephemeralContainers : [])"),
}
# Which variables each one reads, so a policy declares only what it uses (in this order).
_VARIABLE_NEEDS = {"pod": (), "podMeta": (), "containers": ("pod",), "allContainers": ("pod", "containers")}
_NORMALIZED: dict[str, tuple[str, Ty]] = {
    "_pod": ("pod", POD_SPEC),
    "_pod_metadata": ("podMeta", OBJECT_META),
    "_containers": ("containers", CONTAINERS),
    "_all_containers": ("allContainers", CONTAINERS),
}
WORKLOAD_KINDS = frozenset({"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                            "ReplicationController"})

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"  # what double() parses
# Python regex features RE2 (CEL's matches()) does not have.
_NOT_RE2 = re.compile(r"\(\?[=!]|\(\?<[=!]|\(\?P=|\(\?>|\\[1-9]|\\Z|[*+?}]\+")


def cel_string(text: str) -> str:
    """A CEL string literal."""
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{out}'"


def field_name(name: str) -> str:
    """How CEL names an object field. Kubernetes 1.34 selects fields named like CEL keywords
    (``metadata.namespace``) as they are, and escapes dots, dashes and slashes."""
    if _IDENT.match(name):
        return name
    escaped = name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__") \
        .replace("/", "__slash__")
    if not _IDENT.match(escaped):
        raise NotCompilable(f"field name {name!r} cannot be written in CEL")
    return escaped


def _norm(v: Any) -> Any:
    """The engine's normalization of a literal: "true" → True, "30" → 30.0, ints → floats."""
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "false"):
            return low == "true"
        try:
            return float(v)
        except ValueError:
            return v
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _num_literal(n: float, as_int: bool) -> str:
    if as_int and n == int(n):
        return str(int(n))
    return repr(float(n))


@dataclass(frozen=True, slots=True)
class Val:
    """A CEL expression and the static type of its value (the value is known to be present)."""

    expr: str
    ty: Ty


@dataclass(slots=True)
class _Env:
    kind: KindInfo
    root: Val
    variables: set[str] = field(default_factory=set)
    counter: Any = field(default_factory=itertools.count)

    def fresh(self) -> str:
        return f"x{next(self.counter)}"


Body = Callable[[Val], str]


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """The CEL expression of a rule's ``when`` and ``condition`` for one kind, and the policy
    variables it reads."""

    expression: str
    variables: tuple[str, ...]


def compile_rule_condition(condition: Any, when: Any, kind: KindInfo,
                           root: str = "object") -> CompiledCondition:
    """CEL that is true when the rule passes on an object of *kind*: ``!(when) || (condition)``.

    *root* is ``dyn(object)`` when the expression shares a policy with other kinds whose schemas
    lack the fields it reads (the branch for another kind must still type-check)."""
    env = _Env(kind=kind, root=Val(root, Ty("obj", model=kind.model)))
    cond = _compile(condition, env.root, env)
    expr = cond if when is None else f"!({_compile(when, env.root, env)}) || ({cond})"
    needed: list[str] = []
    for name in ("pod", "podMeta", "containers", "allContainers"):
        if name in env.variables:
            for dep in (*_VARIABLE_NEEDS[name], name):
                if dep not in needed:
                    needed.append(dep)
    order = [n for n in POD_VARIABLES if n in needed]
    return CompiledCondition(expression=expr, variables=tuple(order))


# --------------------------------------------------------------------------- conditions

def _compile(spec: Any, cur: Val, env: _Env) -> str:
    if not isinstance(spec, Mapping) or not spec:
        raise NotCompilable("a condition must be a non-empty mapping")
    if "path" in spec:
        return _path_test(spec, cur, env)
    key = next(iter(spec))
    arg = spec[key]
    if key in ("all", "any"):
        parts = [_compile(c, cur, env) for c in arg]
        joiner = " && " if key == "all" else " || "
        return "(" + joiner.join(parts) + ")"
    if key == "not":
        return f"!({_compile(arg, cur, env)})"
    if key == "const":
        return "true" if arg else "false"
    if key == "type_in":
        types = [arg] if isinstance(arg, str) else list(arg)
        return f"(object.kind in [{', '.join(cel_string(t) for t in types)}])"
    if key in ("for_all", "for_any", "for_none"):
        return _quantifier(key, arg, cur, env)
    if key == "count":
        return _count(arg, cur, env)
    if key == "related":
        related = arg.get("types") if isinstance(arg, Mapping) else None
        names = ", ".join([related] if isinstance(related, str) else list(related or []))
        raise NotCompilable(f"reads other objects (related: {names}); the API server's CEL sees only the "
                            "object under review")
    raise NotCompilable(f"operator '{key}' has no CEL form")


def _quantifier(mode: str, arg: Mapping[str, Any], cur: Val, env: _Env) -> str:
    keys = parse_path(str(arg["path"]))
    where = arg["where"]

    def over_items(v: Val, quant: str) -> str:
        # flatten(): a list reached is iterated, a single value is the item itself.
        if v.ty.is_list and v.ty.item is not None:
            x = env.fresh()
            inner = _compile(where, Val(x, v.ty.item), env)
            return f"{v.expr}.{'all' if quant == 'all' else 'exists'}({x}, {inner})"
        return _compile(where, v, env)

    if mode == "for_all":
        return _walk(cur, keys, lambda v: over_items(v, "all"), "all", env)
    found = _walk(cur, keys, lambda v: over_items(v, "any"), "any", env)
    return found if mode == "for_any" else f"!({found})"


def _count(arg: Mapping[str, Any], cur: Val, env: _Env) -> str:
    keys = parse_path(str(arg["path"]))
    lo, hi = arg.get("gte"), arg.get("lte")

    def bounds(size: str) -> str:
        checks = ([f"{size} >= {int(lo)}"] if lo is not None else []) + \
                 ([f"{size} <= {int(hi)}"] if hi is not None else [])
        return "(" + " && ".join(checks or ["true"]) + ")"

    def at_leaf(v: Val) -> str:
        if not (v.ty.is_list and v.ty.item is not None):
            raise NotCompilable("count over a path that does not reach one list")
        if "where" not in arg:
            return bounds(f"{v.expr}.size()")
        x = env.fresh()
        inner = _compile(arg["where"], Val(x, v.ty.item), env)
        return bounds(f"{v.expr}.filter({x}, {inner}).size()")

    if _through_list(cur, keys, env):
        raise NotCompilable("count over a path that reaches several lists")
    empty_ok = (lo is None or lo <= 0) and (hi is None or hi >= 0)
    found = _walk(cur, keys, at_leaf, "any", env)
    present = _walk(cur, keys, lambda _v: "true", "any", env)
    return f"({found} || ({'true' if empty_ok else 'false'} && !({present})))"


def _through_list(cur: Val, keys: Sequence[str | int], env: _Env) -> bool:
    """Whether walking *keys* from *cur* steps through a list before the last key."""
    ty: Ty | None = cur.ty
    for i, key in enumerate(keys):
        if ty is None:
            return False
        if ty.is_list:
            return True
        ty = _step_type(ty, key, env, at_root=(i == 0 and cur.expr == env.root.expr))
    return False


def _step_type(ty: Ty, key: str | int, env: _Env, at_root: bool) -> Ty | None:
    if at_root and isinstance(key, str) and key.startswith("_"):
        got = _normalized(key, env)
        return got.ty if got is not None else None
    if ty.kind == "obj" and isinstance(key, str):
        return field_type(ty, key)
    if ty.kind == "map":
        return ty.item
    return None


# --------------------------------------------------------------------------- paths

def _normalized(key: str, env: _Env) -> Val | None:
    """A normalized key at the object's root (None: the engine never sets it at admission)."""
    if key in _NORMALIZED:
        if env.kind.kind not in WORKLOAD_KINDS:
            return None
        name, ty = _NORMALIZED[key]
        env.variables.add(name)
        return Val(f"variables.{name}", ty)
    if key == "_namespace":
        # The API server sets metadata.namespace of a namespaced object before admission.
        return Val("object.metadata.namespace", STR) if env.kind.namespaced else None
    if key == "_data":
        # A ConfigMap's data as a list of {name, value}: CEL's all()/exists() over a map bind its keys.
        return Val("(has(object.data) ? object.data : dyn({}))", Ty("list", item=Ty("kv"))) \
            if env.kind.kind == "ConfigMap" else None
    if key == "_synthetic":
        return None  # only the scanner invents Namespaces
    raise NotCompilable(f"normalized key {key} is a reference to other objects")


def _walk(cur: Val, keys: Sequence[str | int], body: Body, mode: str, env: _Env) -> str:
    """CEL for: *mode* (all/any) of *body* over every value the path reaches from *cur*.

    Nothing reached: true for ``all``, false for ``any`` (the caller adds the fallback)."""
    if not keys:
        return body(cur)
    key, rest = keys[0], keys[1:]
    missing = "true" if mode == "all" else "false"
    ty = cur.ty
    if cur.expr == env.root.expr and isinstance(key, str) and key.startswith("_"):
        got = _normalized(key, env)
        if got is None:
            return missing
        return _walk(got, rest, body, mode, env)
    if ty.is_list:
        item = ty.item or ANY
        if isinstance(key, int):
            sub = _walk(Val(f"{cur.expr}[{key}]", item), rest, body, mode, env)
            if mode == "all":
                return f"({cur.expr}.size() <= {key} || {sub})"
            return f"({cur.expr}.size() > {key} && {sub})"
        x = env.fresh()
        sub = _walk(Val(x, item), keys, body, mode, env)
        return f"{cur.expr}.{'all' if mode == 'all' else 'exists'}({x}, {sub})"
    if isinstance(key, int):
        return missing
    if ty.kind == "kv":
        # An element of _data: iterating a map binds its key; the value is looked up.
        if key == "name":
            return _walk(Val(cur.expr, STR), rest, body, mode, env)
        if key == "value":
            return _walk(Val(f"object.data[{cur.expr}]", STR), rest, body, mode, env)
        return missing
    if ty.kind == "obj":
        ft = field_type(ty, key)
        if ft is None:
            return missing  # no such field in the API: never set
        sel = f"{cur.expr}.{field_name(key)}"
        present = f"has({sel})"
        sub = _walk(Val(sel, ft), rest, body, mode, env)
    elif ty.kind == "map":
        present = f"{cel_string(key)} in {cur.expr}"
        sub = _walk(Val(f"{cur.expr}[{cel_string(key)}]", ty.item or ANY), rest, body, mode, env)
    elif ty.kind == "any":
        raise NotCompilable("a path steps into a free-form value whose shape is unknown")
    else:
        return missing
    if sub == missing:
        return missing
    if sub == "true":
        return "true" if mode == "all" else present
    return f"(!({present}) || {sub})" if mode == "all" else f"({present} && {sub})"


def _default_outcome(spec: Mapping[str, Any]) -> bool:
    """What the engine answers when nothing is at the path: the test applied to ``default``
    (a constant, so decided here with the engine itself), otherwise false."""
    if "default" not in spec:
        return False
    from soc2infra._cogs.model import Resource
    from soc2infra._core.engine.core import EvalContext, ResourceIndex
    from soc2infra._core.engine.registry import compile_condition

    probe = {k: v for k, v in spec.items() if k != "quantifier"}
    pred = compile_condition(probe, "default")
    res = Resource(kind="kubernetes", type="", address="", attributes={})
    return pred(EvalContext({}, res, ResourceIndex([]))) is True


_VALUE_OPS = ("equals", "not_equals", "in", "not_in", "gte", "gt", "lte", "lt", "matches", "not_matches",
              "glob", "not_glob", "contains", "not_contains", "empty", "truthy", "cidr_overlaps",
              "not_cidr_overlaps", "length_gte", "length_lte")
_ELEMENTWISE = frozenset({"in", "not_in", "gte", "gt", "lte", "lt", "matches", "not_matches", "glob",
                          "not_glob", "cidr_overlaps", "not_cidr_overlaps"})


def _path_test(spec: Mapping[str, Any], cur: Val, env: _Env) -> str:
    keys = parse_path(str(spec["path"]))
    quant = spec.get("quantifier", "all")
    if "exists" in spec:
        found = _walk(cur, keys, lambda _v: "true", "any", env)
        return found if spec["exists"] else f"!({found})"
    op = next(k for k in spec if k in _VALUE_OPS)
    arg = spec[op]

    def leaf(v: Val) -> str:
        if op in _ELEMENTWISE and v.ty.is_list:
            x = env.fresh()
            inner = _value_test(op, arg, Val(x, v.ty.item or ANY), env)
            return f"{v.expr}.{'all' if quant == 'all' else 'exists'}({x}, {inner})"
        return _value_test(op, arg, v, env)

    fallback = _default_outcome(spec)
    if not _through_list(cur, keys, env):
        # At most one value is reached: the quantifier does not matter, only the fallback.
        quant_walk = "all" if fallback else "any"
        return _walk(cur, keys, leaf, quant_walk, env)
    found = _walk(cur, keys, leaf, quant, env)
    if quant == "all":
        if fallback:
            return found
        present = _walk(cur, keys, lambda _v: "true", "any", env)
        return f"({present} && {found})"
    if not fallback:
        return found
    present = _walk(cur, keys, lambda _v: "true", "any", env)
    return f"({found} || !{present})"


# --------------------------------------------------------------------------- value tests

def _value_test(op: str, arg: Any, v: Val, env: _Env) -> str:
    """CEL for the engine's test *op* with *arg* on one present value."""
    if isinstance(arg, Mapping) and len(arg) == 1 and next(iter(arg)) in ("$root", "$subject"):
        return _dynamic_test(op, arg, v, env)
    if op == "equals":
        return _equals(v, arg)
    if op == "not_equals":
        return f"!({_equals(v, arg)})"
    if op in ("in", "not_in"):
        hit = "(" + " || ".join(_equals(v, a) for a in arg) + ")" if arg else "false"
        return hit if op == "in" else f"!{hit}"
    if op in ("gte", "gt", "lte", "lt"):
        return _compare(v, op, float(arg))
    if op in ("matches", "not_matches"):
        hit = _regex(v, str(arg))
        return hit if op == "matches" else f"!({hit})"
    if op in ("glob", "not_glob"):
        pats = [str(a) for a in (arg if isinstance(arg, list) else [arg])]
        hit = _regex(v, "|".join(f"(?s:{_glob_re(p)})" for p in pats))
        return hit if op == "glob" else f"!({hit})"
    if op in ("contains", "not_contains"):
        hit = _contains(v, arg, env)
        return hit if op == "contains" else f"!({hit})"
    if op == "empty":
        return _empty(v) if arg else f"!({_empty(v)})"
    if op in ("length_gte", "length_lte"):
        if v.ty.kind not in ("list", "map", "str"):
            return "false"
        return f"size({v.expr}) {'>=' if op == 'length_gte' else '<='} {int(arg)}"
    raise NotCompilable(f"operator '{op}' has no CEL form yet")


def _dynamic_test(op: str, arg: Mapping[str, Any], v: Val, env: _Env) -> str:
    ref_kind = next(iter(arg))
    if ref_kind == "$subject" or op not in ("in", "not_in"):
        raise NotCompilable(f"{ref_kind} operand with {op}")
    keys = parse_path(str(arg[ref_kind]))

    def body(other: Val) -> str:
        if other.ty.is_list:
            y = env.fresh()
            return f"{other.expr}.exists({y}, {_same(v, Val(y, other.ty.item or ANY))})"
        return _same(v, other)

    hit = _walk(env.root, keys, body, "any", env)
    return hit if op == "in" else f"!({hit})"


def _same(a: Val, b: Val) -> str:
    """Equality of two values read from the object."""
    if a.ty.kind != b.ty.kind or a.ty.kind not in ("str", "int", "bool", "float"):
        raise NotCompilable("comparison of two values of different or unknown types")
    return f"{a.expr} == {b.expr}"


def _equals(v: Val, arg: Any) -> str:
    a = _norm(arg)
    t = v.ty.kind
    if t == "str":
        if isinstance(a, bool):
            return f"{v.expr}.lowerAscii() == {cel_string(str(a).lower())}"
        if isinstance(a, float):
            number = cel_string(_NUMBER_RE)
            return f"({v.expr}.matches({number}) && double({v.expr}) == {_num_literal(a, False)})"
        if isinstance(a, str):
            return f"{v.expr} == {cel_string(a)}"
        return "false"
    if t in ("int", "float"):
        if isinstance(a, bool):
            a = 1.0 if a else 0.0
        if isinstance(a, float):
            if t == "int":
                return f"{v.expr} == {int(a)}" if a == int(a) else "false"
            return f"{v.expr} == {_num_literal(a, False)}"
        return "false"
    if t == "bool":
        if isinstance(a, bool):
            return v.expr if a else f"!{v.expr}"
        if isinstance(a, float) and a in (0.0, 1.0):
            return v.expr if a == 1.0 else f"!{v.expr}"
        return "false"
    if t == "any":
        return _dispatch(v, lambda tv: _equals(tv, arg))
    raise NotCompilable(f"equals on a {t} value")


def _dispatch(v: Val, test: Callable[[Val], str]) -> str:
    """A test on an int-or-string (or other free-form) value, chosen at run time by its type."""
    return (f"(type({v.expr}) == string ? {test(Val(v.expr, STR))} : "
            f"type({v.expr}) == int ? {test(Val(v.expr, Ty('int')))} : "
            f"type({v.expr}) == bool ? {test(Val(v.expr, Ty('bool')))} : false)")


def _compare(v: Val, op: str, bound: float) -> str:
    sym = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[op]
    t = v.ty.kind
    if t == "int":
        if bound == int(bound):
            return f"{v.expr} {sym} {int(bound)}"
        return f"double({v.expr}) {sym} {bound!r}"
    if t == "float":
        return f"{v.expr} {sym} {float(bound)!r}"
    if t == "str":
        return f"({v.expr}.matches({cel_string(_NUMBER_RE)}) && double({v.expr}) {sym} {float(bound)!r})"
    if t == "any":
        return _dispatch(v, lambda tv: _compare(tv, op, bound))
    return "false"


def _regex(v: Val, pattern: str) -> str:
    if _NOT_RE2.search(pattern):
        raise NotCompilable(f"regular expression {pattern!r} uses features RE2 does not have")
    if v.ty.kind == "str":
        return f"{v.expr}.matches({cel_string(pattern)})"
    if v.ty.kind == "any":
        return f"(type({v.expr}) == string && string({v.expr}).matches({cel_string(pattern)}))"
    return "false"


def _glob_re(pattern: str) -> str:
    """fnmatch.fnmatchcase as an anchored RE2 expression."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(r"\[")
            else:
                body = pattern[i + 1:j]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


def _contains(v: Val, arg: Any, env: _Env) -> str:
    t = v.ty.kind
    if t == "list":
        x = env.fresh()
        return f"{v.expr}.exists({x}, {_equals(Val(x, v.ty.item or ANY), arg)})"
    if t == "map":
        return f"{cel_string(str(arg))} in {v.expr}"
    if t == "str":
        return f"{v.expr}.contains({cel_string(str(arg))})"
    if t in ("int", "float", "bool"):
        return "false"
    raise NotCompilable(f"contains on a {t} value")


def _empty(v: Val) -> str:
    t = v.ty.kind
    if t == "str":
        return f"{v.expr} == ''"
    if t in ("list", "map"):
        return f"size({v.expr}) == 0"
    if t in ("int", "float", "bool"):
        return "false"
    raise NotCompilable(f"empty on a {t} value")
