"""The control file (.soc2infra-controls.yaml): the control matrix is the pack plus what the user
wrote; a bad file is exit 2 naming the file and the line."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from soc2infra.cli import main
from soc2infra.evidence import Ledger
from soc2infra.evidence.control_file import ControlFileError, control_matrix, load_control_file

GOOD = """\
version: 1
controls:
  CC6.1:
    owner: Platform team (platform@example.com)
    frequency: continuous; audit every 10 minutes
    test_procedure: >-
      Sample 25 rows of populations/CC6.1.csv and trace each request uid.
  CC7.2:
    description: Our own words for monitoring.
"""


def test_load_and_matrix(tmp_path: Path) -> None:
    path = tmp_path / ".soc2infra-controls.yaml"
    path.write_text(GOOD, encoding="utf-8")
    settings = load_control_file(path, ["CC6.1", "CC7.2", "CC8.1"])
    criteria = [{"id": cid, "name": cid + " name", "intent": cid + " intent",
                 "population": {"rules": ["R-1"], "evaluations": 7}} for cid in ("CC6.1", "CC7.2", "CC8.1")]
    rows = {r["criterion"]: r for r in control_matrix(criteria, {"CC6.1": ["R-2", "R-1"], "CC7.2": ["L-1"]},
                                                      settings)}
    assert rows["CC6.1"]["owner"] == "Platform team (platform@example.com)"
    assert rows["CC6.1"]["test_procedure"] == "Sample 25 rows of populations/CC6.1.csv and trace each request uid."
    assert rows["CC6.1"]["mapped_rules"] == ["R-1", "R-2"] and rows["CC6.1"]["description"] == "CC6.1 intent"
    assert rows["CC7.2"]["description"] == "Our own words for monitoring." and rows["CC7.2"]["owner"] == ""
    assert "soc2infra evidence sample --criterion CC7.2" in rows["CC7.2"]["test_procedure"]  # the default
    assert rows["CC8.1"]["frequency"] == "n/a" and "No rule of the policy pack" in rows["CC8.1"]["test_procedure"]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("version: 1\ncontrols:\n  CC6.1:\n    ownr: me\n", 4, "CC6.1: unknown key 'ownr'"),
    ("version: 1\ncontrols:\n  CC99.9:\n    owner: me\n", 3, "unknown criterion 'CC99.9'"),
    ("version: 1\ncontrols:\n  CC6.1:\n    owner: [a, b]\n", 4, "CC6.1.owner: expected non-empty text"),
    ("version: 1\ncontrols:\n  CC6.1:\n    owner: 12\n", 4, "CC6.1.owner: expected non-empty text"),
    ("version: 2\ncontrols: {}\n", 1, "unsupported version '2'"),
    ("version: 1\ncontrol:\n  CC6.1: {}\n", 2, "unknown key 'control'"),
    ("version: 1\ncontrols:\n  CC6.1:\n    owner: 'unterminated\n", 5, "invalid YAML"),
    ("- a list\n", 1, "expected a mapping"),
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ControlFileError) as caught:
        load_control_file(path, ["CC6.1", "CC7.2"])
    assert str(caught.value).startswith(f"{path}:{line}: ") and message in str(caught.value)


def test_cli_reads_the_control_file_and_exits_2_on_a_bad_one(ledger: Ledger, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ledger.append([{"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-01T01:00:00Z",
                    "results": [{"rule_id": "SOC2-K8S-POD-001", "status": "pass", "controls": ["CC6.1"],
                                 "address": "a"}]}])
    (tmp_path / ".soc2infra-controls.yaml").write_text(GOOD, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the default control file is found in the working directory
    try:
        code = main(["evidence", "package", ledger.url, "--from", "2025-03-01", "--to", "2025-03-02",
                     "-o", str(tmp_path / "p.zip")])
        assert code == 0, capsys.readouterr()
        with zipfile.ZipFile(tmp_path / "p.zip") as zf:
            matrix = {r["criterion"]: r for r in csv.DictReader(io.StringIO(zf.read("control-matrix.csv").decode()))}
            report = json.loads(zf.read("report.json"))
            page = zf.read("report.html").decode()
        assert matrix["CC6.1"]["owner"] == "Platform team (platform@example.com)"
        assert "SOC2-K8S-POD-001" in matrix["CC6.1"]["mapped_rules"].split(";")  # from the real pack
        assert matrix["CC6.1"]["population_rows"] == "1"
        assert {r["criterion"]: r for r in report["control_matrix"]}["CC6.1"]["frequency"].startswith("continuous")
        assert 'id="control-matrix"' in page and "Platform team (platform@example.com)" in page

        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\ncontrols:\n  CC6.1:\n    owner: me\n    frequency:\n", encoding="utf-8")
        for command in (["package", "-o", str(tmp_path / "q.zip")], ["report", "-o", str(tmp_path / "r.html")]):
            code = main(["evidence", command[0], ledger.url, "--from", "2025-03-01", "--to", "2025-03-02",
                         "--controls", str(bad), *command[1:]])
            err = capsys.readouterr().err
            assert code == 2 and f"{bad}:5: CC6.1.frequency: expected non-empty text" in err, err
            assert "Traceback" not in err
        assert not (tmp_path / "q.zip").exists()
    finally:
        os.chdir(cwd)
