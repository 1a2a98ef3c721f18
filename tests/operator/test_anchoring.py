"""Scheduled anchoring in the operator: checkpoints of a real ledger land in a real MinIO bucket
with Object Lock on every interval in which the head moved (soc2infra_operator/anchoring.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import generate_keypair, open_ledger, verify_ledger
from soc2infra.evidence.anchor_s3 import S3Target, read_s3_anchor
from soc2infra_operator.anchoring import anchor_loop, anchor_once
from soc2infra_operator.settings import AnchorSettings, SettingsError, load_settings

ENTRY = {"source": "admission", "actor": "u", "subject": "v1/ConfigMap/ns/c", "decision": "allow",
         "results": [], "context": {"dry_run": False}}


@pytest.fixture
def bucket(minio: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    name = "op-anchor-" + uuid.uuid4().hex[:10]
    minio.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _versions(minio: Any, bucket: str) -> list[str]:
    return sorted(v["Key"] for v in minio.client().list_object_versions(Bucket=bucket).get("Versions", []))


def test_the_schedule_anchors_each_new_head(tmp_path: Path, minio: Any, bucket: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(priv, pub)
    url = str(tmp_path / "ledger.db")
    settings = AnchorSettings(target=f"s3://{bucket}/prod", interval_seconds=0.3, initial_delay_seconds=0,
                              name="cluster-a", retention_days=1)

    async def scenario() -> None:
        with open_ledger(url, priv) as ledger:
            task = asyncio.create_task(anchor_loop(settings, url, str(priv)))
            await asyncio.sleep(0.5)  # empty ledger: nothing to anchor, no error
            ledger.append([ENTRY, ENTRY])
            await asyncio.sleep(1.0)  # three rounds, one head: one checkpoint
            ledger.append([ENTRY])
            await asyncio.sleep(1.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    caplog.set_level(logging.INFO, logger="soc2infra_operator.anchoring")
    asyncio.run(scenario())
    keys = _versions(minio, bucket)
    assert [k.rsplit("/", 1)[-1][:20] for k in keys] == [f"{2:020d}", f"{3:020d}"], keys
    latest = read_s3_anchor(S3Target.parse(f"s3://{bucket}/prod"), "cluster-a", pub)
    assert latest.checkpoint.anchor.seq == 3 and latest.lock_mode == "COMPLIANCE"
    assert verify_ledger(url, pub, str(latest.checkpoint.anchor)).fully_trusted
    assert "anchored 3:" in caplog.text and "failed" not in caplog.text


def test_a_failed_round_is_logged_and_retried(tmp_path: Path, minio: Any,
                                              caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    unlocked = "op-unlocked-" + uuid.uuid4().hex[:10]
    minio.client().create_bucket(Bucket=unlocked)
    url = str(tmp_path / "ledger.db")
    with open_ledger(url) as ledger:
        ledger.append([ENTRY])
    settings = AnchorSettings(target=f"s3://{unlocked}", interval_seconds=0.2, initial_delay_seconds=0)

    async def scenario() -> None:
        task = asyncio.create_task(anchor_loop(settings, url, None))
        await asyncio.sleep(0.7)
        assert not task.done()  # still scheduled after failures
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    failures = [r for r in caplog.records if "anchoring failed: " in r.getMessage()]
    assert len(failures) >= 2 and "has no Object Lock" in failures[0].getMessage()
    assert minio.client().list_objects_v2(Bucket=unlocked).get("KeyCount") == 0


def test_git_target_and_unchanged_head(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "anchors"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    url = str(tmp_path / "ledger.db")
    with open_ledger(url) as ledger:
        ledger.append([ENTRY])
    settings = AnchorSettings(target=str(repo), name="prod")
    first = anchor_once(settings, url, None)
    assert first is not None and first.startswith("1:")
    assert anchor_once(settings, url, None, first) == first  # unchanged head: nothing written
    log = subprocess.run(["git", "log", "--oneline"], cwd=repo, check=True, capture_output=True, text=True)
    assert len(log.stdout.splitlines()) == 1


def test_settings(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("evidence: {ledger: /data/l.db}\nanchor:\n  target: s3://b/p\n  interval_seconds: 600\n"
                      "  lock_mode: GOVERNANCE\n  s3_endpoint: http://minio:9000\n", encoding="utf-8")
    s = load_settings(config, environ={})
    assert (s.anchor.target, s.anchor.interval_seconds, s.anchor.lock_mode, s.anchor.s3_endpoint) == \
        ("s3://b/p", 600.0, "GOVERNANCE", "http://minio:9000")
    assert load_settings(config, environ={"SOC2INFRA_ANCHOR_INTERVAL_SECONDS": "60"}).anchor.interval_seconds == 60
    config.write_text("anchor: {target: s3://b/p}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="no evidence.ledger"):
        load_settings(config, environ={})
    config.write_text("evidence: {ledger: l.db}\nanchor: {target: s3://b, lock_mode: LEGAL}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="lock_mode"):
        load_settings(config, environ={})
