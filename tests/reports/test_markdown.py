"""The Markdown PR-comment summary: headline, criteria table, findings by criterion, caps."""

from __future__ import annotations

import re

from soc2infra._core.reports import ReportInput, render
from soc2infra._core.reports.markdown import MAX_FINDINGS


def section(text: str, summary_start: str) -> str:
    """The body of the <details> block whose summary starts with *summary_start*."""
    match = re.search(rf"<summary>{re.escape(summary_start)}.*?</summary>(.*?)</details>", text, re.S)
    assert match, f"no <details> block {summary_start!r}"
    return match.group(1)


def criterion_groups(body: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines():
        head = re.match(r"\*\*([^*]+)\*\* ", line)
        if head:
            current = head.group(1)
            groups[current] = []
        elif line.startswith("- ") and current:
            groups[current].append(line)
    return groups


def test_headline_fails_with_counts(sample):
    md = render("markdown", sample)
    first, _, second = md.splitlines()[:3]
    assert first == "### ❌ soc2infra: input errors"
    assert second.startswith("4 findings (1 critical, 2 high, 1 low) · 2 suppressed · 1 unknown · 3 errors")
    assert "6 resources, 4 rules checked" in second


def test_headline_passes_below_the_threshold(make_input, make_finding, make_resource):
    bucket = make_resource("aws_s3_bucket.b", "aws_s3_bucket", "main.tf", 1)
    low_only = make_input([make_finding("T-LOG-001", bucket)], threshold="high")
    assert render("markdown", low_only).startswith("### ✅ soc2infra: nothing at or above `high`\n")
    blocking = make_input([make_finding("T-ENC-001", bucket)], threshold="high")
    assert render("markdown", blocking).startswith("### ❌ soc2infra: 1 at or above `high`\n")


def test_clean_scan(empty):
    md = render("markdown", empty)
    assert md.startswith("### ✅ soc2infra: nothing at or above `low`")
    assert "<details>" not in md and "| SOC 2 criterion" not in md


def test_table_per_criterion_with_names_and_open_counts(sample):
    md = render("markdown", sample)
    rows = re.findall(r"^\| (\S+) \| ([^|]+) \| (\d+) \|$", md, re.M)
    assert rows == [
        ("C1.1", "Protection of confidential information", "2"),
        ("CC6.1", "Logical access security architecture", "3"),
        ("CC6.6", "Boundary protection", "1"),
        ("CC7.2", "Anomaly monitoring", "1"),
    ]  # suppressed findings (CC6.3, the inline-waived CC7.2 one) are not counted


def test_findings_grouped_by_criterion_and_repeated_under_each(sample):
    groups = criterion_groups(section(render("markdown", sample), "Findings by SOC 2 criterion (4)"))
    assert list(groups) == ["C1.1", "CC6.1", "CC6.6", "CC7.2"]
    web = [c for c, lines in groups.items() if any("`aws_security_group.web`" in line for line in lines)]
    assert web == ["CC6.1", "CC6.6"]  # T-NET-001 maps to both
    assert len(groups["CC6.1"]) == 3
    line = next(ln for ln in groups["CC6.6"] if "T-NET-001" in ln)
    assert line == ("- 🔴 **critical** `T-NET-001` `aws_security_group.web`: aws_security_group.web breaks "
                    "T-NET-001 (`infra/network.tf:1`)")


def test_suppressed_unknown_and_errors_are_summarised(sample):
    md = render("markdown", sample)
    suppressed = section(md, "Suppressed (2)")
    assert "`T-K8S-001` `apps/v1/Deployment/payments/api`: file waiver: legacy service, replaced in Q3" in suppressed
    unknown = section(md, "Could not be decided (1)")
    assert "`aws_s3_bucket.logs[0]`" in unknown and "`infra/main.tf:12`" in unknown
    errors = section(md, "Errors (3)")
    assert "- `infra/broken.tf:4`: invalid HCL: unexpected '}'" in errors
    assert "`<stdin>:2`" in errors


def test_listing_is_capped(make_input, make_finding, make_resource):
    findings = [make_finding("T-LOG-001", make_resource(f"aws_s3_bucket.b{i:03}", "aws_s3_bucket", "main.tf", i))
                for i in range(1, 71)]
    md = render("markdown", make_input(findings))
    body = section(md, "Findings by SOC 2 criterion (70)")
    listed = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(listed) == MAX_FINDINGS == 50
    assert "…and 20 more (see the full report)" in body
    assert "| CC7.2 | Anomaly monitoring | 70 |" in md  # the table still counts everything
    assert len(md) < 12_000


def test_cap_counts_entries_across_criteria(make_input, make_finding, make_resource):
    # 30 findings with two criteria each = 60 entries: 50 listed, 10 more.
    findings = [make_finding("T-NET-001", make_resource(f"aws_security_group.s{i:02}", "aws_security_group",
                                                        "net.tf", i)) for i in range(1, 31)]
    body = section(render("markdown", make_input(findings)), "Findings by SOC 2 criterion (30)")
    assert len([ln for ln in body.splitlines() if ln.startswith("- ")]) == 50
    assert "…and 10 more" in body


def test_markdown_and_html_in_messages_are_escaped(make_input, make_finding, make_resource):
    bucket = make_resource("aws_s3_bucket.x`y", "aws_s3_bucket", "main.tf", 1)
    data = make_input([make_finding("T-ENC-001", bucket, message="<img src=x> | *boom* [link](http://evil)")])
    md = render("markdown", data)
    assert not re.search(r"(?<!\\)<img", md) and "\\<img src=x\\>" in md
    assert "\\*boom\\*" in md and "\\[link\\](http://evil)" in md
    assert "`` aws_s3_bucket.x`y ``" in md


def test_long_messages_are_cut(make_input, make_finding, make_resource):
    bucket = make_resource("aws_s3_bucket.b", "aws_s3_bucket", "main.tf", 1)
    md = render("markdown", make_input([make_finding("T-ENC-001", bucket, message="word " * 200)]))
    line = next(ln for ln in md.splitlines() if ln.startswith("- "))
    assert "…" in line and len(line) < 400


def test_threshold_only_changes_the_verdict(sample):
    strict = ReportInput(result=sample.result, pack=sample.pack, threshold="critical", base_dir="/repo")
    assert render("markdown", strict).splitlines()[2] == render("markdown", sample).splitlines()[2]
