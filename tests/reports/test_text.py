"""The human text report: grouped by file, separate sections, plain without colour."""

from __future__ import annotations

import re
from dataclasses import replace

from soc2infra._core.reports import ReportInput, render
from soc2infra._core.reports.text import summary_line

ANSI = re.compile(r"\x1b\[")


def sections(text: str) -> dict[str, str]:
    """Top-level sections by title (lines starting at column 0 followed by indented bodies)."""
    out: dict[str, str] = {}
    current = "header"
    for line in text.splitlines():
        match = re.match(r"^(Findings|Suppressed|Could not be decided|Warnings|Errors) \(", line)
        if match:
            current = match.group(1)
            out[current] = ""
            continue
        out[current] = out.get(current, "") + line + "\n"
    return out


def test_no_ansi_without_color_and_ansi_with_it(sample):
    plain = render("text", sample)
    assert not ANSI.search(plain)
    colored = render("text", replace(sample, color=True))
    assert ANSI.search(colored)
    assert ANSI.sub("", re.sub(r"\x1b\[[0-9;]*m", "", colored)) == plain


def test_findings_grouped_by_file(sample):
    findings = sections(render("text", sample))["Findings"]
    files = [line for line in findings.splitlines() if line and not line.startswith(" ")]
    # /repo/infra/main.tf and infra/main.tf are one file once made relative
    assert files == ["/elsewhere/far.tf", "<stdin>", "infra/main.tf", "infra/network.tf"]
    blocks = re.split(r"^(?=\S)", findings, flags=re.M)
    main = next(b for b in blocks if b.startswith("infra/main.tf"))
    assert "infra/main.tf:3  HIGH  T-ENC-001  [CC6.1, C1.1]" in main
    assert "aws_security_group.web" not in main
    network = next(b for b in blocks if b.startswith("infra/network.tf"))
    assert "infra/network.tf:1  CRITICAL  T-NET-001  [CC6.6, CC6.1]" in network


def test_each_finding_shows_message_address_details_and_fix(sample):
    findings = sections(render("text", sample))["Findings"]
    lines = findings.splitlines()
    at = next(i for i, ln in enumerate(lines) if "infra/main.tf:3  HIGH  T-ENC-001" in ln)
    assert lines[at + 1].strip() == "aws_s3_bucket.data breaks T-ENC-001"
    assert lines[at + 2].strip() == "resource: aws_s3_bucket.data"
    assert lines[at + 3].strip() == "details: argument=password, value=At******"
    assert lines[at + 4].strip() == "fix: Fix T-ENC-001 like this."


def test_unknown_and_suppressed_have_their_own_sections(sample):
    parts = sections(render("text", sample))
    assert "aws_s3_bucket.logs[0]" not in parts["Findings"]  # the unknown result is not a failure
    assert "infra/main.tf:12  HIGH  T-ENC-001" in parts["Could not be decided"]
    assert "unresolved=[\"var.kms_key\"]" in parts["Could not be decided"]
    assert "T-K8S-001" not in parts["Findings"]
    suppressed = parts["Suppressed"]
    assert ("k8s/deploy.yaml:4  T-K8S-001  apps/v1/Deployment/payments/api  "
            "file waiver: legacy service, replaced in Q3 (expires 2099-01-01)") in suppressed
    assert "inline waiver: logs go to CloudTrail" in suppressed


def test_errors_warnings_and_summary(sample):
    text = render("text", sample)
    parts = sections(text)
    assert parts["Errors"].splitlines()[:3] == ["  infra/broken.tf:4: invalid HCL: unexpected '}'",
                                                "  /elsewhere/unreadable.tf: cannot read file",
                                                "  <stdin>:2: invalid JSON: Expecting value"]
    assert "expires in 5 days" in parts["Warnings"]
    assert text.rstrip().splitlines()[-1] == (
        "ERROR: 4 findings (1 critical, 2 high, 1 low), 2 suppressed, 1 unknown, 3 errors in 6 resources, "
        "4 rules; 4 at or above low")


def test_zero_findings(empty):
    text = render("text", empty)
    assert "Findings (" not in text and "Errors (" not in text
    assert text.rstrip().splitlines()[-1] == "PASS: 0 findings, 0 errors in 1 resource, 4 rules; 0 at or above low"


def test_verdict_follows_the_threshold(make_input, make_finding, make_resource):
    bucket = make_resource("aws_s3_bucket.b", "aws_s3_bucket", "main.tf", 1)
    low = [make_finding("T-LOG-001", bucket)]
    assert summary_line(make_input(low, threshold="medium")).startswith("PASS: 1 finding (1 low)")
    assert summary_line(make_input(low, threshold="low")).startswith("FAIL: 1 finding (1 low)")


def test_nothing_is_read_as_markup_and_lines_are_not_wrapped(make_input, make_finding, make_resource):
    long_address = "module." + ".".join(f"m{i}" for i in range(40)) + ".aws_s3_bucket.this[0]"
    bucket = make_resource(long_address, "aws_s3_bucket", "main.tf", 7)
    message = "value [bold]not bold[/bold] and [red]x[/] at " + long_address
    text = render("text", make_input([make_finding("T-ENC-001", bucket, message=message)]))
    assert f"    {message}" in text.splitlines()  # literal brackets, one line however long
    assert f"resource: {long_address}" in text


def test_multiline_remediation_stays_indented(pack, make_finding, make_resource):
    from soc2infra._cogs.model import ScanResult

    bucket = make_resource("aws_s3_bucket.b", "aws_s3_bucket", "main.tf", 1)
    f = make_finding("T-ENC-001", bucket)
    f.remediation = "First do this.\nThen that."
    text = render("text", ReportInput(result=ScanResult(resources=[bucket], findings=[f]), pack=pack))
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("fix: First do this."))
    assert lines[at + 1].startswith("         ") and lines[at + 1].strip() == "Then that."
