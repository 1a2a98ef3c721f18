"""``evidence verify|export|report`` on a ledger that cannot be used: exit 2 with a message, never
a traceback (exit 3 means a bug); a tampered ledger is exit 1 with BROKEN and the first bad record.
Both backends, real databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra.cli import main
from soc2infra.evidence import Ledger, open_ledger

PASSWORD = "Pl4nted-DSN-Passw0rd"


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, url: str) -> tuple[int, str]:
    extra = {"report": ["-o", str(tmp_path / "r.html")], "export": ["-o", str(tmp_path / "x.jsonl")]}
    code = main(["evidence", command, url, *extra.get(command, [])])
    out = capsys.readouterr()
    return code, out.out + out.err


COMMANDS = ("verify", "export", "report")


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_file(capsys, tmp_path, command):
    code, text = run(capsys, tmp_path, command, str(tmp_path / "nope.db"))
    assert code == 2 and "no evidence ledger" in text and "Traceback" not in text


@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_database_hides_the_password(capsys, tmp_path, command):
    url = f"postgresql://auditor:{PASSWORD}@127.0.0.1:1/evidence?connect_timeout=3"
    code, text = run(capsys, tmp_path, command, url)
    assert code == 2 and "cannot open the evidence ledger" in text
    assert PASSWORD not in text and "[REDACTED]" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_truncated_file(capsys, tmp_path, make_entry: Callable[..., dict[str, Any]], command):
    path = tmp_path / "evidence.db"
    led = open_ledger(path)
    led.append([make_entry(i) for i in range(50)])
    led.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    code, text = run(capsys, tmp_path, command, str(path))
    assert code == 2 and "Traceback" not in text, text


@pytest.mark.parametrize("command", COMMANDS)
def test_dropped_table(capsys, tmp_path, make_ledger: Callable[..., Ledger], make_entry, ledger_url, raw_db,
                       command):
    led = make_ledger()
    led.append([make_entry(i) for i in range(3)])
    led.close()
    raw_db.execute("DROP TABLE evidence_records")
    code, text = run(capsys, tmp_path, command, ledger_url)
    assert code == 2 and "Traceback" not in text, text


def test_tampering_is_exit_1_and_names_the_first_broken_record(capsys, tmp_path, make_ledger, make_entry,
                                                               ledger_url, raw_db):
    led = make_ledger()
    led.append([make_entry(i) for i in range(5)])
    led.close()
    raw_db.execute("UPDATE evidence_records SET body = replace(body, '\"allow\"', '\"deny\"') WHERE seq = 3")
    code, text = run(capsys, tmp_path, "verify", ledger_url)
    assert code == 1 and "BROKEN at seq 3" in text
