"""The format registry, the shared input and what every format promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from soc2infra._core.reports import FORMATS, ReportInput, render

ALL = ("text", "json", "sarif", "junit", "markdown")


def test_registry_is_exactly_the_five_formats():
    assert tuple(FORMATS) == ALL
    assert all(callable(fn) for fn in FORMATS.values())


def test_unknown_format_names_the_known_ones(sample):
    with pytest.raises(ValueError, match="yaml.*text, json, sarif, junit, markdown"):
        render("yaml", sample)


def test_report_input_is_frozen(sample):
    with pytest.raises(AttributeError):
        sample.threshold = "high"  # type: ignore[misc]


@pytest.mark.parametrize(("path", "expected"), [
    ("/repo/infra/main.tf", "infra/main.tf"),
    ("/repo", "."),
    ("/repository/main.tf", "/repository/main.tf"),  # a sibling with a common prefix is outside
    ("/elsewhere/x.tf", "/elsewhere/x.tf"),
    ("infra/main.tf", "infra/main.tf"),
    ("<stdin>", "<stdin>"),
    ("", ""),
])
def test_rel_makes_paths_below_base_dir_relative(sample, path, expected):
    assert sample.rel(path) == expected


def test_rel_accepts_a_path_object_and_no_base(sample):
    assert ReportInput(result=sample.result, pack=sample.pack, base_dir=Path("/repo")).rel("/repo/a.tf") == "a.tf"
    assert ReportInput(result=sample.result, pack=sample.pack).rel("/repo/a.tf") == "/repo/a.tf"


def test_blocking_respects_threshold_and_suppression(sample):
    ids = sorted((f.rule_id, f.resource.address) for f in sample.blocking)
    assert ids == [("T-ENC-001", "aws_s3_bucket.data"), ("T-ENC-001", "aws_s3_bucket.far"),
                   ("T-LOG-001", "aws_s3_bucket.piped"), ("T-NET-001", "aws_security_group.web")]
    high = ReportInput(result=sample.result, pack=sample.pack, threshold="high")
    assert sorted(f.rule_id for f in high.blocking) == ["T-ENC-001", "T-ENC-001", "T-NET-001"]


@pytest.mark.parametrize("fmt", ALL)
def test_every_format_renders_a_clean_scan(empty, fmt):
    out = render(fmt, empty)
    assert isinstance(out, str) and out.endswith("\n") and out.strip()


@pytest.mark.parametrize("fmt", ALL)
def test_no_format_prints_resource_attributes(sample, attribute_secret, fmt):
    out = render(fmt, sample)
    assert "aws_security_group.web" in out  # the report does talk about the resources
    assert attribute_secret not in out
    assert "At******" in out or fmt == "markdown"  # masked details may be shown (markdown is compact)


def test_formats_are_imported_lazily_and_only_coloured_text_loads_rich():
    code = (
        "import sys\n"
        "import soc2infra._core.reports as r\n"
        "assert not [m for m in sys.modules if m.startswith('soc2infra._core.reports.')], sys.modules.keys()\n"
        "from soc2infra._core.engine.policy import PolicyPack\n"
        "from soc2infra._cogs.model import ScanResult\n"
        "data = r.ReportInput(result=ScanResult(), pack=PolicyPack(rules=[], controls={}, digest='d'))\n"
        "for fmt in ('json', 'sarif', 'junit', 'markdown', 'text'):\n"
        "    r.render(fmt, data)\n"
        "assert 'rich' not in sys.modules, 'rich was imported without colour'\n"
        "r.render('text', r.ReportInput(result=data.result, pack=data.pack, color=True))\n"
        "assert 'rich' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
