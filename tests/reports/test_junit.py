"""JUnit XML: structure of the common Ant/Jenkins schema, counts and outcomes.

No XSD validator is installed, so ``check_structure`` encodes the element and attribute
model of the widely used Jenkins ``junit-10.xsd`` (testsuites → testsuite → testcase →
failure/error/skipped/system-out/system-err) and every count is recomputed from the tree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from soc2infra._cogs.model import Error
from soc2infra._core.reports import render

ROOT_ATTRS = {"name", "time", "tests", "failures", "errors"}
SUITE_REQUIRED = {"name", "tests", "failures", "errors"}
SUITE_ATTRS = SUITE_REQUIRED | {"group", "time", "skipped", "timestamp", "hostname", "id", "package", "file",
                                "log", "url"}
SUITE_CHILDREN = {"testsuite", "properties", "testcase", "system-out", "system-err"}
CASE_ATTRS = {"name", "time", "classname", "group"}
CASE_CHILDREN = {"skipped", "error", "failure", "system-out", "system-err"}
OUTCOME_ATTRS = {"type", "message"}


def check_structure(root: ET.Element) -> None:
    """Fail unless *root* follows the Ant/Jenkins JUnit model and its counts add up."""
    assert root.tag == "testsuites"
    assert set(root.attrib) <= ROOT_ATTRS
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root:
        assert suite.tag == "testsuite"
        assert SUITE_REQUIRED <= set(suite.attrib) <= SUITE_ATTRS, suite.attrib
        assert {child.tag for child in suite} <= SUITE_CHILDREN
        for props in suite.findall("properties"):
            for prop in props:
                assert prop.tag == "property" and set(prop.attrib) == {"name", "value"}
        cases = suite.findall("testcase")
        counted = {"failures": 0, "errors": 0, "skipped": 0}
        for case in cases:
            assert "name" in case.attrib and set(case.attrib) <= CASE_ATTRS, case.attrib
            assert {child.tag for child in case} <= CASE_CHILDREN
            for outcome in case:
                assert set(outcome.attrib) <= OUTCOME_ATTRS
            counted["failures"] += len(case.findall("failure"))
            counted["errors"] += len(case.findall("error"))
            counted["skipped"] += len(case.findall("skipped"))
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == counted["failures"]
        assert int(suite.get("errors")) == counted["errors"]
        assert int(suite.get("skipped", "0")) == counted["skipped"]
        float(suite.get("time", "0"))
        for key in totals:
            totals[key] += int(suite.get(key))
    for key, value in totals.items():
        assert int(root.get(key)) == value, key


def parse(data) -> ET.Element:
    text = render("junit", data)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text.encode("utf-8"))
    check_structure(root)
    return root


def cases(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def test_structure_and_totals(sample, empty):
    root = parse(sample)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("13", "4", "3")
    assert root.get("name") == "soc2infra"
    parse(empty)


def test_one_suite_per_category_in_catalog_order_and_errors_last(sample):
    names = [s.get("name") for s in parse(sample)]
    assert names == ["soc2infra.encryption", "soc2infra.logging", "soc2infra.access", "soc2infra.network",
                     "soc2infra.errors"]


def test_one_case_per_rule_and_resource_evaluated(sample):
    got = cases(parse(sample))
    expected = {(f.rule_id, f.resource.address) for f in sample.result.findings} | set(sample.result.passes)
    assert {k for k in got if k[0] != "soc2infra.errors"} == expected
    passed = got[("T-NET-001", "aws_security_group.db")]
    assert list(passed) == []  # a pass has no outcome element


def test_failure_carries_message_remediation_and_location(sample):
    failure = cases(parse(sample))[("T-ENC-001", "aws_s3_bucket.data")].find("failure")
    assert failure is not None
    assert failure.get("message") == "aws_s3_bucket.data breaks T-ENC-001"
    assert failure.get("type") == "high"
    body = failure.text or ""
    assert "infra/main.tf:3" in body
    assert "Remediation: Fix T-ENC-001 like this." in body
    assert "CC6.1 (Logical access security architecture)" in body
    assert "value=At******" in body


def test_unknown_and_suppressed_are_skipped_with_a_reason(sample):
    got = cases(parse(sample))
    unknown = got[("T-ENC-001", "aws_s3_bucket.logs[0]")]
    assert [c.tag for c in unknown] == ["skipped"]
    assert unknown[0].get("type") == "unknown"
    assert unknown[0].get("message") == "could not be decided: aws_s3_bucket.logs[0] breaks T-ENC-001"
    waived = got[("T-K8S-001", "apps/v1/Deployment/payments/api")]
    assert [c.tag for c in waived] == ["skipped"]
    assert waived[0].get("type") == "suppressed"
    assert waived[0].get("message") == "suppressed by file waiver: legacy service, replaced in Q3"
    assert "Waiver ticket: SEC-7" in (waived[0].text or "")
    inline = got[("T-LOG-001", "aws_s3_bucket.data")]
    assert inline[0].get("message") == "suppressed by inline waiver: logs go to CloudTrail"


def test_suite_counts(sample):
    suites = {s.get("name"): s for s in parse(sample)}
    enc = suites["soc2infra.encryption"]
    assert (enc.get("tests"), enc.get("failures"), enc.get("skipped")) == ("3", "2", "1")
    access = suites["soc2infra.access"]
    assert (access.get("tests"), access.get("failures"), access.get("skipped")) == ("2", "0", "1")


def test_errors_suite(sample):
    errors = next(s for s in parse(sample) if s.get("name") == "soc2infra.errors")
    assert [(c.get("classname"), c.get("name")) for c in errors.findall("testcase")] == [
        ("soc2infra.errors", "infra/broken.tf:4"), ("soc2infra.errors", "/elsewhere/unreadable.tf"),
        ("soc2infra.errors", "<stdin>:2")]
    first = errors.find("testcase/error")
    assert first is not None and first.get("message") == "invalid HCL: unexpected '}'"
    assert first.text == "infra/broken.tf:4: invalid HCL: unexpected '}'\n"


def test_no_errors_suite_without_errors(empty):
    root = parse(empty)
    assert [s.get("name") for s in root] == ["soc2infra.encryption", "soc2infra.logging"]
    assert root.get("failures") == "0" and root.get("tests") == "2"


def test_control_characters_do_not_break_the_xml(make_input, make_finding, make_resource):
    bucket = make_resource("aws_s3_bucket.b", "aws_s3_bucket", "main.tf", 1)
    data = make_input([make_finding("T-ENC-001", bucket, message="bad \x00\x1b[31m value")],
                      errors=[Error("blob.tf", None, "binary file: \x89PNG\x00\x1a")])
    got = cases(parse(data))
    assert got[("T-ENC-001", "aws_s3_bucket.b")].find("failure").get("message") == "bad \\x00\\x1b[31m value"
