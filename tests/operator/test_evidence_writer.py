"""The operator's evidence writer: a record is durable before the answer, or the answer says so."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from soc2infra.evidence import open_ledger
from soc2infra_operator.evidence import EvidenceError, EvidenceWriter


def entry(i: int) -> dict[str, object]:
    return {"source": "admission", "actor": "alice", "subject": f"Deployment/shop/d{i}", "decision": "allow",
            "context": {"i": i}}


def test_commit_returns_the_seq_once_durable(tmp_path: Path) -> None:
    writer = EvidenceWriter.open(str(tmp_path / "e.db"), timeout=5)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(writer.commit(entry(i)) for i in range(10))))

    try:
        assert sorted(asyncio.run(main())) == list(range(1, 11))
    finally:
        writer.close()
    with open_ledger(str(tmp_path / "e.db")) as led:
        assert led.count() == 10


def test_a_commit_past_its_deadline_is_an_evidence_error(tmp_path: Path) -> None:
    """A ledger held by another writer longer than the deadline: the caller gets EvidenceError
    (the operator then applies its evidence failure policy) instead of waiting for ever."""
    writer = EvidenceWriter.open(str(tmp_path / "e.db"), timeout=0.3)
    ledger = writer._ledger
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with ledger._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    try:
        with pytest.raises(EvidenceError, match=r"did not commit within 0\.3s"):
            asyncio.run(writer.commit(entry(1)))
    finally:
        release.set()
        holder.join()
        writer.close()
