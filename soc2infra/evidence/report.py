"""Per-criterion SOC 2 evidence report for a period: JSON numbers and a self-contained HTML page.

For each Trust Services Criterion the report counts, over the records of ``[from, to]``:

- **population**: records and evaluations (one rule on one address) touching a rule mapped to
  the criterion, and the distinct resources and rules involved — what an auditor samples from;
  every ``audit`` snapshot record also counts for CC4.1 and CC7.1 (``audit_snapshots``): the
  snapshot itself shows the detective control ran, whatever rules it held;
- **passes**, **failures**, **unknown** and **waived** evaluations. A failed evaluation in an
  admission request that was *denied* is not a failure that got through: it is counted under
  **denials** (evidence that a preventive control operated); failures from audits and scans, and
  from admission requests that were allowed or only warned about, are **failures**;
- **warnings**: admission requests let through with a warning;
- **waivers** in force (rule, resource, owner, expiry, whether expired by the period's end);
- **compliance %** = passes / (passes + failures) over the *state* sources (audit snapshots and
  scans; admission is excluded because a denied object never reached the cluster), overall and
  per day, drawn as an inline SVG chart.

**Coverage gaps** are the days of the period with no ``audit`` snapshot record: days on which
the detective control left no evidence of having run.

The HTML is one file with inline CSS and SVG — no script, no font, no network — so it renders the
same offline, in a headless browser or printed to PDF.

Why one module of about 850 lines: the tallies and the HTML that shows them change together
(a new column is a new tally and a new cell); half of it is the page's markup.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from soc2infra._cogs.model import control_sort_key
from soc2infra.evidence.compare import compare
from soc2infra.evidence.control_file import ControlSettings, control_matrix
from soc2infra.evidence.ledger import Ledger, open_ledger, time_bounds
from soc2infra.evidence.metrics import HEADLINE, compute_headline, format_value, percent
from soc2infra.evidence.population import Population, PopulationTally, describe
from soc2infra.evidence.records import SCAN_SOURCES, now, parse_time
from soc2infra.evidence.register import RegisterBuilder, period_end
from soc2infra.evidence.rollout import RolloutTally
from soc2infra.evidence.verify import KeySpec, verify_ledger

REPORT_SCHEMA = "soc2infra.evidence-report/1"
# Runtime compliance is the state of the cluster: audit snapshots only. Admission is excluded (a
# denied object never reached the cluster) and IaC scans are reported apart (IAC_SOURCES): code in
# a repository is not the running system.
STATE_SOURCES = frozenset({"audit"})
IAC_SOURCES = frozenset(SCAN_SOURCES)
HTML_REGISTER_ROWS = 500  # the full registers are in the CSV files; the page stays printable
# An audit snapshot is itself evidence that the detective control ran: configuration drift and
# deviations were looked for (CC7.1) and controls were monitored (CC4.1), whatever rules it held.
SNAPSHOT_CRITERIA: tuple[str, ...] = ("CC4.1", "CC7.1")

TimeBound = datetime | date | str | None
ControlInfo = tuple[str, str] | Mapping[str, str] | Any


def _control_text(info: ControlInfo) -> tuple[str, str]:
    """(name, intent) from a tuple, a mapping or an object with ``name``/``intent``."""
    if isinstance(info, tuple | list):
        return (str(info[0]) if info else "", str(info[1]) if len(info) > 1 else "")
    if isinstance(info, Mapping):
        return str(info.get("name", "")), str(info.get("intent", ""))
    return str(getattr(info, "name", "")), str(getattr(info, "intent", ""))


@dataclass(slots=True)
class _Tally:
    records: int = 0
    evaluations: int = 0
    passes: int = 0  # runtime (audit snapshot) evaluations, as are failures/unknown/waived
    failures: int = 0
    unknown: int = 0
    waived: int = 0
    requests: int = 0  # admission requests that evaluated a rule of the criterion
    denials: int = 0  # ... denied with a failed rule of the criterion
    warnings: int = 0  # ... let through with a warning
    admitted_failures: int = 0  # ... let through (allowed or warned) with a failed rule
    snapshots: int = 0  # audit snapshot records (SNAPSHOT_CRITERIA only)
    iac: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # scan pass, fail, unknown, waived
    resources: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    days: set[str] = field(default_factory=set)
    daily: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    waivers: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)


_pct = percent


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)] if last >= first else []


def build_report(ledger: Ledger | str | Path, start: TimeBound, end: TimeBound,
                 controls: Mapping[str, ControlInfo], *, verify: bool = True,
                 public_key: KeySpec = None, expect_head: str | None = None,
                 population: Population | None = None,
                 rules_by_control: Mapping[str, Sequence[str]] | None = None,
                 control_settings: Mapping[str, ControlSettings] | None = None,
                 prior: tuple[TimeBound, TimeBound] | None = None) -> dict[str, Any]:
    """The JSON report of the records with time in the period (see the module docstring).

    *start*/*end*: dates (``end`` included), ISO strings or datetimes with a zone (``end``
    excluded); None takes the first/last record's day. *controls* maps criterion id to
    ``(name, intent)`` (a mapping or an object with those attributes works too); every catalog
    criterion appears, with a zero population when nothing touched it — a gap to explain.
    With *verify* the whole ledger is verified first and the result included. *population*
    filters the records counted (default: every source, dry-run admission requests left out);
    the report's ``population`` section states it, with the seq range and what was left out.
    *rules_by_control* (criterion → rule ids of the pack) and *control_settings* (the user's
    control file) make the ``control_matrix``; *prior* (start, end) adds the ``prior_period``
    comparison, over the same population.
    """
    own = not isinstance(ledger, Ledger)
    led = open_ledger(ledger, create=False) if not isinstance(ledger, Ledger) else ledger
    pop = population or Population()
    try:
        report = _build(led, start, end, controls, verify, public_key, expect_head, pop)
        report["control_matrix"] = control_matrix(report["criteria"], rules_by_control or {},
                                                  control_settings or {})
        if prior is not None:
            before = _build(led, prior[0], prior[1], controls, False, None, None, pop)
            report["prior_period"] = compare(report, before)
        return report
    finally:
        if own:
            led.close()


def _build(ledger: Ledger, start: TimeBound, end: TimeBound, controls: Mapping[str, ControlInfo],
           verify: bool, public_key: KeySpec, expect_head: str | None,
           population: Population) -> dict[str, Any]:
    lo, hi = time_bounds(start, end)
    tally = PopulationTally(population)
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    by_source: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    digests: Counter[str] = Counter()
    audit_days: set[str] = set()
    waiver_changes: list[dict[str, Any]] = []
    evaluations = 0
    admitted_with_failures = 0
    skipped_requests = 0
    overall: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # runtime, each evaluation once
    iac_overall = [0, 0, 0, 0]  # pass, fail, unknown, waived over the scans
    iac_records: Counter[str] = Counter()
    first_day = last_day = None
    rollout = RolloutTally()
    register = RegisterBuilder()
    snapshot_criteria = [cid for cid in SNAPSHOT_CRITERIA if cid in controls]  # the catalog's only
    for record in ledger.iter(lo, hi):
        kept = tally.keep(record)
        if kept or population.excludes(record) == "dry_run":
            rollout.add(record)  # the rollout section counts dry runs apart, so it sees them all
        if not kept:
            continue
        register.add(record)
        day = record["time"][:10]
        first_day = first_day or day
        last_day = day
        source = record["source"]
        by_source[source] += 1
        if record.get("decision"):
            decisions[f"{source}:{record['decision']}"] += 1
        if record.get("pack_digest"):
            digests[record["pack_digest"]] += 1
        if source == "audit":
            audit_days.add(day)
        if source == "waiver":
            waiver_changes.append({k: record.get(k) for k in ("seq", "time", "actor", "subject",
                                                              "decision", "context")})
        admission = source == "admission"
        if admission and isinstance(record.get("context"), dict) \
                and record["context"].get("event") == "skipped-requests":
            skipped_requests += int(record["context"].get("total") or 0)
        denied = admission and record.get("decision") == "deny"
        warned = admission and record.get("decision") == "warn"
        state = source in STATE_SOURCES
        iac = source in IAC_SOURCES
        if iac:
            iac_records[source] += 1
        touched: set[str] = set()
        failed_in: set[str] = set()
        any_failed = False
        for result in record.get("results") or ():
            evaluations += 1
            status = result.get("status")
            slot = _STATUS_SLOT.get(str(status))
            if state and slot is not None and slot < 2:
                overall[day][slot] += 1
            if iac and slot is not None:
                iac_overall[slot] += 1
            any_failed = any_failed or status == "fail"
            for cid in result.get("controls") or ():
                t = tallies[cid]
                touched.add(cid)
                t.evaluations += 1
                t.days.add(day)
                if result.get("address"):
                    t.resources.add(result["address"])
                t.rules.add(result.get("rule_id", ""))
                if status == "fail":
                    failed_in.add(cid)
                if iac:
                    if slot is not None:
                        t.iac[slot] += 1
                    continue
                if status == "waived":
                    _note_waiver(t, result, record["time"])
                if not state or slot is None:
                    continue
                if slot == 0:
                    t.passes += 1
                elif slot == 1:
                    t.failures += 1
                elif slot == 2:
                    t.unknown += 1
                else:
                    t.waived += 1
                if slot < 2:
                    t.daily[day][slot] += 1
        if source == "audit":
            for cid in snapshot_criteria:
                tallies[cid].snapshots += 1
                tallies[cid].days.add(day)
                touched.add(cid)
        for cid in touched:
            tallies[cid].records += 1
        if admission:
            admitted_with_failures += 1 if any_failed and not denied else 0
            for cid in touched:
                tallies[cid].requests += 1
            for cid in failed_in:
                if denied:
                    tallies[cid].denials += 1
                else:
                    tallies[cid].admitted_failures += 1
                    if warned:
                        tallies[cid].warnings += 1

    period_first = _day_of(lo) or (date.fromisoformat(first_day) if first_day else None)
    period_last = _last_day_of(hi) or (date.fromisoformat(last_day) if last_day else None)
    days = _days(period_first, period_last) if period_first and period_last else []
    day_strs = [d.isoformat() for d in days]
    gaps = [d for d in day_strs if d not in audit_days]
    as_of = period_end(hi, register.last_time)
    deviations = register.deviations(as_of)
    waivers = register.waivers(as_of)
    opened: Counter[str] = Counter()
    remediated: Counter[str] = Counter()
    still_open: Counter[str] = Counter()
    for dev in deviations:
        for cid in dev["controls"]:
            opened[cid] += 1
            remediated[cid] += dev["status"] == "remediated"
            still_open[cid] += dev["status"] != "remediated"

    criteria = []
    ids = sorted(set(controls) | set(tallies), key=control_sort_key)
    for cid in ids:
        t = tallies.get(cid) or _Tally()
        name, intent = _control_text(controls[cid]) if cid in controls else ("(not in the catalog)", "")
        criterion_waivers = sorted(t.waivers.values(), key=lambda w: (w["rule_id"], w["address"]))
        for w in criterion_waivers:
            expires = str(w["expires"] or "")
            w["expired"] = bool(expires and period_last and expires < period_last.isoformat())
            # A waiver still suppressing after its expiry date is an exception in itself.
            w["used_after_expiry"] = bool(expires and w["last_seen"][:10] > expires)
        criteria.append({
            "id": cid, "name": name, "intent": intent,
            "population": {"records": t.records, "evaluations": t.evaluations,
                           "resources": len(t.resources), "rules": sorted(t.rules)},
            "passes": t.passes, "failures": t.failures, "unknown": t.unknown, "waived": t.waived,
            "compliance": _pct(t.passes, t.failures),
            "admission": {"requests": t.requests, "denials": t.denials, "warnings": t.warnings,
                          "admitted_with_failures": t.admitted_failures},
            "denials": t.denials, "warnings": t.warnings, "audit_snapshots": t.snapshots,
            "iac": {"passes": t.iac[0], "failures": t.iac[1], "unknown": t.iac[2], "waived": t.iac[3],
                    "compliance": _pct(t.iac[0], t.iac[1])},
            "deviations": {"opened": opened[cid], "remediated": remediated[cid], "open": still_open[cid]},
            "days_with_evidence": len(t.days & set(day_strs)) if day_strs else len(t.days),
            "waivers": criterion_waivers,
            "daily": [{"date": d, "passes": t.daily[d][0] if d in t.daily else 0,
                       "failures": t.daily[d][1] if d in t.daily else 0,
                       "compliance": _pct(*t.daily[d]) if d in t.daily else None} for d in day_strs],
        })

    overall_daily = [{"date": d, "passes": overall[d][0] if d in overall else 0,
                      "failures": overall[d][1] if d in overall else 0,
                      "compliance": _pct(*overall[d]) if d in overall else None} for d in day_strs]
    runtime = (sum(v[0] for v in overall.values()), sum(v[1] for v in overall.values()))
    headline = compute_headline(
        records=tally.kept, by_source=by_source, decisions=decisions, skipped_requests=skipped_requests,
        admitted_with_failures=admitted_with_failures, coverage_gap_days=len(gaps), runtime=runtime,
        iac=(iac_overall[0], iac_overall[1]), deviations=deviations, waivers=waivers)

    verification = verify_ledger(ledger, public_key, expect_head).to_dict() if verify else None
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": now(),
        "ledger": ledger.url,
        "period": {"from": period_first.isoformat() if period_first else None,
                   "to": period_last.isoformat() if period_last else None,
                   "days": len(days), "start": lo, "end": hi},
        "verification": verification,
        "population": tally.to_dict(),
        "headline": headline,
        "totals": {"records": sum(by_source.values()), "evaluations": evaluations,
                   "by_source": dict(sorted(by_source.items())), "decisions": dict(sorted(decisions.items())),
                   "pack_digests": dict(sorted(digests.items()))},
        "coverage": {"audit_days": len(set(day_strs) & audit_days), "gap_days": gaps, "gap_count": len(gaps)},
        "daily": overall_daily,
        "criteria": criteria,
        "iac": {"records": sum(iac_records.values()), "by_source": dict(sorted(iac_records.items())),
                "passes": iac_overall[0], "failures": iac_overall[1], "unknown": iac_overall[2],
                "waived": iac_overall[3], "compliance": _pct(iac_overall[0], iac_overall[1])},
        "deviations": deviations,
        "waivers": waivers,
        "registers_as_of": as_of,
        "waiver_changes": waiver_changes,
        "would_deny": rollout.to_dict(),
    }


_STATUS_SLOT = {"pass": 0, "fail": 1, "unknown": 2, "waived": 3}


def _note_waiver(t: _Tally, result: Mapping[str, Any], time: str) -> None:
    """The criterion's waiver table: one row per (rule, address, owner, expiry) waived."""
    w = result.get("waiver") or {}
    key = (result.get("rule_id", ""), result.get("address", ""), str(w.get("owner") or ""),
           str(w.get("expires") or ""))
    entry = t.waivers.setdefault(key, {
        "rule_id": key[0], "address": key[1], "owner": w.get("owner"),
        "expires": w.get("expires"), "reason": w.get("reason"), "source": w.get("source"),
        "ticket": w.get("ticket"), "evaluations": 0, "first_seen": time, "last_seen": time})
    entry["evaluations"] += 1
    entry["last_seen"] = time


def _day_of(bound: str | None) -> date | None:
    return parse_time(bound).date() if bound else None


def _last_day_of(bound: str | None) -> date | None:
    # The end bound is exclusive: the last day is the one holding the instant just before it.
    return (parse_time(bound) - timedelta(microseconds=1)).date() if bound else None


# ----------------------------------------------------------------------------------------------
# HTML

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;
margin:0;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.muted{color:#59636e}.small{font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d1d9e0;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d1d9e0;font-size:13px}
.wide{overflow-x:auto}details summary{cursor:pointer}
table.deviations code,table.waivers code{word-break:normal;overflow-wrap:anywhere}
th,td{padding:5px 8px;border-bottom:1px solid #e5e9ee;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.bad{color:#cf222e}.warn{color:#9a6700}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px}
.badge.ok{background:#dafbe1}.badge.bad{background:#ffebe9}.badge.warn{background:#fff8c5}
section.crit{background:#fff;border:1px solid #d1d9e0;border-radius:6px;padding:12px 16px;margin:12px 0;
page-break-inside:avoid}
svg{display:block;max-width:100%;height:auto}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
@media print{body{background:#fff}main{padding:0}}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _ranges(days: list[str]) -> list[str]:
    """Collapse consecutive ISO days into ``first – last`` ranges."""
    out: list[str] = []
    run: list[date] = []
    for d in (date.fromisoformat(x) for x in days):
        if run and d - run[-1] == timedelta(days=1):
            run.append(d)
            continue
        if run:
            out.append(run[0].isoformat() if len(run) == 1 else f"{run[0]} – {run[-1]} ({len(run)} days)")
        run = [d]
    if run:
        out.append(run[0].isoformat() if len(run) == 1 else f"{run[0]} – {run[-1]} ({len(run)} days)")
    return out


def render_chart(daily: list[dict[str, Any]], gaps: set[str] | None = None, title: str = "",
                 width: int = 720, height: int = 180) -> str:
    """An inline SVG line chart of daily compliance % (days without evaluations leave a break;
    coverage-gap days are shaded). Pure SVG: no script, no external resources."""
    gaps = gaps or set()
    left, right, top, bottom = 40, 12, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(daily)
    step = plot_w / max(n - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if n > 1 else plot_w / 2)

    def y(pct: float) -> float:
        return top + plot_h * (1 - pct / 100.0)

    label = _e(title or "Compliance % per day")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{label}">', f"<title>{label}</title>",
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d1d9e0"/>']
    band = max(step, 2.0)
    for i, day in enumerate(daily):
        if day["date"] in gaps:
            parts.append(f'<rect x="{x(i) - band / 2:.1f}" y="{top}" width="{band:.1f}" height="{plot_h}" '
                         f'fill="#ffebe9" opacity="0.8"><title>{_e(day["date"])}: no audit snapshot'
                         "</title></rect>")
    for pct in (0, 50, 100):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(pct):.1f}" y2="{y(pct):.1f}" '
                     f'stroke="#e5e9ee"/><text x="{left - 6}" y="{y(pct) + 4:.1f}" font-size="11" '
                     f'text-anchor="end" fill="#59636e">{pct}%</text>')
    segments: list[list[str]] = [[]]
    dots = []
    for i, day in enumerate(daily):
        compliance = day.get("compliance")
        if compliance is None:
            segments.append([])
            continue
        share = float(compliance)
        segments[-1].append(f"{x(i):.1f},{y(share):.1f}")
        colour = "#1a7f37" if share >= 100 else "#cf222e" if share < 80 else "#9a6700"
        tip = f'{day["date"]}: {share:.1f}% ({day.get("passes", 0)} pass, {day.get("failures", 0)} fail)'
        dots.append(f'<circle cx="{x(i):.1f}" cy="{y(share):.1f}" r="2.5" fill="{colour}">'
                    f"<title>{_e(tip)}</title></circle>")
    for seg in segments:
        if len(seg) > 1:
            parts.append('<polyline fill="none" stroke="#0969da" stroke-width="1.5" '
                         f'points="{" ".join(seg)}"/>')
    parts.extend(dots)
    if daily:
        for i in sorted({0, n // 2, n - 1}):
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" font-size="11" text-anchor="{anchor}" '
                         f'fill="#59636e">{_e(daily[i]["date"])}</text>')
    else:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" '
                     'text-anchor="middle" fill="#59636e">no days in the period</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[tuple[str, bool]], rows: list[list[tuple[str, str]]], cls: str = "",
           wide: bool = False) -> str:
    """A table; *headers* are (label, numeric); each cell is (escaped html, extra class); a *wide*
    one scrolls sideways on a narrow screen instead of overflowing the page."""
    head = "".join(f'<th{" class=n" if num else ""}>{_e(label)}</th>' for label, num in headers)
    body = []
    for row in rows:
        cells = []
        for (cell, extra), (_, num) in zip(row, headers, strict=True):
            classes = " ".join(c for c in ("n" if num else "", extra) if c)
            cells.append(f'<td class="{classes}">{cell}</td>' if classes else f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{cls}"' if cls else ""
    table = f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="wide">{table}</div>' if wide else table


def _num(value: Any, extra: str = "") -> tuple[str, str]:
    return _e(value), extra


def _verification_html(verification: Mapping[str, Any] | None) -> list[str]:
    """The tamper-evidence badge: green only when the chain is intact, every record is signed and
    an external anchor confirms the head; amber when merely consistent; red when broken."""
    if verification is None:
        return ['<p><span class="badge warn">chain not verified</span> '
                "this report was built without verifying the ledger.</p>"]
    trust = f' <span class="small">Trust: {_e(verification.get("trust"))}.</span>'
    if verification.get("ok") and verification.get("fully_trusted"):
        out = [f'<p><span class="badge ok">chain verified, signed and anchored</span> '
               f'{_e(verification.get("records"))} records intact, {_e(verification.get("signatures"))} '
               f'signatures valid, head <code>{_e(verification.get("head"))}</code> confirmed by the anchor '
               f'<code>{_e(verification.get("anchor"))}</code>.{trust}</p>']
    elif verification.get("ok"):
        missing = [what for what, have in (("signed", verification.get("signed")),
                                           ("anchored", verification.get("anchored_through")
                                            and verification.get("head")
                                            and str(verification.get("head")).startswith(
                                                f'{verification.get("anchored_through")}:')))
                   if not have]
        out = [f'<p><span class="badge warn">chain consistent, not {" and not ".join(missing)}</span> '
               f'{_e(verification.get("records"))} records link correctly, head '
               f'<code>{_e(verification.get("head"))}</code>; without signatures and an anchor kept outside '
               f"the ledger, a rewrite with recomputed hashes would not show.{trust}</p>"]
    else:
        out = [f'<p><span class="badge bad">chain BROKEN</span> first bad record: seq '
               f'{_e(verification.get("first_bad_seq"))} — {_e(verification.get("reason"))}.{trust}</p>']
    out.extend(f'<p class="small muted">Note: {_e(note)}</p>' for note in verification.get("notes", []))
    return out


_CRITERIA_HEADERS = [("Criterion", False), ("Name", False), ("Records", True), ("Evaluations", True),
                     ("Resources", True), ("Passes", True), ("Failures", True), ("Unknown", True),
                     ("Waived", True), ("Compliance", True), ("Denied requests", True),
                     ("Admitted with a failure", True), ("Deviations open", True), ("IaC compliance", True),
                     ("Days with evidence", True)]

_HOW_TO_READ = (
    "Population: records and evaluations (one rule on one resource) touching a rule mapped to the "
    "criterion, from every source of the population; every audit snapshot also counts for CC4.1 and CC7.1 "
    "(the detective control ran). Passes, failures, unknown, waived and compliance are runtime numbers: "
    "the evaluations of the audit snapshots, so compliance = passes / (passes + failures) of the same row. "
    "Denied requests: admission requests denied with a failed rule mapped to the criterion (the preventive "
    "control operated). Admitted with a failure: admission requests allowed or warned about while such a "
    "rule failed. IaC scans (ci, pre-commit, cli) are counted apart, never in runtime compliance. "
    "Deviations: see the deviation register. Coverage gaps: days without an audit snapshot record. Every "
    "record is hash-chained: export the records with <code>soc2infra evidence export</code> to sample "
    "them and re-check any record's hash.")


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page for *report* (from :func:`build_report`)."""
    period = report.get("period", {})
    totals = report.get("totals", {})
    coverage = report.get("coverage", {})
    criteria = report.get("criteria", [])
    gaps = set(coverage.get("gap_days", []))
    title = f"SOC 2 evidence report {period.get('from') or ''} – {period.get('to') or ''}"
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="muted">Ledger <code>{_e(report.get("ledger"))}</code> · generated '
        f'{_e(report.get("generated_at"))} · period {_e(period.get("from"))} to {_e(period.get("to"))} '
        f'({_e(period.get("days"))} days, UTC)</div>',
    ]
    out.extend(_verification_html(report.get("verification")))
    if report.get("population"):
        out.append(f'<p class="small" id="population">Population: {_e(describe(report["population"]))}</p>')

    out.extend(_headline_html(report.get("headline") or {}))

    out.append("<h2>Per criterion</h2>")
    rows = []
    for c in criteria:
        pop = c["population"]
        rows.append([(f'<a href="#crit-{_e(c["id"])}">{_e(c["id"])}</a>', ""), (_e(c["name"]), ""),
                     _num(pop["records"]), _num(pop["evaluations"]), _num(pop["resources"]),
                     _num(c["passes"]), _num(c["failures"], "bad" if c["failures"] else ""),
                     _num(c["unknown"]), _num(c["waived"]), _num(_fmt_pct(c["compliance"])),
                     _num(c["denials"]), _num(c["admission"]["admitted_with_failures"]),
                     _num(c["deviations"]["open"]), _num(_fmt_pct(c["iac"]["compliance"])),
                     _num(c["days_with_evidence"])])
    out.append('<div class="wide">' + _table(_CRITERIA_HEADERS, rows, "criteria") + "</div>")

    out.append("<h2>Compliance over the period</h2>")
    out.append(render_chart(report.get("daily", []), gaps, "All criteria: compliance % per day"))
    out.append('<p class="small muted">Runtime compliance = passes / (passes + failures) in audit snapshots; '
               "shaded days have no audit snapshot.</p>")

    out.append("<h2>Coverage gaps</h2>")
    gap_list = coverage.get("gap_days", [])
    if gap_list:
        out.append(f"<p>{len(gap_list)} day(s) of the period have no <code>audit</code> snapshot record:</p>")
        out.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in _ranges(gap_list)) + "</ul>")
    else:
        out.append('<p class="ok">Every day of the period has at least one audit snapshot.</p>')

    out.extend(_deviations_html(report.get("deviations") or [], report.get("registers_as_of")))
    out.extend(_waivers_html(report.get("waivers") or []))
    out.extend(_prior_html(report.get("prior_period")))
    out.extend(_iac_html(report.get("iac") or {}, criteria))
    out.extend(_matrix_html(report.get("control_matrix") or []))

    out.append("<h2>Criteria in detail</h2>")
    for c in criteria:
        out.extend(_criterion_html(c, gaps))

    changes = report.get("waiver_changes", [])
    if changes:
        out.append("<h2>Waiver changes</h2>")
        out.append(_table(
            [("Seq", True), ("Time", False), ("Actor", False), ("Subject", False), ("Decision", False),
             ("Context", False)],
            [[_num(ch.get("seq")), _num(ch.get("time")), _num(ch.get("actor")),
              (f'<code>{_e(ch.get("subject"))}</code>', ""), _num(ch.get("decision")),
              (f'<code>{_e(json.dumps(ch.get("context") or {}, sort_keys=True))}</code>', "")]
             for ch in changes]))

    out.extend(_would_deny_html(report.get("would_deny") or {}))

    out.append("<h2>Sources and policy versions</h2>")
    out.append(_table([("Source", False), ("Records", True)],
                      [[_num(s), _num(n)] for s, n in totals.get("by_source", {}).items()]))
    if totals.get("pack_digests"):
        out.append(_table([("Policy pack digest", False), ("Records", True)],
                          [[(f"<code>{_e(d)}</code>", ""), _num(n)]
                           for d, n in totals["pack_digests"].items()]))
    out.append(f'<h2>How to read this report</h2><p class="small muted">{_HOW_TO_READ}</p>')
    out.append("</main></body></html>")
    return "\n".join(out)


def _would_deny_html(section: Mapping[str, Any]) -> list[str]:
    """Staged rollout: per rule, what admission would have denied (see evidence/rollout.py)."""
    rules = section.get("rules") or []
    if not rules:
        return []
    modes = ", ".join(f"{m}: {n}" for m, n in (section.get("admission_modes") or {}).items())
    return [
        "<h2>Would have been denied (staged rollout)</h2>",
        f'<p class="small muted">Admission requests by mode — {_e(modes or "none")}. Requests admitted only '
        "because admission.mode was warn or audit, and objects failing a deny-level rule in the last audit "
        "snapshot: what switching to enforce would reject.</p>",
        _table([("Rule", False), ("Requests", True), ("Objects", True), ("Namespaces", False),
                ("Failing now", True), ("…in excluded namespaces", True)],
               [[(f"<code>{_e(r['rule_id'])}</code>", ""), _num(r["requests"]), _num(r["objects"]),
                 _num(", ".join(r["namespaces"])), _num(r["failing_now"]),
                 _num(r["failing_in_excluded_namespaces"])] for r in rules]),
    ]


def _criterion_html(c: Mapping[str, Any], gaps: set[str]) -> list[str]:
    pop = c["population"]
    out = [f'<section class="crit" id="crit-{_e(c["id"])}"><h3>{_e(c["id"])} — {_e(c["name"])}</h3>']
    if c["intent"]:
        out.append(f'<p class="muted">{_e(c["intent"])}</p>')
    adm = c.get("admission") or {}
    out.append(f'<p>{pop["records"]} records, {pop["evaluations"]} evaluations of {len(pop["rules"])} '
               f'rule(s) on {pop["resources"]} resource(s). Runtime (audit snapshots): {c["passes"]} passed, '
               f'{c["failures"]} failed, {c["unknown"]} unknown, {c["waived"]} waived; compliance '
               f'{_fmt_pct(c["compliance"])}. Admission: {adm.get("requests", 0)} request(s), '
               f'{c["denials"]} denied, {adm.get("admitted_with_failures", 0)} admitted with a failure '
               f'({c["warnings"]} with a warning).</p>')
    if c.get("audit_snapshots"):
        out.append(f'<p>{_e(c["audit_snapshots"])} audit snapshot(s): the background audit (detective '
                   "control) ran and recorded the cluster's state.</p>")
    if pop["evaluations"] == 0 and not c.get("audit_snapshots"):
        out.append('<p class="warn">No evaluation touched this criterion in the period.</p>')
    else:
        out.append(render_chart(c["daily"], gaps, f"{c['id']}: compliance % per day"))
    if pop["rules"]:
        out.append(f'<p class="small muted">Rules: {", ".join(_e(r) for r in pop["rules"])}</p>')
    if c["waivers"]:
        rows = []
        for w in c["waivers"]:
            expires = _e(w.get("expires") or "no expiry")
            if w.get("used_after_expiry"):
                expires = f'<span class="bad">{expires} (used after expiry)</span>'
            elif w.get("expired"):
                expires = f'<span class="bad">{expires} (expired)</span>'
            rows.append([_num(w["rule_id"]), (f'<code>{_e(w["address"])}</code>', ""), _num(w.get("owner")),
                         (expires, ""), _num(w.get("reason")), _num(w["evaluations"])])
        out.append(_table([("Waived rule", False), ("Resource", False), ("Owner", False), ("Expires", False),
                           ("Reason", False), ("Evaluations", True)], rows))
    out.append("</section>")
    return out


# ----------------------------------------------------------------------------------------------
# Headline, registers, comparison, IaC and the control matrix (HTML)


def _headline_html(headline: Mapping[str, Any]) -> list[str]:
    """The cards: every headline number from ``report["headline"]`` (evidence/metrics.py), each
    with its definition as a tooltip and its key in ``data-metric`` (the CSV's ``metric``)."""
    cards = []
    for m in HEADLINE:
        if m.key not in headline:
            continue
        value = format_value(headline[m.key], m.key)
        cards.append(f'<div class="card" data-metric="{_e(m.key)}" title="{_e(m.definition)}">'
                     f'<b>{_e(value)}</b><span class="muted">{_e(m.label)}</span></div>')
    return ['<div class="cards" id="headline">' + "".join(cards) + "</div>"] if cards else []


def _capped(rows: list[Any], what: str, csv_name: str) -> tuple[list[Any], str]:
    if len(rows) <= HTML_REGISTER_ROWS:
        return rows, ""
    return rows[:HTML_REGISTER_ROWS], (f'<p class="small muted">The first {HTML_REGISTER_ROWS} of '
                                       f"{len(rows)} {what}; every row is in {csv_name}.</p>")


def _deviations_html(rows: list[Mapping[str, Any]], as_of: str | None) -> list[str]:
    out = ['<h2 id="deviation-register">Deviation register</h2>',
           f'<p class="small muted">One row per rule, resource and cluster that failed at runtime '
           f"(audit snapshots; admission requests let through with a failed rule), as of {_e(as_of)}. "
           "Remediated: the first passing or absent observation after the last failure. Export: "
           "<code>soc2infra evidence register --kind deviations</code> (deviations.csv in the package).</p>"]
    if not rows:
        out.append('<p class="ok">No runtime deviation in the period.</p>')
        return out
    shown, note = _capped(rows, "deviations", "deviations.csv")
    cells = []
    for r in shown:
        status_cls = {"open": "bad", "waived": "warn", "remediated": "ok"}.get(str(r["status"]), "")
        cells.append([(f'<code>{_e(r["rule_id"])}</code>', ""), (f'<code>{_e(r["resource"])}</code>', ""),
                      _num(r["cluster"]), _num(r["severity"]), _num(", ".join(r["controls"])),
                      (f'<span class="{status_cls}">{_e(r["status"])}</span>', ""),
                      *(_num(_minute(r[k])) for k in ("first_seen", "last_seen", "remediated_at")),
                      _num(r["days_open"]),
                      _num(r["waiver_id"]), _num(r["waiver_owner"]), _num(r["waiver_approver"]),
                      _num(r["waiver_expires"]), _num(r["ticket"])])
    out.append(_table([("Rule", False), ("Resource", False), ("Cluster", False), ("Severity", False),
                       ("Criteria", False), ("Status", False), ("First seen", False), ("Last seen", False),
                       ("Remediated at", False), ("Days open", True), ("Waiver", False), ("Owner", False),
                       ("Approver", False), ("Expires", False), ("Ticket", False)], cells, "deviations",
                      wide=True))
    if note:
        out.append(note)
    return out


def _waivers_html(rows: list[Mapping[str, Any]]) -> list[str]:
    out = ['<h2 id="waiver-register">Waiver register</h2>',
           '<p class="small muted">One row per waiver seen in the period (waiver changes, the waivers an '
           "audit snapshot lists, the waiver on each waived result). Approver: <code>approvedBy</code> when "
           "the waiver carries it. Export: <code>soc2infra evidence register --kind waivers</code> "
           "(waivers.csv in the package).</p>"]
    if not rows:
        out.append('<p class="muted">No waiver in the period.</p>')
        return out
    shown, note = _capped(rows, "waivers", "waivers.csv")
    cells = []
    for w in shown:
        status_cls = {"active": "ok", "expired": "bad", "revoked": "muted", "unusable": "bad"}.get(
            str(w["status"]), "")
        expires = _e(w["expires"] or "no expiry")
        if w.get("used_after_expiry"):
            expires = f'<span class="bad">{expires} (used after expiry)</span>'
        cells.append([_num(w["waiver_id"]), (f'<code>{_e(w["rule"])}</code>', ""), _num(w["resources"]),
                      _num(w["owner"]), _num(w["approver"]), _num(w["created_by"]),
                      _num(_minute(w["created_at"])),
                      (expires, ""), _num(w["ticket"]), _num(w["reason"]),
                      (f'<span class="{status_cls}">{_e(w["status"])}</span>', ""),
                      _num(_minute(w["revoked_at"])), _num(w["evaluations"])])
    out.append(_table([("Waiver", False), ("Rule", False), ("Resources", False), ("Owner", False),
                       ("Approver", False), ("Created by", False), ("Created at", False), ("Expires", False),
                       ("Ticket", False), ("Reason", False), ("Status", False), ("Revoked at", False),
                       ("Evaluations", True)], cells, "waivers", wide=True))
    if note:
        out.append(note)
    return out


def _minute(time: Any) -> str:
    """A record time to the minute for the page (``2025-03-01 01:00Z``); the CSV keeps it whole."""
    text = "" if time is None else str(time)
    return f"{text[:10]} {text[11:16]}Z" if len(text) >= 16 and text[10] == "T" else text


def _delta_cell(cell: Mapping[str, Any], pct: bool = False) -> tuple[str, str]:
    def show(v: Any) -> str:
        return _fmt_pct(v) if pct else ("—" if v is None else str(v))
    delta = cell.get("delta")
    sign = "" if delta is None else ("+" if delta > 0 else "")
    text = f'{show(cell.get("current"))} <span class="muted small">(prior {show(cell.get("prior"))}'
    text += f", {sign}{delta:g}{'' if not pct else ' pts'})</span>" if delta is not None else ")</span>"
    return text, ""


def _prior_html(section: Mapping[str, Any] | None) -> list[str]:
    if not section:
        return []
    period = section.get("period") or {}
    out = ['<h2 id="prior-period">Prior-period comparison</h2>',
           f'<p class="small muted">Prior period {_e(period.get("from"))} to {_e(period.get("to"))} '
           f'({_e(period.get("days"))} days), same population filters. Each cell: this period '
           "(prior, change).</p>"]
    head = section.get("headline") or {}
    if head:
        cells = [[(_e(m.label), ""), _delta_cell(head[m.key], pct=m.key.endswith("_compliance"))]
                 for m in HEADLINE if m.key in head]
        out.append(_table([("Headline", False), ("This period (prior, change)", False)], cells,
                          "prior-headline"))
    measures = ("population", "failures", "compliance", "deviations_opened", "deviations_remediated")
    # A criterion with no evidence in either period has nothing to compare: left out of the page
    # (prior-period.csv keeps every row).
    rows = [[(_e(c["id"]), ""), *(_delta_cell(c[m], pct=m == "compliance") for m in measures)]
            for c in section.get("criteria", [])
            if any(c[m].get(k) for m in measures for k in ("current", "prior"))]
    out.append(_table([("Criterion", False), ("Population (records)", False), ("Runtime failures", False),
                       ("Runtime compliance", False), ("Deviations opened", False),
                       ("Deviations remediated", False)], rows, "prior"))
    return out


def _iac_html(iac: Mapping[str, Any], criteria: list[Mapping[str, Any]]) -> list[str]:
    out = ['<h2 id="iac">Infrastructure-as-code scans (reported apart)</h2>',
           '<p class="small muted">Scans of Terraform, plans and manifests before deployment (sources ci, '
           "pre-commit, cli). They show the change-management control (CC8.1) operating on code; they are "
           "not the running system and never count toward runtime compliance.</p>"]
    if not iac.get("records"):
        out.append('<p class="muted">No scan record in the population.</p>')
        return out
    by_source = ", ".join(f"{s}: {n}" for s, n in (iac.get("by_source") or {}).items())
    out.append(f'<p id="iac-summary">{_e(iac["records"])} scan record(s) ({_e(by_source)}); '
               f'{_e(iac["passes"])} passed, {_e(iac["failures"])} failed, {_e(iac["unknown"])} unknown, '
               f'{_e(iac["waived"])} waived; IaC compliance {_fmt_pct(iac.get("compliance"))}.</p>')
    counts = ("passes", "failures", "unknown", "waived")
    rows = [[(_e(c["id"]), ""), *(_num(c["iac"][k]) for k in counts), _num(_fmt_pct(c["iac"]["compliance"]))]
            for c in criteria if any(c["iac"][k] for k in counts)]
    out.append(_table([("Criterion", False), ("Passes", True), ("Failures", True), ("Unknown", True),
                       ("Waived", True), ("IaC compliance", True)], rows, "iac"))
    return out


def _matrix_html(rows: list[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return []
    cells = [[(_e(r["criterion"]), ""), _num(r["name"]), _num(r["description"]), _num(r["owner"] or "—"),
              _num(r["frequency"]), (f'<span class="small">{_e(r["test_procedure"])}</span>', ""),
              (f'<details><summary>{len(r["mapped_rules"])} rule(s)</summary><span class="small">'
               f'{_e(", ".join(r["mapped_rules"]))}</span></details>' if r["mapped_rules"] else "—", ""),
              _num(r["population_rows"])] for r in rows]
    return ['<h2 id="control-matrix">Control matrix</h2>',
            '<p class="small muted">Generated from the policy pack and the control file '
            "(<code>.soc2infra-controls.yaml</code>: owner, frequency, test procedure, description).</p>",
            _table([("Criterion", False), ("Name", False), ("Description", False), ("Owner", False),
                    ("Frequency", False), ("Test procedure", False), ("Mapped rules", False),
                    ("Population rows", True)], cells, "matrix")]
