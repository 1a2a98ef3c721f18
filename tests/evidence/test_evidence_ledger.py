"""Appending and reading the ledger on both backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from soc2infra.evidence import GENESIS_HASH, EvidenceError, Ledger, open_ledger
from soc2infra.evidence.records import record_hash


def test_append_and_iter(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    assert ledger.count() == 0 and ledger.head() is None
    assert ledger.append([make_entry(0)]) == [1]
    assert ledger.append([make_entry(1), make_entry(2), make_entry(3)]) == [2, 3, 4]
    records = list(ledger.iter())
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[0]["prev_hash"] == GENESIS_HASH
    for prev, rec in zip(records, records[1:], strict=False):
        assert rec["prev_hash"] == prev["hash"]
    for rec in records:
        assert rec["hash"] == record_hash(rec)
        assert rec["time"].endswith("Z") and len(rec["time"]) == 27
        assert set(rec) == {"v", "seq", "time", "source", "actor", "subject", "pack_digest", "results",
                            "decision", "context", "prev_hash", "hash"}
    assert records[2]["actor"] == "user-2" and records[2]["context"]["i"] == 2
    head = ledger.head()
    assert head is not None and head.seq == 4 and head.hash == records[-1]["hash"]
    assert ledger.count() == 4
    assert ledger.get(3) == records[2] and ledger.get(99) is None
    assert ledger.append([]) == []


def test_records_survive_reopen(ledger_url: str, make_entry: Callable[..., dict[str, Any]]) -> None:
    with open_ledger(ledger_url) as led:
        led.append([make_entry(i) for i in range(5)])
    with open_ledger(ledger_url) as led:
        assert [r["seq"] for r in led.iter()] == [1, 2, 3, 4, 5]
        assert led.append([make_entry(5)]) == [6]


def test_batch_is_all_or_nothing(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    ledger.append([make_entry(0)])
    with pytest.raises(EvidenceError, match="source"):
        ledger.append([make_entry(1), make_entry(2, source="nope")])
    # A failure inside the transaction (time before the head) rolls the whole batch back.
    ledger.append([make_entry(3, time="2099-01-01T00:00:00Z")])
    with pytest.raises(EvidenceError, match="before the ledger head"):
        ledger.append([make_entry(4, time="2099-06-01T00:00:00Z"), make_entry(5, time="2098-01-01T00:00:00Z")])
    assert [r["context"]["i"] for r in ledger.iter()] == [0, 3]
    assert ledger.append([make_entry(6)]) == [3]  # and the ledger still works


def test_time_never_goes_backwards(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    ledger.append([make_entry(0, time=datetime(2099, 1, 1, tzinfo=UTC))])
    ledger.append([make_entry(1)])  # the clock says now (< 2099): stamped with the head's time
    times = [r["time"] for r in ledger.iter()]
    assert times == ["2099-01-01T00:00:00.000000Z"] * 2


def test_iter_time_window(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    for i, stamp in enumerate(["2025-01-01T00:00:00Z", "2025-01-01T23:59:59Z", "2025-01-02T00:00:00Z",
                               "2025-01-03T12:00:00+02:00", "2025-01-04T00:00:00Z"]):
        ledger.append([make_entry(i, time=stamp)])

    def seqs(start: Any, end: Any) -> list[int]:
        return [r["seq"] for r in ledger.iter(start, end)]

    assert seqs(None, None) == [1, 2, 3, 4, 5]
    assert seqs("2025-01-01", "2025-01-01") == [1, 2]  # a date `to` includes the day
    assert seqs(date(2025, 1, 2), None) == [3, 4, 5]
    assert seqs("2025-01-01T12:00:00Z", "2025-01-03T10:00:00Z") == [2, 3]  # a datetime `to` is excluded
    assert seqs("2025-01-01T12:00:00Z", "2025-01-03T10:00:00.000001Z") == [2, 3, 4]
    assert seqs(None, datetime(2025, 1, 2, tzinfo=UTC)) == [1, 2]
    assert ledger.get(4)["time"] == "2025-01-03T10:00:00.000000Z"  # stored in UTC


def test_many_records_page_through(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    ledger.append([make_entry(i) for i in range(2500)])
    assert [r["seq"] for r in ledger.iter()] == list(range(1, 2501))


def test_entry_shape_is_checked(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    bad = [
        ({"body": {"kind": "Secret"}}, "unknown entry field"),
        ({"source": "ci", "decision": "deny"}, "decision"),
        ({"decision": "pass"}, "decision"),
        ({"actor": ""}, "actor"),
        ({"results": [{"rule_id": "R", "status": "maybe"}]}, "status"),
        ({"results": [{"rule_id": "R", "status": "pass", "object": {}}]}, "unknown field"),
        ({"results": [{"rule_id": "R", "status": "pass", "controls": "CC6.1"}]}, "controls"),
        ({"context": {"x": object()}}, "plain JSON"),
        ({"context": {"x": float("nan")}}, "JSON"),
        ({"time": "yesterday"}, "ISO-8601"),
        ({"time": "2025-01-01T00:00:00"}, "zone"),
    ]
    for override, message in bad:
        with pytest.raises(EvidenceError, match=message):
            ledger.append([make_entry(0, **override)])
    assert ledger.count() == 0
    # Optional parts may be left out; tuples and sets become lists.
    seq = ledger.append([{"source": "waiver", "actor": "alice", "subject": "waivers/x",
                          "context": {"rules": ("A", "B"), "tags": {"b", "a"}}}])
    rec = ledger.get(seq[0])
    assert rec["results"] == [] and rec["decision"] is None and rec["pack_digest"] == ""
    assert rec["context"] == {"rules": ["A", "B"], "tags": ["a", "b"]}


def test_refuses_to_append_after_the_tail_was_removed(ledger: Ledger, raw_db: Any,
                                                     make_entry: Callable[..., dict[str, Any]]) -> None:
    ledger.append([make_entry(i) for i in range(5)])
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 5")
    with pytest.raises(EvidenceError, match="head table says seq 5 but the last record is seq 4"):
        ledger.append([make_entry(9)])


def test_closed_ledger(ledger_url: str) -> None:
    led = open_ledger(ledger_url)
    led.close()
    led.close()
    with pytest.raises(EvidenceError, match="closed"):
        led.append([{"source": "cli", "actor": "a", "subject": "s"}])


def test_url_forms(tmp_path: Any) -> None:
    db = tmp_path / "sub" / "e.db"
    with open_ledger(f"sqlite://{db}") as led:
        led.append([{"source": "cli", "actor": "a", "subject": "s"}])
    with open_ledger(f"sqlite:///{db}") as led:  # sqlite:////abs (SQLAlchemy style) too
        assert led.count() == 1
    with open_ledger(db) as led:
        assert led.count() == 1
    with pytest.raises(EvidenceError, match="scheme"):
        open_ledger("mysql://x/y")
    with pytest.raises(EvidenceError, match="absolute"):
        open_ledger("sqlite://relative.db")


def test_readers_never_create_a_ledger(ledger_url: str, backend: str) -> None:
    from soc2infra.evidence import build_report, export_records, verify_ledger

    for call in (lambda: verify_ledger(ledger_url), lambda: export_records(ledger_url, None, None, "jsonl", "-"),
                 lambda: build_report(ledger_url, None, None, {})):
        with pytest.raises(EvidenceError, match="no evidence ledger"):
            call()
    if backend == "sqlite":
        from pathlib import Path

        assert not Path(ledger_url).exists()
    with open_ledger(ledger_url) as led:  # writers do
        led.append([{"source": "cli", "actor": "a", "subject": "s"}])
    assert verify_ledger(ledger_url).ok


def test_database_errors_are_storage_errors(ledger: Ledger, raw_db: Any,
                                            make_entry: Callable[..., dict[str, Any]]) -> None:
    from soc2infra.evidence.records import StorageError

    ledger.append([make_entry(0)])
    raw_db.execute("DROP TABLE evidence_records")
    with pytest.raises(StorageError):
        ledger.append([make_entry(1)])
    with pytest.raises(StorageError):
        list(ledger.iter())


def test_postgres_reconnects_after_losing_its_connection(pg_server: str,
                                                         make_entry: Callable[..., dict[str, Any]]) -> None:
    """PostgreSQL only: a connection killed by the server (restart, failover) is replaced."""
    import uuid

    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")

    def kill_ledger_connections() -> int:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                     "application_name = 'soc2infra-evidence' AND query NOT LIKE '%pg_stat%'"
                                     ).fetchall())

    try:
        with open_ledger(f"{pg_server}?options=-csearch_path%3D{schema}") as led:
            led.append([make_entry(0)])
            assert kill_ledger_connections()
            assert led.append([make_entry(1)]) == [2]  # replaced before writing
            assert kill_ledger_connections()
            assert [r["seq"] for r in led.iter()] == [1, 2]  # and before reading
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_durable_settings(ledger: Ledger, backend: str) -> None:
    conn = ledger._backend._conn  # type: ignore[attr-defined]
    if backend == "sqlite":
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
