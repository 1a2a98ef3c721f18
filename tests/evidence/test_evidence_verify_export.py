"""verify-export: a JSONL or CSV export is re-checked line by line against the ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soc2infra.cli import cli
from soc2infra.evidence import Ledger, export_records
from soc2infra.evidence.verify_export import verify_export


class _Run:
    """What a CLI command returned (commands return their exit code) and printed."""

    def __init__(self, args: list[str]) -> None:
        res = CliRunner().invoke(cli, args, standalone_mode=False)
        if res.exception is not None:
            raise res.exception
        self.exit_code, self.output = int(res.return_value or 0), res.output


@pytest.fixture
def filled(ledger: Ledger, make_entry: Callable[..., dict[str, Any]]) -> Ledger:
    ledger.append([make_entry(i) for i in range(6)])
    return ledger


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_untouched_export_matches(filled: Ledger, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"e.{fmt}"
    lines = export_records(filled, None, None, fmt, out)
    check = verify_export(out, filled)
    assert check.ok, str(check)
    assert (check.fmt, check.lines, check.records, check.seq_range) == (fmt, lines, 6, (1, 6))
    res = _Run(["evidence", "verify-export", str(out), filled.url])
    assert res.exit_code == 0 and res.output.startswith("OK:"), res.output


def test_edited_jsonl_line_is_named(filled: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    export_records(filled, None, None, "jsonl", out)
    lines = out.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[2])
    record["results"][0]["status"] = "fail" if record["results"][0]["status"] != "fail" else "pass"
    lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    check = verify_export(out, filled)
    assert not check.ok and check.problem_count == 2  # its own hash, and the ledger's record
    assert all(p.startswith(f"{out}:3: seq 3") for p in check.problems)
    res = _Run(["evidence", "verify-export", str(out), filled.url])
    assert res.exit_code == 1 and "MISMATCH" in res.output


def test_edited_or_dropped_csv_rows_are_named(filled: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "e.csv"
    export_records(filled, None, None, "csv", out)
    text = out.read_bytes().decode("utf-8").split("\r\n")
    assert ",pass," in text[2]
    text[2] = text[2].replace(",pass,", ",fail,", 1)  # row of seq 2
    del text[4]  # the only row of seq 4
    out.write_bytes("\r\n".join(text).encode("utf-8"))
    check = verify_export(out, filled)
    assert not check.ok
    assert any("seq 2" in p and "differ from the ledger" in p for p in check.problems), check.problems
    assert check.records == 5  # seq 4 is simply not in the file (a filter may leave records out)


def test_export_of_a_ledger_rewritten_later_fails(filled: Ledger, tmp_path: Path, raw_db: Any) -> None:
    out = tmp_path / "e.jsonl"
    export_records(filled, None, None, "jsonl", out)
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 5")
    check = verify_export(out, filled)
    assert not check.ok
    assert any("seq 5 is not in the ledger" in p for p in check.problems)
    assert check.chain is not None and check.chain.first_bad_seq == 5
