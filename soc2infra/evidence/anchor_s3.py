"""Anchor the ledger's head in an S3-compatible object store under Object Lock.

Each checkpoint is its own object, ``<prefix><name>/<SEQ, 20 digits>-<TIME>.txt``, holding one line
``SEQ:HASH TIME KEY_ID SIGNATURE`` (the same line and Ed25519 signature as the git anchor, see
:mod:`soc2infra.evidence.anchor`), written with an Object Lock retention (``COMPLIANCE``: nobody,
not even the bucket's root account, can delete or shorten it before the date; ``GOVERNANCE``:
only principals granted ``s3:BypassGovernanceRetention`` can). The bucket must have been created
with Object Lock (which implies versioning); a write to a bucket without it is refused, because
a checkpoint the ledger's writer can delete proves nothing.

Reading takes every *version* of the checkpoint objects, not just the listing: on a versioned
bucket a plain DELETE only hides an object behind a delete marker, and a PUT to the same key only
adds a version, so neither can make an older checkpoint disappear from :func:`read_s3_anchor`.

Credentials and region come from the standard AWS chain (``AWS_ACCESS_KEY_ID`` …, profiles,
instance roles); the endpoint of a non-AWS store (MinIO, Ceph …) from ``endpoint`` or
``AWS_ENDPOINT_URL``. No credential is ever part of a message.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from soc2infra.evidence.anchor import Checkpoint, check_signature, make_checkpoint
from soc2infra.evidence.ledger import Ledger
from soc2infra.evidence.records import EvidenceError

LockMode = Literal["COMPLIANCE", "GOVERNANCE"]
LOCK_MODES: tuple[LockMode, ...] = ("COMPLIANCE", "GOVERNANCE")


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where checkpoints go: ``s3://BUCKET[/PREFIX]`` and, for a non-AWS store, its endpoint."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None) -> S3Target:
        """Read ``s3://bucket/prefix``; the prefix gets a trailing ``/`` when it has none."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise EvidenceError(f"not an S3 anchor target (expected s3://BUCKET[/PREFIX]): {url!r}")
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parts.netloc, prefix, endpoint or os.environ.get("AWS_ENDPOINT_URL") or None)

    def key_prefix(self, name: str) -> str:
        """The prefix under which ledger *name*'s checkpoints live."""
        return f"{self.prefix}{name}/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True, slots=True)
class S3Checkpoint:
    """A checkpoint as stored: the object's key, version and lock."""

    checkpoint: Checkpoint
    key: str
    version_id: str
    lock_mode: str | None
    retain_until: str | None


def client(target: S3Target) -> Any:
    """A boto3 S3 client for *target* (path-style addressing when an endpoint is given)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # the optional extra
        raise EvidenceError("the S3 anchor needs boto3: pip install 'soc2infra[s3]'") from exc
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(s3={"addressing_style": "path"} if target.endpoint else {},
                    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30)
    return boto3.client("s3", endpoint_url=target.endpoint, region_name=region, config=config)


def _failure(target: S3Target, action: str, exc: Exception) -> EvidenceError:
    """An S3 error as a user-facing message: the store's error code and text, never credentials."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        detail = f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return EvidenceError(f"{target}: {action} failed ({detail})")


def _botocore_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def require_object_lock(s3: Any, target: S3Target) -> None:
    """Refuse a bucket without Object Lock: its checkpoints could be deleted by their writer."""
    try:
        conf = s3.get_object_lock_configuration(Bucket=target.bucket)
    except _botocore_errors() as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
        if code == "ObjectLockConfigurationNotFoundError":
            raise EvidenceError(f"{target}: the bucket has no Object Lock; create it with Object Lock "
                                "enabled (a checkpoint its writer can delete proves nothing)") from exc
        raise _failure(target, "reading the Object Lock configuration", exc) from exc
    if (conf.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") != "Enabled":
        raise EvidenceError(f"{target}: Object Lock is not enabled on the bucket")


def write_s3_anchor(url: str | Path | Ledger, target: S3Target, name: str = "ledger",
                    signing_key: Path | None = None, retention_days: int = 400,
                    mode: LockMode = "COMPLIANCE", s3: Any = None) -> S3Checkpoint:
    """Write a signed checkpoint of the ledger's head as a new object locked for *retention_days*.

    400 days by default: longer than a 12-month Type II period plus the time to issue its report.
    """
    if retention_days < 1:
        raise EvidenceError("the retention must be at least one day")
    if mode not in LOCK_MODES:
        raise EvidenceError(f"the lock mode must be COMPLIANCE or GOVERNANCE (got {mode!r})")
    s3 = s3 if s3 is not None else client(target)
    require_object_lock(s3, target)
    checkpoint = make_checkpoint(url, name, signing_key)
    body = (checkpoint.line() + "\n").encode()
    stamp = checkpoint.time.replace(":", "").replace("-", "")
    key = f"{target.key_prefix(name)}{checkpoint.anchor.seq:020d}-{stamp}.txt"
    until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=retention_days)
    try:
        # Content-MD5: S3 requires an integrity header on a PUT with Object Lock parameters.
        out = s3.put_object(Bucket=target.bucket, Key=key, Body=body, ContentType="text/plain",
                            ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324
                            ObjectLockMode=mode, ObjectLockRetainUntilDate=until)
    except _botocore_errors() as exc:
        raise _failure(target, f"writing {key}", exc) from exc
    return S3Checkpoint(checkpoint, key, str(out.get("VersionId") or ""), mode,
                        until.isoformat().replace("+00:00", "Z"))


def _versions(s3: Any, target: S3Target, name: str) -> list[tuple[str, str]]:
    """(key, version id) of every stored version under the ledger's prefix, delete markers aside."""
    found: list[tuple[str, str]] = []
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=target.bucket,
                                                                       Prefix=target.key_prefix(name)):
            found.extend((v["Key"], v["VersionId"]) for v in page.get("Versions") or [])
    except _botocore_errors() as exc:
        raise _failure(target, "listing checkpoints", exc) from exc
    return found


def read_s3_anchor(target: S3Target, name: str = "ledger", public_key: Path | None = None,
                   s3: Any = None) -> S3Checkpoint:
    """The checkpoint with the highest seq among every stored version; with *public_key* it must
    carry a valid signature, and its key must name the seq it holds (a moved object is refused)."""
    s3 = s3 if s3 is not None else client(target)
    versions = _versions(s3, target, name)
    if not versions:
        raise EvidenceError(f"{target}: no checkpoint stored for ledger {name!r}")
    top = max(key for key, _ in versions)  # keys sort by their zero-padded seq, then time
    best: S3Checkpoint | None = None
    for key, version in versions:
        if key != top:
            continue
        try:
            obj = s3.get_object(Bucket=target.bucket, Key=key, VersionId=version)
            text = obj["Body"].read().decode("utf-8", errors="replace")
        except _botocore_errors() as exc:
            raise _failure(target, f"reading {key}", exc) from exc
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) != 1:
            raise EvidenceError(f"{target}: {key} (version {version}) does not hold one checkpoint line")
        checkpoint = Checkpoint.parse(lines[0])
        if not key.rsplit("/", 1)[-1].startswith(f"{checkpoint.anchor.seq:020d}-"):
            raise EvidenceError(f"{target}: {key} holds a checkpoint of seq {checkpoint.anchor.seq}: "
                                "it was not written by soc2infra evidence anchor")
        retain = obj.get("ObjectLockRetainUntilDate")
        found = S3Checkpoint(checkpoint, key, version, obj.get("ObjectLockMode"),
                             retain.isoformat() if isinstance(retain, dt.datetime) else None)
        if best is not None and str(best.checkpoint.anchor) != str(checkpoint.anchor):
            # Versions of one key never differ when only `evidence anchor` writes (a new checkpoint
            # is a new key): a second version with another hash for the same seq is a forgery.
            raise EvidenceError(f"{target}: {key} holds two different checkpoints for seq "
                                f"{checkpoint.anchor.seq} ({best.checkpoint.anchor} in version "
                                f"{best.version_id}, {checkpoint.anchor} in version {version}): tampered")
        if best is None or found.checkpoint.time > best.checkpoint.time:
            best = found
    assert best is not None  # top is one of the listed keys
    if public_key is not None:
        check_signature(best.checkpoint, name, public_key, f"{target}{best.key}")
    return best


def write_checkpoint(url: str | Path | Ledger, target: str, name: str = "ledger",
                     signing_key: Path | None = None, *, s3_endpoint: str | None = None,
                     retention_days: int = 400, mode: LockMode = "COMPLIANCE") -> tuple[Checkpoint, str]:
    """Anchor the head in *target*: ``s3://BUCKET/PREFIX`` (Object Lock) or a git work tree path.
    Returns the checkpoint and where it went, in words (for logs)."""
    if target.startswith("s3://"):
        stored = write_s3_anchor(url, S3Target.parse(target, s3_endpoint), name, signing_key,
                                 retention_days, mode)
        return stored.checkpoint, (f"s3://{S3Target.parse(target).bucket}/{stored.key} "
                                   f"({stored.lock_mode} until {stored.retain_until})")
    from soc2infra.evidence.anchor import write_anchor

    checkpoint = write_anchor(url, Path(target), name, signing_key)
    return checkpoint, f"git {target} (tag soc2infra-anchor/{name}/{checkpoint.anchor.seq})"
