"""Deviation and waiver registers, on real SQLite and PostgreSQL ledgers (and the fold on plain dicts)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from click.testing import CliRunner

from soc2infra.cli import cli
from soc2infra.evidence import Ledger
from soc2infra.evidence.population import Population
from soc2infra.evidence.register import RegisterBuilder, registers

POD = "apps/v1/Deployment/shop/api"
WEB = "apps/v1/Deployment/shop/web"
WAIVER = {"source": "cluster", "owner": "team-shop", "expires": "2025-03-20", "reason": "migration",
          "ticket": "SEC-12", "location": "SOC2Waiver shop/legacy-root"}


def _r(rule: str, status: str, address: str, **extra: Any) -> dict[str, Any]:
    return {"rule_id": rule, "status": status, "severity": "high", "controls": ["CC6.1"], "address": address,
            **extra}


def _audit(time: str, results: list[dict[str, Any]], cluster: str = "prod",
           waivers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"source": "audit", "actor": "soc2infra-operator/op-0", "subject": f"cluster:{cluster}", "time": time,
            "results": results, "context": {"cluster": cluster, "waivers": waivers or []}}


def _admission(time: str, decision: str, results: list[dict[str, Any]], cluster: str = "prod",
               dry_run: bool = False) -> dict[str, Any]:
    return {"source": "admission", "actor": "alice", "subject": results[0]["address"], "decision": decision,
            "time": time, "results": results, "context": {"cluster": cluster, "dry_run": dry_run}}


def _waiver_event(time: str, event: str, actor: str, **extra: Any) -> dict[str, Any]:
    waiver = {"namespace": "shop", "name": "legacy-root", "rule": "POD-1", "reason": "migration",
              "owner": "team-shop", "expires": "2025-03-20", "ticket": "SEC-12",
              "selector": {"kind": "Deployment", "name": "api"}, **extra}
    return {"source": "waiver", "actor": actor, "subject": "soc2infra.io/v1alpha1/SOC2Waiver/shop/legacy-root",
            "time": time, "context": {"event": event, "waiver": waiver}}


def scene() -> list[dict[str, Any]]:
    """Ten days of one cluster (prod) and a second (stage), March 2025:

    - POD-1 on api fails in prod from day 1, is waived from day 3 (waiver created day 2, approved by
      bob), and is still waived at the end;
    - POD-2 on web fails day 1, passes day 2 (remediated), fails again day 4 (re-opened), and the
      object is gone from the day-6 snapshot (remediated by absence);
    - LOG-1 on web is let through with a warning on day 5 (opens), then an admitted request that
      passes it on day 7 remediates it;
    - a denied request and a dry run never open a deviation; the same rule and object in stage is
      a row of its own; an IaC scan's failure never opens one.
    """
    return [
        _audit("2025-03-01T01:00:00Z", [_r("POD-1", "fail", POD), _r("POD-2", "fail", WEB)]),
        _audit("2025-03-01T02:00:00Z", [_r("POD-1", "fail", POD)], cluster="stage"),
        _waiver_event("2025-03-02T00:30:00Z", "waiver-created", "alice", approvedBy="bob"),
        _audit("2025-03-02T01:00:00Z", [_r("POD-1", "fail", POD), _r("POD-2", "pass", WEB)]),
        _admission("2025-03-02T05:00:00Z", "deny", [_r("POD-3", "fail", "apps/v1/Deployment/shop/bad")]),
        _admission("2025-03-02T06:00:00Z", "allow", [_r("POD-4", "fail", "apps/v1/Deployment/shop/dry")],
                   dry_run=True),
        _audit("2025-03-03T01:00:00Z", [_r("POD-1", "waived", POD, waiver=WAIVER), _r("POD-2", "pass", WEB)],
               waivers=[{"namespace": "shop", "name": "legacy-root", "rule": "POD-1", "owner": "team-shop",
                         "expires": "2025-03-20", "approvedBy": "bob"}]),
        {"source": "ci", "actor": "ci", "subject": "repo@abc", "decision": "fail", "time": "2025-03-03T09:00:00Z",
         "results": [_r("S3-1", "fail", "aws_s3_bucket.logs")]},
        _audit("2025-03-04T01:00:00Z", [_r("POD-1", "waived", POD, waiver=WAIVER), _r("POD-2", "fail", WEB)]),
        _admission("2025-03-05T10:00:00Z", "warn", [_r("LOG-1", "fail", WEB)]),
        _audit("2025-03-06T01:00:00Z", [_r("POD-1", "waived", POD, waiver=WAIVER), _r("LOG-1", "fail", WEB)]),
        _admission("2025-03-07T10:00:00Z", "allow", [_r("LOG-1", "pass", WEB)]),
        _audit("2025-03-08T01:00:00Z", [_r("POD-1", "waived", POD, waiver=WAIVER)]),
    ]


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["rule_id"], r["resource"], r["cluster"]): r for r in rows}


def test_deviation_register_on_a_real_ledger(ledger: Ledger) -> None:
    ledger.append(scene())
    deviations, _ = registers(ledger, "2025-03-01", "2025-03-10", Population())
    rows = _by_key(deviations)
    assert set(rows) == {("POD-1", POD, "prod"), ("POD-1", POD, "stage"), ("POD-2", WEB, "prod"),
                         ("LOG-1", WEB, "prod")}  # no POD-3 (denied), POD-4 (dry run) or S3-1 (IaC)

    api = rows[("POD-1", POD, "prod")]
    assert (api["status"], api["first_seen"], api["last_seen"], api["remediated_at"]) == (
        "waived", "2025-03-01T01:00:00.000000Z", "2025-03-08T01:00:00.000000Z", "")
    assert api["days_open"] == 10.0  # 9 days 23 hours, to the end of the period (2025-03-11T00:00Z)
    assert (api["waiver_id"], api["waiver_owner"], api["waiver_approver"], api["waiver_expires"],
            api["ticket"]) == ("SOC2Waiver shop/legacy-root", "team-shop", "bob", "2025-03-20", "SEC-12")
    assert api["observations"] == 6 and api["sources"] == ["audit"]

    web = rows[("POD-2", WEB, "prod")]  # fails, passes, fails again, then the object is gone
    assert (web["status"], web["first_seen"], web["last_seen"], web["remediated_at"]) == (
        "remediated", "2025-03-01T01:00:00.000000Z", "2025-03-04T01:00:00.000000Z", "2025-03-06T01:00:00.000000Z")
    assert web["days_open"] == 5.0

    log = rows[("LOG-1", WEB, "prod")]  # opened by an admitted request, closed by one that passes
    assert (log["status"], log["sources"], log["remediated_at"]) == (
        "remediated", ["admission", "audit"], "2025-03-07T10:00:00.000000Z")

    # stage has no later snapshot: still open, no waiver (the waiver was seen only in prod)
    stage = rows[("POD-1", POD, "stage")]
    assert (stage["status"], stage["waiver_id"], stage["remediated_at"]) == ("open", "", "")

    # Only stage: one row; with the dry runs: POD-4 appears.
    only_stage, _ = registers(ledger, "2025-03-01", "2025-03-10", Population(clusters=("stage",)))
    assert [r["cluster"] for r in only_stage] == ["stage"]
    with_dry, _ = registers(ledger, "2025-03-01", "2025-03-10", Population(include_dry_run=True))
    assert ("POD-4", "apps/v1/Deployment/shop/dry", "prod") in _by_key(with_dry)


def test_waiver_register_on_a_real_ledger(ledger: Ledger) -> None:
    ledger.append([*scene(),
                   _waiver_event("2025-03-09T00:00:00Z", "waiver-deleted", "carol"),
                   # a waiver-file entry used by a scan, past its expiry, with no approver recorded
                   {"source": "ci", "actor": "ci", "subject": "repo@def", "decision": "pass",
                    "time": "2025-03-09T12:00:00Z",
                    "results": [_r("S3-2", "waived", "aws_s3_bucket.tmp",
                                   waiver={"source": "file", "owner": "data-team", "expires": "2025-03-01",
                                           "reason": "temporary bucket", "location": ".soc2infra-waivers.yaml:4"})]},
                   ])
    _, waivers = registers(ledger, "2025-03-01", "2025-03-10")
    rows = {w["waiver_id"]: w for w in waivers}
    assert set(rows) == {"SOC2Waiver shop/legacy-root", ".soc2infra-waivers.yaml:4"}
    cluster = rows["SOC2Waiver shop/legacy-root"]
    assert (cluster["kind"], cluster["rule"], cluster["resources"], cluster["owner"], cluster["approver"],
            cluster["created_by"], cluster["created_at"], cluster["ticket"], cluster["reason"]) == (
        "SOC2Waiver", "POD-1", "kind=Deployment name=api", "team-shop", "bob", "alice",
        "2025-03-02T00:30:00.000000Z", "SEC-12", "migration")
    assert (cluster["status"], cluster["revoked_at"], cluster["revoked_by"]) == (
        "revoked", "2025-03-09T00:00:00.000000Z", "carol")
    assert (cluster["evaluations"], cluster["waived_resources"], cluster["expired"]) == (4, 1, False)
    file_waiver = rows[".soc2infra-waivers.yaml:4"]
    assert (file_waiver["kind"], file_waiver["approver"], file_waiver["status"], file_waiver["expired"],
            file_waiver["used_after_expiry"]) == ("file", "", "expired", True, True)


def test_created_by_prefers_the_recorded_creator_and_recreation_clears_revocation() -> None:
    builder = RegisterBuilder()
    for seq, record in enumerate([
        _waiver_event("2025-03-01T00:00:00.000000Z", "waiver-created", "system:serviceaccount:argocd:app",
                      createdBy="dave@example.com"),
        _waiver_event("2025-03-02T00:00:00.000000Z", "waiver-deleted", "erin"),
        _waiver_event("2025-03-03T00:00:00.000000Z", "waiver-created", "frank"),
    ], start=1):
        builder.add({**record, "seq": seq})
    [row] = builder.waivers("2025-03-04T00:00:00.000000Z")
    assert (row["created_by"], row["created_at"], row["status"], row["revoked_at"]) == (
        "frank", "2025-03-03T00:00:00.000000Z", "active", "")
    # The webhook records who asked for a deletion; the watch's deletion record cannot say.
    builder.add({**_waiver_event("2025-03-05T00:00:00.000000Z", "waiver-delete-requested", "grace"), "seq": 4})
    builder.add({**_waiver_event("2025-03-05T00:00:01.000000Z", "waiver-deleted", "unknown"), "seq": 5})
    [row] = builder.waivers("2025-03-06T00:00:00.000000Z")
    assert (row["status"], row["revoked_at"], row["revoked_by"]) == (
        "revoked", "2025-03-05T00:00:01.000000Z", "grace")
    first = RegisterBuilder()
    first.add({**_waiver_event("2025-03-01T00:00:00.000000Z", "waiver-created", "argocd",
                               createdBy="dave@example.com"), "seq": 1})
    assert first.waivers()[0]["created_by"] == "dave@example.com"  # the requester, not the apply tool


def test_the_newest_version_of_a_waiver_decides_its_approval_and_problem() -> None:
    """A waiver awaiting approval is unusable; once approved it is active; when its terms change the
    approval is withdrawn with them (the operator records each whole version)."""
    builder = RegisterBuilder()
    pending = "awaiting approval: spec.approvedBy is not set (waivers.require_independent_approval)"
    states = [("waiver-created", {"problem": pending, "approval": "none"}, ("", "unusable")),
              ("waiver-changed", {"approvedBy": "bob", "approval": "independent"}, ("bob", "active")),
              ("waiver-changed", {"problem": pending, "approval": "none", "reason": "longer"}, ("", "unusable"))]
    for seq, (event, extra, expected) in enumerate(states, start=1):
        builder.add({**_waiver_event(f"2025-03-0{seq}T00:00:00.000000Z", event, "alice", **extra), "seq": seq})
        [row] = builder.waivers("2025-03-05T00:00:00.000000Z")
        assert (row["approver"], row["status"]) == expected, event
        assert row["problem"] == extra.get("problem", "")


def test_register_cli_csv_and_json(ledger: Ledger, tmp_path: Any) -> None:
    ledger.append(scene())
    out = tmp_path / "deviations.csv"
    res = CliRunner().invoke(cli, ["evidence", "register", ledger.url, "--kind", "deviations", "--from",
                                   "2025-03-01", "--to", "2025-03-10", "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 4 and "wrote 4 deviations" in res.output
    assert "12 of 13 records in the population (excluded: 1 dry_run)" in res.output
    api = next(r for r in rows if r["resource"] == POD and r["cluster"] == "prod")
    assert (api["status"], api["waiver_approver"], api["ticket"], api["controls"]) == (
        "waived", "bob", "SEC-12", "CC6.1")
    res = CliRunner().invoke(cli, ["evidence", "register", ledger.url, "--kind", "waivers", "--format", "json",
                                   "--cluster", "prod"])
    assert res.exit_code == 0, res.output
    body = res.output[: res.output.rindex("]") + 1]
    [waiver] = json.loads(body)
    assert waiver["approver"] == "bob" and waiver["status"] == "active"


def test_waiver_records_with_recorded_identities_and_rejections(ledger: Ledger) -> None:
    """The operator's waiver records name the creator and approver as userInfo identities and
    record refused changes (self-approval): the register shows who, the approval status, and the
    refusals without taking the refused terms."""
    alice = {"username": "alice@example.com", "uid": "u-1", "groups": ["dev"]}
    bob = {"username": "bob@example.com", "uid": "u-2", "groups": ["security"]}
    base = {"namespace": "shop", "name": "legacy-root", "rule": "POD-1", "owner": "team-shop",
            "expires": "2025-03-20", "reason": "migration", "ticket": "SEC-12"}
    subject = "soc2infra.io/v1alpha1/SOC2Waiver/shop/legacy-root"
    ledger.append([
        {"source": "waiver", "actor": "alice@example.com", "subject": subject, "time": "2025-03-01T00:00:00Z",
         "decision": "deny", "context": {"event": "waiver-rejected", "reason": "self-approved", "user": alice,
                                         "waiver": {**base, "approvedBy": "alice@example.com",
                                                    "expires": "2026-03-01"}}},
        {"source": "waiver", "actor": "alice@example.com", "subject": subject, "time": "2025-03-01T00:05:00Z",
         "context": {"event": "waiver-created", "waiver": {**base, "approval": "none", "createdBy": alice}}},
        {"source": "waiver", "actor": "bob@example.com", "subject": subject, "time": "2025-03-01T01:00:00Z",
         "context": {"event": "waiver-changed", "waiver": {**base, "approvedBy": "bob@example.com",
                                                           "approval": "independent", "createdBy": alice,
                                                           "approver": bob}}},
        {"source": "waiver", "actor": "mallory", "subject": "soc2infra.io/v1alpha1/SOC2Waiver/shop/sneaky",
         "time": "2025-03-02T00:00:00Z", "decision": "deny",
         "context": {"event": "waiver-rejected", "reason": "longer than waivers.max_days (90)",
                     "waiver": {"namespace": "shop", "name": "sneaky", "rule": "POD-9", "owner": "mallory"}}},
        # a count of skipped requests is an admission record without a decision: not a request
        {"source": "admission", "actor": "soc2infra-operator/op-0", "subject": "skipped-requests:prod",
         "time": "2025-03-02T01:00:00Z", "context": {"event": "skipped-requests", "total": 7, "cluster": "prod"}},
    ])
    _, waivers = registers(ledger, "2025-03-01", "2025-03-10")
    rows = {w["waiver_id"]: w for w in waivers}
    legacy = rows["SOC2Waiver shop/legacy-root"]
    assert (legacy["created_by"], legacy["approver"], legacy["approval"], legacy["expires"], legacy["status"]) == (
        "alice@example.com", "bob@example.com", "independent", "2025-03-20", "active")
    assert legacy["rejected_changes"] == 1 and "alice@example.com: self-approved" in legacy["last_rejection"]
    sneaky = rows["SOC2Waiver shop/sneaky"]
    assert (sneaky["status"], sneaky["rule"], sneaky["owner"], sneaky["rejected_changes"]) == (
        "rejected", "POD-9", "mallory", 1)
    from soc2infra.evidence import build_report

    report = build_report(ledger, "2025-03-01", "2025-03-10", {}, verify=False)
    head = report["headline"]
    assert report["would_deny"]["admission_modes"] == {}  # a count of skipped requests is no request
    assert (head["admission_requests"], head["skipped_requests"], head["waivers"], head["waivers_active"]) == (
        0, 7, 2, 1)


def test_a_waivers_rule_pattern_is_kept_whatever_order_its_uses_come_in() -> None:
    for order in (0, 1):
        builder = RegisterBuilder()
        record = _waiver_event("2025-03-01T00:00:00.000000Z", "waiver-created", "alice", rule="POD-00?")
        use = _audit("2025-03-01T01:00:00.000000Z", [_r("POD-002", "waived", POD, waiver=dict(
            WAIVER, location="SOC2Waiver shop/legacy-root"))])
        for seq, item in enumerate((record, use) if order == 0 else (use, record), start=1):
            builder.add({**item, "seq": seq, "time": f"2025-03-01T0{seq}:00:00.000000Z"})
        [row] = builder.waivers()
        assert (row["rule"], row["evaluations"]) == ("POD-00?", 1), order
