"""The staged rollout's first step through the real API server: in ``admission.mode: warn`` the
pattern charts install without a denial, kubectl shows what enforcing would reject, the ledger
records it, and ``soc2infra evidence report`` lists it per rule."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from soc2infra.lab import ControlPlane

from .test_admission import Kubectl, RunningOperator, delete_configuration, start_operator
from .test_rollout_charts import dry_run, render


@pytest.fixture(scope="module")
def warn_operator(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[RunningOperator]:
    running = start_operator(control_plane, tmp_path_factory.mktemp("rollout-warn"), kubectl,
                             "--set", "admission.mode=warn", configuration="rollout-warn.soc2infra.io")
    try:
        yield running
    finally:
        running.process.stop()
        delete_configuration(kubectl, running.configuration)


def test_warn_mode_admits_and_records_what_enforcing_would_deny(warn_operator, kubectl, require_binary):
    from soc2infra.evidence import build_report

    release, namespace = f"r{uuid.uuid4().hex[:6]}", f"warn-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    for chart in ("node-metrics", "gitops-sync"):
        result = dry_run(kubectl, render(require_binary, chart, release, namespace))
        assert result.returncode == 0 and "soc2infra:" not in result.stderr, result.stderr
        assert "(denied once admission.mode is enforce)" in result.stderr
    daemonset = warn_operator.records(f"apps/v1/DaemonSet/{namespace}/{release}")
    assert daemonset and daemonset[-1]["decision"] == "warn"
    assert set(daemonset[-1]["context"]["would_deny"]) == {"SOC2-K8S-POD-008", "SOC2-K8S-POD-009",
                                                           "SOC2-K8S-POD-011"}
    rows = {r["rule_id"]: r for r in build_report(warn_operator.ledger, None, None, {})["would_deny"]["rules"]}
    assert rows["SOC2-K8S-RBAC-001"]["requests"] >= 1 and rows["SOC2-K8S-POD-008"]["objects"] >= 1
    assert namespace in rows["SOC2-K8S-POD-008"]["namespaces"]
