"""Each headline number is defined once: the HTML cards, report.json and the package's CSV files
agree, and they agree with a recount of the records and register rows they stand for."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from soc2infra.cli import cli, main
from soc2infra.evidence import Ledger, build_report, render_html
from soc2infra.evidence.metrics import HEADLINE_KEYS
from soc2infra.evidence.package import build_package
from soc2infra.evidence.population import Population
from tests.evidence.test_evidence_register import POD, WEB, _admission, _audit, _r, scene

CONTROLS = {"CC6.1": ("Logical access", "Access is restricted."), "CC7.2": ("Monitoring", "Anomalies."),
            "CC8.1": ("Change management", "Changes are authorised.")}
RULES = {"CC6.1": ["POD-1", "POD-2", "POD-3"], "CC7.2": ["LOG-1"], "CC8.1": []}


def ledger_for_agreement(ledger: Ledger) -> None:
    """The register scene plus a request denied for two criteria (the old denials card counted it
    twice) and an IaC scan that fails (it must not move runtime compliance)."""
    two = [{**_r("POD-3", "fail", "apps/v1/Deployment/shop/x"), "controls": ["CC6.1", "CC7.2"]},
           {**_r("LOG-1", "fail", "apps/v1/Deployment/shop/x"), "controls": ["CC7.2"]}]
    ledger.append([*scene(), _admission("2025-03-09T10:00:00Z", "deny", two),
                   {"source": "cli", "actor": "dev", "subject": "repo@dirty", "decision": "fail",
                    "time": "2025-03-09T11:00:00Z",
                    "results": [_r("POD-1", "fail", "k8s/api.yaml"), _r("POD-2", "pass", "k8s/api.yaml")]}])


class _Cards(HTMLParser):
    """data-metric → the card's number, and each table (by class) as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._metric: str | None = None
        self._in_b = False
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("data-metric"):
            self._metric = a["data-metric"]
        elif tag == "b" and self._metric:
            self._in_b = True
        elif tag == "table":
            self._table = a.get("class") or ""
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "b" and self._in_b:
            self._in_b, self._metric = False, None
        elif tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in_b and self._metric:
            self.cards[self._metric] = data.strip()
        if self._cell is not None:
            self._cell.append(data)


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_headline_html_json_csv_agree_on_a_real_ledger(ledger: Ledger, tmp_path: Path) -> None:
    ledger_for_agreement(ledger)
    out = tmp_path / "pkg.zip"
    build_package(ledger, "2025-03-01", "2025-03-10", out, CONTROLS, RULES, prior=("2025-02-19", "2025-02-28"))
    with zipfile.ZipFile(out) as zf:
        report = json.loads(zf.read("report.json"))
        page = zf.read("report.html").decode("utf-8")
        summary = {r["metric"]: r["value"] for r in _csv(zf.read("summary.csv"))}
        criteria_csv = {r["criterion"]: r for r in _csv(zf.read("criteria.csv"))}
        deviations = _csv(zf.read("deviations.csv"))
        waivers = _csv(zf.read("waivers.csv"))
        matrix = {r["criterion"]: r for r in _csv(zf.read("control-matrix.csv"))}
        records = [json.loads(line) for line in zf.read("records.jsonl").decode().splitlines()]
        populations = {cid: _csv(zf.read(f"populations/{cid}.csv")) for cid in CONTROLS}
        names = set(zf.namelist())
    assert {"summary.csv", "criteria.csv", "deviations.csv", "waivers.csv", "prior-period.csv"} <= names
    parsed = _Cards()
    parsed.feed(page)
    head = report["headline"]
    assert list(head) == list(HEADLINE_KEYS) == list(summary) == list(parsed.cards)
    for key in HEADLINE_KEYS:  # the same text everywhere (n/a, integers, two-decimal percentages)
        assert parsed.cards[key] == summary[key], key

    # ... and it is what the rows it stands for add up to.
    assert summary["records"] == str(len(records)) == str(report["population"]["records_in_population"])
    admissions = [r for r in records if r["source"] == "admission"]
    assert head["admission_requests"] == len(admissions) == 4  # the dry run is left out
    assert head["denied_requests"] == sum(r["decision"] == "deny" for r in admissions) == 2
    # The per-criterion denials add up to 3 (the last request touches CC6.1 and CC7.2): not the headline.
    assert sum(c["denials"] for c in report["criteria"]) == 3
    assert head["admitted_with_failures"] == 1  # the warned LOG-1 request
    assert head["audit_snapshots"] == sum(r["source"] == "audit" for r in records)
    assert head["deviations"] == len(deviations) == len(report["deviations"]) == 4
    assert head["deviations_open"] == sum(r["status"] in ("open", "waived") for r in deviations) == 2
    assert head["deviations_waived"] == sum(r["status"] == "waived" for r in deviations) == 1
    assert head["deviations_remediated"] == sum(r["status"] == "remediated" for r in deviations) == 2
    assert head["waivers"] == len(waivers) and head["waivers_active"] == sum(
        w["status"] == "active" for w in waivers) == 1
    runtime = [x for r in records if r["source"] == "audit" for x in r["results"]]
    passes, fails = sum(x["status"] == "pass" for x in runtime), sum(x["status"] == "fail" for x in runtime)
    assert head["runtime_compliance"] == round(100 * passes / (passes + fails), 2)
    assert head["iac_compliance"] == 33.33  # the two scans (1 pass, 2 failures), apart

    # Per criterion: criteria.csv, report.json and the HTML table hold the same numbers, and
    # compliance is computed from the passes and failures of the same row.
    html_rows = {row[0]: row for row in parsed.tables["criteria"] if row}
    for c in report["criteria"]:
        row = criteria_csv[c["id"]]
        assert (row["passes"], row["failures"], row["compliance"]) == (
            str(c["passes"]), str(c["failures"]), "" if c["compliance"] is None else str(c["compliance"]))
        if c["compliance"] is not None:
            assert c["compliance"] == round(100 * c["passes"] / (c["passes"] + c["failures"]), 2)
        assert row["denied_requests"] == str(c["denials"]) == html_rows[c["id"]][10]
        assert (html_rows[c["id"]][5], html_rows[c["id"]][6]) == (str(c["passes"]), str(c["failures"]))
        assert row["deviations_open"] == str(c["deviations"]["open"]) == html_rows[c["id"]][12]
        # the control matrix's rows are the population file's rows
        assert matrix[c["id"]]["population_rows"] == str(len(populations[c["id"]])) == row[
            "population_evaluations"]
    # The deviation and waiver tables render every register row.
    assert len([r for r in parsed.tables["deviations"] if r]) == len(deviations)
    assert len([r for r in parsed.tables["waivers"] if r]) == len(waivers)
    assert {r[1] for r in parsed.tables["deviations"] if r} == {POD, WEB}


def test_iac_scans_never_move_runtime_compliance(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append([_audit("2025-03-01T01:00:00Z", [_r("POD-1", "pass", POD), _r("POD-2", "fail", WEB)])])
    before = build_report(ledger, "2025-03-01", "2025-03-02", CONTROLS, verify=False)
    ledger.append([{"source": "ci", "actor": "ci", "subject": "repo@abc", "decision": "fail",
                    "time": "2025-03-01T05:00:00Z",
                    "results": [_r("POD-1", "fail", f"k8s/{i}.yaml") for i in range(50)]}])
    after = build_report(ledger, "2025-03-01", "2025-03-02", CONTROLS, verify=False)
    cc61 = {c["id"]: c for c in after["criteria"]}["CC6.1"]
    assert after["headline"]["runtime_compliance"] == before["headline"]["runtime_compliance"] == 50.0
    assert (cc61["passes"], cc61["failures"], cc61["compliance"]) == (1, 1, 50.0)
    assert cc61["iac"] == {"passes": 0, "failures": 50, "unknown": 0, "waived": 0, "compliance": 0.0}
    assert after["iac"]["records"] == 1 and after["headline"]["iac_compliance"] == 0.0
    assert after["deviations"] == before["deviations"]  # a scan opens no runtime deviation
    page = render_html(after)
    assert 'id="iac"' in page and "1 scan record(s) (ci: 1)" in page
    only_scans = build_report(ledger, "2025-03-01", "2025-03-02", CONTROLS, verify=False,
                              population=Population(sources=("scan",)))
    assert only_scans["headline"]["runtime_compliance"] is None


def test_prior_period_comparison(ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """February: 1 failure of 4; March: 3 of 4 and a remediation. Deltas per criterion."""
    feb = [_audit("2025-02-20T01:00:00Z", [_r("POD-1", "pass", f"a{i}") for i in range(3)] +
                  [_r("POD-1", "fail", "a3")])]
    mar = [_audit("2025-03-01T01:00:00Z", [_r("POD-1", "pass", "a0")] +
                  [_r("POD-1", "fail", f"a{i}") for i in (1, 2, 3)]),
           _audit("2025-03-05T01:00:00Z", [_r("POD-1", "pass", f"a{i}") for i in range(4)])]
    ledger.append(feb + mar)
    res = CliRunner().invoke(cli, ["evidence", "report", ledger.url, "--from", "2025-03-01", "--to", "2025-03-10",
                                   "-o", str(tmp_path / "r.html"), "--json-output", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    prior = report["prior_period"]
    assert prior["period"] == {"from": "2025-02-19", "to": "2025-02-28", "days": 10}  # same length, before
    cc61 = {c["id"]: c for c in prior["criteria"]}["CC6.1"]
    assert cc61["failures"] == {"current": 3, "prior": 1, "delta": 2}
    assert cc61["compliance"] == {"current": 62.5, "prior": 75.0, "delta": -12.5}
    assert cc61["population"] == {"current": 2, "prior": 1, "delta": 1}
    assert cc61["deviations_opened"] == {"current": 3, "prior": 1, "delta": 2}
    assert cc61["deviations_remediated"] == {"current": 3, "prior": 0, "delta": 3}
    assert prior["headline"]["deviations_open"] == {"current": 0, "prior": 1, "delta": -1}
    page = (tmp_path / "r.html").read_text()
    assert '<table class="prior-headline">' in page
    assert 'id="prior-period"' in page and "62.5% <span" in page and "prior 75.0%, -12.5 pts" in page
    # explicit window, and none
    res = CliRunner().invoke(cli, ["evidence", "report", ledger.url, "--from", "2025-03-01", "--to", "2025-03-10",
                                   "--prior-from", "2025-02-01", "--prior-to", "2025-02-28", "--no-prior",
                                   "-o", str(tmp_path / "r2.html"), "--json-output", str(tmp_path / "r2.json")])
    assert res.exit_code == 0 and "prior_period" not in json.loads((tmp_path / "r2.json").read_text())
    code = main(["evidence", "report", ledger.url, "--from", "2025-03-01", "--to", "2025-03-10",
                 "--prior-from", "2025-02-01", "-o", str(tmp_path / "r3.html")])
    assert code == 2 and "give both --prior-from and --prior-to" in capsys.readouterr().err
