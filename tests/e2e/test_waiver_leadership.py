"""Waivers that exist when a replica becomes the audit leader are evidence too (issue 20): waiver
changes are recorded by the leader as it sees them, so a waiver created (or changed) while no
replica led — before the first leader was elected, between two operator runs — used to leave no
record. Now the new leader records every waiver whose current version (object uid and
resourceVersion) the ledger has no record of, once. On the real API server, with the ledger on
SQLite and on a real PostgreSQL (tools/postgres.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soc2infra.lab import ControlPlane, free_port, write_webhook_pki
from soc2infra_operator.lab import OperatorProcess, operator_argv, port_serves_tls

from .test_admission import _name, delete_configuration, manifest, soc2waiver, wait_for
from .test_ha import postgres_dsn  # noqa: F401 - the PostgreSQL fixture, shared

pytestmark = pytest.mark.timeout(300)
CONFIGURATION = "leadership.soc2infra.io"


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "evidence.db")
    else:
        yield request.getfixturevalue("postgres_dsn")


def records(url: str) -> list[dict[str, Any]]:
    from soc2infra.evidence.ledger import open_ledger

    try:
        ledger = open_ledger(url, create=False)
    except Exception:  # noqa: BLE001 - not created yet
        return []
    try:
        return list(ledger.iter())
    finally:
        ledger.close()


def present(url: str, uid: str) -> list[dict[str, Any]]:
    return [r for r in records(url) if r["source"] == "waiver" and r["context"].get("event") == "waiver-present"
            and r["context"].get("object_uid") == uid]


def run_operator(control_plane: ControlPlane, workdir: Path, url: str) -> OperatorProcess:
    """An out-of-cluster operator: without an own namespace it leads from its first audit run (with
    one, it would first wait for the previous run's Lease to expire)."""
    pki = write_webhook_pki(workdir / "webhook")
    port = free_port()
    argv = operator_argv(control_plane.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, url,
                         audit_interval=1, extra=["--set", "audit.initial_delay_seconds=0.2",
                                                  "--set", f"webhook.configuration_name={CONFIGURATION}"])
    proc = OperatorProcess(argv, workdir / "operator.log").start()
    proc.wait_until(lambda: port_serves_tls(port, pki.cafile), timeout=60, what="serving TLS")
    return proc


def leadership_logged(proc: OperatorProcess, count: int) -> bool:
    text = Path(proc.log_path).read_text(errors="replace")
    return f"audit leadership: recorded {count} waivers" in text


def test_waivers_present_at_leadership_start_are_recorded_once(control_plane, kubectl, tmp_path, ledger_url):
    install = subprocess.run([sys.executable, "-m", "soc2infra_operator", "install-crds", "--kubeconfig",
                              str(control_plane.kubeconfig)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    ns = _name("e2e-early")
    kubectl("create", "namespace", ns)
    expires = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    # Created while no operator runs: no leader sees it happen.
    assert kubectl("apply", "-f", "-", input=manifest(soc2waiver("early", ns, "SOC2-K8S-POD-001", expires))
                   ).returncode == 0

    def version() -> tuple[str, str]:
        meta = json.loads(kubectl("-n", ns, "get", "soc2waiver", "early", "-o", "json").stdout)["metadata"]
        return meta["uid"], meta["resourceVersion"]

    uid, first_rv = version()
    try:
        proc = run_operator(control_plane, tmp_path / "run1", ledger_url)
        try:
            [rec] = wait_for(lambda: present(ledger_url, uid), timeout=60, what="the early waiver's record")
        finally:
            assert proc.stop() == 0, proc.log_tail()
        assert rec["context"]["resource_version"] == first_rv
        assert rec["subject"] == f"soc2infra.io/v1alpha1/SOC2Waiver/{ns}/early"
        assert (rec["context"]["ticket"], rec["context"]["expires"]) == ("SEC-1234", expires)
        # Written before soc2infra checked waivers: nobody is on record as its author or approver.
        assert rec["actor"] == "unknown" and rec["context"]["creator"] is None and rec["context"]["approver"] is None

        # Changed between two runs (no leader), then a second run: the new version is recorded,
        # the old one is not recorded again.
        assert kubectl("-n", ns, "label", "soc2waiver", "early", "reviewed=yes").returncode == 0
        _uid, second_rv = version()
        assert second_rv != first_rv
        proc = run_operator(control_plane, tmp_path / "run2", ledger_url)
        try:
            wait_for(lambda: leadership_logged(proc, 1), timeout=60, what="the second leadership start")
        finally:
            assert proc.stop() == 0, proc.log_tail()
        versions = [r["context"]["resource_version"] for r in present(ledger_url, uid)]
        assert versions == [first_rv, second_rv]

        # A third start with nothing new records nothing.
        proc = run_operator(control_plane, tmp_path / "run3", ledger_url)
        try:
            wait_for(lambda: leadership_logged(proc, 0), timeout=60, what="the third leadership start")
        finally:
            assert proc.stop() == 0, proc.log_tail()
        assert len(present(ledger_url, uid)) == 2
        verify = subprocess.run([str(Path(sys.executable).parent / "soc2infra"), "evidence", "verify", ledger_url],
                                capture_output=True, text=True, timeout=120, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        delete_configuration(kubectl, CONFIGURATION)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
