"""The operator registry: every operator of the condition language, listed by name, and the
compiler that turns a condition mapping into a predicate.

Operators come from their own modules (structural, IAM, secrets, backup); they are assembled here
explicitly rather than registering themselves on import. Each operator receives a
:class:`~soc2infra._core.engine.core.CompileEnv` (a sub-compiler and the pack's reference data), so
no operator module imports this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soc2infra._core.engine.backup import BACKUP_OPERATORS
from soc2infra._core.engine.core import CompileEnv, Compiler, ConditionError, Predicate
from soc2infra._core.engine.iam.operators import IAM_OPERATORS
from soc2infra._core.engine.secrets import SECRET_OPERATORS
from soc2infra._core.engine.structural import STRUCTURAL_OPERATORS
from soc2infra._core.engine.values import compile_path_test


def _assemble(*tables: Mapping[str, Compiler]) -> dict[str, Compiler]:
    out: dict[str, Compiler] = {}
    for table in tables:
        clash = set(table) & set(out)
        if clash:
            raise RuntimeError(f"operator name clash: {sorted(clash)}")
        out.update(table)
    return out


OPERATORS: dict[str, Compiler] = _assemble(STRUCTURAL_OPERATORS, IAM_OPERATORS, SECRET_OPERATORS,
                                           BACKUP_OPERATORS)
"""Every operator by name; path tests (``{path: ...}``) are handled separately."""


def compile_condition(spec: Any, where: str = "condition",
                      data: Mapping[str, Any] | None = None) -> Predicate:
    """Compile a condition mapping into a predicate; raise :class:`ConditionError` on bad input.

    *data* is the pack's reference data (``policies/data``); without it, operators that need
    it (AWS-managed policies) treat what they would look up as unknown."""
    return _compile(spec, where, _env(data))


def _env(data: Mapping[str, Any] | None) -> CompileEnv:
    def sub(spec: Any, where: str) -> Predicate:
        return _compile(spec, where, env)

    env = CompileEnv(sub, data or {})
    return env


def _compile(spec: Any, where: str, env: CompileEnv) -> Predicate:
    if not isinstance(spec, Mapping) or not spec:
        raise ConditionError("a condition must be a non-empty mapping", where)
    if "path" in spec:
        return compile_path_test(spec, where)
    keys = [k for k in spec if k in OPERATORS]
    if len(keys) != 1:
        raise ConditionError(
            f"a condition needs exactly one of: path, {', '.join(sorted(OPERATORS))} (got {sorted(spec)})",
            where,
        )
    key = keys[0]
    return OPERATORS[key](spec[key], spec, f"{where}.{key}", env)
