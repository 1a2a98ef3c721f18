"""``/metrics``: scraped from a real operator while the real apiserver sends it AdmissionReviews;
the counters and histograms move by what the test did."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from soc2infra.lab import ControlPlane, free_port

from .test_admission import (
    Kubectl,
    _name,
    apply,
    delete_configuration,
    deployment,
    manifest,
    soc2waiver,
    start_operator,
    wait_for,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_admissions_audits_and_waivers(control_plane: ControlPlane, kubectl: Kubectl,
                                                         tmp_path: Path) -> None:
    metrics_port = free_port()
    running = start_operator(control_plane, tmp_path, kubectl, "--metrics-port", str(metrics_port),
                             "--metrics-addr", "127.0.0.1", configuration="metrics.soc2infra.io",
                             audit_interval=2)
    try:
        ns = _name("e2e-metrics")
        kubectl("create", "namespace", ns)
        _, before = scrape(metrics_port)

        denied = apply(kubectl, deployment("priv", ns, privileged=True))
        assert denied.returncode != 0 and "SOC2-K8S-POD-001" in denied.stderr
        assert apply(kubectl, deployment("good", ns)).returncode == 0
        expires = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()  # inside the warning window
        kubectl("apply", "-f", "-", input=manifest(soc2waiver("soon", ns, "SOC2-K8S-POD-001", expires)))

        def moved() -> Samples | None:
            _, after = scrape(metrics_port)
            audited = value(after, "soc2infra_audit_duration_seconds_count") >= 1
            waivers = value(after, "soc2infra_waivers", state="expiring") >= 1
            return after if audited and waivers else None

        after = wait_for(moved, timeout=60, what="an audit round and the waiver in /metrics")
        text, _ = scrape(metrics_port)
    finally:
        code = running.process.stop()
        delete_configuration(kubectl, running.configuration)
    assert code == 0, running.process.log_tail()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("soc2infra_admission_requests_total", verdict="deny") >= 1
    assert delta("soc2infra_admission_requests_total", verdict="allow") >= 1
    assert delta("soc2infra_admission_decisions_total", rule="SOC2-K8S-POD-001", action="deny", result="fail") >= 1
    assert delta("soc2infra_admission_duration_seconds_count") >= 2
    assert delta("soc2infra_evidence_commit_duration_seconds_count") >= 2  # committed before answering
    assert value(after, "soc2infra_evidence_commit_failures_total") == 0
    assert value(after, "soc2infra_audit_runs_total", leader="true") >= 1
    assert any(key[0] == "soc2infra_audit_findings" for key in after)
    # Our waiver expires in 3 days: it counts as expiring (other modules' waivers share the cluster).
    assert delta("soc2infra_waivers", state="expiring") >= 1
    # Histogram buckets are cumulative and end at +Inf = count.
    assert value(after, "soc2infra_admission_duration_seconds_bucket", le="+Inf") == \
        value(after, "soc2infra_admission_duration_seconds_count")
    assert "# TYPE soc2infra_admission_duration_seconds histogram" in text


@pytest.mark.parametrize("port", ["0", "70000"])
def test_bad_metrics_port_is_a_settings_error(port: str) -> None:
    from soc2infra_operator.main import main

    assert main(["config", "--set", f"metrics_port={port}"]) == 2
