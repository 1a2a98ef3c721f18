"""Credentials-in-code operators. Filled in by issue 8."""

from __future__ import annotations

from soc2infra.engine.conditions import Compiler

SECRET_OPERATORS: dict[str, Compiler] = {}
