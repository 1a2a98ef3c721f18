"""soc2infra: one SOC 2 policy pack for Terraform and Kubernetes, enforced at pre-commit,
in CI and at admission, with audit evidence.

The public API is this module's ``__all__`` plus two packages with their own ``__all__``:
:mod:`soc2infra.evidence` (the ledger) and :mod:`soc2infra.lab` (a local control plane for
tests and demos). Everything else is internal and may change; the operator imports only these
(an import-linter contract checks it). Names load lazily, so ``soc2infra --version`` and
pre-commit start-up do not pay for the engine.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "ACTIONS", "ACTION_STRENGTH", "DEFAULT_WARNING_DAYS", "Error", "Finding", "PolicyPack", "Resource",
    "LimitExceeded", "ResourceIndex", "Rule", "ScanOptions", "ScanResult", "Unknown", "UserError", "Waiver",
    "WaiverEntry",
    "__version__", "as_mapping", "as_text", "effective_action", "evaluate", "load_pack", "match_entry",
    "check_depth", "object_to_resource", "rule_action", "scan", "weaker",
]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soc2infra.engine.actions import ACTION_STRENGTH, ACTIONS, effective_action, rule_action, weaker
    from soc2infra.engine.core import ResourceIndex
    from soc2infra.engine.evaluate import evaluate
    from soc2infra.engine.policy import PolicyPack, Rule
    from soc2infra.errors import UserError
    from soc2infra.limits import LimitExceeded, check_depth
    from soc2infra.model import Error, Finding, Resource, ScanResult, Unknown, Waiver
    from soc2infra.pack import load_pack
    from soc2infra.scan import ScanOptions, scan
    from soc2infra.sources.kubernetes import as_mapping, as_text, object_to_resource
    from soc2infra.waivers import DEFAULT_WARNING_DAYS, WaiverEntry, match_entry

_LAZY = {
    # what a failed rule does at admission (actions, overrides)
    "ACTIONS": "soc2infra.engine.actions", "ACTION_STRENGTH": "soc2infra.engine.actions",
    "effective_action": "soc2infra.engine.actions", "rule_action": "soc2infra.engine.actions",
    "weaker": "soc2infra.engine.actions",
    # engine: evaluate resources against a compiled pack
    "evaluate": "soc2infra.engine.evaluate", "ResourceIndex": "soc2infra.engine.core",
    "PolicyPack": "soc2infra.engine.policy", "Rule": "soc2infra.engine.policy", "load_pack": "soc2infra.pack",
    # the data that flows: resources in, findings and errors out
    "Error": "soc2infra.model", "Finding": "soc2infra.model", "Resource": "soc2infra.model",
    "ScanResult": "soc2infra.model", "Unknown": "soc2infra.model", "Waiver": "soc2infra.model",
    "UserError": "soc2infra.errors",
    # a whole scan of files
    "scan": "soc2infra.scan", "ScanOptions": "soc2infra.scan",
    # Kubernetes objects (admission, audit) and waivers
    "object_to_resource": "soc2infra.sources.kubernetes", "as_mapping": "soc2infra.sources.kubernetes",
    "as_text": "soc2infra.sources.kubernetes", "WaiverEntry": "soc2infra.waivers",
    "match_entry": "soc2infra.waivers", "DEFAULT_WARNING_DAYS": "soc2infra.waivers",
    "LimitExceeded": "soc2infra.limits", "check_depth": "soc2infra.limits",
}


def __getattr__(name: str) -> Any:
    # Lazy so `soc2infra --version` and pre-commit runs do not pay for the engine's imports.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
