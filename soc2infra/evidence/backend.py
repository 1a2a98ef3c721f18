"""The storage contract of the evidence ledger: the rows a backend stores, the head a writer
reads under its lock, and the :class:`Backend` protocol that the SQLite and PostgreSQL backends
implement. It sits below both the ledger and the backends, so neither imports the other back."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from soc2infra.evidence.records import redact


class StoredRow(NamedTuple):
    """One row of ``evidence_records`` as stored: the columns next to the canonical body."""

    seq: int
    time: str
    source: str
    subject: str
    body: str
    hash: str
    prev_hash: str


class HeadState(NamedTuple):
    """What a writer sees under the lock: the head table and the last stored record."""

    seq: int  # head table
    hash: str
    time: str
    last_seq: int  # last record (0 when empty)
    last_hash: str


class Backend(Protocol):
    """Storage for one ledger; used by one thread at a time (the :class:`Ledger` lock)."""

    url: str
    errors: tuple[type[Exception], ...]  # the driver's exceptions, reported as StorageError
    # A commit is a local write and fsync (SQLite), cheaper than handing it to another thread;
    # False for a database server, whose round trip must not hold up the caller's event loop.
    local_commits: bool

    def begin_exclusive(self) -> HeadState:
        """Start a transaction that excludes every other writer, and read the head."""

    def try_begin_exclusive(self) -> HeadState | None:
        """:meth:`begin_exclusive` when no other writer holds the ledger, else None at once
        (nothing started). Backends whose commits are not local may always return None."""
        ...

    def insert(self, rows: Sequence[StoredRow], head: tuple[int, str, str]) -> None:
        """Insert *rows* and move the head table to *head* (seq, hash, time)."""

    def commit(self) -> None:
        """Commit durably (the record survives a crash once this returns)."""

    def rollback(self) -> None:
        """Abandon the transaction."""

    def fetch(self, after_seq: int, limit: int, start: str | None = None,
              end: str | None = None) -> list[StoredRow]:
        """Up to *limit* rows with seq > *after_seq* (and start <= time < end), by seq."""

    def get(self, seq: int) -> StoredRow | None:
        """The row at *seq*."""

    def stored_head(self) -> tuple[int, str, str]:
        """The head table's (seq, hash, time); (0, genesis, "") for a new ledger."""

    def close(self) -> None:
        """Release the connection."""


def display_url(url: str) -> str:
    """*url* with any password masked, for messages (URL or libpq ``password=…`` form)."""
    if "://" in url:
        return str(redact({"url": url})["url"])
    return _KEYWORD_PASSWORD.sub(r"\1[REDACTED]", url)


_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_ledger(text: str, url: str) -> str:
    """*text* (an error message, a log line) with the ledger *url* and its password masked
    wherever they appear: drivers quote the connection string, or parts of it, in errors."""
    text = text.replace(url, display_url(url))
    password = None
    if "://" in url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
    else:
        found = _KEYWORD_PASSWORD.search(url)
        password = found.group(2).strip("'") if found else None
    return text.replace(password, "[REDACTED]") if password else _KEYWORD_PASSWORD.sub(r"\1[REDACTED]", text)
