"""evidence anchor --s3: signed SEQ:HASH checkpoints as Object Lock objects in a real MinIO.

Every test creates its own bucket in the session's MinIO (tests/conftest.py: ``minio``), on both
ledger backends where a ledger is involved.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from soc2infra.cli import main
from soc2infra.evidence import Ledger, generate_keypair, verify_ledger
from soc2infra.evidence.anchor_s3 import S3Target, read_s3_anchor, write_s3_anchor
from soc2infra.evidence.records import EvidenceError

# What a store answers to a DELETE of a retained version: AWS S3 AccessDenied, MinIO InvalidRequest
# ("Object is WORM protected and cannot be overwritten").
WORM_DENIED = {"AccessDenied", "InvalidRequest"}


def _bucket(minio: Any, lock: bool = True) -> str:
    name = "anchors-" + uuid.uuid4().hex[:12]
    minio.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


@pytest.fixture
def s3_env(minio: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    return minio


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(priv, pub)
    return priv, pub


def test_checkpoints_in_minio_catch_a_truncated_tail(make_ledger: Callable[..., Ledger],
                                                     make_entry: Callable[..., dict[str, Any]],
                                                     keys: tuple[Path, Path], s3_env: Any, raw_db: Any) -> None:
    priv, pub = keys
    target = S3Target.parse(f"s3://{_bucket(s3_env)}/soc2/prod")
    ledger = make_ledger(signing_key=priv)
    ledger.append([make_entry(i) for i in range(5)])
    first = write_s3_anchor(ledger, target, "prod", priv, retention_days=1)
    ledger.append([make_entry(i) for i in range(5, 8)])
    second = write_s3_anchor(ledger, target, "prod", priv, retention_days=1)
    assert (first.checkpoint.anchor.seq, second.checkpoint.anchor.seq) == (5, 8)
    assert first.key.startswith("soc2/prod/prod/00000000000000000005-") and first.lock_mode == "COMPLIANCE"

    latest = read_s3_anchor(target, "prod", pub)
    assert str(latest.checkpoint.anchor) == str(second.checkpoint.anchor)
    assert latest.lock_mode == "COMPLIANCE" and latest.retain_until  # the store reports the lock
    assert verify_ledger(ledger, pub, str(latest.checkpoint.anchor)).fully_trusted

    # Delete the newest record and move the head back: consistent alone, caught by the anchor.
    (h7, t7) = raw_db.execute("SELECT hash, time FROM evidence_records WHERE seq = 7")[0]
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 8")
    raw_db.execute("UPDATE evidence_head SET seq = 7, hash = ?, time = ? WHERE id = 1", (h7, t7))
    assert verify_ledger(ledger).ok
    broken = verify_ledger(ledger, pub, str(read_s3_anchor(target, "prod", pub).checkpoint.anchor))
    assert not broken.ok and broken.first_bad_seq == 8


def test_the_writer_cannot_delete_shorten_or_replace_a_locked_checkpoint(
        ledger: Ledger, make_entry: Callable[..., dict[str, Any]], keys: tuple[Path, Path], s3_env: Any) -> None:
    priv, pub = keys
    bucket = _bucket(s3_env)
    target = S3Target.parse(f"s3://{bucket}")
    ledger.append([make_entry(0), make_entry(1)])
    stored = write_s3_anchor(ledger, target, "prod", priv, retention_days=1)
    s3: Any = s3_env.client()  # MinIO's root account: more rights than the anchoring writer has

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # before the retain-until date
    for kwargs in ({}, {"BypassGovernanceRetention": True}):
        with pytest.raises(ClientError) as denied:
            s3.delete_object(Bucket=bucket, Key=stored.key, VersionId=stored.version_id, **kwargs)
        assert denied.value.response["Error"]["Code"] in WORM_DENIED
        with pytest.raises(ClientError):  # COMPLIANCE: the retention cannot be shortened either
            s3.put_object_retention(Bucket=bucket, Key=stored.key, VersionId=stored.version_id,
                                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon}, **kwargs)
    with pytest.raises(ClientError):  # nor turned into GOVERNANCE
        s3.put_object_retention(Bucket=bucket, Key=stored.key, VersionId=stored.version_id,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon})
    retention = s3.get_object_retention(Bucket=bucket, Key=stored.key, VersionId=stored.version_id)
    assert retention["Retention"]["Mode"] == "COMPLIANCE"
    assert retention["Retention"]["RetainUntilDate"] > soon

    # A plain DELETE only adds a delete marker: the checkpoint is still read.
    s3.delete_object(Bucket=bucket, Key=stored.key)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert str(read_s3_anchor(target, "prod", pub).checkpoint.anchor) == str(stored.checkpoint.anchor)
    original = s3.get_object(Bucket=bucket, Key=stored.key, VersionId=stored.version_id)["Body"].read()
    assert original.decode().strip() == stored.checkpoint.line()

    # Overwriting the key with another head only adds a version, and the disagreement is reported.
    forged = stored.checkpoint.line().replace(stored.checkpoint.anchor.hash, "0" * 64)
    s3.put_object(Bucket=bucket, Key=stored.key, Body=forged.encode())
    with pytest.raises(EvidenceError, match="two different checkpoints for seq 2"):
        read_s3_anchor(target, "prod")


def test_governance_mode_blocks_a_delete_without_the_bypass_right(
        ledger: Ledger, make_entry: Callable[..., dict[str, Any]], s3_env: Any) -> None:
    bucket = _bucket(s3_env)
    ledger.append([make_entry(0)])
    stored = write_s3_anchor(ledger, S3Target.parse(f"s3://{bucket}/x/"), retention_days=1, mode="GOVERNANCE")
    assert stored.lock_mode == "GOVERNANCE"
    head = s3_env.client().head_object(Bucket=bucket, Key=stored.key, VersionId=stored.version_id)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    with pytest.raises(ClientError) as denied:
        s3_env.client().delete_object(Bucket=bucket, Key=stored.key, VersionId=stored.version_id)
    assert denied.value.response["Error"]["Code"] in WORM_DENIED
    # What GOVERNANCE means, and why COMPLIANCE is the default: a principal holding
    # s3:BypassGovernanceRetention (here MinIO's root) can still delete the checkpoint.
    s3_env.client().delete_object(Bucket=bucket, Key=stored.key, VersionId=stored.version_id,
                                  BypassGovernanceRetention=True)
    with pytest.raises(EvidenceError, match="no checkpoint stored"):
        read_s3_anchor(S3Target.parse(f"s3://{bucket}/x/"))


def test_a_bucket_without_object_lock_is_refused(ledger: Ledger, make_entry: Callable[..., dict[str, Any]],
                                                 s3_env: Any) -> None:
    bucket = _bucket(s3_env, lock=False)
    ledger.append([make_entry(0)])
    with pytest.raises(EvidenceError, match="has no Object Lock"):
        write_s3_anchor(ledger, S3Target.parse(f"s3://{bucket}"))
    assert s3_env.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_anchor_head_and_verify_expect_head(ledger_url: str, make_ledger: Callable[..., Ledger],
                                                make_entry: Callable[..., dict[str, Any]],
                                                keys: tuple[Path, Path], s3_env: Any, raw_db: Any,
                                                capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    priv, pub = keys
    url = f"s3://{_bucket(s3_env)}/evidence"
    ledger = make_ledger(signing_key=priv)
    ledger.append([make_entry(i) for i in range(4)])
    code, out, err = _run(capsys, "evidence", "anchor", ledger_url, "--s3", url, "--signing-key", str(priv),
                          "--retention-days", "1")
    assert code == 0, err
    assert out.strip() == str(ledger.head())
    assert "COMPLIANCE until" in err and s3_env.secret_key not in out + err
    code, head, err = _run(capsys, "evidence", "anchor-head", "--s3", url, "--public-key", str(pub))
    assert code == 0, err
    assert head.strip() == out.strip() and "COMPLIANCE until" in err
    code, out, _ = _run(capsys, "evidence", "verify", ledger_url, "--public-key", str(pub),
                        "--expect-head", head.strip(), "--json")
    assert code == 0 and json.loads(out)["fully_trusted"] is True
    html = tmp_path / "report.html"
    code, _, err = _run(capsys, "evidence", "report", ledger_url, "-o", str(html), "--public-key", str(pub),
                        "--expect-head", head.strip())
    assert code == 0, err
    assert 'class="badge ok">chain verified, signed and anchored' in html.read_text(encoding="utf-8")

    # Delete record 4 and move the head back: only the anchor tells.
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 4")
    (h3, t3) = raw_db.execute("SELECT hash, time FROM evidence_records WHERE seq = 3")[0]
    raw_db.execute("UPDATE evidence_head SET seq = 3, hash = ?, time = ? WHERE id = 1", (h3, t3))
    assert _run(capsys, "evidence", "verify", ledger_url)[0] == 0
    code, out, _ = _run(capsys, "evidence", "verify", ledger_url, "--expect-head", head.strip())
    assert code == 1 and "BROKEN at seq 4" in out
    code, _, err = _run(capsys, "evidence", "report", ledger_url, "-o", str(html), "--public-key", str(pub),
                        "--expect-head", head.strip())
    assert code == 1 and "BROKEN at seq 4" in err and "chain BROKEN" in html.read_text(encoding="utf-8")


def test_cli_errors_are_clear(tmp_path: Path, s3_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{_bucket(s3_env)}/none"
    code, _, err = _run(capsys, "evidence", "anchor-head", "--s3", url)
    assert code == 2 and "no checkpoint stored for ledger 'ledger'" in err
    code, _, err = _run(capsys, "evidence", "anchor-head", "--s3", url, "--git", str(tmp_path))
    assert code == 2 and "exactly one anchor target" in err
    code, _, err = _run(capsys, "evidence", "anchor-head", "--s3", "https://bucket/x")
    assert code == 2 and "expected s3://BUCKET" in err
    code, _, err = _run(capsys, "evidence", "anchor-head", "--s3", "s3://no-such-bucket-here/x")
    assert code == 2 and "NoSuchBucket" in err and s3_env.secret_key not in err
