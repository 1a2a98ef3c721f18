"""Path tests: ``{path: P, <op>: arg}``, one attribute value against a value operator.

Values reached through lists are combined with a quantifier; unknown values stay unknown
(an :class:`~soc2infra._cogs.model.Unknown` with known candidates is decided when all of them agree).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from soc2infra._cogs.model import Unknown, contains_unknown
from soc2infra._core.engine.core import ConditionError, EvalContext, Predicate, Tri, t_and, t_or
from soc2infra._core.engine.paths import flatten, parse_path, resolve


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


def _cidr_overlaps_any(v: Any, nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
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
    if op in ("covers_port", "not_covers_port"):
        ports = [_port_arg(a, where) for a in (arg if isinstance(arg, list) else [arg])]
        if op == "covers_port":
            return lambda v: _covers_port(v, ports)
        return lambda v: not _covers_port(v, ports)
    raise ConditionError(f"unknown operator {op!r}", where)


def _port_arg(a: Any, where: str) -> int:
    n = _num(a)
    if n is None or not 0 <= n <= 65535:
        raise ConditionError(f"covers_port needs port numbers (got {a!r})", where)
    return int(n)


def _covers_port(v: Any, ports: list[int]) -> bool:
    """A port specification as Azure NSG rules and Google firewalls write it ("22", 22,
    "1000-2000", "*") includes one of *ports*."""
    if isinstance(v, bool):
        return False
    text = str(v).strip()
    if text in ("*", "0-65535", "1-65535"):
        return True
    lo, sep, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        return False
    return any(low <= p <= high for p in ports)


def _hashable(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


# Operators about a single scalar: on a list of plain values they test each element
# (combined with the quantifier), so `{path: cidr_blocks, matches: "/0$"}` means what it says.
ELEMENTWISE = frozenset({"in", "not_in", "gte", "gt", "lte", "lt", "matches", "not_matches", "glob",
                         "not_glob", "cidr_overlaps", "not_cidr_overlaps", "covers_port",
                         "not_covers_port"})
OPERAND_REFS = ("$root", "$subject")

VALUE_OPERATORS = (
    "equals", "not_equals", "in", "not_in", "gte", "gt", "lte", "lt", "matches", "not_matches",
    "glob", "not_glob", "contains", "not_contains", "empty", "truthy", "cidr_overlaps",
    "not_cidr_overlaps", "length_gte", "length_lte", "covers_port", "not_covers_port",
)
_PATH_KEYS = {"path", "default", "quantifier", "exists", *VALUE_OPERATORS}


def compile_path_test(spec: Mapping[str, Any], where: str) -> Predicate:
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
    quant = str(spec.get("quantifier", "all"))
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
    ref_kind = ""
    ref_path: tuple[str | int, ...] = ()
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
                return _decide_by_type(v, test)
            # Every value the expression can take: all comply → pass, none → fail.
            outcomes = [(test(default) if has_default else False) if c is None else test(c)
                        for c in v.candidates]
            return True if all(outcomes) else (False if not any(outcomes) else None)
        if elementwise and isinstance(v, list):
            if not v:
                return quant == "all"  # vacuous truth, as in for_all
            inner = [test_one(x, test) for x in v]
            return t_and(inner) if quant == "all" else t_or(inner)
        if op in ("equals", "not_equals", "in", "not_in") and contains_unknown(v):
            return None
        if op in ("contains", "not_contains") and contains_unknown(v):
            # Only a known element can decide: found → decided, otherwise an unknown may be it.
            if isinstance(v, dict):
                return test(v)  # a map's keys are known even when values are not
            if isinstance(v, list):
                r = test([x for x in v if not isinstance(x, Unknown)])
                if r is (op == "contains"):
                    return r
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


_PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc")
_CUSTOMER_POLICY_ARNS = tuple(
    f"arn:{p}:iam::123456789012:policy/{name}" for p in _PARTITIONS
    for name in ("p", "AdministratorAccess", "IAMFullAccess", "team/ReadOnlyAccess"))


def _decide_by_type(v: Unknown, test: Callable[[Any], bool]) -> Tri:
    """Decide a test on an apply-time value from what its resource type guarantees. The ARN of
    an ``aws_iam_policy`` always holds the creating account's 12-digit id (never ``aws``),
    so it is never an AWS-managed policy ARN nor a wildcard: the test is decided when it
    agrees on such ARNs in every partition, under managed-looking names too."""
    if v.kind != "apply_time" or v.rtype != "aws_iam_policy" or v.attr != "arn":
        return None
    outcomes = {test(arn) for arn in _CUSTOMER_POLICY_ARNS}
    return outcomes.pop() if len(outcomes) == 1 else None
