"""Anchor the ledger's head in a git repository: signed ``SEQ:HASH`` checkpoints.

Each checkpoint appends one line to ``anchors/<name>.txt`` — ``SEQ:HASH TIME KEY_ID SIGNATURE`` —
commits it and tags the commit ``soc2infra-anchor/<name>/<seq>``. The signature (Ed25519, the
ledger's signing key) is over the SHA-256 of ``soc2infra-anchor/1 <name> SEQ:HASH TIME``, so a
checkpoint cannot be moved to another ledger, seq or time. Push the repository to a remote the
ledger's writer cannot rewrite (protected branch and tags); then
``--expect-head "$(soc2infra evidence anchor-head --git REPO)"`` proves the chain up to it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from soc2infra.evidence.ledger import Anchor, Ledger, open_ledger
from soc2infra.evidence.records import EvidenceError, Signer, load_public_keys, load_signer, now

STATEMENT = "soc2infra-anchor/1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One anchor line."""

    anchor: Anchor
    time: str
    key_id: str
    signature: str

    def line(self) -> str:
        """The line as written in the anchors file."""
        return f"{self.anchor} {self.time} {self.key_id or '-'} {self.signature or '-'}"

    @classmethod
    def parse(cls, line: str) -> Checkpoint:
        """Read a line of the anchors file."""
        parts = line.split()
        if len(parts) != 4:
            raise EvidenceError(f"not an anchor line: {line!r}")
        key_id, signature = (p if p != "-" else "" for p in parts[2:])
        return cls(Anchor.parse(parts[0]), parts[1], key_id, signature)


def _digest(name: str, anchor: Anchor, time: str) -> str:
    return hashlib.sha256(f"{STATEMENT} {name} {anchor} {time}".encode()).hexdigest()


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", "soc2infra anchor")
    env.setdefault("GIT_AUTHOR_EMAIL", "soc2infra-anchor@localhost")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env, timeout=60,
                             check=False)
    except OSError as exc:
        raise EvidenceError(f"git could not run: {exc}") from exc
    if out.returncode != 0:
        raise EvidenceError(f"git {' '.join(args)} in {repo} failed: {out.stderr.strip()}")
    return out.stdout


def make_checkpoint(url: str | Path | Ledger, name: str = "ledger",
                    signing_key: Path | None = None) -> Checkpoint:
    """A (signed, with *signing_key*) checkpoint of the ledger's current head, for any target."""
    ledger = url if isinstance(url, Ledger) else open_ledger(url, create=False)
    try:
        head = ledger.head()
    finally:
        if ledger is not url:
            ledger.close()
    if head is None:
        raise EvidenceError("the ledger is empty: nothing to anchor")
    signer: Signer | None = load_signer(signing_key) if signing_key else None
    time = now()
    return Checkpoint(head, time, signer.key_id if signer else "",
                      signer.sign(_digest(name, head, time)) if signer else "")


def check_signature(checkpoint: Checkpoint, name: str, public_key: Path, where: str) -> None:
    """Raise unless *checkpoint* carries a valid signature of *public_key* for ledger *name*."""
    from cryptography.exceptions import InvalidSignature

    keys = load_public_keys(public_key)
    key = keys.get(checkpoint.key_id)
    if key is None or not checkpoint.signature:
        raise EvidenceError(f"{where}: the newest checkpoint is not signed by the given key")
    try:
        key.verify(bytes.fromhex(checkpoint.signature),
                   bytes.fromhex(_digest(name, checkpoint.anchor, checkpoint.time)))
    except (InvalidSignature, ValueError) as exc:
        raise EvidenceError(f"{where}: the newest checkpoint's signature does not verify") from exc


def write_anchor(url: str | Path | Ledger, repo: Path, name: str = "ledger",
                 signing_key: Path | None = None) -> Checkpoint:
    """Append a signed checkpoint of the ledger's head to *repo*, commit and tag it."""
    checkpoint = make_checkpoint(url, name, signing_key)
    head = checkpoint.anchor
    path = repo / "anchors" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(checkpoint.line() + "\n")
    _git(repo, "add", str(path.relative_to(repo)))
    _git(repo, "commit", "-q", "-m", f"soc2infra anchor {name} {head}", "-m", checkpoint.line())
    _git(repo, "tag", "-a", f"soc2infra-anchor/{name}/{head.seq}", "-m", checkpoint.line())
    return checkpoint


def read_anchor(repo: Path, name: str = "ledger", public_key: Path | None = None,
                rev: str = "HEAD") -> Checkpoint:
    """The newest checkpoint committed at *rev*; with *public_key* its signature must verify."""
    text = _git(repo, "show", f"{rev}:anchors/{name}.txt")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise EvidenceError(f"{repo}: anchors/{name}.txt holds no checkpoint")
    checkpoint = Checkpoint.parse(lines[-1])
    if public_key is not None:
        check_signature(checkpoint, name, public_key, str(repo))
    return checkpoint
