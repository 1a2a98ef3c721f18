"""Records: redaction (proved on the stored bytes of both backends), canonical hashing, keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra._cogs.model import Finding, Resource, ScanResult, Waiver
from soc2infra.evidence import (
    EvidenceError,
    Ledger,
    export_records,
    generate_keypair,
    redact,
    results_from_scan,
)
from soc2infra.evidence.records import (
    REDACTED,
    build_record,
    canonical_json,
    is_sensitive_key,
    load_public_keys,
    load_signer,
    normalize_entry,
    record_hash,
)

SECRET_VALUE = "s3cr3t-Pa55w0rd-do-not-leak"
ENV_LITERAL = "AKIA-literal-env-token-0123456789"
PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA0000\n-----END PRIVATE KEY-----\n"

SECRET = {
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": "db", "namespace": "payments", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"stringData": {"password": SECRET_VALUE}}),
    }},
    "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
    "stringData": {"password": SECRET_VALUE},
}
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "payments"},
    "spec": {"template": {"spec": {
        "initContainers": [{"name": "init", "env": [{"name": "TOKEN", "value": ENV_LITERAL}]}],
        "containers": [{"name": "api", "image": "api:1", "env": [
            {"name": "PLAIN", "value": ENV_LITERAL},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        ]}],
    }}},
}


def test_redact_secret_env_and_sensitive_keys() -> None:
    out = redact({"object": SECRET, "workload": DEPLOYMENT, "dbPassword": SECRET_VALUE,
                  "api_key": ENV_LITERAL, "nested": {"private": {"n": 1, "on": True}}, "pem": PEM,
                  "dsn": f"postgresql://app:{SECRET_VALUE}@db:5432/app", "keep": "visible",
                  "manage_master_user_password": True})
    text = json.dumps(out)
    assert SECRET_VALUE not in text and ENV_LITERAL not in text and "BEGIN PRIVATE KEY" not in text
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
    assert out["object"]["data"] == {"password": REDACTED}  # which keys existed stays visible
    assert out["object"]["stringData"] == {"password": REDACTED}
    assert out["object"]["metadata"]["name"] == "db"
    containers = out["workload"]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["env"][0] == {"name": "PLAIN", "value": REDACTED}
    assert "valueFrom" in containers[0]["env"][1]
    assert out["dsn"] == f"postgresql://app:{REDACTED}@db:5432/app"
    assert out["nested"]["private"] == {"n": REDACTED, "on": True}
    assert out["keep"] == "visible" and out["manage_master_user_password"] is True
    assert SECRET["data"]["password"] != REDACTED  # the input is not modified


def test_redact_terraform_secret_and_lambda_environment() -> None:
    tf = {"type": "kubernetes_secret", "address": "kubernetes_secret.db",
          "attributes": {"metadata": [{"name": "db"}], "data": {"password": SECRET_VALUE}}}
    lam = {"type": "aws_lambda_function", "attributes": {"environment": [{"variables": {"DB": SECRET_VALUE}}]}}
    text = json.dumps(redact([tf, lam]))
    assert SECRET_VALUE not in text and text.count(REDACTED) == 2


@pytest.mark.parametrize(("key", "sensitive"), [
    ("password", True), ("dbPassword", True), ("DB_PASSWORD", True), ("X-Auth-Token", True),
    ("client_secret", True), ("privateKey", True), ("api-key", True), ("key", True), ("credentials", True),
    ("rule_id", False), ("pack_digest", False), ("monkey", False), ("keyboard_layout", False),
    ("namespace", False), ("address", False), ("subject", False),
])
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


def test_secret_values_never_reach_the_database(ledger: Ledger, raw_db: Any, tmp_path: Path,
                                                 make_entry: Callable[..., dict[str, Any]]) -> None:
    ledger.append([
        make_entry(0, subject="v1/Secret/payments/db", context={"object": SECRET, "operation": "CREATE"}),
        make_entry(1, subject="apps/v1/Deployment/payments/api",
                   context={"object": DEPLOYMENT, "token": ENV_LITERAL, "key": PEM}),
    ])
    ledger.append([make_entry(2, actor=f"ci via https://bot:{SECRET_VALUE}@git.example/repo")])
    stored = raw_db.dump()
    assert stored, "nothing dumped"
    needles = [SECRET_VALUE, ENV_LITERAL, base64.b64encode(SECRET_VALUE.encode()).decode(), "BEGIN PRIVATE KEY"]
    for needle in needles:
        assert needle.encode() not in stored, f"{needle!r} reached the stored bytes"
    assert REDACTED.encode() in stored and b"payments" in stored  # the records are there, just redacted
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"export.{fmt}"
        export_records(ledger, None, None, fmt, out)
        data = out.read_bytes()
        assert not any(n.encode() in data for n in needles)


def test_hash_is_over_canonical_json_without_hash_and_signature() -> None:
    fields = normalize_entry({"source": "cli", "actor": "é", "subject": "s", "context": {"b": 1, "a": [2]}})
    record = build_record(fields, 1, "0" * 64, "2025-01-01T00:00:00.000000Z")
    body = {k: v for k, v in record.items() if k not in ("hash", "signature")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    import hashlib

    assert record["hash"] == hashlib.sha256(text.encode("utf-8")).hexdigest() == record_hash(record)
    assert canonical_json(record).startswith('{"actor":"é","context":{"a":[2],"b":1}')
    assert record_hash({**record, "signature": "x"}) == record["hash"]
    assert record_hash({**record, "actor": "e"}) != record["hash"]


def test_keys_round_trip(tmp_path: Path) -> None:
    key_id = generate_keypair(tmp_path / "k.pem", tmp_path / "pub.pem")
    signer = load_signer(tmp_path / "k.pem")
    assert signer.key_id == key_id and key_id.startswith("ed25519:")
    assert list(load_public_keys(tmp_path / "pub.pem")) == [key_id]
    (tmp_path / "rsa.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(EvidenceError):
        load_public_keys(tmp_path / "rsa.pem")


def test_results_from_scan() -> None:
    res = Resource(kind="terraform", type="aws_s3_bucket", address="aws_s3_bucket.logs", attributes={})
    other = Resource(kind="terraform", type="aws_s3_bucket", address="aws_s3_bucket.tmp", attributes={})
    findings = [
        Finding("S3-001", "t", "high", "encryption", ("CC6.1", "C1.1"), "m", "r", res),
        Finding("S3-002", "t", "low", "logging", ("CC7.2",), "m", "r", other, suppressed=True,
                waiver=Waiver(source="file", reason="temp bucket", owner="alice", expires="2025-06-30")),
        Finding("S3-003", "t", "medium", "access", ("CC6.3",), "m", "r", res, status="unknown"),
    ]
    scan = ScanResult(findings=findings, passes=[("S3-009", "aws_s3_bucket.logs")], pack_digest="sha256:x")
    items = results_from_scan(scan, {"S3-009": ("medium", ("CC6.6",))})
    assert items[0] == {"rule_id": "S3-009", "status": "pass", "severity": "medium", "controls": ["CC6.6"],
                        "address": "aws_s3_bucket.logs"}
    assert [i["status"] for i in items] == ["pass", "fail", "waived", "unknown"]
    assert items[2]["waiver"] == {"source": "file", "owner": "alice", "expires": "2025-06-30",
                                  "reason": "temp bucket"}
    normalize_entry({"source": "ci", "actor": "ci", "subject": "repo", "results": items})  # a valid entry


@pytest.mark.parametrize("signed", [False, True])
def test_sealed_body_is_the_canonical_record(signed: bool, tmp_path: Path) -> None:
    """The fast path (pre-serialised parts spliced under the lock) is byte for byte the record."""
    from soc2infra.evidence.records import prepare_entry, seal

    signer = None
    if signed:
        generate_keypair(tmp_path / "k.pem")
        signer = load_signer(tmp_path / "k.pem")
    entries = [
        {"source": "admission", "actor": "ünïcode \u2028 \"quoted\"", "subject": "a/b\\c", "decision": "deny",
         "pack_digest": "sha256:x", "context": {"z": [1, 2.5, None, True], "a": {"é": "\u0000"}},
         "results": [{"rule_id": "R", "status": "fail", "controls": ["CC6.1"], "address": "x",
                      "waiver": {"owner": "o", "expires": "2025-01-01"}}]},
        {"source": "waiver", "actor": "a", "subject": "s"},
    ]
    for e in entries:
        prepared = prepare_entry(e)
        body, digest = seal(prepared, 12345, "ab" * 32, "2025-01-01T00:00:00.000000Z", signer)
        record = build_record(prepared.fields, 12345, "ab" * 32, "2025-01-01T00:00:00.000000Z", signer)
        assert body == canonical_json(record)
        assert digest == record["hash"] == record_hash(json.loads(body))


def test_results_take_one_pass_when_plain_and_the_general_path_otherwise() -> None:
    """An admission record's results (plain dicts) are redacted and checked in one pass; the
    outcome is what redacting and then normalising each result gives (the general path, which
    other shapes take)."""
    from soc2infra.evidence.records import _normalize_result, _redact, normalize_entry

    pem = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"
    plain = [{"rule_id": "SOC2-K8S-POD-001", "status": "fail", "severity": "high", "controls": ["CC6.1"],
              "address": "postgresql://app:hunter2@db/x"},
             {"rule_id": "R-002", "status": "pass", "severity": None, "controls": [], "address": pem}]
    other = [*plain, {"rule_id": "R-003", "status": "waived", "controls": ("CC7.2",), "address": "a",
                      "waiver": {"owner": "o", "reason": "r"}}]
    for results in (plain, other):
        entry = {"source": "admission", "actor": "u", "subject": "s", "decision": "deny", "results": results}
        expected = [_normalize_result(_redact(r, False, True), i) for i, r in enumerate(results)]
        got = normalize_entry(entry)["results"]
        assert got == expected
        assert "hunter2" not in str(got) and "abc" not in str(got)
    with pytest.raises(EvidenceError, match=r"results\[0\]\.status"):
        normalize_entry({"source": "admission", "actor": "u", "subject": "s",
                         "results": [{"rule_id": "R-1", "status": "maybe"}]})


def test_repeated_plain_results_serialise_like_the_record(tmp_path: Path) -> None:
    """Plain results reuse the canonical JSON of earlier ones with the same rule, status,
    severity and controls (only the address differs between objects): the sealed body is still
    byte for byte the canonical record, and the address is still redacted."""
    from soc2infra.evidence.records import _RESULT_TAILS, _normalize_result, _redact, prepare_entry, seal

    def results(address: str) -> list[dict[str, Any]]:
        return [{"rule_id": f"SOC2-K8S-{n:03d}", "status": "pass" if n % 3 else "fail",
                 "severity": None if n == 4 else "high", "controls": ["CC6.1", "CC7.2"][: n % 3],
                 "address": address} for n in range(12)]

    addresses = ["Deployment/shop/web", "Deployment/shop/api", "postgresql://app:hunter2@db/x", "ü \"q\""]
    for address in addresses * 2:  # the second round is served from the cache
        entry = {"source": "admission", "actor": "u", "subject": "s", "decision": "allow",
                 "results": results(address)}
        prepared = prepare_entry(entry)
        body, digest = seal(prepared, 7, "ab" * 32, "2025-01-01T00:00:00.000000Z")
        fields = normalize_entry(entry)
        # The general path (redact, then check each result) gives the same results.
        assert fields["results"] == [_normalize_result(_redact(r, False, True), i)
                                     for i, r in enumerate(entry["results"])]
        record = build_record(fields, 7, "ab" * 32, "2025-01-01T00:00:00.000000Z")
        assert body == canonical_json(record)
        assert digest == record["hash"]
        assert "hunter2" not in body
    assert ("SOC2-K8S-001", "pass", "high", ("CC6.1",)) in _RESULT_TAILS
    # An unhashable or odd value is not a plain result: the general path names it.
    with pytest.raises(EvidenceError, match=r"results\[0\]\.controls"):
        normalize_entry({"source": "admission", "actor": "u", "subject": "s",
                         "results": [{"rule_id": "R", "status": "pass", "controls": [["CC6.1"]]}]})
