"""The crash class of issue 18: no operator may truth-test an unknown. Every operator of the
registry (structural, value, IAM, secrets) is run with unknown inputs in several shapes, from
the conditions the built-in pack really uses; an operator the pack does not use needs a
sample here, so a new operator is covered as soon as it is registered."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import EvalContext, ResourceIndex
from soc2infra._core.engine.iam.statements import Condition, Statement
from soc2infra._core.engine.registry import OPERATORS, compile_condition
from soc2infra._core.engine.values import VALUE_OPERATORS
from soc2infra._core.pack import BUILTIN_POLICY_DIR

# Operators the built-in pack does not use (yet): one representative condition each.
EXTRA_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "exists": [{"path": "a.b", "exists": True}],
    **{op: [{"path": "a.b", op: arg}] for op, arg in {
        "equals": "x", "not_equals": "x", "in": ["x"], "not_in": ["x"], "gte": 1, "gt": 1, "lte": 1,
        "lt": 1, "matches": "^x$", "not_matches": "^x$", "glob": "x*", "not_glob": "x*",
        "contains": "x", "not_contains": "x", "empty": True, "truthy": True,
        "cidr_overlaps": "0.0.0.0/0", "not_cidr_overlaps": "0.0.0.0/0", "length_gte": 1,
        "length_lte": 1, "covers_port": [22], "not_covers_port": [22, 3389]}.items()},
    "const": [{"const": False}],
    "type_in": [{"type_in": ["aws_thing"]}],
    "count": [{"count": {"path": "a", "where": {"path": "b", "equals": 1}, "gte": 1}}],
    "action_matches": [{"action_matches": "iam:Pass*"},
                       {"iam_statements": {"where": {"action_matches": "iam:*"}}}],
    "covers_action": [{"covers_action": "s3:*"},
                      {"iam_statements": {"where": {"covers_action": "iam:*"}, "quantifier": "all"}}],
    "resource_matches": [{"resource_matches": "arn:aws:s3:::logs*"},
                         {"iam_statements": {"where": {"resource_matches": "*"}, "quantifier": "none"}}],
    "first_of_type": [{"first_of_type": True}],
}


def _conditions(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every condition mapping nested anywhere in a rule file."""
    if isinstance(node, Mapping):
        keys = set(node)
        if keys & (set(OPERATORS) | {"path"}) and not keys & {"id", "examples"}:
            yield node
        for v in node.values():
            yield from _conditions(v)
    elif isinstance(node, list):
        for v in node:
            yield from _conditions(v)


def _samples() -> dict[str, list[Mapping[str, Any]]]:
    found: dict[str, list[Mapping[str, Any]]] = {op: list(s) for op, s in EXTRA_SAMPLES.items()}
    for f in sorted(BUILTIN_POLICY_DIR.rglob("*.yaml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        for rule in (doc or {}).get("rules", []) if isinstance(doc, dict) else []:
            for key in ("condition", "applies"):
                for cond in _conditions(rule.get(key)):
                    try:
                        compile_condition(cond)
                    except ValueError:
                        continue  # a fragment (e.g. a path test's default), not a whole condition
                    op = next((k for k in cond if k in OPERATORS), None)
                    if op is None:
                        op = next((k for k in cond if k in VALUE_OPERATORS or k == "exists"), "path")
                    found.setdefault(op, []).append(cond)
    return found


SAMPLES = _samples()


class _AllUnknown(dict[str, Any]):
    """An attribute tree where every attribute is unknown."""

    def get(self, key: Any, default: Any = None) -> Any:
        return Unknown(f"{key} is unknown", kind="apply_time")

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: Any) -> Any:
        return self.get(key)


def _u(name: str) -> Unknown:
    return Unknown(name)


UNKNOWN_STATEMENT = Statement(
    effect=_u("effect"), actions=(_u("action"),), not_actions=(), resources=(_u("resource"),),
    principals=((_u("ptype"), _u("principal")),), conditions=(Condition(_u("op"), _u("key"), (_u("v"),)),),
    origin="test")

SHAPES: dict[str, Any] = {
    "whole value unknown": Unknown("everything"),
    "every attribute unknown": _AllUnknown(),
    "lists of unknowns": {"a": [Unknown("a0")], "b": [Unknown("b0")], "policy": Unknown("policy"),
                          "statement": [{"actions": [Unknown("x")], "sid": Unknown("sid")}]},
    "unknown statement": UNKNOWN_STATEMENT.view(),
}


def test_every_registered_operator_has_a_sample():
    missing = sorted((set(OPERATORS) | set(VALUE_OPERATORS) | {"exists"}) - set(SAMPLES))
    assert missing == [], f"add a sample condition for {missing} to EXTRA_SAMPLES"


@pytest.mark.parametrize("op", sorted(set(OPERATORS) | set(VALUE_OPERATORS) | {"exists"}))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_operator_never_truth_tests_an_unknown(op, shape):
    value = SHAPES[shape]
    attrs = value if isinstance(value, dict) and not hasattr(value, "statement") else {"x": value}
    res = Resource(kind="terraform", type="aws_iam_policy", address="aws_iam_policy.u", attributes=attrs)
    index = ResourceIndex([res])
    for cond in SAMPLES.get(op, []):
        pred = compile_condition(cond)
        result = pred(EvalContext(value, res, index))  # a TypeError here is the bug
        assert result in (True, False, None)


@pytest.mark.parametrize("op", sorted(set(VALUE_OPERATORS) | {"exists"}))
def test_value_operators_never_decide_a_wholly_unknown_value(op):
    res = Resource(kind="terraform", type="x", address="x.u", attributes={})
    for cond in EXTRA_SAMPLES[op]:
        assert compile_condition(cond)(EvalContext({"a": {"b": Unknown("b")}}, res, ResourceIndex([res]))) is None


def test_contains_on_a_list_with_an_unknown_element_is_unknown_unless_a_known_one_decides():
    res = Resource(kind="terraform", type="x", address="x.u", attributes={})
    idx = ResourceIndex([res])
    has = compile_condition({"path": "r", "contains": "secrets"})
    lacks = compile_condition({"path": "r", "not_contains": "secrets"})
    assert has(EvalContext({"r": [Unknown("var.r")]}, res, idx)) is None
    assert lacks(EvalContext({"r": [Unknown("var.r")]}, res, idx)) is None
    assert has(EvalContext({"r": ["secrets", Unknown("var.r")]}, res, idx)) is True
    assert lacks(EvalContext({"r": ["secrets", Unknown("var.r")]}, res, idx)) is False
