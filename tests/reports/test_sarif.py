"""SARIF 2.1.0, validated against the official OASIS schema."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from soc2infra._cogs.model import Error, ScanResult
from soc2infra._core.reports import ReportInput, render

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "schemas" / "sarif-schema-2.1.0.json"
SCHEMA_SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the official SARIF schema copy was changed"
    schema = json.loads(raw)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def sarif_of(data: ReportInput) -> dict[str, Any]:
    return json.loads(render("sarif", data))


def results_by(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["ruleId"], r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]): r
            for r in doc["runs"][0]["results"]}


def test_valid_against_the_official_schema(sample, empty, validator):
    for data in (sample, empty):
        errors = sorted(validator.iter_errors(sarif_of(data)), key=str)
        assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_has_teeth(sample, validator):
    doc = sarif_of(sample)
    doc["runs"][0]["results"][0]["level"] = "critical"
    located = next(r for r in doc["runs"][0]["results"] if "physicalLocation" in r["locations"][0])
    located["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert len(list(validator.iter_errors(doc))) >= 2


def test_driver_and_rules(sample):
    run = sarif_of(sample)["runs"][0]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("soc2infra", "9.9.9")
    # The project has no published home page yet; SARIF makes informationUri optional.
    assert "informationUri" not in driver
    # every enabled rule, in pack order; the disabled one is absent
    assert [r["id"] for r in driver["rules"]] == ["T-ENC-001", "T-LOG-001", "T-NET-001", "T-K8S-001"]
    net = driver["rules"][2]
    assert net["name"] == "TitleOfTNET001"
    assert net["shortDescription"] == {"text": "Title of T-NET-001"}
    assert net["fullDescription"] == {"text": "Why T-NET-001 matters."}
    assert net["defaultConfiguration"] == {"level": "error"}
    assert net["properties"]["tags"] == ["CC6.6", "CC6.1", "network"]
    assert net["properties"]["security-severity"] == "9.5"
    assert "Fix T-NET-001 like this." in net["help"]["text"] and "CC6.6 Boundary protection" in net["help"]["text"]
    assert "Fix T-NET-001 like this." in net["help"]["markdown"]
    assert "CC6.1 Logical access security architecture" in net["help"]["markdown"]
    scores = {r["id"]: (r["properties"]["security-severity"], r["defaultConfiguration"]["level"])
              for r in driver["rules"]}
    assert scores == {"T-ENC-001": ("8.0", "error"), "T-LOG-001": ("3.0", "note"),
                      "T-NET-001": ("9.5", "error"), "T-K8S-001": ("5.5", "warning")}


def test_results_levels_indexes_and_messages(sample):
    run = sarif_of(sample)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len(run["results"]) == 7  # 6 failed (2 suppressed) + 1 unknown
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    got = results_by(sarif_of(sample))
    assert got[("T-NET-001", "aws_security_group.web")]["level"] == "error"
    assert got[("T-K8S-001", "apps/v1/Deployment/payments/api")]["level"] == "warning"
    assert got[("T-LOG-001", "aws_s3_bucket.piped")]["level"] == "note"
    web = got[("T-NET-001", "aws_security_group.web")]
    assert web["message"]["text"].startswith("aws_security_group.web breaks T-NET-001")
    assert "Fix T-NET-001 like this." in web["message"]["text"]
    assert got[("T-ENC-001", "aws_s3_bucket.data")]["properties"]["details"] == {
        "argument": "password", "value": "At******"}


def test_unknown_is_a_note_with_status(sample):
    unknown = results_by(sarif_of(sample))[("T-ENC-001", "aws_s3_bucket.logs[0]")]
    assert unknown["level"] == "note"  # even though the rule is high
    assert unknown["properties"]["status"] == "unknown"
    assert "suppressions" not in unknown


def test_locations_are_relative_to_srcroot(sample):
    doc = sarif_of(sample)
    got = results_by(doc)
    logs = got[("T-ENC-001", "aws_s3_bucket.logs[0]")]["locations"][0]
    assert logs["physicalLocation"]["artifactLocation"] == {"uri": "infra/main.tf", "uriBaseId": "%SRCROOT%"}
    assert logs["physicalLocation"]["region"] == {"startLine": 12}
    data = got[("T-ENC-001", "aws_s3_bucket.data")]["locations"][0]["physicalLocation"]
    assert data["region"] == {"startLine": 3, "endLine": 9}
    far = got[("T-ENC-001", "aws_s3_bucket.far")]["locations"][0]["physicalLocation"]
    assert far["artifactLocation"] == {"uri": "file:///elsewhere/far.tf"}  # outside base_dir: absolute URI
    piped = got[("T-LOG-001", "aws_s3_bucket.piped")]["locations"][0]
    assert "physicalLocation" not in piped  # standard input has no file
    assert piped["logicalLocations"] == [{"fullyQualifiedName": "aws_s3_bucket.piped", "name": "piped",
                                          "kind": "resource"}]
    assert doc["runs"][0]["originalUriBaseIds"] == {"%SRCROOT%": {"uri": "file:///repo/"}}


def test_start_line_is_at_least_one_and_uris_are_encoded(make_input, make_finding, make_resource):
    spaced = make_resource("aws_s3_bucket.s", "aws_s3_bucket", "/repo/my dir/main #1.tf", 0)
    doc = sarif_of(make_input([make_finding("T-ENC-001", spaced)]))
    physical = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert physical["region"]["startLine"] == 1
    assert physical["artifactLocation"]["uri"] == "my%20dir/main%20%231.tf"


def test_suppressions(sample):
    got = results_by(sarif_of(sample))
    inline = got[("T-LOG-001", "aws_s3_bucket.data")]["suppressions"]
    assert inline == [{"kind": "inSource", "status": "accepted", "justification": "logs go to CloudTrail",
                       "properties": {"source": "inline", "reason": "logs go to CloudTrail",
                                      "location": "infra/main.tf:2"}}]
    external = got[("T-K8S-001", "apps/v1/Deployment/payments/api")]["suppressions"][0]
    assert external["kind"] == "external" and external["justification"] == "legacy service, replaced in Q3"
    assert external["properties"]["ticket"] == "SEC-7"
    assert "suppressions" not in got[("T-NET-001", "aws_security_group.web")]


def test_fingerprints_are_stable_and_distinct(sample):
    first = [r["partialFingerprints"] for r in sarif_of(sample)["runs"][0]["results"]]
    again = [r["partialFingerprints"] for r in sarif_of(sample)["runs"][0]["results"]]
    assert first == again
    values = [next(iter(fp.values())) for fp in first]
    assert len(set(values)) == len(values)


def test_errors_are_notifications_and_fail_the_execution(sample):
    invocation = sarif_of(sample)["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notes = invocation["toolExecutionNotifications"]
    errors = [n for n in notes if n["level"] == "error"]
    assert len(errors) == 3
    assert errors[0]["message"]["text"] == "invalid HCL: unexpected '}'"
    assert errors[0]["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "infra/broken.tf", "uriBaseId": "%SRCROOT%"}, "region": {"startLine": 4}}}]
    assert "region" not in errors[1]["locations"][0]["physicalLocation"]  # no line known
    assert errors[2]["message"]["text"] == "<stdin>:2: invalid JSON: Expecting value"  # no file to point at
    assert [n["message"]["text"] for n in notes if n["level"] == "warning"] == [
        "waiver for T-K8S-001 on apps/v1/Deployment/payments/api expires in 5 days"]


def test_clean_run_is_successful_with_no_results(empty):
    run = sarif_of(empty)["runs"][0]
    assert run["results"] == []
    assert run["invocations"] == [{"executionSuccessful": True}]
    assert len(run["tool"]["driver"]["rules"]) == 4


def test_a_finding_from_a_rule_outside_the_pack_gets_a_descriptor(sample, validator):
    result = sample.result
    other = ReportInput(result=ScanResult(resources=result.resources, findings=result.findings,
                                          errors=[Error("a.tf", 1, "x")]),
                        pack=type(sample.pack)(rules=[], controls=sample.pack.controls, digest="d"),
                        base_dir="/repo")
    doc = sarif_of(other)
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert sorted(r["id"] for r in rules) == ["T-ENC-001", "T-K8S-001", "T-LOG-001", "T-NET-001"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in doc["runs"][0]["results"])
    assert list(validator.iter_errors(doc)) == []
