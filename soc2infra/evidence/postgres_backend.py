"""PostgreSQL storage for the evidence ledger (psycopg 3), for ledgers shared by several
clusters, operator replicas or CI runners.

- An append is one transaction that starts with ``SELECT … FROM evidence_head … FOR UPDATE``:
  the one-row head table is the chain's lock, so concurrent writers (threads, processes, hosts)
  take turns and each sees the head the previous one committed — one chain, no gaps, no forks.
  ``seq`` is also the primary key, so a fork would fail loudly rather than persist.
- ``synchronous_commit`` is forced ``on`` for the session: COMMIT returns only after the WAL is
  flushed, whatever the server default.
- Tables live in the first schema of the connection's ``search_path`` (pick one with
  ``?options=-csearch_path%3Dmyschema`` in the URL). Schema creation is serialised with an
  advisory lock so replicas starting together do not collide.
- Triggers refuse UPDATE, DELETE and TRUNCATE on the records and moving the head backwards:
  accidents are stopped; a superuser can still disable them, which the chain then exposes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soc2infra.evidence.backend import HeadState, StoredRow, display_url
from soc2infra.evidence.records import GENESIS_HASH, EvidenceError, StorageError

# Arbitrary constant naming the schema-creation advisory lock.
_SCHEMA_LOCK = 0x50C2_E1D0

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS evidence_records (
        seq BIGINT PRIMARY KEY,
        time TEXT NOT NULL,
        source TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL,
        prev_hash TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS evidence_records_time ON evidence_records (time)",
    """CREATE TABLE IF NOT EXISTS evidence_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        time TEXT NOT NULL)""",
    f"INSERT INTO evidence_head (id, seq, hash, time) VALUES (1, 0, '{GENESIS_HASH}', '') "
    "ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS evidence_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO evidence_meta (key, value) VALUES ('schema_version', '1') ON CONFLICT DO NOTHING",
    """CREATE OR REPLACE FUNCTION evidence_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'evidence records are append-only'; END $$""",
    """CREATE OR REPLACE FUNCTION evidence_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.seq < OLD.seq THEN RAISE EXCEPTION 'the evidence head only moves forward'; END IF;
            RETURN NEW;
        END $$""",
    """CREATE OR REPLACE TRIGGER evidence_records_append_only BEFORE UPDATE OR DELETE ON evidence_records
        FOR EACH ROW EXECUTE FUNCTION evidence_append_only()""",
    """CREATE OR REPLACE TRIGGER evidence_records_no_truncate BEFORE TRUNCATE ON evidence_records
        FOR EACH STATEMENT EXECUTE FUNCTION evidence_append_only()""",
    """CREATE OR REPLACE TRIGGER evidence_head_forward BEFORE UPDATE ON evidence_head
        FOR EACH ROW EXECUTE FUNCTION evidence_head_forward()""",
]

_COLUMNS = "seq, time, source, subject, body, hash, prev_hash"


class PostgresBackend:
    """One psycopg connection, used under the owning :class:`Ledger`'s lock."""

    local_commits = False

    def __init__(self, conninfo: str, create: bool = True) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise EvidenceError("a PostgreSQL ledger needs psycopg 3: "
                                "pip install 'soc2infra[postgres]'") from exc
        self._psycopg = psycopg
        self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._conninfo = conninfo
        self.url = display_url(conninfo)
        self._tx: Any = None
        try:
            self._conn: Any = self._connect()
            self._create_schema(create)
        except psycopg.Error as exc:
            raise StorageError(f"{self.url}: cannot open the evidence ledger ({exc})") from exc

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self._conninfo, autocommit=True, application_name="soc2infra-evidence")
        conn.execute("SET synchronous_commit = on")
        return conn

    def _ready(self) -> Any:
        """The connection, re-opened if a server restart or network error broke it.

        A transaction that was running when the connection broke is not retried here: its
        caller got the error, and whether its COMMIT reached the server is for verify to tell.
        """
        if self._conn.closed or self._conn.broken:
            self._tx = None
            self._conn = self._connect()
        return self._conn

    def _create_schema(self, create: bool) -> None:
        conn = self._conn
        row = conn.execute("SELECT to_regclass('evidence_records'), to_regclass('evidence_head'), "
                           "to_regclass('evidence_meta')").fetchone()
        if all(row):
            return
        if not create:
            self._conn.close()
            raise EvidenceError(f"no evidence ledger at {self.url} (its tables are missing)")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in SCHEMA:
                conn.execute(statement)

    def try_begin_exclusive(self) -> HeadState | None:
        """Never without waiting: a commit here is a round trip to the server (see
        :attr:`local_commits`)."""
        return None

    def begin_exclusive(self) -> HeadState:
        """BEGIN, then lock the head row (other writers wait here) and read the last record.

        A connection found dead here (server restart, failover, idle timeout) is replaced and the
        transaction started again: nothing was written yet, so retrying is safe.
        """
        try:
            return self._begin(self._ready())
        except self._psycopg.OperationalError:
            if not (self._conn.closed or self._conn.broken):
                raise
            self._tx = None
            return self._begin(self._ready())

    def _begin(self, conn: Any) -> HeadState:
        conn.execute("BEGIN")
        self._tx = True
        head = conn.execute("SELECT seq, hash, time FROM evidence_head WHERE id = 1 FOR UPDATE").fetchone()
        if head is None:
            raise EvidenceError(f"{self.url}: the evidence_head row is missing (tampered with)")
        last = conn.execute("SELECT seq, hash FROM evidence_records ORDER BY seq DESC LIMIT 1").fetchone()
        last_seq, last_hash = last if last else (0, GENESIS_HASH)
        return HeadState(int(head[0]), head[1], head[2], int(last_seq), last_hash)

    def insert(self, rows: Sequence[StoredRow], head: tuple[int, str, str]) -> None:
        """Insert the rows (pipelined) and move the head, inside the open transaction."""
        with self._conn.cursor() as cur:
            cur.executemany(f"INSERT INTO evidence_records ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            rows)
            cur.execute("UPDATE evidence_head SET seq = %s, hash = %s, time = %s WHERE id = 1", head)

    def commit(self) -> None:
        """COMMIT (synchronous_commit=on: durable when this returns)."""
        self._conn.execute("COMMIT")
        self._tx = None

    def rollback(self) -> None:
        """ROLLBACK when a transaction is open (and the connection still usable)."""
        if self._tx is not None:
            self._tx = None
            if not (self._conn.closed or self._conn.broken):
                self._conn.execute("ROLLBACK")

    def fetch(self, after_seq: int, limit: int, start: str | None = None,
              end: str | None = None) -> list[StoredRow]:
        """A page of rows after *after_seq*, optionally within ``[start, end)``."""
        sql = f"SELECT {_COLUMNS} FROM evidence_records WHERE seq > %s"
        args: list[object] = [after_seq]
        if start is not None:
            sql += " AND time >= %s"
            args.append(start)
        if end is not None:
            sql += " AND time < %s"
            args.append(end)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        return [StoredRow(*r) for r in self._query(sql, args)]

    def get(self, seq: int) -> StoredRow | None:
        """The row at *seq*."""
        rows = self._query(f"SELECT {_COLUMNS} FROM evidence_records WHERE seq = %s", [seq])
        return StoredRow(*rows[0]) if rows else None

    def stored_head(self) -> tuple[int, str, str]:
        """The head table's (seq, hash, time)."""
        rows = self._query("SELECT seq, hash, time FROM evidence_head WHERE id = 1", [])
        row = rows[0] if rows else None
        if row is None:
            raise EvidenceError(f"{self.url}: the evidence_head row is missing (tampered with)")
        return int(row[0]), str(row[1]), str(row[2])

    def _query(self, sql: str, args: list[object]) -> list[tuple[Any, ...]]:
        """Run a read; a dead connection is replaced and the read retried once (reads are idempotent)."""
        try:
            return list(self._ready().execute(sql, args).fetchall())
        except self._psycopg.OperationalError:
            if not (self._conn.closed or self._conn.broken):
                raise
            return list(self._ready().execute(sql, args).fetchall())

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
