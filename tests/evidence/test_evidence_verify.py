"""verify: an intact chain passes; each kind of tampering names the first bad record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import Anchor, Ledger, export_records, generate_keypair, verify_jsonl, verify_ledger
from soc2infra.evidence.records import canonical_json, record_hash

N = 10


@pytest.fixture
def filled(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> Ledger:
    ledger.append([make_entry(i) for i in range(N)])
    return ledger


def _rewrite(raw_db: Any, seq: int, change: Callable[[dict[str, Any]], None], rehash: bool) -> dict[str, Any]:
    """Change record *seq*'s body (and, with *rehash*, recompute its hash like a careful forger)."""
    (body,) = raw_db.execute("SELECT body FROM evidence_records WHERE seq = ?", (seq,))[0]
    record = json.loads(body)
    change(record)
    if rehash:
        record["hash"] = record_hash(record)
    raw_db.execute("UPDATE evidence_records SET body = ?, hash = ?, prev_hash = ?, time = ? WHERE seq = ?",
                   (canonical_json(record), record["hash"], record["prev_hash"], record["time"], seq))
    return record


def _flip_result(record: dict[str, Any]) -> None:
    record["results"][0]["status"] = "fail"


def test_intact_chain_verifies(filled: Ledger) -> None:
    result = verify_ledger(filled.url if "://" not in filled.url else filled)
    assert result.ok, result
    assert result.records == N and result.first_bad_seq is None
    assert result.head == filled.head()
    assert any("anchor" in n for n in result.notes) and any("signature" in n for n in result.notes)
    assert str(result).startswith(f"OK: {N} records verified")


def test_empty_ledger_verifies(ledger: Ledger) -> None:
    result = verify_ledger(ledger)
    assert result.ok and result.records == 0 and result.head is None


def test_edited_body(filled: Ledger, raw_db: Any) -> None:
    _rewrite(raw_db, 4, _flip_result, rehash=False)
    result = verify_ledger(filled)
    assert not result.ok
    assert (result.first_bad_seq, result.records) == (4, 3)
    assert "does not match its hash" in result.reason
    assert result.head is not None and result.head.seq == 3
    assert "BROKEN at seq 4" in str(result)


def test_edited_hash(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("UPDATE evidence_records SET hash = ? WHERE seq = 6", ("f" * 64,))
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "hash column" in result.reason


def test_edited_hash_in_body(filled: Ledger, raw_db: Any) -> None:
    def forge(record: dict[str, Any]) -> None:
        record["hash"] = "e" * 64

    _rewrite(raw_db, 7, forge, rehash=False)
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 7)


def test_forged_record_with_recomputed_hash(filled: Ledger, raw_db: Any) -> None:
    _rewrite(raw_db, 4, _flip_result, rehash=True)
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "record 5's prev_hash does not match record 4's hash" in result.reason


def test_deleted_middle_record(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 5")
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq, result.records) == (False, 5, 4)
    assert "record 5 missing" in result.reason


def test_deleted_and_renumbered(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 5")
    for seq in range(6, N + 1):
        raw_db.execute("UPDATE evidence_records SET seq = ? WHERE seq = ?", (seq - 1, seq))
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_reordered_records(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("UPDATE evidence_records SET seq = -1 WHERE seq = 3")
    raw_db.execute("UPDATE evidence_records SET seq = 3 WHERE seq = 6")
    raw_db.execute("UPDATE evidence_records SET seq = 6 WHERE seq = -1")
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "says seq 6" in result.reason


def test_time_column_edited_to_hide_a_record(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("UPDATE evidence_records SET time = ? WHERE seq = 8", ("1999-01-01T00:00:00.000000Z",))
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 8)
    assert "time column" in result.reason


def _rewrite_suffix(raw_db: Any, first: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite records first..N like a forger with database access: change each, relink it to the
    rewritten predecessor, recompute its hash, and move the head row to the new last hash."""
    prev_hash: str | None = None
    for seq in range(first, N + 1):
        def edit(record: dict[str, Any], prev: str | None = prev_hash) -> None:
            change(record)
            if prev is not None:
                record["prev_hash"] = prev
        prev_hash = _rewrite(raw_db, seq, edit, rehash=True)["hash"]
    raw_db.execute("UPDATE evidence_head SET hash = ? WHERE id = 1", (prev_hash,))


def test_rewritten_tail_with_backdated_time(filled: Ledger, raw_db: Any) -> None:
    """A forger who rewrites records 6..N with recomputed hashes and links is caught by the time
    order if they back-date; without that (or an anchor, or signatures) a rewrite is undetectable."""
    def backdate(record: dict[str, Any]) -> None:
        if record["seq"] == 6:
            record["time"] = "2000-01-01T00:00:00.000000Z"

    _rewrite_suffix(raw_db, 6, backdate)
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "time goes backwards" in result.reason


def test_rewritten_tail_is_caught_by_an_anchor(filled: Ledger, raw_db: Any) -> None:
    anchor = filled.head()
    _rewrite_suffix(raw_db, 6, _flip_result)
    assert verify_ledger(filled).ok  # internally consistent: the documented limitation
    result = verify_ledger(filled, expect_head=str(anchor))
    assert (result.ok, result.first_bad_seq) == (False, N)
    assert "differs from the anchor" in result.reason


def test_truncated_tail_naive(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("DELETE FROM evidence_records WHERE seq > 8")
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq, result.records) == (False, 9, 8)
    assert "tail was truncated" in result.reason


def test_head_row_moved_back(filled: Ledger, raw_db: Any) -> None:
    (h5, t5) = raw_db.execute("SELECT hash, time FROM evidence_records WHERE seq = 5")[0]
    raw_db.execute("UPDATE evidence_head SET seq = 5, hash = ?, time = ? WHERE id = 1", (h5, t5))
    result = verify_ledger(filled)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "beyond the head row" in result.reason


def test_truncated_tail_needs_an_anchor(filled: Ledger, raw_db: Any) -> None:
    anchor = filled.head()
    assert anchor is not None
    (h8,) = raw_db.execute("SELECT hash FROM evidence_records WHERE seq = 8")[0]
    (t8,) = raw_db.execute("SELECT time FROM evidence_records WHERE seq = 8")[0]
    raw_db.execute("DELETE FROM evidence_records WHERE seq > 8")
    raw_db.execute("UPDATE evidence_head SET seq = 8, hash = ?, time = ? WHERE id = 1", (h8, t8))
    # A careful attacker moved the head back too: without an anchor, nothing shows.
    assert verify_ledger(filled).ok
    for kwargs in ({"expect_head": str(anchor)}, {"expect_head": anchor}, {"expect_head": anchor.hash},
                   {"expect_count": N}):
        result = verify_ledger(filled, **kwargs)
        assert (result.ok, result.first_bad_seq) == (False, 9), kwargs
        assert "truncated" in result.reason
        assert not any("no external anchor" in n for n in result.notes)


def test_anchor_still_holds_after_more_appends(filled: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    anchor = filled.head()
    filled.append([make_entry(i) for i in range(5)])
    assert verify_ledger(filled, expect_head=str(anchor)).ok
    assert verify_ledger(filled, expect_head=anchor.hash).ok
    assert verify_ledger(filled, expect_count=N + 5).ok
    assert Anchor.parse(str(anchor)) == Anchor(anchor.seq, anchor.hash)


def test_signatures(ledger_url: str, make_ledger: Callable[..., Ledger], tmp_path: Path, raw_db: Any,
                    make_entry: Callable[..., dict[str, Any]]) -> None:
    key_id = generate_keypair(tmp_path / "signing.pem")
    generate_keypair(tmp_path / "other.pem")
    assert oct((tmp_path / "signing.pem").stat().st_mode & 0o777) == "0o600"
    led = make_ledger(signing_key=tmp_path / "signing.pem")
    led.append([make_entry(i) for i in range(6)])
    rec = led.get(1)
    assert rec["key_id"] == key_id and len(rec["signature"]) == 128

    good = verify_ledger(led, public_key=tmp_path / "signing.pem.pub")
    assert good.ok and good.signatures == 6
    # The private key file works as well (its public half is used), and several keys (rotation).
    assert verify_ledger(led, public_key=[tmp_path / "other.pem.pub", tmp_path / "signing.pem"]).ok

    wrong = verify_ledger(led, public_key=tmp_path / "other.pem.pub")
    assert (wrong.ok, wrong.first_bad_seq) == (False, 1)
    assert "unknown key" in wrong.reason

    # A forged record with a recomputed hash cannot carry a valid signature.
    def change(record: dict[str, Any]) -> None:
        record["decision"] = "deny"
    _rewrite(raw_db, 3, change, rehash=True)
    forged = verify_ledger(led, public_key=tmp_path / "signing.pem.pub")
    assert (forged.ok, forged.first_bad_seq) == (False, 3)
    assert "signature does not verify" in forged.reason


def test_unsigned_records_fail_when_a_key_is_given(filled: Ledger, tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.pem")
    result = verify_ledger(filled, public_key=tmp_path / "k.pem.pub")
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 1, "record is not signed")


def test_verify_jsonl_export(filled: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    export_records(filled, None, None, "jsonl", out)
    assert verify_jsonl(out).ok
    assert verify_jsonl(out, expect_head=str(filled.head())).ok
    lines = out.read_text().splitlines()
    # An excerpt from the middle verifies on its own, with a note about its first link.
    (tmp_path / "part.jsonl").write_text("\n".join(lines[3:7]) + "\n")
    part = verify_jsonl(tmp_path / "part.jsonl")
    assert part.ok and part.records == 4 and any("start at seq 4" in n for n in part.notes)
    # A line edited after the export is caught.
    record = json.loads(lines[5])
    record["actor"] = "someone-else"
    lines[5] = canonical_json(record)
    (tmp_path / "edited.jsonl").write_text("\n".join(lines) + "\n")
    edited = verify_jsonl(tmp_path / "edited.jsonl")
    assert (edited.ok, edited.first_bad_seq, edited.records) == (False, 6, 5)
    # A dropped line too.
    (tmp_path / "dropped.jsonl").write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    assert verify_jsonl(tmp_path / "dropped.jsonl").first_bad_seq == 5


def test_verify_result_to_dict(filled: Ledger) -> None:
    data = verify_ledger(filled).to_dict()
    assert data["ok"] is True and data["records"] == N and data["head"].startswith(f"{N}:")
    json.dumps(data)
