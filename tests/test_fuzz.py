"""The fuzzer's short CI budget, and the crashes it found as regression tests.

``bench/fuzz.py`` is the long run (102,000 cases); here every target gets a few dozen cases with a
fixed seed, so a front end that starts crashing on odd input fails CI within seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from soc2infra._core.config import ConfigError, read_config
from soc2infra._core.pack import load_pack
from soc2infra._core.scan import ScanOptions, scan

ROOT = Path(__file__).resolve().parents[1]


def test_short_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--cases", "180", "--seed", "7",
                           "--json", str(out), "--crash-dir", str(tmp_path / "crashes")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["cases"] == 180 and len(report["targets"]) == 6, proc.stdout
    assert (proc.returncode, report["crashes"]) == (0, 0), proc.stdout + proc.stderr


# Inputs the fuzzer crashed on (each once a TypeError, exit 3); now a located error or findings.
CRASHES = {
    # found by the long fuzz run: file() with no argument raised a TypeError (exit 3)
    "file-without-arguments/main.tf": 'resource "aws_s3_bucket" "b" {\n  bucket = "b"\n  policy = file()\n}\n',
    "dynamic-for-each-bool/main.tf": 'resource "aws_security_group" "g" {\n  dynamic "ingress" {\n'
                                     '    for_each = !false\n    content {\n      from_port = 1\n    }\n  }\n}\n',
    "plan-fields-of-the-wrong-type/x.tfplan.json": json.dumps({
        "format_version": "1.2", "terraform_version": "1.9.0", "resource_changes": True,
        "planned_values": {"root_module": {"resources": [{"address": "aws_s3_bucket.b", "mode": "managed",
                                                          "type": "aws_s3_bucket", "name": "b", "values": {}}],
                                           "child_modules": "x"}},
        "configuration": {"root_module": {"resources": 5, "module_calls": {"m": 1}}}}),
}


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_fuzzer_crash_is_fixed(write_tree, name: str) -> None:
    root = write_tree({name: CRASHES[name]})
    result = scan([str(root / name.split("/")[0])], load_pack(), ScanOptions(base_dir=root, jobs=1))
    assert result.resources, "the resource beside the odd field is still scanned"


# Configuration values of the wrong type the fuzzer found (a TypeError, exit 3): now located errors.
CONFIG_CRASHES = ["format: {a: 1}\n", "severity_threshold: [high]\n", "limits: {depth: [1]}\n",
                  "limits: {depth: .inf}\n", "limits: {seconds_per_file: .nan}\n", "limits: {file_bytes: {a: 1}}\n"]


@pytest.mark.parametrize("text", CONFIG_CRASHES)
def test_fuzzer_config_crash_is_a_located_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / ".soc2infra.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        read_config(path)
    assert exc.value.file == str(path) and exc.value.line == 1 and exc.value.key == text.split(":")[0]
