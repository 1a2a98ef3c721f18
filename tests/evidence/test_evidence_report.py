"""report: per-criterion numbers for a synthetic ledger, and a self-contained HTML page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import Ledger, build_report, render_html

CONTROLS = {
    "CC6.1": ("Logical access security architecture", "Protected assets sit behind logical access."),
    "CC7.2": ("System monitoring", "Anomalies are detected."),
    "CC8.1": ("Change management", "Changes are authorised, tested and approved."),
}


def _r(rule: str, status: str, controls: list[str], address: str, **extra: Any) -> dict[str, Any]:
    return {"rule_id": rule, "status": status, "severity": "high", "controls": controls, "address": address,
            **extra}


@pytest.fixture
def synthetic(ledger: Ledger) -> Ledger:
    """Ten days, 2025-03-01..10. Audit snapshots on days 1, 2, 3, 6 and 10 (gaps: 4, 5, 7, 8, 9)."""
    entries = [
        # Before the period: must not count.
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-02-28T23:59:59Z",
         "results": [_r("POD-1", "fail", ["CC6.1"], "x")]},
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-01T01:00:00Z",
         "pack_digest": "sha256:p1",
         "results": [_r("POD-1", "pass", ["CC6.1"], "a"), _r("POD-1", "fail", ["CC6.1"], "b"),
                     _r("LOG-1", "pass", ["CC7.2", "CC6.1"], "c")]},
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-02T01:00:00Z",
         "pack_digest": "sha256:p1",
         "results": [_r("POD-1", "pass", ["CC6.1"], "a"), _r("POD-1", "pass", ["CC6.1"], "b")]},
        {"source": "admission", "actor": "dev", "subject": "apps/v1/Deployment/ns/bad", "decision": "deny",
         "time": "2025-03-02T12:00:00Z", "results": [_r("POD-1", "fail", ["CC6.1"], "d")]},
        {"source": "admission", "actor": "dev", "subject": "apps/v1/Deployment/ns/bad2", "decision": "deny",
         "time": "2025-03-02T12:30:00Z",
         "results": [_r("POD-1", "fail", ["CC6.1"], "e"), _r("LOG-1", "fail", ["CC7.2"], "e")]},
        {"source": "admission", "actor": "dev", "subject": "apps/v1/Deployment/ns/meh", "decision": "warn",
         "time": "2025-03-02T13:00:00Z", "results": [_r("LOG-1", "fail", ["CC7.2"], "f")]},
        {"source": "admission", "actor": "dev", "subject": "apps/v1/Deployment/ns/ok", "decision": "allow",
         "time": "2025-03-02T14:00:00Z", "results": [_r("POD-1", "pass", ["CC6.1"], "g")]},
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-03T01:00:00Z",
         "pack_digest": "sha256:p2",
         "results": [_r("POD-1", "pass", ["CC6.1"], "a"),
                     _r("POD-1", "waived", ["CC6.1"], "b",
                        waiver={"owner": "alice", "expires": "2025-03-05", "reason": "migration"})]},
        {"source": "waiver", "actor": "alice", "subject": "waivers/POD-1/b", "time": "2025-03-03T02:00:00Z",
         "context": {"change": "added", "expires": "2025-03-05"}},
        {"source": "ci", "actor": "ci", "subject": "repo@abc", "decision": "fail", "time": "2025-03-04T10:00:00Z",
         "results": [_r("S3-1", "fail", ["CC6.1"], "aws_s3_bucket.x"), _r("S3-2", "unknown", ["CC6.1"], "y")]},
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-06T01:00:00Z",
         "results": [_r("POD-1", "pass", ["CC6.1"], "a"),
                     _r("POD-1", "waived", ["CC6.1"], "b",
                        waiver={"owner": "alice", "expires": "2025-03-05", "reason": "migration"})]},
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-10T23:59:59Z", "results": []},
        # After the period: must not count.
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-11T00:00:00Z",
         "results": [_r("POD-1", "fail", ["CC6.1"], "z")]},
    ]
    ledger.append(entries)
    return ledger


def test_report_numbers(synthetic: Ledger) -> None:
    report = build_report(synthetic, "2025-03-01", "2025-03-10", CONTROLS)
    assert report["period"] == {"from": "2025-03-01", "to": "2025-03-10", "days": 10,
                                "start": "2025-03-01T00:00:00.000000Z", "end": "2025-03-11T00:00:00.000000Z"}
    assert report["verification"]["ok"] is True and report["verification"]["records"] == 13
    totals = report["totals"]
    assert totals["records"] == 11
    assert totals["by_source"] == {"admission": 4, "audit": 5, "ci": 1, "waiver": 1}
    assert totals["decisions"] == {"admission:allow": 1, "admission:deny": 2, "admission:warn": 1, "ci:fail": 1}
    assert totals["pack_digests"] == {"sha256:p1": 2, "sha256:p2": 1}
    assert report["coverage"] == {"audit_days": 5, "gap_count": 5,
                                  "gap_days": ["2025-03-04", "2025-03-05", "2025-03-07", "2025-03-08",
                                               "2025-03-09"]}
    crit = {c["id"]: c for c in report["criteria"]}
    assert list(crit) == ["CC6.1", "CC7.2", "CC8.1"]

    cc61 = crit["CC6.1"]
    assert cc61["population"] == {"records": 8, "evaluations": 14, "resources": 8,
                                  "rules": ["LOG-1", "POD-1", "S3-1", "S3-2"]}
    # Runtime numbers come from the audit snapshots only, so compliance is computed from the same row's
    # passes and failures; the CI scan's fail and unknown are IaC, counted apart.
    assert (cc61["passes"], cc61["failures"], cc61["unknown"], cc61["waived"]) == (6, 1, 0, 2)
    assert cc61["compliance"] == 85.71 == round(100 * cc61["passes"] / (cc61["passes"] + cc61["failures"]), 2)
    assert cc61["iac"] == {"passes": 0, "failures": 1, "unknown": 1, "waived": 0, "compliance": 0.0}
    assert (cc61["denials"], cc61["warnings"]) == (2, 0)
    assert cc61["admission"] == {"requests": 3, "denials": 2, "warnings": 0, "admitted_with_failures": 0}
    assert cc61["days_with_evidence"] == 5
    assert cc61["waivers"] == [{
        "rule_id": "POD-1", "address": "b", "owner": "alice", "expires": "2025-03-05", "reason": "migration",
        "source": None, "ticket": None, "evaluations": 2, "first_seen": "2025-03-03T01:00:00.000000Z",
        "last_seen": "2025-03-06T01:00:00.000000Z", "expired": True, "used_after_expiry": True}]
    daily = {d["date"]: d for d in cc61["daily"]}
    assert len(daily) == 10
    assert daily["2025-03-01"] == {"date": "2025-03-01", "passes": 2, "failures": 1, "compliance": 66.67}
    assert daily["2025-03-02"]["compliance"] == 100.0  # the audit; admission does not count
    assert daily["2025-03-04"]["compliance"] is None  # the CI scan is not runtime evidence
    assert daily["2025-03-05"]["compliance"] is None

    cc72 = crit["CC7.2"]
    assert (cc72["passes"], cc72["failures"], cc72["denials"], cc72["warnings"]) == (1, 0, 1, 1)
    assert cc72["admission"]["admitted_with_failures"] == 1 and cc72["compliance"] == 100.0
    cc81 = crit["CC8.1"]
    assert cc81["population"]["evaluations"] == 0 and cc81["compliance"] is None
    assert report["waiver_changes"][0]["actor"] == "alice"
    overall = {d["date"]: d for d in report["daily"]}
    assert overall["2025-03-01"]["passes"] == 2 and overall["2025-03-01"]["failures"] == 1  # LOG-1 once


def test_report_default_period_and_unknown_criteria(synthetic: Ledger) -> None:
    report = build_report(synthetic, None, None, {"CC8.1": ("Change management", "")}, verify=False)
    assert report["verification"] is None
    assert report["period"]["from"] == "2025-02-28" and report["period"]["to"] == "2025-03-11"
    ids = [c["id"] for c in report["criteria"]]
    assert ids == ["CC6.1", "CC7.2", "CC8.1"]
    assert report["criteria"][0]["name"] == "(not in the catalog)"


def test_report_shows_a_broken_chain(synthetic: Ledger, raw_db: Any) -> None:
    raw_db.execute("DELETE FROM evidence_records WHERE seq = 4")
    report = build_report(synthetic, "2025-03-01", "2025-03-10", CONTROLS)
    assert report["verification"]["ok"] is False and report["verification"]["first_bad_seq"] == 4
    assert "chain BROKEN" in render_html(report)


def test_html_is_self_contained(synthetic: Ledger, tmp_path: Path) -> None:
    report = build_report(synthetic, "2025-03-01", "2025-03-10", CONTROLS)
    page = render_html(report)
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert '<table class="criteria">' in page
    for cid in CONTROLS:
        assert f'id="crit-{cid}"' in page
    assert page.count("<svg") >= 3  # the overall chart and one per criterion with evaluations
    assert "<polyline" in page and "no audit snapshot" in page
    assert "2025-03-07 – 2025-03-09 (3 days)" in page
    assert "used after expiry" in page and "chain consistent, not signed and not anchored" in page
    # No script, no external resource: renders offline.
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page and "url(" not in page
    # Values are escaped.
    assert "<b>11</b>" in page


def test_html_escapes_hostile_values(ledger: Ledger) -> None:
    ledger.append([{"source": "audit", "actor": "<script>alert(1)</script>", "subject": "s",
                    "time": "2025-01-01T00:00:00Z",
                    "results": [_r("<img src=x>", "pass", ["CC<1>"], "\"><script>")]}])
    page = render_html(build_report(ledger, "2025-01-01", "2025-01-01", {}))
    assert "<script" not in page and "<img" not in page
    assert "&lt;img src=x&gt;" in page


def test_would_have_been_denied_per_rule_from_a_staged_rollout(ledger: Ledger):
    """Warn-mode admissions list the rules enforcing would have applied; the last audit snapshot
    says which objects fail a deny-level rule now (excluded namespaces counted apart)."""
    def admitted(name: str, ns: str, would: list[str], dry: bool = False) -> dict[str, Any]:
        return {"source": "admission", "actor": "helm", "subject": f"apps/v1/Deployment/{ns}/{name}",
                "decision": "warn", "time": "2025-03-02T10:00:00Z",
                "results": [_r(r, "fail", ["CC6.1"], f"apps/v1/Deployment/{ns}/{name}") for r in would],
                "context": {"mode": "warn", "would_deny": would, "namespace": ns, "dry_run": dry}}
    audit_ctx = {"mode": "warn", "deny_rules": ["POD-1", "POD-8"], "excluded_namespaces": ["kube-system"]}
    ledger.append([
        admitted("a", "shop", ["POD-1", "POD-8"]), admitted("a", "shop", ["POD-1"], dry=True),
        admitted("b", "ops", ["POD-1"]),
        {"source": "admission", "actor": "dev", "subject": "apps/v1/Deployment/shop/c", "decision": "deny",
         "time": "2025-03-02T11:00:00Z", "results": [_r("POD-1", "fail", ["CC6.1"], "c")],
         "context": {"namespace": "shop"}},  # enforced already: not a "would"
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-02T12:00:00Z", "context": audit_ctx,
         "results": [_r("POD-1", "fail", ["CC6.1"], "old")]},
        {"source": "audit", "actor": "op", "subject": "cluster", "time": "2025-03-03T12:00:00Z", "context": audit_ctx,
         "results": [_r("POD-1", "fail", ["CC6.1"], "apps/v1/Deployment/shop/a"),
                     _r("POD-1", "fail", ["CC6.1"], "apps/v1/DaemonSet/kube-system/ds"),
                     _r("POD-1", "waived", ["CC6.1"], "apps/v1/Deployment/ops/b"),
                     _r("LOG-1", "fail", ["CC7.2"], "apps/v1/Deployment/shop/a")]},  # not deny-level
    ])
    section = build_report(ledger, "2025-03-01", "2025-03-10", CONTROLS)["would_deny"]
    assert section["admission_modes"] == {"enforce": 1, "warn": 3}
    by_rule = {r["rule_id"]: r for r in section["rules"]}
    assert set(by_rule) == {"POD-1", "POD-8"}
    pod1 = by_rule["POD-1"]
    assert (pod1["requests"], pod1["dry_runs"], pod1["objects"], pod1["namespaces"]) == (3, 1, 2, ["ops", "shop"])
    assert (pod1["failing_now"], pod1["failing_in_excluded_namespaces"]) == (2, 1)  # the last snapshot only
    assert (by_rule["POD-8"]["requests"], by_rule["POD-8"]["failing_now"]) == (1, 0)
    html_text = render_html(build_report(ledger, "2025-03-01", "2025-03-10", CONTROLS))
    assert "Would have been denied (staged rollout)" in html_text and "<code>POD-8</code>" in html_text
