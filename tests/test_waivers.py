"""Waivers: the pure matcher, the waiver file's governance rules, inline waivers and their
carry-over from .tf files to plan JSON."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from soc2infra._cogs.model import Finding, Resource, Waiver
from soc2infra._core.pack import load_pack
from soc2infra._core.scan import scan
from soc2infra._core.waivers import (
    WaiverEntry,
    apply_inline_waivers,
    apply_waiver_entries,
    entry_status,
    find_waiver_file,
    inline_waiver_errors,
    load_waiver_file,
    match_waiver,
    parse_waiver_data,
)

POLICIES = Path(__file__).parent / "data" / "policies"
TODAY = date(2026, 6, 1)


def entry(rule: str = "TEST-STORE-001", resource: str = "aws_s3_bucket.a", expires: date | None = None,
          **kw: str) -> WaiverEntry:
    return WaiverEntry(rule=rule, resource=resource, reason=kw.pop("reason", "accepted"),
                       owner=kw.pop("owner", "alice"), expires=expires or date(2027, 1, 1),
                       location=kw.pop("location", f"w.yaml:{rule}:{resource}"), **kw)


def finding(rule_id: str = "TEST-STORE-001", address: str = "aws_s3_bucket.a",
            inline: tuple[tuple[str, str, int], ...] = (), kind: str = "terraform") -> Finding:
    res = Resource(kind=kind, type="aws_s3_bucket", address=address, attributes={}, file="main.tf", line=3,
                   inline_waivers=inline)
    return Finding(rule_id=rule_id, title="t", severity="high", category="encryption", controls=("CC6.1",),
                   message="m", remediation="r", resource=res)


# --- match_waiver: the pure function the operator will reuse --------------------------------------


def test_match_waiver_exact_and_none():
    waiver, status = match_waiver([entry()], "TEST-STORE-001", "aws_s3_bucket.a", TODAY)
    assert status == "active"
    assert waiver == Waiver(source="file", reason="accepted", owner="alice", expires="2027-01-01",
                            location="w.yaml:TEST-STORE-001:aws_s3_bucket.a")
    assert match_waiver([entry()], "TEST-STORE-002", "aws_s3_bucket.a", TODAY) == (None, "none")
    assert match_waiver([entry()], "TEST-STORE-001", "aws_s3_bucket.b", TODAY) == (None, "none")
    assert match_waiver([], "TEST-STORE-001", "aws_s3_bucket.a", TODAY) == (None, "none")


@pytest.mark.parametrize("rule, resource, address, matches", [
    ("TEST-STORE-*", "aws_s3_bucket.a", "aws_s3_bucket.a", True),
    ("TEST-*-001", "aws_s3_bucket.a", "aws_s3_bucket.a", True),
    ("TEST-STORE-00?", "aws_s3_bucket.a", "aws_s3_bucket.a", True),
    ("OTHER-*", "aws_s3_bucket.a", "aws_s3_bucket.a", False),
    # `*` crosses dots, so a module prefix covers everything inside it (nested modules too).
    ("*", "module.legacy.*", "module.legacy.module.inner.aws_s3_bucket.x[0]", True),
    ("*", "module.legacy.*", "module.legacy2.aws_s3_bucket.x", False),
    # Brackets are literal: an indexed address needs no escaping, and is not a character class.
    ("*", "aws_s3_bucket.x[0]", "aws_s3_bucket.x[0]", True),
    ("*", "aws_s3_bucket.x[0]", "aws_s3_bucket.x0", False),
    ("*", 'aws_s3_bucket.x["a"]', 'aws_s3_bucket.x["a"]', True),
    ("*", "aws_s3_bucket.x[*]", 'aws_s3_bucket.x["b"]', True),
    # Kubernetes addresses contain slashes.
    ("*", "apps/v1/Deployment/payments/*", "apps/v1/Deployment/payments/api", True),
    ("*", "apps/v1/Deployment/payments/*", "apps/v1/Deployment/billing/api", False),
])
def test_match_waiver_globs(rule, resource, address, matches):
    waiver, status = match_waiver([entry(rule, resource)], "TEST-STORE-001", address, TODAY)
    assert (status == "active") is matches
    assert (waiver is not None) is matches


def test_expiry_boundaries_and_warning_window():
    e = entry(expires=TODAY)
    assert entry_status(e, TODAY) == "expiring"  # valid through its date
    assert entry_status(e, TODAY + timedelta(days=1)) == "expired"
    far = entry(expires=TODAY + timedelta(days=15))
    assert entry_status(far, TODAY) == "active"
    assert entry_status(far, TODAY, warning_days=15) == "expiring"
    assert entry_status(entry(expires=TODAY + timedelta(days=14)), TODAY) == "expiring"
    assert entry_status(far, TODAY, warning_days=0) == "active"


def test_first_unexpired_match_wins_and_expired_only_is_reported():
    old = entry("TEST-*", expires=TODAY - timedelta(days=1), location="w:1")
    new = entry("TEST-STORE-001", expires=TODAY + timedelta(days=100), location="w:2")
    waiver, status = match_waiver([old, new], "TEST-STORE-001", "aws_s3_bucket.a", TODAY)
    assert (waiver.location, status) == ("w:2", "active")
    waiver, status = match_waiver([old], "TEST-STORE-001", "aws_s3_bucket.a", TODAY)
    assert (waiver.location, status) == ("w:1", "expired")
    assert waiver.expires == (TODAY - timedelta(days=1)).isoformat()


# --- the waiver file --------------------------------------------------------------------------------


GOOD = {"rule": "TEST-STORE-001", "resource": "aws_s3_bucket.a", "reason": "public website",
        "owner": "web-team", "ticket": "SEC-1", "expires": "2027-01-31"}


@pytest.mark.parametrize("missing", ["reason", "owner", "expires", "rule", "resource"])
def test_entry_without_required_field_is_rejected(missing):
    bad = {k: v for k, v in GOOD.items() if k != missing}
    entries, errors = parse_waiver_data({"waivers": [GOOD, bad]}, "w.yaml", {0: 2, 1: 8})
    assert len(entries) == 1  # the good entry still loads
    assert len(errors) == 1
    err = errors[0]
    assert (err.file, err.line) == ("w.yaml", 8)
    assert "waiver #2" in err.message and f"missing {missing!r}" in err.message


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_reason_or_owner_is_rejected(value):
    for key in ("reason", "owner"):
        _, errors = parse_waiver_data([{**GOOD, key: value}], "w.yaml")
        assert errors and f"missing {key!r}" in errors[0].message


@pytest.mark.parametrize("bad, message", [
    ({**GOOD, "expires": "next year"}, "ISO date"),
    ({**GOOD, "expires": "2027-02-30"}, "ISO date"),
    ({**GOOD, "expiry": "2027-01-01"}, "unknown field 'expiry'"),
    ("just a string", "must be a mapping"),
])
def test_malformed_entries(bad, message):
    entries, errors = parse_waiver_data({"waivers": [bad]}, "w.yaml")
    assert entries == []
    assert message in errors[0].message


def test_whole_file_shape_errors():
    assert "unknown top-level key 'rules'" in parse_waiver_data({"rules": []}, "w.yaml")[1][0].message
    assert "expected a list" in parse_waiver_data({"waivers": {"a": 1}}, "w.yaml")[1][0].message
    assert parse_waiver_data(None, "w.yaml") == ([], [])
    assert parse_waiver_data({"waivers": None}, "w.yaml") == ([], [])


def test_load_waiver_file_reads_dates_and_lines(tmp_path):
    path = tmp_path / ".soc2infra-waivers.yaml"
    path.write_text("""# accepted risks
waivers:
  - rule: TEST-STORE-001
    resource: aws_s3_bucket.site
    reason: static website, public by design
    owner: web-team@example.com
    ticket: SEC-42
    expires: 2027-03-31

  - rule: TEST-STORE-002
    resource: "*"
    owner: nobody
    expires: 2027-03-31
""", encoding="utf-8")
    entries, errors = load_waiver_file(path)
    assert entries == [WaiverEntry(rule="TEST-STORE-001", resource="aws_s3_bucket.site",
                                   reason="static website, public by design", source="file",
                                   owner="web-team@example.com", ticket="SEC-42", expires=date(2027, 3, 31),
                                   location=f"{path}:3")]
    assert len(errors) == 1 and errors[0].line == 10 and "missing 'reason'" in errors[0].message


def test_load_waiver_file_invalid_yaml_is_located(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("waivers:\n  - rule: [unclosed\n", encoding="utf-8")
    entries, errors = load_waiver_file(path)
    assert entries == [] and errors[0].file == str(path) and errors[0].line and "invalid YAML" in errors[0].message


def test_find_waiver_file_in_priority_order(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".soc2infra-waivers.yaml").write_text("waivers: []\n")
    (tmp_path / ".soc2infra-waivers.yml").write_text("waivers: []\n")
    assert find_waiver_file([tmp_path / "a", tmp_path / "b", tmp_path]) == tmp_path / "b" / ".soc2infra-waivers.yaml"
    assert find_waiver_file([tmp_path / "a", tmp_path]) == tmp_path / ".soc2infra-waivers.yml"
    assert find_waiver_file([tmp_path / "a"]) is None


# --- applying waivers to findings ----------------------------------------------------------------


def test_apply_entries_suppresses_with_the_waiver_that_applied():
    f, other = finding(), finding(address="aws_s3_bucket.b")
    warnings = apply_waiver_entries([f, other], [entry(ticket="SEC-1")], TODAY)
    assert warnings == []
    assert f.suppressed and f.waiver == Waiver(source="file", reason="accepted", owner="alice", ticket="SEC-1",
                                               expires="2027-01-01",
                                               location="w.yaml:TEST-STORE-001:aws_s3_bucket.a")
    assert f.to_dict()["suppressed"] is True and f.to_dict()["waiver"]["owner"] == "alice"
    assert not other.suppressed and other.waiver is None


def test_expired_waiver_stops_suppressing_and_is_reported():
    f = finding()
    stale = entry(expires=TODAY - timedelta(days=3), location="w.yaml:7")
    unused = entry(resource="aws_s3_bucket.gone", expires=TODAY - timedelta(days=1), location="w.yaml:14")
    warnings = apply_waiver_entries([f], [stale, unused], TODAY)
    assert not f.suppressed and f.waiver is None
    assert f.details["expired_waiver"]["expires"] == "2026-05-29"
    assert len(warnings) == 2
    assert warnings[0].startswith("w.yaml:7:") and "expired on 2026-05-29" in warnings[0]
    assert "no longer suppressed: TEST-STORE-001 on aws_s3_bucket.a" in warnings[0]
    assert warnings[1].startswith("w.yaml:14:") and "matches no finding" in warnings[1]


def test_waiver_due_soon_suppresses_and_warns_once():
    findings = [finding(), finding(address="aws_s3_bucket.b")]
    soon = entry(resource="aws_s3_bucket.*", expires=TODAY + timedelta(days=3), location="w.yaml:2")
    warnings = apply_waiver_entries(findings, [soon], TODAY)
    assert all(f.suppressed for f in findings)
    assert warnings == ["w.yaml:2: waiver for TEST-STORE-001 on aws_s3_bucket.* (owner alice) expires on "
                        "2026-06-04 (in 3 days); renew it or fix the finding"]
    assert apply_waiver_entries([finding()], [soon], TODAY, warning_days=2) == []


def test_inline_waiver_wins_over_file_and_is_not_overwritten():
    f = finding(inline=(("TEST-STORE-001", "inline reason", 2),))
    assert apply_inline_waivers([f]) == []
    apply_waiver_entries([f], [entry()], TODAY)
    assert f.waiver == Waiver(source="inline", reason="inline reason", location="main.tf:2")


def test_inline_waiver_without_reason_is_ignored_with_a_warning():
    f = finding(inline=(("TEST-STORE-001", "", 5),))
    assert apply_inline_waivers([f]) == ["main.tf:5: inline waiver for TEST-STORE-001 has no reason and is ignored"]
    assert not f.suppressed


def test_inline_waiver_wildcards_suppress_nothing_and_are_errors():
    star, other = finding(inline=(("*", "sandbox", 1),)), finding(inline=(("TEST-STORE-002", "x", 1),))
    prefix = finding(inline=(("TEST-STORE-*", "x", 3),))
    apply_inline_waivers([star, other, prefix])
    assert not star.suppressed and not other.suppressed and not prefix.suppressed
    errors = inline_waiver_errors([star.resource, prefix.resource])
    assert [(e.file, e.line) for e in errors] == [("main.tf", 1), ("main.tf", 3)]
    assert "must name one rule id" in errors[0].message


def test_annotation_waiver_on_kubernetes_object():
    # The Kubernetes source records annotation waivers with line 0 (no comment line).
    f = finding(kind="kubernetes", address="apps/v1/Deployment/pay/api", inline=(("TEST-STORE-001", "legacy", 0),))
    apply_inline_waivers([f])
    assert f.suppressed and f.waiver.source == "annotation"


# --- through the real sources -----------------------------------------------------------------------


TF = '''
# soc2infra:ignore TEST-STORE-001 public website, nothing secret
resource "aws_s3_bucket" "site" {
  logging = true
}

resource "aws_s3_bucket" "data" {
  # soc2infra:ignore TEST-STORE-002
  encrypted = true
}
'''


def _pack():
    return load_pack([POLICIES], builtin=False)


def test_inline_waivers_from_hcl(write_tree):
    root = write_tree({"main.tf": TF})
    result = scan([str(root)], _pack())
    by = {(f.rule_id, f.resource.address): f for f in result.findings}
    site = by[("TEST-STORE-001", "aws_s3_bucket.site")]
    assert site.suppressed and site.waiver == Waiver(source="inline", reason="public website, nothing secret",
                                                     location=f"{site.resource.file}:2")
    data = by[("TEST-STORE-002", "aws_s3_bucket.data")]
    assert not data.suppressed  # no reason given: rejected
    assert any("has no reason" in w for w in result.warnings)


def _plan(*addresses: str) -> dict:
    return {
        "format_version": "1.2", "terraform_version": "1.9.5",
        "planned_values": {"root_module": {"resources": [
            {"address": a, "mode": "managed", "type": "aws_s3_bucket", "name": a.split(".")[-1],
             "values": {"logging": True}} for a in addresses]}},
        "resource_changes": [{"address": a, "change": {"actions": ["create"], "after_unknown": {}}}
                             for a in addresses],
    }


def test_inline_waivers_carry_over_to_plan_json(write_tree):
    root = write_tree({"infra/main.tf": TF,
                       "infra/plan.json": json.dumps(_plan("aws_s3_bucket.site", "aws_s3_bucket.data"))})
    result = scan([str(root / "infra" / "plan.json")], _pack(), None)
    by = {(f.rule_id, f.resource.address): f for f in result.findings}
    site = by[("TEST-STORE-001", "aws_s3_bucket.site")]
    assert site.suppressed
    assert site.waiver.source == "inline" and site.waiver.reason == "public website, nothing secret"
    assert site.resource.file.endswith("main.tf") and site.resource.line == 3  # points at the .tf block
    assert site.resource.meta["plan_file"].endswith("plan.json")
    assert not by[("TEST-STORE-001", "aws_s3_bucket.data")].suppressed


def test_plan_without_config_beside_it_has_no_inline_waivers(write_tree):
    root = write_tree({"main.tf": TF, "plans/plan.json": json.dumps(_plan("aws_s3_bucket.site"))})
    result = scan([str(root / "plans" / "plan.json")], _pack())
    assert [f.suppressed for f in result.findings if f.rule_id == "TEST-STORE-001"] == [False]
