"""IAM policy-document operators (statement model, attachments, MFA). Filled in by issue 8."""

from __future__ import annotations

from soc2infra.engine.conditions import Compiler

IAM_OPERATORS: dict[str, Compiler] = {}
