"""Tamper evidence that cannot mislead: which range is trustworthy, the badge, the report's exit code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soc2infra.cli import cli
from soc2infra.evidence import Ledger, build_report, generate_keypair, render_html, verify_ledger
from soc2infra.evidence.records import canonical_json, record_hash

N = 10

class _Run:
    """What a CLI command returned (commands return their exit code) and printed."""

    def __init__(self, args: list[str]) -> None:
        res = CliRunner().invoke(cli, args, standalone_mode=False)
        if res.exception is not None:
            raise res.exception
        self.exit_code, self.output = int(res.return_value or 0), res.output


@pytest.fixture
def filled(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> Ledger:
    ledger.append([make_entry(i) for i in range(N)])
    return ledger


def _rewrite_from(raw_db: Any, first: int) -> None:
    """Rewrite records first..N with recomputed hashes and links, and move the head row: a forger."""
    prev: str | None = None
    for seq in range(first, N + 1):
        (body,) = raw_db.execute("SELECT body FROM evidence_records WHERE seq = ?", (seq,))[0]
        record = json.loads(body)
        record["results"][0]["status"] = "fail"
        if prev is not None:
            record["prev_hash"] = prev
        record["hash"] = record_hash(record)
        raw_db.execute("UPDATE evidence_records SET body = ?, hash = ?, prev_hash = ? WHERE seq = ?",
                       (canonical_json(record), record["hash"], record["prev_hash"], seq))
        prev = record["hash"]
    raw_db.execute("UPDATE evidence_head SET hash = ? WHERE id = 1", (prev,))


def test_rewrite_before_the_anchor_trusts_nothing(filled: Ledger, raw_db: Any) -> None:
    anchor = filled.head()
    assert anchor is not None
    _rewrite_from(raw_db, 3)
    result = verify_ledger(filled, expect_head=str(anchor))
    assert (result.ok, result.first_bad_seq, result.anchored_through) == (False, N, None)
    text = str(result)
    # The old message claimed "records before it are intact": records 3..9 were rewritten too.
    assert "before it are intact" not in text
    assert "was NOT confirmed" in text and "none of them is proven intact" in text
    assert result.to_dict()["trust"] in text


def test_break_after_a_confirmed_anchor_names_both_ranges(filled: Ledger, raw_db: Any,
                                                          make_entry: Callable[..., dict[str, Any]]) -> None:
    anchor = filled.head()
    assert anchor is not None
    filled.append([make_entry(i) for i in range(N, N + 5)])
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 13")
    result = verify_ledger(filled, expect_head=str(anchor))
    assert (result.ok, result.first_bad_seq, result.anchored_through) == (False, 13, N)
    assert f"records 1..{N} match the anchor" in str(result)
    assert f"records {N + 1}..12 only link consistently" in str(result)


def test_truncation_with_anchor_trusts_nothing(filled: Ledger, raw_db: Any) -> None:
    anchor = filled.head()
    assert anchor is not None
    (h8, t8) = raw_db.execute("SELECT hash, time FROM evidence_records WHERE seq = 8")[0]
    raw_db.execute("DELETE FROM evidence_records WHERE seq > 8")
    raw_db.execute("UPDATE evidence_head SET seq = 8, hash = ?, time = ? WHERE id = 1", (h8, t8))
    result = verify_ledger(filled, expect_head=str(anchor))
    assert (result.ok, result.first_bad_seq, result.anchored_through) == (False, 9, None)
    assert "records 1..8 link consistently, but the anchor" in str(result)


def test_no_anchor_says_consistency_only(filled: Ledger, raw_db: Any) -> None:
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 5")
    result = verify_ledger(filled)
    assert "records 1..4 link consistently" in str(result) and "internal consistency only" in str(result)
    ok = verify_ledger(filled)
    assert not ok.fully_trusted


def _signed_ledger(make_ledger: Callable[..., Ledger], make_entry: Callable[..., dict[str, Any]],
                   tmp_path: Path) -> tuple[Ledger, Path]:
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(priv, pub)
    led = make_ledger(signing_key=priv)
    led.append([make_entry(i) for i in range(4)])
    return led, pub


def test_badge_is_green_only_when_signed_and_anchored(make_ledger: Callable[..., Ledger],
                                                      make_entry: Callable[..., dict[str, Any]],
                                                      tmp_path: Path) -> None:
    led, pub = _signed_ledger(make_ledger, make_entry, tmp_path)
    head = str(led.head())
    cases = {
        "unsigned, no anchor": ({}, "chain consistent, not signed and not anchored"),
        "signed, no anchor": ({"public_key": pub}, "chain consistent, not anchored"),
        "anchored, unsigned": ({"expect_head": head}, "chain consistent, not signed<"),
        "signed and anchored": ({"public_key": pub, "expect_head": head}, "chain verified, signed and anchored"),
    }
    for name, (kwargs, badge) in cases.items():
        page = render_html(build_report(led, None, None, {}, **kwargs))
        assert badge in page, name
        assert ('class="badge ok"' in page) == (name == "signed and anchored"), name
    # An anchor older than the head: the newest records are not anchored, so amber.
    first = led.head()
    led.append([make_entry(9)])
    page = render_html(build_report(led, None, None, {}, public_key=pub, expect_head=str(first)))
    assert 'class="badge ok"' not in page and "not anchored" in page


def test_report_exits_1_on_a_broken_chain(filled: Ledger, raw_db: Any, tmp_path: Path) -> None:
    url = filled.url
    out = tmp_path / "r.html"
    ok = _Run(["evidence", "report", url, "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    anchor = str(filled.head())
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 4")
    broken = _Run(["evidence", "report", url, "-o", str(out), "--expect-head", anchor])
    assert broken.exit_code == 1, broken.output
    assert "BROKEN at seq 4" in broken.output and out.exists()
    assert "chain BROKEN" in out.read_text(encoding="utf-8")
