"""soc2infra: one SOC 2 policy pack for Terraform and Kubernetes, enforced at pre-commit,
in CI and at admission, with audit evidence.

The public API is this module's ``__all__`` plus the packages :mod:`soc2infra.evidence` (the
ledger), :mod:`soc2infra.lab` (a local control plane for tests and demos) and
:mod:`soc2infra.export` (CEL and ValidatingAdmissionPolicy), each with its own ``__all__``, and
:mod:`soc2infra.binaries` (where the Kubernetes binaries are found). Everything else lives in
private packages, kopf's shape: ``_cogs`` (model, errors, limits), ``_core`` (sources, engine,
reports, the scan), ``_app`` (a scan end to end with its evidence) and ``_cli`` (the command
groups); it may change, and the operator imports none of it (an import-linter contract checks it).
Names load lazily, so ``soc2infra --version`` and pre-commit start-up do not pay for the engine.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "ACTIONS", "ACTION_STRENGTH", "DEFAULT_WARNING_DAYS", "Error", "Finding", "PolicyPack", "Resource",
    "LimitExceeded", "ResourceIndex", "Rule", "ScanOptions", "ScanResult", "Unknown", "UserError", "Waiver",
    "WaiverEntry", "ExitCode",
    "__version__", "as_mapping", "as_text", "effective_action", "evaluate", "load_pack", "match_entry",
    "check_depth", "check_json_depth", "depth_limit", "object_to_resource", "rule_action", "scan", "weaker",
]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soc2infra._cogs.errors import UserError
    from soc2infra._cogs.exitcodes import ExitCode
    from soc2infra._cogs.limits import LimitExceeded, check_depth, check_json_depth, depth_limit
    from soc2infra._cogs.model import Error, Finding, Resource, ScanResult, Unknown, Waiver
    from soc2infra._core.engine.actions import ACTION_STRENGTH, ACTIONS, effective_action, rule_action, weaker
    from soc2infra._core.engine.core import ResourceIndex
    from soc2infra._core.engine.evaluate import evaluate
    from soc2infra._core.engine.policy import PolicyPack, Rule
    from soc2infra._core.pack import load_pack
    from soc2infra._core.scan import ScanOptions, scan
    from soc2infra._core.sources.kubernetes import as_mapping, as_text, object_to_resource
    from soc2infra._core.waivers import DEFAULT_WARNING_DAYS, WaiverEntry, match_entry

_EXPORTS = {
    # what a failed rule does at admission (actions, overrides)
    "soc2infra._core.engine.actions": ("ACTIONS", "ACTION_STRENGTH", "effective_action", "rule_action",
                                       "weaker"),
    # engine: evaluate resources against a compiled pack
    "soc2infra._core.engine.evaluate": ("evaluate",),
    "soc2infra._core.engine.core": ("ResourceIndex",),
    "soc2infra._core.engine.policy": ("PolicyPack", "Rule"),
    "soc2infra._core.pack": ("load_pack",),
    # the data that flows: resources in, findings and errors out
    "soc2infra._cogs.model": ("Error", "Finding", "Resource", "ScanResult", "Unknown", "Waiver"),
    "soc2infra._cogs.errors": ("UserError",),
    "soc2infra._cogs.exitcodes": ("ExitCode",),
    "soc2infra._cogs.limits": ("LimitExceeded", "check_depth", "check_json_depth", "depth_limit"),
    # a whole scan of files
    "soc2infra._core.scan": ("scan", "ScanOptions"),
    # Kubernetes objects (admission, audit) and waivers
    "soc2infra._core.sources.kubernetes": ("object_to_resource", "as_mapping", "as_text"),
    "soc2infra._core.waivers": ("WaiverEntry", "match_entry", "DEFAULT_WARNING_DAYS"),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    # Lazy so `soc2infra --version` and pre-commit runs do not pay for the engine's imports.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
