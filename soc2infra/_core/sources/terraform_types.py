"""Terraform's type constraints for variables, and the conversion of a value to one.

A module sees its inputs after Terraform converted them to the declared ``type``: a missing
``optional(T, default)`` attribute becomes its default (or null), numbers and booleans
become strings where a string is declared, and so on at every nesting level. Without this,
``encryption_config = {}`` on a variable typed ``object({resources = optional(list(string),
["secrets"])})`` would look empty to rules although Terraform gives it ``["secrets"]``.

Conversion never fails: a value that does not fit is kept as it is (Terraform would have
rejected the configuration; the scan reports what is written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from soc2infra._cogs.model import Unknown

Expr = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A parsed type constraint.

    ``kind`` is ``any``, ``string``, ``number``, ``bool``, ``list``, ``set``, ``map``,
    ``tuple`` or ``object``. Collections keep their element type in ``elem``; tuples their
    element types in ``items``; objects their attributes in ``attrs`` as
    ``name -> (type, optional, default expression or None)``.
    """

    kind: str
    elem: TypeSpec | None = None
    items: tuple[TypeSpec, ...] = ()
    attrs: tuple[tuple[str, TypeSpec, bool, Expr | None], ...] = ()


ANY = TypeSpec("any")
_PRIMITIVES = frozenset({"string", "number", "bool", "any"})
_COLLECTIONS = frozenset({"list", "set", "map"})


def parse_type(expr: Expr | None) -> TypeSpec:
    """The type constraint written as *expr* (``any`` when absent or not understood)."""
    if expr is None:
        return ANY
    kind = expr[0]
    if kind == "var" and expr[1] in _PRIMITIVES:
        return TypeSpec(expr[1])
    if kind == "lit" and isinstance(expr[1], str) and expr[1] in _PRIMITIVES:
        return TypeSpec(expr[1])  # legacy quoted types: type = "string"
    if kind == "var" and expr[1] in _COLLECTIONS:  # bare `list` / `map` mean list(any)
        return TypeSpec(expr[1], elem=ANY)
    if kind != "call":
        return ANY
    name, args = expr[1], expr[2]
    if name in _COLLECTIONS and len(args) == 1:
        return TypeSpec(name, elem=parse_type(args[0]))
    if name == "tuple" and len(args) == 1 and args[0][0] == "tuple":
        return TypeSpec("tuple", items=tuple(parse_type(a) for a in args[0][1]))
    if name == "object" and len(args) == 1 and args[0][0] == "obj":
        attrs: list[tuple[str, TypeSpec, bool, Expr | None]] = []
        for kexpr, vexpr in args[0][1]:
            key = kexpr[1] if kexpr[0] in ("lit", "var") else None
            if not isinstance(key, str):
                return ANY
            if vexpr[0] == "call" and vexpr[1] == "optional" and vexpr[2]:
                default = vexpr[2][1] if len(vexpr[2]) > 1 else None
                attrs.append((key, parse_type(vexpr[2][0]), True, default))
            else:
                attrs.append((key, parse_type(vexpr), False, None))
        return TypeSpec("object", attrs=tuple(attrs))
    return ANY


Evaluator = Callable[[Expr], Any]


def convert(value: Any, spec: TypeSpec, evaluate: Evaluator) -> Any:
    """*value* converted to *spec* as Terraform does before a module sees it.

    *evaluate* computes an ``optional()`` default expression. Unknown values stay unknown;
    null stays null (``nullable`` is handled by the caller).
    """
    if value is None or isinstance(value, Unknown) or spec.kind == "any":
        return value
    if spec.kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        return value
    if spec.kind == "number":
        if isinstance(value, str) and not isinstance(value, bool):
            try:
                f = float(value)
            except ValueError:
                return value
            return int(f) if f.is_integer() else f
        return value
    if spec.kind == "bool":
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        return value
    if spec.kind in ("list", "set"):
        if isinstance(value, list) and spec.elem is not None:
            return [convert(v, spec.elem, evaluate) for v in value]
        return value
    if spec.kind == "map":
        if isinstance(value, dict) and spec.elem is not None:
            return {k: convert(v, spec.elem, evaluate) for k, v in value.items()}
        return value
    if spec.kind == "tuple":
        if isinstance(value, list) and len(value) == len(spec.items):
            return [convert(v, t, evaluate) for v, t in zip(value, spec.items, strict=True)]
        return value
    if spec.kind == "object" and isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, attr_type, optional, default in spec.attrs:
            if name in value and value[name] is not None:
                out[name] = convert(value[name], attr_type, evaluate)
            elif optional and default is not None:
                # The default is itself converted, so nested optional() defaults apply too.
                out[name] = convert(evaluate(default), attr_type, evaluate)
            else:
                out[name] = None  # an object type has every attribute; absent ones are null
        return out
    return value
