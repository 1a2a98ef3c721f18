"""The one top-level error handler: every user mistake is one line on stderr and exit 2, never
a traceback (exit 3 is kept for bugs)."""

from __future__ import annotations

import pytest

from soc2infra._cogs.exitcodes import ERROR, INTERNAL
from soc2infra.cli import main


def _one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_evidence_verify_of_a_missing_ledger_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["evidence", "verify", "missing.db"]) == ERROR
    _one_error_line(capsys, "missing.db")


def test_a_bad_configuration_file_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".soc2infra.yaml").write_text("severity_threshold: bogus\n")
    (tmp_path / "main.tf").write_text('resource "aws_s3_bucket" "b" {}\n')
    assert main(["scan", "."]) == ERROR
    _one_error_line(capsys, ".soc2infra.yaml:1", "severity_threshold")


def test_a_bad_baseline_file_is_one_error_in_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "main.tf").write_text('resource "aws_s3_bucket" "b" {}\n')
    (tmp_path / "bl.json").write_text("{not json")  # outside the scanned tree: read only as a baseline
    assert main(["scan", "infra", "--baseline", "bl.json", "--no-color"]) == ERROR
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    mentions = [line for line in captured.out.splitlines() if "bl.json" in line]
    assert len(mentions) == 1 and "not a baseline file" in mentions[0]


def test_a_missing_binary_is_a_user_error(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("SOC2INFRA_BIN_DIR", str(empty))
    assert main(["lab", "up", "--workdir", str(tmp_path / "lab"), "--no-operator"]) == ERROR
    _one_error_line(capsys, "kube-apiserver", str(empty))


def test_a_bug_is_exit_3_with_a_traceback(monkeypatch, capsys):
    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr("soc2infra._core.pack.load_pack", broken)
    assert main(["policy", "list"]) == INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error: KeyError" in err
