"""The running operator anchors its ledger on a schedule: admissions through the real API server
are recorded (signed), and their head lands, signed, as an Object Lock object in a real MinIO; the
auditor's verify with that head as --expect-head trusts the whole chain."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import generate_keypair, open_ledger, verify_ledger
from soc2infra.evidence.anchor_s3 import S3Target, read_s3_anchor
from soc2infra.lab import ControlPlane
from tests.e2e.test_admission import Kubectl, delete_configuration, start_operator, wait_for


def test_the_operator_anchors_admissions_in_minio(control_plane: ControlPlane, kubectl: Kubectl, minio: Any,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)  # the operator process inherits them (AWS credential chain)
    bucket = "e2e-anchor-" + uuid.uuid4().hex[:8]
    minio.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(priv, pub)
    target = S3Target.parse(f"s3://{bucket}/clusters")
    configuration = "soc2infra-anchor-e2e"
    running = start_operator(control_plane, tmp_path, kubectl, "--set", f"evidence.signing_key={priv}",
                             "--set", f"anchor.target=s3://{bucket}/clusters", "--set", "anchor.name=lab",
                             "--set", "anchor.interval_seconds=1", "--set", "anchor.initial_delay_seconds=0",
                             "--set", "anchor.retention_days=1", configuration=configuration)
    try:
        namespace = "anchor-" + uuid.uuid4().hex[:6]
        kubectl("create", "namespace", namespace)
        kubectl("-n", namespace, "create", "configmap", "c1", "--from-literal=a=b")

        def anchored_head() -> str | None:
            with open_ledger(running.ledger, create=False) as led:
                head = led.head()
            try:
                latest = read_s3_anchor(target, "lab", pub)
            except Exception:  # noqa: BLE001 - not written yet
                return None
            return str(latest.checkpoint.anchor) if head and latest.checkpoint.anchor.seq == head.seq else None

        head = wait_for(anchored_head, timeout=60, what="the operator's checkpoint of its ledger head")
        assert running.records(f"v1/ConfigMap/{namespace}/c1")
        result = verify_ledger(running.ledger, pub, head)
        assert result.ok and result.fully_trusted, result
        assert read_s3_anchor(target, "lab").lock_mode == "COMPLIANCE"
    finally:
        code = running.process.stop()
        delete_configuration(kubectl, configuration)
    assert code == 0, running.process.log_tail()
    assert "anchoring failed" not in running.process.log_tail(400)
