"""`scan --evidence` records every scan; `evidence verify` names the first tampered record;
no secret from the scanned files reaches the ledger."""

from __future__ import annotations

import json
import sqlite3

from soc2infra.cli import main

SECRET = "Sup3r-Secret-Passw0rd!"
TREE = {"main.tf": f'''
resource "aws_db_instance" "db" {{
  engine            = "postgres"
  password          = "{SECRET}"
  storage_encrypted = true
}}
resource "aws_s3_bucket" "b" {{ bucket = "acme-b" }}
'''}


def test_scans_are_recorded_and_tampering_is_named(write_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_SHA", "0123abc")
    root = write_tree(TREE)
    db = tmp_path / "ledger.db"
    for _ in range(3):
        assert main(["scan", str(root), "--format", "json", "--no-config", "--evidence", str(db)]) == 1
    capsys.readouterr()

    assert main(["evidence", "verify", str(db)]) == 0
    assert "3 records" in capsys.readouterr().out

    assert main(["evidence", "export", str(db), "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3]
    first = records[0]
    assert first["source"] == "ci" and first["actor"] == "octocat" and first["decision"] == "fail"
    assert first["context"]["commit"] == "0123abc"
    statuses = {(r["rule_id"], r["address"]): r["status"] for r in first["results"]}
    assert statuses[("SOC2-AWS-S3-001", "aws_s3_bucket.b")] == "fail"
    assert "pass" in statuses.values()  # the population, not only the failures

    assert SECRET.encode() not in db.read_bytes()
    for suffix in ("-wal", "-shm"):
        wal = db.with_name(db.name + suffix)
        if wal.exists():
            assert SECRET.encode() not in wal.read_bytes()

    # The ledger refuses UPDATE and DELETE; someone with write access to the file can still drop
    # the guard, which is what verification is for.
    with sqlite3.connect(db) as conn:
        conn.execute("drop trigger evidence_records_no_update")
        body = conn.execute("select body from evidence_records where seq = 2").fetchone()[0]
        conn.execute("update evidence_records set body = ? where seq = 2",
                     (body.replace('"fail"', '"pass"', 1),))
    assert main(["evidence", "verify", str(db), "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is False and verdict["first_bad_seq"] == 2


def test_unwritable_ledger_is_an_error_not_a_silent_drop(write_tree, tmp_path, capsys):
    root = write_tree(TREE)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = blocker / "ledger.db"
    code = main(["scan", str(root), "--format", "json", "--no-config", "--evidence", str(bad)])
    assert code == 2
    assert "could not record evidence" in capsys.readouterr().err
