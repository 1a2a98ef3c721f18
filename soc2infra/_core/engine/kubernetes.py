"""Kubernetes label selectors, as the ``related`` operator's ``selector`` link uses them."""

from __future__ import annotations

from typing import Any

from soc2infra._cogs.model import Resource
from soc2infra._core.engine.paths import parse_path, resolve


def pod_labels(res: Resource) -> dict[str, str]:
    """The labels of the pods a workload runs (its pod template), or the object's own labels."""
    for path in ("_pod_metadata.labels", "spec.template.metadata.labels", "metadata.labels"):
        got = resolve(res.attributes, parse_path(path))
        if got and isinstance(got[0], dict):
            return {str(k): str(v) for k, v in got[0].items()}
    return {}


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels + matchExpressions); an empty
    selector selects everything, as in a PodDisruptionBudget or NetworkPolicy."""
    if not isinstance(selector, dict):
        return False
    plain = {k: v for k, v in selector.items() if k not in ("matchLabels", "matchExpressions")}
    match_labels = dict(selector.get("matchLabels") or {}, **plain)
    for k, v in match_labels.items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr.get("key"), expr.get("operator"), [str(v) for v in expr.get("values") or []]
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True

