"""The JSON report: the versioned contract, checked against its own JSON Schema."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from soc2infra._cogs.model import Waiver
from soc2infra._core.reports import ReportInput, render
from soc2infra._core.reports.json_report import JSON_SCHEMA_VERSION, SCHEMA_PATH

DOC = Path(__file__).resolve().parents[2] / "docs" / "json-contract.md"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def doc_of(data) -> dict[str, Any]:
    return json.loads(render("json", data))


def test_sample_and_empty_documents_follow_the_schema(sample, empty, validator):
    for data in (sample, empty):
        errors = sorted(validator.iter_errors(doc_of(data)), key=str)
        assert errors == [], [e.message for e in errors]


def test_header(sample):
    doc = doc_of(sample)
    assert doc["version"] == JSON_SCHEMA_VERSION == "1.1"
    assert doc["tool"] == {"name": "soc2infra", "version": "9.9.9"}
    assert doc["pack"] == {"digest": "sha256:" + "ab" * 32, "rules": 4}
    assert doc["warnings"] == ["waiver for T-K8S-001 on apps/v1/Deployment/payments/api expires in 5 days"]


def test_summary_counts(sample):
    assert doc_of(sample)["summary"] == {
        "resources": 6,
        "findings": 6,  # failed, suppressed included
        "open": 4,
        "unknown": 1,
        "suppressed": 2,
        "by_severity": {"critical": 1, "high": 2, "medium": 0, "low": 1},
        "by_category": {"encryption": 2, "authentication": 0, "logging": 1, "backup": 0, "availability": 0,
                        "access": 0, "network": 1, "integrity": 0},
        # open failures per criterion; the network finding counts under both of its criteria
        "by_control": {"C1.1": 2, "CC6.1": 3, "CC6.6": 1, "CC7.2": 1},
        "errors": 3,
        "modules_not_scanned": 0,
        "threshold": "low",
        "blocking": 4,
    }


def test_findings_keep_suppressed_ones_with_their_waiver_and_unknowns_apart(sample):
    doc = doc_of(sample)
    assert {f["status"] for f in doc["findings"]} == {"fail"}
    assert [(u["rule_id"], u["resource"]["address"], u["status"]) for u in doc["unknown"]] == [
        ("T-ENC-001", "aws_s3_bucket.logs[0]", "unknown")]
    suppressed = {f["rule_id"]: f for f in doc["findings"] if f["suppressed"]}
    assert set(suppressed) == {"T-LOG-001", "T-K8S-001"}
    assert suppressed["T-K8S-001"]["waiver"] == {
        "source": "file", "reason": "legacy service, replaced in Q3", "owner": "platform@example.com",
        "ticket": "SEC-7", "expires": "2099-01-01", "location": ".soc2infra-waivers.yaml:3"}
    assert all("waiver" not in f for f in doc["findings"] if not f["suppressed"])


def test_finding_shape_is_finding_to_dict_with_relative_file(sample):
    doc = doc_of(sample)
    by_addr = {f["resource"]["address"]: f for f in doc["findings"] + doc["unknown"]}
    logs = by_addr["aws_s3_bucket.logs[0]"]
    assert logs["resource"] == {"kind": "terraform", "type": "aws_s3_bucket", "address": "aws_s3_bucket.logs[0]",
                                "file": "infra/main.tf", "line": 12}  # was /repo/infra/main.tf
    assert by_addr["aws_s3_bucket.far"]["resource"]["file"] == "/elsewhere/far.tf"  # outside base_dir
    data = next(f for f in doc["findings"] if f["rule_id"] == "T-ENC-001"
                and f["resource"]["address"] == "aws_s3_bucket.data")
    original = next(f for f in sample.result.findings if f.rule_id == "T-ENC-001"
                    and f.resource.address == "aws_s3_bucket.data")
    assert data == original.to_dict()
    assert data["details"] == {"argument": "password", "value": "At******"}
    assert data["controls"] == ["CC6.1", "C1.1"]


def test_findings_are_ordered_by_file_then_line(sample):
    doc = doc_of(sample)
    keys = [(f["resource"]["file"], f["resource"]["line"], f["rule_id"]) for f in doc["findings"]]
    assert keys == sorted(keys)
    assert keys[0][0] == "/elsewhere/far.tf" and keys[-1][0] == "k8s/deploy.yaml"


def test_errors_keep_file_line_message(sample):
    assert doc_of(sample)["errors"] == [
        {"file": "infra/broken.tf", "line": 4, "message": "invalid HCL: unexpected '}'"},
        {"file": "/elsewhere/unreadable.tf", "line": None, "message": "cannot read file"},
        {"file": "<stdin>", "line": 2, "message": "invalid JSON: Expecting value"},
    ]


def test_empty_scan(empty):
    doc = doc_of(empty)
    assert (doc["findings"], doc["unknown"], doc["errors"], doc["warnings"]) == ([], [], [], [])
    assert doc["summary"]["blocking"] == 0 and doc["summary"]["by_control"] == {}
    assert doc["summary"]["by_severity"] == {"critical": 0, "high": 0, "medium": 0, "low": 0}


def test_threshold_changes_blocking_not_the_findings(sample):
    high = ReportInput(result=sample.result, pack=sample.pack, threshold="critical", base_dir="/repo")
    doc = doc_of(high)
    assert doc["summary"]["blocking"] == 1 and doc["summary"]["threshold"] == "critical"
    assert len(doc["findings"]) == 6


@pytest.mark.parametrize("breakage", [
    lambda d: d.pop("summary"),
    lambda d: d.update(version="2.0"),
    lambda d: d["findings"][0].update(status="unknown"),  # an unknown result in findings[]
    lambda d: d["unknown"][0].update(status="fail"),
    lambda d: d["findings"][0].update(severity="urgent"),
    lambda d: d["findings"][0]["resource"].update(attributes={"password": "x"}),  # no attribute dumps
    lambda d: next(f for f in d["findings"] if f["suppressed"]).pop("waiver"),
    lambda d: d["summary"]["by_severity"].pop("low"),
    lambda d: d["errors"].append({"file": "a.tf", "message": "no line key"}),
    lambda d: d.update(extra=1),
])
def test_schema_rejects_contract_breaks(sample, validator, breakage):
    doc = copy.deepcopy(doc_of(sample))
    breakage(doc)
    assert list(validator.iter_errors(doc)), "the schema accepted a document that breaks the contract"


def _schema_property_names(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            out.add(key)
            _schema_property_names(value, out)
        for key, value in node.items():
            if key != "properties":
                _schema_property_names(value, out)
    elif isinstance(node, list):
        for item in node:
            _schema_property_names(item, out)
    return out


def test_contract_doc_describes_every_schema_field():
    text = DOC.read_text(encoding="utf-8")
    names = _schema_property_names(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")), set())
    missing = sorted(n for n in names if not re.search(rf"`[\w.\[\]]*\b{re.escape(n)}\b", text))
    assert missing == [], f"docs/json-contract.md does not document: {missing}"
    assert f'"{JSON_SCHEMA_VERSION}"' in text or f"`{JSON_SCHEMA_VERSION}`" in text


def test_contract_doc_states_the_exit_codes():
    text = DOC.read_text(encoding="utf-8")
    for code in ("| 0 |", "| 1 |", "| 2 |"):
        assert code in text


def test_baseline_waiver_and_nested_details_are_valid(make_input, make_finding, make_resource, validator):
    bucket = make_resource("aws_s3_bucket.b", "aws_s3_bucket", "main.tf", 1)
    findings = [
        make_finding("T-ENC-001", bucket, waiver=Waiver(source="baseline", reason="accepted in baseline")),
        make_finding("T-LOG-001", bucket, details={"matching_statement": {"Effect": "Allow", "Action": ["s3:*"]}}),
    ]
    doc = doc_of(make_input(findings))
    assert list(validator.iter_errors(doc)) == []
    assert doc["findings"][0]["waiver"] == {"source": "baseline", "reason": "accepted in baseline"}
    assert doc["summary"]["suppressed"] == 1 and doc["summary"]["open"] == 1
