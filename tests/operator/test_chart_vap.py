"""The chart's ``enforcement`` value: the webhook configuration and RBAC follow it, and the
default ``admission.hybridKinds`` are exactly the kinds the operator keeps in hybrid mode."""

from __future__ import annotations

import pytest
import yaml

from soc2infra_operator.runtime import Runtime
from soc2infra_operator.settings import load_settings
from tests.operator.test_chart import CHART, helm, objects  # noqa: F401 - helm is a fixture


def _hook_resources(docs: list[dict]) -> list[str]:
    # Workload webhooks only: the waiver governance webhooks (<release>-waivers) exist in every mode.
    vwc = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"
           and not d["metadata"]["name"].endswith("-waivers")]
    return sorted(r for d in vwc for h in d["webhooks"] for rule in h["rules"] for r in rule["resources"])


def _vap_rbac(docs: list[dict]) -> bool:
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    return any("validatingadmissionpolicies" in r.get("resources", []) for r in role["rules"])


def test_default_hybrid_kinds_are_the_operators(helm):  # noqa: F811
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    settings = load_settings(overrides=[("enforcement", "hybrid")], environ={})
    assert sorted(values["admission"]["hybridKinds"]) == sorted(Runtime.build(settings).kinds)


@pytest.mark.parametrize(("enforcement", "hooks", "rbac"), [
    ("webhook", 20, False), ("hybrid", 9, True), ("vap", 0, True)])
def test_enforcement_shapes_the_webhook_and_rbac(helm, enforcement, hooks, rbac):  # noqa: F811
    docs = objects(helm, f"enforcement={enforcement}")
    resources = _hook_resources(docs)
    assert len(resources) == hooks
    if enforcement == "hybrid":
        assert "services" not in resources and "pods" in resources and "namespaces" in resources
    assert _vap_rbac(docs) is rbac
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap" and "config" in d["metadata"]["name"])
                            ["data"]["operator.yaml"])
    assert config["enforcement"] == enforcement
    assert config["webhook"]["remove_on_exit"] is False
