"""The evidence ledger: an append-only, hash-chained table of records.

``open_ledger(url)`` opens SQLite (a file path or ``sqlite:///path``) or PostgreSQL
(``postgresql://…``). :meth:`Ledger.append` computes seq, time, prev_hash and hash *inside* one
exclusive transaction, so several threads or processes writing the same ledger keep one
gap-free chain: SQLite takes the write lock up front (``BEGIN IMMEDIATE``), PostgreSQL locks the
one-row head table (``SELECT … FOR UPDATE``). A batch is all or nothing.

Record times come from the writer's clock but never go backwards: a record is stamped
``max(now, head time)``, so a clock stepping back cannot break the chain's time order. A caller
may fix ``time`` itself (back-filling, tests) only at or after the head's time.

:class:`GroupCommitter` lets many concurrent callers (admission requests) share transactions:
each caller's future resolves only once the transaction holding its record has committed, so an
admission response can wait for its evidence without paying one fsync per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from soc2infra.evidence.backend import Backend, HeadState, StoredRow
from soc2infra.evidence.records import (
    EvidenceError,
    PreparedEntry,
    Signer,
    StorageError,
    format_time,
    load_signer,
    now,
    parse_time,
    prepare_entry,
    seal,
)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A point in the chain (``seq:hash``) kept outside the ledger to detect a truncated tail."""

    seq: int
    hash: str
    time: str = ""

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH`` or a bare ``HASH`` (seq 0 = unknown position)."""
        text = text.strip()
        seq_text, sep, hash_text = text.rpartition(":")
        if not sep:
            seq_text, hash_text = "0", text
        if len(hash_text) != 64 or any(c not in "0123456789abcdef" for c in hash_text.lower()):
            raise EvidenceError(f"not an anchor (SEQ:HASH or a 64-digit hex hash): {text!r}")
        try:
            seq = int(seq_text)
        except ValueError as exc:
            raise EvidenceError(f"not an anchor: bad sequence number {seq_text!r}") from exc
        return cls(seq, hash_text.lower())


PAGE = 1000
_LINGER_SLICE = 0.0002  # a group commit stops lingering after this long without a new request


class Ledger:
    """An open evidence ledger. Safe to share between threads; use one per process or more."""

    def __init__(self, backend: Backend, signer: Signer | None = None) -> None:
        self._backend = backend
        self._signer = signer
        self._lock = threading.Lock()
        self._closed = False
        self.url = backend.url

    # -- writing ------------------------------------------------------------------------------

    def append(self, entries: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append *entries* atomically (all or nothing) and return their sequence numbers.

        Each entry is redacted and checked (:func:`~soc2infra.evidence.records.normalize_entry`);
        an invalid entry raises :class:`EvidenceError` before anything is written.
        """
        return self.append_prepared([prepare_entry(e) for e in entries])

    def append_prepared(self, batch: Sequence[PreparedEntry]) -> list[int]:
        """Append entries from :func:`~soc2infra.evidence.records.prepare_entry` (one transaction)."""
        if not batch:
            return []
        with self._lock:
            seqs = self._append(batch, self._backend.begin_exclusive)
        assert seqs is not None  # begin_exclusive waits, it never gives up
        return seqs

    @property
    def local_commits(self) -> bool:
        """Whether a commit is a local write (SQLite), cheap enough to make in an event loop."""
        return bool(getattr(self._backend, "local_commits", False))

    def try_append_prepared(self, batch: Sequence[PreparedEntry]) -> list[int] | None:
        """:meth:`append_prepared`, or None at once, with nothing written, when another writer
        (a thread of this process, or another process) holds the ledger."""
        if not batch:
            return []
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._append(batch, self._backend.try_begin_exclusive)
        finally:
            self._lock.release()

    def _append(self, batch: Sequence[PreparedEntry],
                begin: Callable[[], HeadState | None]) -> list[int] | None:
        # Called with self._lock held.
        if self._closed:
            raise EvidenceError("the ledger is closed")
        backend = self._backend
        try:
            state = begin()
            if state is None:
                return None
            if (state.seq, state.hash) != (state.last_seq, state.last_hash):
                raise EvidenceError(
                    f"ledger {self.url}: the head table says seq {state.seq} but the last record is "
                    f"seq {state.last_seq}; records were removed or the head was edited — run "
                    "`soc2infra evidence verify` before appending")
            seq, prev, last_time = state.seq, state.hash, state.time
            rows: list[StoredRow] = []
            for entry in batch:
                seq += 1
                stamp = entry.time
                if stamp is None:
                    stamp = max(now(), last_time)
                elif stamp < last_time:
                    raise EvidenceError(f"time {stamp} is before the ledger head's {last_time}; "
                                        "records must be appended in time order")
                body, digest = seal(entry, seq, prev, stamp, self._signer)
                rows.append(StoredRow(seq, stamp, entry.fields["source"], entry.fields["subject"], body,
                                      digest, prev))
                prev, last_time = digest, stamp
            backend.insert(rows, (seq, prev, last_time))
            backend.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                backend.rollback()
            if isinstance(exc, backend.errors):
                raise StorageError(f"ledger {self.url}: {exc}") from exc
            raise
        return [r.seq for r in rows]

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Backend]:
        with self._lock:
            self._check_open()
            try:
                yield self._backend
            except self._backend.errors as exc:
                raise StorageError(f"ledger {self.url}: {exc}") from exc

    # -- reading ------------------------------------------------------------------------------

    def iter_rows(self, start: str | None = None, end: str | None = None,
                  after_seq: int = 0) -> Iterator[StoredRow]:
        """Stored rows in seq order (``start <= time < end``), fetched a page at a time."""
        while True:
            with self._reading() as backend:
                page = backend.fetch(after_seq, PAGE, start, end)
            yield from page
            if len(page) < PAGE:
                return
            after_seq = page[-1].seq

    def iter(self, from_time: datetime | date | str | None = None,
             to_time: datetime | date | str | None = None) -> Iterator[dict[str, Any]]:
        """Records in seq order whose time is in ``[from_time, to_time)``.

        A :class:`~datetime.date` (or ``YYYY-MM-DD``) bound means the whole day: ``to_time`` as a
        date includes that day. Datetimes must carry a zone.
        """
        import json

        start, end = time_bounds(from_time, to_time)
        for row in self.iter_rows(start, end):
            yield json.loads(row.body)

    def get(self, seq: int) -> dict[str, Any] | None:
        """The record at *seq*, or None."""
        import json

        with self._reading() as backend:
            row = backend.get(seq)
        return json.loads(row.body) if row else None

    def head(self) -> Anchor | None:
        """The last record's position and hash (None for an empty ledger): store it elsewhere
        (CI artifact, ticket, object-locked bucket) and pass it to verify to detect truncation."""
        with self._reading() as backend:
            seq, hash_, stamp = backend.stored_head()
        return Anchor(seq, hash_, stamp) if seq else None

    def count(self) -> int:
        """Number of records (the head's seq; records are gap-free from 1)."""
        anchor = self.head()
        return anchor.seq if anchor else 0

    # -- lifetime -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EvidenceError("the ledger is closed")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._backend.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"


def time_bounds(start: datetime | date | str | None,
                end: datetime | date | str | None) -> tuple[str | None, str | None]:
    """Record-format bounds ``[start, end)``; a date ``end`` covers that whole day."""

    def conv(value: datetime | date | str | None, is_end: bool) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if len(text) == 10:
                value = date.fromisoformat(text)
            else:
                value = parse_time(text)
        if isinstance(value, datetime):
            return format_time(value)
        day = value + timedelta(days=1) if is_end else value
        return f"{day.isoformat()}T00:00:00.000000Z"

    return conv(start, False), conv(end, True)


def open_ledger(url: str | Path, signing_key: Path | None = None, *, create: bool = True) -> Ledger:
    """Open the ledger at *url*, creating it unless *create* is False (then a missing ledger
    raises :class:`EvidenceError`, so verifying a mistyped path cannot report an empty, valid one).

    - ``postgresql://…`` / ``postgres://…`` (``postgresql+psycopg://`` too): PostgreSQL via psycopg 3;
      the tables live in the connection's first ``search_path`` schema.
    - ``sqlite:///abs/path.db`` (``sqlite:////abs/path.db`` too) or a plain file path: SQLite.

    With *signing_key* (an Ed25519 private key file) every appended record is signed.
    """
    signer = load_signer(signing_key) if signing_key else None
    text = str(url)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        from soc2infra.evidence.postgres_backend import PostgresBackend

        conninfo = "postgresql://" + text.split("://", 1)[1]
        return Ledger(PostgresBackend(conninfo, create), signer)
    if scheme == "sqlite":
        rest = text.split("://", 1)[1]
        if not rest.startswith("/"):
            raise EvidenceError(f"sqlite URL must be sqlite:///absolute/path, got {text!r} "
                                "(use a plain path for a relative file)")
        path = Path("/" + rest.lstrip("/"))
    elif scheme:
        raise EvidenceError(f"unsupported ledger URL scheme {scheme!r} (use a path, sqlite:/// or postgresql://)")
    else:
        path = Path(text)
    from soc2infra.evidence.sqlite_backend import SQLiteBackend

    return Ledger(SQLiteBackend(path, create), signer)


# ----------------------------------------------------------------------------------------------
# Group commit


@dataclass(slots=True)
class CommitStats:
    """Counters of a :class:`GroupCommitter` (read them for tests and metrics)."""

    transactions: int = 0
    records: int = 0
    largest_batch: int = 0
    failed_transactions: int = 0

    def committed(self, records: int) -> None:
        """Count one transaction of *records* (from the writer thread or an event loop)."""
        self.transactions += 1
        self.records += records
        self.largest_batch = max(self.largest_batch, records)


class GroupCommitter:
    """Batches concurrent appends into shared transactions.

    ``submit(entry)`` checks and redacts the entry in the caller's thread (an invalid entry raises
    at once and never poisons a batch), queues it and returns a future; one writer thread takes
    everything queued (up to *max_batch*) and commits it in one transaction, then resolves every
    future of the batch with its seq — only after the commit returned, i.e. once the record is
    durable. If the transaction fails, every future of the batch gets the exception and none of
    its records exists.

    Batching needs no waiting: while one transaction commits, new requests pile up and form the
    next batch. When a batch already shows concurrency (more than one request queued), the
    writer lingers for more while requests keep arriving (it stops after 0.2 ms without one), but
    never longer than *max_wait_ms* nor than a commit has recently taken (a moving average):
    waiting longer than the fsync it saves cannot pay off. A lone caller never waits.

    :meth:`append_async` on a ledger with local commits (SQLite) commits in the caller's event
    loop instead: everything appended during one pass of the loop goes into one transaction,
    made once that pass is done. Handing a record to the writer thread and its seq back cost the
    operator more than the commit itself (two thread wake-ups and the GIL passed back and forth
    per record: a quarter of the CPU of an admission review, bench/README.md); a local commit
    holds the loop for about 0.2 ms. When another writer holds the ledger at that moment (an audit
    snapshot committing from the writer thread, another process) the batch goes to the writer
    thread, so the loop never waits for someone else's transaction.
    """

    def __init__(self, ledger: Ledger, max_batch: int = 256, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.ledger = ledger
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._commit_seconds = self.max_wait  # moving average of recent commit times
        self.stats = CommitStats()
        self._queue: deque[tuple[PreparedEntry, Future[int]]] = deque()
        # Records appended during the current pass of each event loop (append_async).
        self._in_loop: dict[asyncio.AbstractEventLoop,
                            list[tuple[PreparedEntry, asyncio.Future[int | Future[int]]]]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="evidence-group-commit", daemon=True)
        self._thread.start()

    def submit(self, entry: Mapping[str, Any]) -> Future[int]:
        """Queue *entry*; the future resolves to its seq once committed."""
        return self._enqueue(prepare_entry(entry))

    def _enqueue(self, prepared: PreparedEntry) -> Future[int]:
        future: Future[int] = Future()
        with self._cond:
            if self._closed:
                raise EvidenceError("the group committer is closed")
            self._queue.append((prepared, future))
            self._cond.notify()
        return future

    def append_sync(self, entry: Mapping[str, Any], timeout: float | None = None) -> int:
        """Append *entry* and block until it is committed; returns its seq."""
        return self.submit(entry).result(timeout)

    async def append_async(self, entry: Mapping[str, Any]) -> int:
        """Append *entry* and await its commit; returns its seq. The event loop is held up only
        by local commits, in one transaction per pass of the loop (see the class docstring)."""
        prepared = prepare_entry(entry)
        if not self.ledger.local_commits:
            return await asyncio.wrap_future(self._enqueue(prepared))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | Future[int]] = loop.create_future()
        pending = self._in_loop.get(loop)
        if pending is None:
            pending = self._in_loop[loop] = []
            loop.call_soon(self._commit_in_loop, loop)
        pending.append((prepared, future))
        outcome = await future
        if isinstance(outcome, Future):  # the ledger was busy: the writer thread commits it
            return await asyncio.wrap_future(outcome)
        return outcome

    def _commit_in_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit what this pass of *loop* appended (a cancelled caller's record is not written)."""
        batch = [(p, f) for p, f in self._in_loop.pop(loop, []) if not f.cancelled()]
        for start in range(0, len(batch), self.max_batch):
            part = batch[start:start + self.max_batch]
            try:
                seqs = self.ledger.try_append_prepared([prepared for prepared, _ in part])
            except Exception as exc:  # every caller must hear about it
                self.stats.failed_transactions += 1
                for _, future in part:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if seqs is None:
                for prepared, future in part:
                    if not future.done():
                        future.set_result(self._enqueue(prepared))
                continue
            self.stats.committed(len(part))
            for (_, future), seq in zip(part, seqs, strict=True):
                if not future.done():
                    future.set_result(seq)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the writer thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> GroupCommitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, batch: list[tuple[PreparedEntry, Future[int]]]) -> None:
        # Called with the condition held.
        while self._queue and len(batch) < self.max_batch:
            prepared, future = self._queue.popleft()
            if future.set_running_or_notify_cancel():  # a cancelled request is not written
                batch.append((prepared, future))

    def _next_batch(self) -> list[tuple[PreparedEntry, Future[int]]] | None:
        batch: list[tuple[PreparedEntry, Future[int]]] = []
        with self._cond:
            while not batch:
                while not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                self._take(batch)
            linger = min(self.max_wait, self._commit_seconds)
            if linger > 0 and 1 < len(batch) < self.max_batch and not self._closed:
                # Keep gathering only while requests keep arriving: callers that wait for their
                # own record (most of them) cannot send another until this batch commits.
                deadline = _time.monotonic() + linger
                while len(batch) < self.max_batch:
                    remaining = deadline - _time.monotonic()
                    if remaining <= 0:
                        break
                    if not self._queue:
                        self._cond.wait(min(remaining, _LINGER_SLICE))
                    if not self._queue:
                        break
                    self._take(batch)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            started = _time.monotonic()
            try:
                seqs = self.ledger.append_prepared([prepared for prepared, _ in batch])
            except BaseException as exc:  # every caller must hear about it; keep serving
                self.stats.failed_transactions += 1
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self._commit_seconds = 0.8 * self._commit_seconds + 0.2 * (_time.monotonic() - started)
            self.stats.committed(len(batch))
            for (_, future), seq in zip(batch, seqs, strict=True):
                future.set_result(seq)
