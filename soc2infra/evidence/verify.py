"""Verify an evidence ledger: every hash, every link, seq continuity, time order, signatures.

The result names the *first* record where the chain breaks (``first_bad_seq``). Every record
before it links correctly, but that alone proves only internal consistency: what can be *relied
on* is the range confirmed by an external anchor (``anchored_through``) — see :meth:`VerifyResult.trust`.
How each kind of tampering shows up:

============================  ===================================================================
edit a record's content       its hash no longer matches its content → that record
edit a stored hash            the hash differs from the content (or the column) → that record
forge a record + its hash     the next record's ``prev_hash`` no longer links → the forged one
                              (with a public key: its signature fails → the forged one)
delete a record               seq jumps (4, 6) → the missing seq
reorder records               a record stored at seq *n* says another seq → position *n*
renumber after a deletion     the renumbered record's hash (or the link) breaks → that record
truncate the tail             the head table disagrees, or the external anchor / expected count
                              is not reached → the first missing seq
============================  ===================================================================

**What cannot be detected without an anchor.** The chain lives in the same database as the
head table. Someone who can write the database can delete the newest records *and* move the head
back, or rewrite a suffix of the chain and recompute every hash after it: the result is a
shorter or different but internally valid chain. Two things close that gap and should be used
for Type II evidence: (1) an **anchor** kept outside the ledger — the ``SEQ:HASH`` of
:meth:`Ledger.head`, recorded in CI logs, a ticket or an object-locked bucket, and passed as
``expect_head`` (any later chain must still contain it, so truncation or rewriting before it
is caught); (2) **signatures** — with the public key, a rewritten record fails verification
unless the attacker also holds the private key. Without either, verify proves internal
consistency only, and says so in ``notes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soc2infra.evidence.backend import StoredRow
from soc2infra.evidence.ledger import Anchor, Ledger, open_ledger
from soc2infra.evidence.records import (
    GENESIS_HASH,
    EvidenceError,
    canonical_json,
    check_signature,
    format_time,
    load_public_keys,
    parse_time,
    record_hash,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KeySpec = Path | str | Sequence[Path | str] | None


@dataclass(slots=True)
class VerifyResult:
    """Outcome of a verification. ``ok`` is False as soon as one record is bad."""

    ok: bool
    records: int  # records checked and found intact
    head: Anchor | None = None  # the last intact record
    first_bad_seq: int | None = None
    reason: str | None = None
    signatures: int = 0  # signatures verified
    notes: list[str] = field(default_factory=list)
    anchor: Anchor | None = None  # the expected head checked against, if any
    anchored_through: int | None = None  # highest seq confirmed by the anchor (None: not confirmed)
    first_seq: int = 1  # the first record checked (an export may start mid-chain)

    @property
    def signed(self) -> bool:
        """Every intact record carried a valid signature of a trusted key."""
        return self.records > 0 and self.signatures >= self.records

    @property
    def fully_trusted(self) -> bool:
        """Intact, every record signed, and the anchor confirms the head: what an auditor can rely on."""
        return (self.ok and self.signed and self.head is not None
                and self.anchored_through is not None and self.anchored_through >= self.head.seq)

    def trust(self) -> str:
        """One sentence naming exactly which seq range can be relied on, and on what grounds."""
        n, f = self.records + self.first_seq - 1, self.first_seq
        signed = " and carry valid signatures" if self.signed else ""
        if self.anchored_through:
            a = self.anchored_through
            text = f"records {f}..{a} match the anchor ({self.anchor}){signed} and can be relied on"
            if n > a:
                text += (f"; records {a + 1}..{n} only link consistently after it (internal consistency, "
                         "not proven against an anchor)")
            return text
        if self.anchor is not None and not self.ok:
            span = (f"records {f}..{n} link consistently{signed}, but" if self.records
                    else "no record is intact, and")
            return (f"{span} the anchor ({self.anchor}) was NOT confirmed: the chain may have been rewritten "
                    f"from any seq up to {self.anchor.seq or 'the anchor'}, so none of them is proven intact"
                    + (" beyond their signatures" if self.signed else ""))
        if not self.records:
            return "no record is intact"
        return (f"records {f}..{n} link consistently{signed} (no anchor: internal consistency only, "
                "a rewrite with recomputed hashes would not show)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "records": self.records,
            "head": str(self.head) if self.head else None,
            "head_time": self.head.time if self.head else None,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "signatures": self.signatures,
            "notes": list(self.notes),
            "anchor": str(self.anchor) if self.anchor else None,
            "anchored_through": self.anchored_through,
            "signed": self.signed,
            "fully_trusted": self.fully_trusted,
            "trust": self.trust(),
        }

    def __str__(self) -> str:
        if self.ok:
            signed = f", {self.signatures} signatures valid" if self.signatures else ""
            head = f"; head {self.head}" if self.head else ""
            anchored = f"; anchored through seq {self.anchored_through}" if self.anchored_through else ""
            return f"OK: {self.records} records verified{signed}{head}{anchored}"
        return f"BROKEN at seq {self.first_bad_seq}: {self.reason}. Trust: {self.trust()}"


class _Broken(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


class _Chain:
    """Checks records one at a time, in seq order."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey] | None, first_seq: int = 1,
                 first_prev: str | None = GENESIS_HASH) -> None:
        self.keys = keys
        self.first = first_seq
        self.expected = first_seq
        self.prev_hash = first_prev  # None: not known (an export starting mid-chain)
        self.prev_time = ""
        self.count = 0
        self.signatures = 0
        self.last: Anchor | None = None
        self.before_last: Anchor | None = None
        self.hashes_seen: dict[int, str] = {}
        self.watch: set[int] = set()

    def intact_head(self, first_bad: int | None) -> Anchor | None:
        """The last record known intact (the one before *first_bad*, or the last one)."""
        for anchor in (self.last, self.before_last):
            if anchor is not None and (first_bad is None or anchor.seq < first_bad):
                return anchor
        return None

    def feed(self, body: str, row: StoredRow | None = None) -> None:
        n = self.expected
        if row is not None and row.seq != n:
            if row.seq > n:
                gap = f"{n}" if row.seq == n + 1 else f"{n}..{row.seq - 1}"
                raise _Broken(n, f"record {gap} missing: the next stored record is seq {row.seq} "
                                 "(deleted records)")
            raise _Broken(n, f"seq {row.seq} stored twice")
        try:
            record = json.loads(body)
        except ValueError as exc:
            raise _Broken(n, f"the stored body is not valid JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise _Broken(n, "the stored body is not a record")
        if record.get("seq") != n:
            raise _Broken(n, f"the record stored at seq {n} says seq {record.get('seq')!r} "
                             "(records were moved, reordered or removed)")
        try:
            canonical = canonical_json(record)
        except ValueError as exc:
            raise _Broken(n, f"the record is not plain JSON ({exc})") from exc
        if canonical != body:
            raise _Broken(n, "the stored body is not in canonical form (edited outside the ledger)")
        claimed = record.get("hash")
        if record_hash(record) != claimed:
            raise _Broken(n, "the content does not match its hash (the record was edited)")
        if row is not None:
            for column, value in (("hash", row.hash), ("prev_hash", row.prev_hash), ("time", row.time),
                                  ("source", row.source), ("subject", row.subject)):
                if record.get(column) != value:
                    raise _Broken(n, f"the {column} column ({value!r}) differs from the record's "
                                     f"({record.get(column)!r}): edited outside the ledger")
        if self.keys is not None:
            problem = check_signature(record, self.keys)
            if problem:
                raise _Broken(n, problem)
            self.signatures += 1
        if self.prev_hash is not None and record.get("prev_hash") != self.prev_hash:
            if n == 1 or self.last is None:
                raise _Broken(n, "the first record does not start from the genesis hash")
            raise _Broken(n - 1, f"record {n}'s prev_hash does not match record {n - 1}'s hash: record "
                                 f"{n - 1} was replaced with a recomputed hash (or record {n}'s link was)")
        stamp = record.get("time")
        try:
            if not isinstance(stamp, str) or format_time(parse_time(stamp)) != stamp:
                raise EvidenceError("bad format")
        except EvidenceError as exc:
            raise _Broken(n, f"time {stamp!r} is not a UTC time in record format") from exc
        if stamp < self.prev_time:
            raise _Broken(n, f"time goes backwards ({stamp} after {self.prev_time}): records were "
                             "reordered or back-dated")
        self.prev_hash, self.prev_time = claimed, stamp
        self.before_last, self.last = self.last, Anchor(n, claimed, stamp)
        if n in self.watch:
            self.hashes_seen[n] = claimed
        self.count += 1
        self.expected += 1


def _keys(public_key: KeySpec) -> dict[str, Ed25519PublicKey] | None:
    if public_key is None or (isinstance(public_key, Sequence) and not isinstance(public_key, str)
                              and not public_key):
        return None
    return load_public_keys(public_key)


def _anchor(expect_head: str | Anchor | None) -> Anchor | None:
    if expect_head is None or isinstance(expect_head, Anchor):
        return expect_head
    return Anchor.parse(expect_head)


def _notes(keys: object, anchor: Anchor | None, expect_count: int | None) -> list[str]:
    notes = []
    if anchor is None and expect_count is None:
        notes.append("no external anchor given: deleting the newest records together with the head row, "
                     "or rewriting the chain's tail with recomputed hashes, cannot be detected; keep the "
                     "head (SEQ:HASH) outside the ledger and pass it as expect_head")
    if keys is None:
        notes.append("signatures not checked (no public key): a writer of the database could recompute "
                     "every hash; pass the public key to prove records came from the signing key's holder")
    return notes


def verify_ledger(url: str | Path | Ledger, public_key: KeySpec = None,
                  expect_head: str | Anchor | None = None,
                  expect_count: int | None = None) -> VerifyResult:
    """Verify the whole ledger at *url* (or an open :class:`Ledger`).

    *public_key*: one or more Ed25519 public key files; every record must then be signed by one
    of them. *expect_head*: an anchor ``SEQ:HASH`` (or a bare hash) taken earlier; the ledger
    must still contain it. *expect_count*: the ledger must hold at least this many records.
    Records appended while verify runs are not checked (it verifies up to the head it saw first).
    """
    keys = _keys(public_key)
    anchor = _anchor(expect_head)
    ledger = url if isinstance(url, Ledger) else open_ledger(url, create=False)
    try:
        return _verify(ledger, keys, anchor, expect_count)
    finally:
        if ledger is not url:
            ledger.close()


def _verify(ledger: Ledger, keys: dict[str, Ed25519PublicKey] | None, anchor: Anchor | None,
            expect_count: int | None) -> VerifyResult:
    head = ledger.head()  # read first: records after it may arrive while we read
    head_seq = head.seq if head else 0
    chain = _Chain(keys)
    if anchor is not None and anchor.seq:
        chain.watch.add(anchor.seq)
    found_anchor = False
    beyond = 0  # first seq stored past the head row
    result = VerifyResult(ok=True, records=0, notes=_notes(keys, anchor, expect_count), anchor=anchor)
    found_at = 0  # seq where a bare-hash anchor was found
    try:
        for row in ledger.iter_rows():
            if row.seq > head_seq:
                if chain.count < head_seq:
                    chain.feed(row.body, row)  # reports the gap before it
                beyond = row.seq
                break
            chain.feed(row.body, row)
            if anchor is not None and not anchor.seq and row.hash == anchor.hash:
                found_anchor, found_at = True, row.seq
        n = chain.count
        if beyond:
            # Past the head: appended since we read it, or the head row was moved back.
            now_head = ledger.head()
            if now_head is None or now_head.seq < beyond:
                raise _Broken(head_seq + 1, f"record {beyond} is stored beyond the head row (seq "
                                            f"{head_seq}): the head was moved back or records were "
                                            "added outside the ledger")
        if n < head_seq:
            raise _Broken(n + 1, f"the head row says {head_seq} records but the chain ends at seq {n}: "
                                 "the tail was truncated")
        if head is not None and chain.last is not None and head.hash != chain.last.hash:
            raise _Broken(head_seq, "the head row's hash differs from the last record's (edited)")
        if expect_count is not None and n < expect_count:
            raise _Broken(n + 1, f"expected at least {expect_count} records but the ledger ends at seq {n}: "
                                 "the tail was truncated")
        if anchor is not None:
            if anchor.seq:
                if anchor.seq > n:
                    raise _Broken(n + 1, f"the anchor names seq {anchor.seq} but the ledger ends at seq {n}: "
                                         "the tail was truncated")
                if chain.hashes_seen.get(anchor.seq) != anchor.hash:
                    raise _Broken(anchor.seq, f"record {anchor.seq} differs from the anchor taken earlier: "
                                              "the chain was rewritten up to it")
            elif not found_anchor and anchor.hash != GENESIS_HASH:
                raise _Broken(n + 1, "the anchored hash is not in the ledger: the tail was truncated or "
                                     "rewritten after the anchor was taken")
    except _Broken as broken:
        result.ok = False
        result.first_bad_seq = broken.seq
        result.reason = broken.reason
        result.records = min(chain.count, broken.seq - 1)
    else:
        result.records = chain.count
    result.head = chain.intact_head(result.first_bad_seq)
    result.signatures = min(chain.signatures, result.records)
    result.anchored_through = _anchored_through(anchor, chain, found_at, result.records)
    return result


def _anchored_through(anchor: Anchor | None, chain: _Chain, found_at: int, intact: int) -> int | None:
    """The seq the anchor confirms: its record was read intact and carries the anchored hash."""
    if anchor is None:
        return None
    seq = anchor.seq or found_at
    if not seq or seq > intact:
        return None
    if anchor.seq and chain.hashes_seen.get(seq) != anchor.hash:
        return None
    return seq


def verify_records(bodies: Iterable[str], public_key: KeySpec = None,
                   expect_head: str | Anchor | None = None) -> VerifyResult:
    """Verify records given as canonical JSON lines (a JSONL export).

    An export may start mid-chain (``--from``): then the first record's link to its predecessor
    cannot be checked, which is noted; everything from there on is checked as in the ledger.
    """
    keys = _keys(public_key)
    anchor = _anchor(expect_head)
    chain: _Chain | None = None
    result = VerifyResult(ok=True, records=0, notes=_notes(keys, anchor, None), anchor=anchor)
    found = False
    found_at = 0
    try:
        for line in bodies:
            body = line.rstrip("\n")
            if not body:
                continue
            if chain is None:
                try:
                    first = json.loads(body)
                    start = int(first["seq"])
                    prev = first["prev_hash"] if start == 1 else None
                except (ValueError, KeyError, TypeError) as exc:
                    raise _Broken(1, f"the first line is not a record ({exc})") from exc
                chain = _Chain(keys, start, prev)
                if start != 1:
                    result.notes.append(f"the records start at seq {start}: their link to seq {start - 1} "
                                        "is not checked")
                if anchor is not None and anchor.seq:
                    chain.watch.add(anchor.seq)
            chain.feed(body)
            last = chain.last
            if anchor is not None and last is not None and last.hash == anchor.hash \
                    and anchor.seq in (0, last.seq):
                found, found_at = True, last.seq
        if anchor is not None and not found:
            last_seq = chain.last.seq if chain and chain.last else 0
            raise _Broken(last_seq + 1, "the anchored hash is not among the records: truncated or rewritten")
    except _Broken as broken:
        result.ok, result.first_bad_seq, result.reason = False, broken.seq, broken.reason
    if chain is not None:
        bad = result.first_bad_seq
        result.records = chain.count if bad is None else max(0, min(chain.count, bad - chain.first))
        result.signatures = min(chain.signatures, result.records)
        result.head = chain.intact_head(result.first_bad_seq)
        result.first_seq = chain.first
        if found and result.head is not None and found_at <= result.head.seq:
            result.anchored_through = found_at
    return result


def verify_jsonl(path: Path, public_key: KeySpec = None,
                 expect_head: str | Anchor | None = None) -> VerifyResult:
    """Verify a JSONL export (one canonical record per line) without the database."""
    with Path(path).open(encoding="utf-8") as fh:
        return verify_records(fh, public_key, expect_head)
