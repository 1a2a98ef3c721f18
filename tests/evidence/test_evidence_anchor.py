"""evidence anchor: signed SEQ:HASH checkpoints committed and tagged in a real git repository."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import Ledger, generate_keypair, verify_ledger
from soc2infra.evidence.anchor import read_anchor, write_anchor
from soc2infra.evidence.records import EvidenceError


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def test_anchor_in_git_catches_a_rewritten_tail(make_ledger: Callable[..., Ledger],
                                                make_entry: Callable[..., dict[str, Any]],
                                                tmp_path: Path, raw_db: Any) -> None:
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(priv, pub)
    ledger = make_ledger(signing_key=priv)
    repo = tmp_path / "anchors-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    ledger.append([make_entry(i) for i in range(5)])
    first = write_anchor(ledger, repo, "prod", priv)
    ledger.append([make_entry(i) for i in range(5, 8)])
    second = write_anchor(ledger, repo, "prod", priv)
    assert (first.anchor.seq, second.anchor.seq) == (5, 8)
    assert _git(repo, "tag", "--list").split() == ["soc2infra-anchor/prod/5", "soc2infra-anchor/prod/8"]
    assert len(_git(repo, "log", "--oneline").splitlines()) == 2
    latest = read_anchor(repo, "prod", pub)
    assert str(latest.anchor) == str(second.anchor)
    assert read_anchor(repo, "prod", pub, rev="soc2infra-anchor/prod/5").anchor.seq == first.anchor.seq
    result = verify_ledger(ledger, pub, str(latest.anchor))
    assert result.ok and result.fully_trusted
    # Delete the last record and move the head back: only the anchor shows it.
    (h7, t7) = raw_db.execute("SELECT hash, time FROM evidence_records WHERE seq = 7")[0]
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 8")
    raw_db.execute("UPDATE evidence_head SET seq = 7, hash = ?, time = ? WHERE id = 1", (h7, t7))
    assert verify_ledger(ledger).ok
    broken = verify_ledger(ledger, pub, str(read_anchor(repo, "prod", pub).anchor))
    assert not broken.ok and broken.first_bad_seq == 8


def test_a_forged_checkpoint_does_not_verify(ledger: Ledger, make_entry: Callable[..., dict[str, Any]],
                                             tmp_path: Path) -> None:
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(priv, pub)
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q")
    ledger.append([make_entry(0)])
    write_anchor(ledger, repo, "prod", priv)
    path = repo / "anchors" / "prod.txt"
    line = path.read_text(encoding="utf-8")
    path.write_text(line.replace("1:", "2:", 1), encoding="utf-8")  # claim another seq
    _git(repo, "-c", "user.email=x@y", "-c", "user.name=x", "commit", "-qam", "forge")
    with pytest.raises(EvidenceError, match="signature does not verify"):
        read_anchor(repo, "prod", pub)
    with pytest.raises(EvidenceError, match="empty"):
        other = tmp_path / "empty.db"
        from soc2infra.evidence import open_ledger

        with open_ledger(other) as empty:
            write_anchor(empty, repo)
