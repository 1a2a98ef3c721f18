"""soc2infra: one SOC 2 policy pack for Terraform and Kubernetes, enforced at pre-commit,
in CI and at admission, with audit evidence.

The public API is this module's ``__all__``; everything else may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "Error", "Finding", "PolicyPack", "Resource", "ScanResult", "Unknown", "__version__",
    "evaluate", "load_pack", "scan",
]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soc2infra.engine.evaluate import evaluate
    from soc2infra.engine.policy import PolicyPack
    from soc2infra.model import Error, Finding, Resource, ScanResult, Unknown
    from soc2infra.pack import load_pack
    from soc2infra.scan import scan

_LAZY = {
    "evaluate": "soc2infra.engine.evaluate", "PolicyPack": "soc2infra.engine.policy",
    "load_pack": "soc2infra.pack", "Error": "soc2infra.model", "Finding": "soc2infra.model",
    "Resource": "soc2infra.model", "ScanResult": "soc2infra.model", "Unknown": "soc2infra.model",
    "scan": "soc2infra.scan",
}


def __getattr__(name: str) -> Any:
    # Lazy so `soc2infra --version` and pre-commit runs do not pay for the engine's imports.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
