"""Concurrent writers, group commit and durability, on both backends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import EvidenceError, GroupCommitter, Ledger, open_ledger, verify_ledger

pytestmark = pytest.mark.timeout(300)

_WRITER = r"""
import sys, time
from pathlib import Path
from soc2infra.evidence import open_ledger
url, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
led = open_ledger(url)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
for i in range(count):
    batch = 1 + i % 3
    led.append([{"source": "ci", "actor": name, "subject": "repo", "context": {"i": i, "j": j}}
                for j in range(batch)])
led.close()
print("done", flush=True)
"""

_GROUP_WRITER = r"""
import sys, threading
from soc2infra.evidence import GroupCommitter, open_ledger
url = sys.argv[1]
led = open_ledger(url)
gc = GroupCommitter(led, max_batch=64, max_wait_ms=1)
lock = threading.Lock()
def work(t):
    i = 0
    while True:
        seq = gc.append_sync({"source": "admission", "actor": f"t{t}", "subject": "s", "decision": "allow",
                              "context": {"i": i}})
        with lock:
            sys.stdout.write(f"{seq}\n")
            sys.stdout.flush()
        i += 1
for t in range(8):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def _assert_one_chain(url: str, expected: int) -> list[dict[str, Any]]:
    with open_ledger(url) as led:
        records = list(led.iter())
        result = verify_ledger(led)
    assert result.ok, result
    assert [r["seq"] for r in records] == list(range(1, expected + 1))
    return records


def test_two_threads_with_their_own_connections(ledger_url: str,
                                                make_entry: Callable[..., dict[str, Any]]) -> None:
    counts = {"a": 150, "b": 120}
    errors: list[BaseException] = []
    start = threading.Barrier(len(counts))

    def writer(name: str) -> None:
        try:
            with open_ledger(ledger_url) as led:  # both open a fresh ledger at once
                start.wait()
                for i in range(counts[name]):
                    led.append([make_entry(i, actor=name)])
        except BaseException as exc:  # pragma: no cover - reported below
            start.abort()
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in counts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    records = _assert_one_chain(ledger_url, sum(counts.values()))
    actors = [r["actor"] for r in records]
    assert {a: actors.count(a) for a in counts} == counts
    switches = sum(x != y for x, y in zip(actors, actors[1:], strict=False))
    assert switches >= 5, f"the writers hardly interleaved ({switches} switches): one starved the other"


def test_one_ledger_shared_by_threads(ledger: Ledger, ledger_url: str,
                                     make_entry: Callable[..., dict[str, Any]]) -> None:
    def writer(t: int) -> None:
        for i in range(40):
            ledger.append([make_entry(i, actor=f"t{t}")])

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_one_chain(ledger_url, 240)


def test_two_processes(ledger_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    counts = {"proc-a": 120, "proc-b": 100}  # appends; batches of 1, 2, 3 records in turn
    procs = {name: subprocess.Popen([sys.executable, "-c", _WRITER, ledger_url, name, str(n), str(go)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, n in counts.items()}
    for proc in procs.values():
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
    go.touch()
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}: {err}"
    per_proc = {name: sum(1 + i % 3 for i in range(n)) for name, n in counts.items()}
    records = _assert_one_chain(ledger_url, sum(per_proc.values()))
    actors = [r["actor"] for r in records]
    assert {a: actors.count(a) for a in counts} == per_proc
    switches = sum(x != y for x, y in zip(actors, actors[1:], strict=False))
    assert switches >= 3, f"the processes hardly interleaved ({switches} switches)"
    # Each process's batches stayed contiguous and in order (atomic appends).
    for name in counts:
        mine = [(r["context"]["i"], r["context"]["j"]) for r in records if r["actor"] == name]
        assert mine == [(i, j) for i in range(counts[name]) for j in range(1 + i % 3)]


def test_group_commit_batches_and_resolves_after_commit(ledger: Ledger, ledger_url: str,
                                                       make_ledger: Callable[..., Ledger],
                                                       make_entry: Callable[..., dict[str, Any]]) -> None:
    reader = make_ledger()  # its own connection: sees only committed data
    threads, per_thread = 32, 20
    not_visible: list[int] = []
    seqs: list[int] = []
    lock = threading.Lock()

    def check_committed(future: Any) -> None:
        # Runs in the committer thread right after the future resolves.
        seq = future.result()
        if reader.get(seq) is None:
            not_visible.append(seq)

    with GroupCommitter(ledger, max_batch=256, max_wait_ms=2) as gc:
        barrier = threading.Barrier(threads)

        def client(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                future = gc.submit(make_entry(i, actor=f"c{t}"))
                future.add_done_callback(check_committed)
                seq = future.result(timeout=60)
                with lock:
                    seqs.append(seq)

        workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stats = gc.stats
    total = threads * per_thread
    assert sorted(seqs) == list(range(1, total + 1))
    assert not not_visible, f"futures resolved before their record was committed: {not_visible[:5]}"
    assert stats.records == total
    assert stats.transactions < total / 2, stats  # batched: far fewer transactions than records
    assert stats.largest_batch > 1
    _assert_one_chain(ledger_url, total)


def test_group_commit_lone_caller_does_not_linger(ledger: Ledger,
                                                  make_entry: Callable[..., dict[str, Any]]) -> None:
    with GroupCommitter(ledger, max_wait_ms=500) as gc:
        started = time.monotonic()
        for i in range(5):
            assert gc.append_sync(make_entry(i)) == i + 1
        assert time.monotonic() - started < 2.0  # 5 × 500 ms if it waited
        assert gc.stats.transactions == 5


def test_group_commit_failure_reaches_every_caller(ledger: Ledger,
                                                   make_entry: Callable[..., dict[str, Any]]) -> None:
    with GroupCommitter(ledger) as gc:
        with pytest.raises(EvidenceError, match="source"):
            gc.submit(make_entry(0, source="bogus"))  # refused in the caller's thread
        gc.append_sync(make_entry(1, time="2099-01-01T00:00:00Z"))
        future = gc.submit(make_entry(2, time="2098-01-01T00:00:00Z"))  # fails inside the transaction
        with pytest.raises(EvidenceError, match="before the ledger head"):
            future.result(timeout=30)
        assert gc.append_sync(make_entry(3)) == 2  # the writer thread kept going
        assert gc.stats.failed_transactions == 1
    with pytest.raises(EvidenceError, match="closed"):
        gc.submit(make_entry(4))
    assert [r["context"]["i"] for r in ledger.iter()] == [1, 3]


def test_group_commit_async(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    async def main(gc: GroupCommitter) -> list[int]:
        return list(await asyncio.gather(*(gc.append_async(make_entry(i)) for i in range(100))))

    with GroupCommitter(ledger) as gc:
        seqs = asyncio.run(main(gc))
        assert gc.stats.transactions < 100
    assert sorted(seqs) == list(range(1, 101))
    assert ledger.count() == 100


def test_close_commits_what_is_queued(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    gc = GroupCommitter(ledger)
    futures = [gc.submit(make_entry(i)) for i in range(50)]
    gc.close()
    assert sorted(f.result(timeout=0) for f in futures) == list(range(1, 51))


def test_sigkill_loses_no_acknowledged_record(ledger_url: str) -> None:
    """A child appends through group commit and prints each seq once its future resolves; it is
    SIGKILLed mid-load. Every printed seq must be in the ledger, and the chain must verify."""
    open_ledger(ledger_url).close()  # create the schema before the race
    proc = subprocess.Popen([sys.executable, "-c", _GROUP_WRITER, ledger_url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while len(acknowledged) < 600 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Lines the child finished writing before it died were acknowledged too.
    acknowledged += [int(x) for x in rest.splitlines()[:-1] if x.strip()]
    assert len(acknowledged) >= 600, err
    with open_ledger(ledger_url) as led:
        present = {r["seq"] for r in led.iter()}
        result = verify_ledger(led)
        assert result.ok, result
        missing = sorted(set(acknowledged) - present)
        assert not missing, f"acknowledged but lost: {missing[:10]}"
        assert present == set(range(1, len(present) + 1))
        # The ledger is still writable after the crash.
        assert led.append([{"source": "cli", "actor": "after", "subject": "s"}]) == [len(present) + 1]


def test_verify_while_writers_append(ledger_url: str, make_entry: Callable[..., dict[str, Any]]) -> None:
    """Records appended while verify reads are not false alarms (verify checks up to the head it saw)."""
    stop = threading.Event()

    def writer() -> None:
        with open_ledger(ledger_url) as led:
            i = 0
            while not stop.is_set():
                led.append([make_entry(i), make_entry(i + 1)])
                i += 2

    with open_ledger(ledger_url) as led:
        led.append([make_entry(i) for i in range(1500)])  # more than one page
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            results = [verify_ledger(led) for _ in range(5)]
        finally:
            stop.set()
            thread.join()
    assert all(r.ok for r in results), [str(r) for r in results if not r.ok]
    assert results[-1].records >= 1500


def _open_at_once(url: str, n: int = 8) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def opener() -> None:
        barrier.wait()
        try:
            with open_ledger(url) as led:
                led.append([{"source": "cli", "actor": "a", "subject": "s"}])
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_first_opens(ledger_url: str, backend: str, tmp_path: Path) -> None:
    """Replicas or CI jobs opening a brand-new ledger at the same moment all succeed."""
    urls = [ledger_url] + ([str(tmp_path / f"fresh-{i}.db") for i in range(30)] if backend == "sqlite" else [])
    for url in urls:
        errors = _open_at_once(url)
        assert not errors, errors
        _assert_one_chain(url, 8)


def test_async_appends_of_one_loop_pass_share_one_transaction(
        ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> None:
    """On SQLite, what one pass of the event loop appends is committed in that loop, in one
    transaction, without the writer thread; a server database goes through the writer thread."""
    async def main(gc: GroupCommitter) -> tuple[list[int], set[str]]:
        threads: set[str] = set()
        original = ledger.append_prepared

        def spy(batch: Any) -> list[int]:
            threads.add(threading.current_thread().name)
            return original(batch)

        ledger.append_prepared = spy  # type: ignore[method-assign]
        try:
            seqs = await asyncio.gather(*(gc.append_async(make_entry(i)) for i in range(40)))
            seqs += await asyncio.gather(*(gc.append_async(make_entry(i)) for i in range(40, 45)))
        finally:
            del ledger.append_prepared
        return list(seqs), threads

    with GroupCommitter(ledger) as gc:
        seqs, threads = asyncio.run(main(gc))
        stats = gc.stats
    assert sorted(seqs) == list(range(1, 46))
    assert [r["context"]["i"] for r in ledger.iter()] == list(range(45))
    if ledger.local_commits:
        assert (stats.transactions, stats.records, stats.largest_batch) == (2, 45, 40)
        assert threads == set()  # never through the writer thread
    else:
        assert threads == {"evidence-group-commit"}
    assert verify_ledger(ledger).ok


def test_a_busy_ledger_does_not_hold_up_the_loop(ledger: Ledger,
                                                 make_entry: Callable[..., dict[str, Any]]) -> None:
    """While another writer holds the ledger (here: a thread inside a transaction), records
    appended from the loop go to the writer thread; the loop keeps running meanwhile, and the
    records are committed once the other writer is done."""
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with ledger._lock:  # what an audit snapshot committing from another thread does
            holding.set()
            release.wait(10)

    async def main(gc: GroupCommitter) -> tuple[list[int], int]:
        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(5)
        appends = asyncio.gather(*(gc.append_async(make_entry(i)) for i in range(5)))
        ticks = 0
        for _ in range(20):  # the loop is free while the ledger is held
            await asyncio.sleep(0.01)
            ticks += 1
        assert not appends.done()
        release.set()
        seqs = await asyncio.wait_for(appends, 10)
        holder.join()
        return list(seqs), ticks

    with GroupCommitter(ledger) as gc:
        seqs, ticks = asyncio.run(main(gc))
    assert ticks == 20
    assert sorted(seqs) == [1, 2, 3, 4, 5]
    assert verify_ledger(ledger).ok


def test_another_process_holding_the_sqlite_writer_lock_sends_the_batch_to_the_thread(
        tmp_path: Path, make_entry: Callable[..., dict[str, Any]]) -> None:
    """The writer lock of another process (a CLI append, a second replica) is not waited for in
    the loop: try_append_prepared gives up at once and the writer thread waits instead."""
    import fcntl
    import sqlite3

    from soc2infra.evidence.records import prepare_entry

    url = str(tmp_path / "evidence.db")
    with open_ledger(url) as led:
        assert led.local_commits
        with open(url + ".writer-lock", "ab") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX)  # another open file description: another writer
            started = time.monotonic()
            assert led.try_append_prepared([prepare_entry(make_entry(1))]) is None
            assert time.monotonic() - started < 0.5
            assert led.count() == 0
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        # A writer that does not take our lock (the sqlite3 shell) holds SQLite's write lock: not
        # waited for either (the busy timeout, a minute, is for the writer thread).
        foreign = sqlite3.connect(url, isolation_level=None)
        foreign.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert led.try_append_prepared([prepare_entry(make_entry(1))]) is None
        assert time.monotonic() - started < 0.5
        foreign.execute("ROLLBACK")
        foreign.close()
        assert led.try_append_prepared([prepare_entry(make_entry(1))]) == [1]
        assert led.try_append_prepared([prepare_entry(make_entry(2))]) == [2]
    with open_ledger(url) as led:
        assert verify_ledger(led).ok


def test_a_cancelled_async_append_is_not_written(tmp_path: Path,
                                                 make_entry: Callable[..., dict[str, Any]]) -> None:
    """A caller that gave up (its deadline passed) before the loop's pass ended leaves no record
    (SQLite: the pass is the loop's; through the writer thread it races with the thread)."""
    ledger = open_ledger(str(tmp_path / "evidence.db"))
    async def main(gc: GroupCommitter) -> int:
        gone = asyncio.ensure_future(gc.append_async(make_entry(0)))
        kept = asyncio.ensure_future(gc.append_async(make_entry(1)))
        await asyncio.sleep(0)  # both are queued for this pass
        gone.cancel()
        return await kept

    with GroupCommitter(ledger) as gc:
        seq = asyncio.run(main(gc))
    assert seq == 1
    assert [r["context"]["i"] for r in ledger.iter()] == [1]
    ledger.close()
