"""Fixtures for the evidence ledger: every test runs against SQLite and a real PostgreSQL.

The PostgreSQL server is started once per session by ``tools/postgres.sh`` in its own temporary
directory (so parallel sessions never share or stop each other's server) and purged at the end.
Each test gets its own schema. Under ``CI=true`` a PostgreSQL that cannot be installed or started
fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import Ledger, open_ledger

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SH = ROOT / "tools" / "postgres.sh"


def _unavailable(reason: str) -> None:
    # A skip here is a failure under CI=true (tests/conftest.py).
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DSN of a throwaway PostgreSQL server for this session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed")
    workdir = tempfile.mkdtemp(prefix="soc2infra-pg-")
    env = dict(os.environ, SOC2INFRA_PG_DIR=workdir)
    env.pop("SOC2INFRA_PG_PORT", None)
    try:
        proc = subprocess.run(["bash", str(POSTGRES_SH), "start"], env=env, capture_output=True, text=True,
                              timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        _unavailable(f"tools/postgres.sh start: {exc}")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("postgresql://"):
        subprocess.run(["bash", str(POSTGRES_SH), "purge"], env=env, capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        _unavailable(f"tools/postgres.sh start exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        yield lines[-1]
    finally:
        subprocess.run(["bash", str(POSTGRES_SH), "purge"], env=env, capture_output=True, check=False,
                       timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage under test."""
    return str(request.param)


@pytest.fixture
def ledger_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger URL for *backend* (a file, or a schema of its own)."""
    if backend == "sqlite":
        yield str(tmp_path / "evidence.db")
        return
    import psycopg

    dsn = request.getfixturevalue("pg_server")
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def make_ledger(ledger_url: str) -> Iterator[Callable[..., Ledger]]:
    """Open ledgers on the test's URL; all are closed at teardown."""
    opened: list[Ledger] = []

    def make(url: str | None = None, signing_key: Path | None = None) -> Ledger:
        led = open_ledger(url or ledger_url, signing_key)
        opened.append(led)
        return led

    yield make
    for led in opened:
        led.close()


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    """An open, empty ledger."""
    return make_ledger()


class RawDB:
    """Direct SQL on the ledger's database, as an attacker with write access would have it:
    the append-only triggers are disabled around each statement."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend, self.url = backend, url

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run *sql* (``?`` placeholders) with the triggers off; return fetched rows, if any."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.url, isolation_level=None)
            try:
                names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
                conn.execute("BEGIN IMMEDIATE")
                saved = [conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (n,)).fetchone()[0]
                         for n in names]
                for name in names:
                    conn.execute(f"DROP TRIGGER {name}")
                cur = conn.execute(sql, tuple(params))
                rows = cur.fetchall()
                for text in saved:
                    with contextlib.suppress(sqlite3.OperationalError):  # its table may be gone
                        conn.execute(text)
                conn.execute("COMMIT")
                return rows
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as conn:  # one transaction
            conn.execute("ALTER TABLE evidence_records DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE evidence_head DISABLE TRIGGER USER")
            cur = conn.execute(sql.replace("?", "%s"), tuple(params))
            rows = cur.fetchall() if cur.description else []
            for table in ("evidence_records", "evidence_head"):  # unless the statement dropped it
                conn.execute(f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN "
                             f"ALTER TABLE {table} ENABLE TRIGGER USER; END IF; END $$")
            return rows

    def dump(self) -> bytes:
        """Everything the database holds for the ledger, as bytes (files, or every table's text)."""
        if self.backend == "sqlite":
            data = b""
            for suffix in ("", "-wal", "-shm", "-journal"):
                path = Path(self.url + suffix)
                if path.exists():
                    data += path.read_bytes()
            return data
        import psycopg

        out = []
        with psycopg.connect(self.url) as conn:
            for table in ("evidence_records", "evidence_head", "evidence_meta"):
                with conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                    out.extend(bytes(block) for block in copy)
        return b"".join(out)


@pytest.fixture
def raw_db(backend: str, ledger_url: str) -> RawDB:
    """Direct access to the test ledger's database."""
    return RawDB(backend, ledger_url)


def entry(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A small valid admission entry."""
    base: dict[str, Any] = {
        "source": "admission", "actor": f"user-{i}", "subject": f"apps/v1/Deployment/ns/app-{i}",
        "pack_digest": "sha256:" + "ab" * 32, "decision": "allow",
        "results": [{"rule_id": "SOC2-K8S-POD-001", "status": "pass", "severity": "high",
                     "controls": ["CC6.1"], "address": f"apps/v1/Deployment/ns/app-{i}"}],
        "context": {"namespace": "ns", "operation": "CREATE", "dry_run": False, "i": i},
    }
    base.update(overrides)
    return base


@pytest.fixture
def make_entry() -> Callable[..., dict[str, Any]]:
    """Factory for valid entries (see :func:`entry`)."""
    return entry
