"""SQLite storage for the evidence ledger: one file, durable, safe for several writing processes.

- ``journal_mode=WAL`` (readers never block the writer) and ``synchronous=FULL`` (the WAL is
  fsynced at every commit: once ``append`` returns, neither a SIGKILL nor a power cut loses it);
- every append is a ``BEGIN IMMEDIATE`` transaction: it takes the file's write lock *before*
  reading the head, so processes sharing the file queue up instead of forking the chain. Writers
  first take an ``flock`` on a sidecar file (``<db>.writer-lock``): the kernel wakes a waiting
  writer as soon as the lock is released, where SQLite's own busy handler polls with sleeps of up
  to 100 ms and lets one busy writer starve the others. The same flock serialises opening (switching a
  fresh file to WAL and creating the tables), where SQLite may report "locked" without waiting.
  Correctness of the chain rests on ``BEGIN IMMEDIATE``; the flock is for fairness, latency and
  clean concurrent first opens (``busy_timeout`` and a retry cover writers that do not take it);
- triggers refuse UPDATE and DELETE on the records and moving the head backwards. They stop
  accidents, not an attacker with write access to the file (who can drop them): that is what
  the hash chain, signatures and an external anchor are for.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

from soc2infra.evidence.backend import HeadState, StoredRow
from soc2infra.evidence.records import GENESIS_HASH, EvidenceError, StorageError

BUSY_TIMEOUT_MS = 60_000

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS evidence_records (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    source TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_records_time ON evidence_records (time);
CREATE TABLE IF NOT EXISTS evidence_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    time TEXT NOT NULL
);
INSERT OR IGNORE INTO evidence_head (id, seq, hash, time) VALUES (1, 0, '{GENESIS_HASH}', '');
CREATE TABLE IF NOT EXISTS evidence_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO evidence_meta (key, value) VALUES ('schema_version', '1');
CREATE TRIGGER IF NOT EXISTS evidence_records_no_update BEFORE UPDATE ON evidence_records
BEGIN SELECT RAISE(ABORT, 'evidence records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS evidence_records_no_delete BEFORE DELETE ON evidence_records
BEGIN SELECT RAISE(ABORT, 'evidence records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS evidence_head_forward BEFORE UPDATE ON evidence_head
WHEN NEW.seq < OLD.seq BEGIN SELECT RAISE(ABORT, 'the evidence head only moves forward'); END;
"""

_COLUMNS = "seq, time, source, subject, body, hash, prev_hash"


class SQLiteBackend:
    """One SQLite file; one connection, used under the owning :class:`Ledger`'s lock."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    local_commits = True

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        self._writer_lock: IO[bytes] | None = None
        self._locked = False
        if not create and not self.path.is_file():
            raise EvidenceError(f"no evidence ledger at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                         timeout=BUSY_TIMEOUT_MS / 1000)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._open_writer_lock(create)
            self._exclusive()
            try:
                self._initialise(create)
            finally:
                self._unlock()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"{self.path}: cannot open the evidence ledger ({exc})") from exc

    def _open_writer_lock(self, create: bool) -> None:
        if fcntl is None:
            return
        try:
            self._writer_lock = open(str(self.path) + ".writer-lock", "ab")  # noqa: SIM115
        except OSError:
            if create:
                raise
            self._writer_lock = None  # a read-only copy (an auditor's): no writers to coordinate with

    def _exclusive(self) -> None:
        if self._writer_lock is not None:
            fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_EX)
            self._locked = True

    def _initialise(self, create: bool) -> None:
        """WAL, synchronous=FULL and the schema. Under the writer flock, so our own openers never
        race; switching a fresh file to WAL can still report "locked" at once (SQLite does not
        always call the busy handler there) against a foreign writer, so that is retried."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise EvidenceError(f"{self.path}: cannot switch to WAL journaling (got {mode})")
                self._conn.execute("PRAGMA synchronous = FULL")
                self._create_schema(create)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                time.sleep(0.005)

    def _create_schema(self, create: bool) -> None:
        have = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name IN "
            "('evidence_records', 'evidence_head', 'evidence_meta')").fetchone()[0]
        if have == 3:
            return
        if not create:
            raise EvidenceError(f"{self.path} is not an evidence ledger (its tables are missing)")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(SCHEMA):
                self._conn.execute(statement)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def begin_exclusive(self) -> HeadState:
        """``BEGIN IMMEDIATE`` (waits for other writers), then read the head and the last record."""
        self._exclusive()
        self._conn.execute("BEGIN IMMEDIATE")
        return self._read_head()

    def try_begin_exclusive(self) -> HeadState | None:
        """:meth:`begin_exclusive` if no other writer holds the ledger, else None at once: neither
        our writer lock (another process of ours) nor SQLite's (a writer that does not take ours)
        is waited for."""
        if self._writer_lock is not None:
            try:
                fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            self._locked = True
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            self._unlock()
            return None
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return self._read_head()

    def _read_head(self) -> HeadState:
        conn = self._conn
        head = conn.execute("SELECT seq, hash, time FROM evidence_head WHERE id = 1").fetchone()
        if head is None:
            raise EvidenceError(f"{self.path}: the evidence_head row is missing (tampered with)")
        seq, hash_, time = head
        last = conn.execute("SELECT seq, hash FROM evidence_records ORDER BY seq DESC LIMIT 1").fetchone()
        last_seq, last_hash = last if last else (0, GENESIS_HASH)
        return HeadState(seq, hash_, time, last_seq, last_hash)

    def insert(self, rows: Sequence[StoredRow], head: tuple[int, str, str]) -> None:
        """Insert the rows and move the head (inside the open transaction)."""
        self._conn.executemany(f"INSERT INTO evidence_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               rows)
        self._conn.execute("UPDATE evidence_head SET seq = ?, hash = ?, time = ? WHERE id = 1", head)

    def commit(self) -> None:
        """COMMIT; with WAL and synchronous=FULL the WAL is fsynced before this returns."""
        self._conn.execute("COMMIT")
        self._unlock()

    def rollback(self) -> None:
        """ROLLBACK when a transaction is open."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._locked and self._writer_lock is not None:
            self._locked = False
            fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_UN)

    def fetch(self, after_seq: int, limit: int, start: str | None = None,
              end: str | None = None) -> list[StoredRow]:
        """A page of rows after *after_seq*, optionally within ``[start, end)``."""
        sql = f"SELECT {_COLUMNS} FROM evidence_records WHERE seq > ?"
        args: list[object] = [after_seq]
        if start is not None:
            sql += " AND time >= ?"
            args.append(start)
        if end is not None:
            sql += " AND time < ?"
            args.append(end)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return [StoredRow(*r) for r in self._conn.execute(sql, args).fetchall()]

    def get(self, seq: int) -> StoredRow | None:
        """The row at *seq*."""
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM evidence_records WHERE seq = ?", (seq,)).fetchone()
        return StoredRow(*row) if row else None

    def stored_head(self) -> tuple[int, str, str]:
        """The head table's (seq, hash, time)."""
        row = self._conn.execute("SELECT seq, hash, time FROM evidence_head WHERE id = 1").fetchone()
        if row is None:
            raise EvidenceError(f"{self.path}: the evidence_head row is missing (tampered with)")
        return int(row[0]), str(row[1]), str(row[2])

    def close(self) -> None:
        """Close the connection (and the writer-lock file)."""
        self._conn.close()
        if self._writer_lock is not None:
            with contextlib.suppress(OSError):
                self._writer_lock.close()


def _statements(script: str) -> list[str]:
    """Split the schema script on statement ends (trigger bodies hold their own ``;``)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
