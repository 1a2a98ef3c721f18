"""The deviation register and the waiver register of a period, folded from the ledger's records.

**Deviation register** — one row per (rule, resource, cluster) that failed in the *runtime*
records of the population (audit snapshots, and admission requests let through with a failed
rule; a *denied* request never reached the cluster, so it is a control operating, not a
deviation; IaC scans are reported apart and never open a runtime deviation):

- ``first_seen`` / ``last_seen``: the first and last failing (or waived) observation in the period;
- ``remediated_at``: the first *passing or absent* observation after the last failure — an audit
  snapshot of the same cluster that no longer shows the failure (the object passes, or is gone),
  or an admitted request on the same object that passes the rule; empty while open. A failure
  seen again after a remediation re-opens the row (``remediated_at`` is cleared);
- ``days_open``: from ``first_seen`` to ``remediated_at``, or to the end of the period;
- ``status``: ``remediated``, ``waived`` (still failing, accepted by a waiver in force at the end
  of the period) or ``open``;
- the waiver of the last waived observation (id, owner, approver, expiry) and its ticket.

**Waiver register** — one row per waiver seen in the period: from waiver change records (created,
changed, deleted: who and when), from the waivers an audit snapshot lists as in force, and from
the waiver attached to each waived result (cluster waivers and waiver-file entries alike). Owner,
approver (``approvedBy``, empty when the record has none), created by/at, expiry, ticket,
reason, rule and resources, revoked (deleted) at/by, expired by the end of the period, and how
many evaluations it suppressed.

Only the period's records are read, so ``first_seen`` is the first observation *in the period*;
a deviation older than the period shows the period's first day.

:class:`RegisterBuilder` is fed records in ledger order (the report does it in its one pass);
:func:`registers` reads a ledger itself.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from soc2infra.evidence.ledger import Ledger, time_bounds
from soc2infra.evidence.population import Population, PopulationTally, record_cluster
from soc2infra.evidence.records import now, parse_time

DEVIATION_COLUMNS: tuple[str, ...] = (
    "rule_id", "resource", "cluster", "severity", "controls", "status", "first_seen", "last_seen",
    "remediated_at", "days_open", "observations", "sources", "first_seq", "last_seq",
    "waiver_id", "waiver_owner", "waiver_approver", "waiver_expires", "ticket",
)
WAIVER_COLUMNS: tuple[str, ...] = (
    "waiver_id", "kind", "rule", "resources", "owner", "approver", "approval", "created_by", "created_at",
    "expires", "ticket", "reason", "status", "revoked_at", "revoked_by", "expired",
    "used_after_expiry", "evaluations", "waived_resources", "first_used", "last_used", "problem",
    "rejected_changes", "last_rejection",
)
DEVIATION_STATUSES: tuple[str, ...] = ("open", "waived", "remediated")
# rejected: only refused attempts were recorded (self-approval, too long …): the waiver never existed.
WAIVER_STATUSES: tuple[str, ...] = ("active", "expired", "revoked", "unusable", "rejected")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # as in the CSV export: never a live formula

DeviationKey = tuple[str, str, str]  # rule, resource, cluster


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _first(mapping: Mapping[str, Any], *keys: str) -> str:
    """The first non-empty value among *keys* (waiver records spell some fields two ways); an
    identity recorded from an admission request's userInfo (``{username, uid, groups}``) gives
    its username."""
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, Mapping):
            value = value.get("username")
        if value not in (None, ""):
            return str(value)
    return ""


def waiver_id(waiver: Mapping[str, Any], fallback: str = "") -> str:
    """How the registers name a waiver: ``SOC2Waiver ns/name``, ``SOC2ClusterWaiver name``, or
    where a waiver-file entry is written (``file:line``) — the same text a waived result's
    ``location`` carries, so a deviation's waiver and the waiver register's row join."""
    name = _text(waiver.get("name"))
    if name:
        if waiver.get("cluster"):
            return f"SOC2ClusterWaiver {name}"
        return f"SOC2Waiver {_text(waiver.get('namespace')) or 'default'}/{name}"
    return _text(waiver.get("location")) or fallback


def _selector_text(waiver: Mapping[str, Any]) -> str:
    sel = waiver.get("selector")
    parts: list[str] = []
    if isinstance(sel, Mapping):
        for key in ("kind", "name"):
            if sel.get(key):
                parts.append(f"{key}={sel[key]}")
        labels = sel.get("matchLabels")
        if isinstance(labels, Mapping):
            parts.extend(f"{k}={v}" for k, v in sorted(labels.items()))
    if waiver.get("namespaces"):
        parts.append("namespaces=" + ",".join(map(str, waiver["namespaces"])))
    return " ".join(parts)


@dataclass(slots=True)
class _Deviation:
    rule_id: str
    resource: str
    cluster: str
    severity: str = ""
    controls: set[str] = field(default_factory=set)
    first_seen: str = ""
    last_seen: str = ""
    first_seq: int | None = None
    last_seq: int | None = None
    remediated_at: str = ""
    observations: int = 0
    sources: set[str] = field(default_factory=set)
    waived_last: bool = False
    waiver: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Waiver:
    waiver_id: str
    kind: str = ""
    rule: str = ""
    resources: str = ""
    owner: str = ""
    approver: str = ""
    created_by: str = ""
    created_at: str = ""
    expires: str = ""
    ticket: str = ""
    reason: str = ""
    revoked_at: str = ""
    revoked_by: str = ""
    problem: str = ""
    approval: str = ""
    seen: bool = False  # anything but a rejected attempt was recorded
    rejections: int = 0
    last_rejection: str = ""
    delete_requested_by: str = ""  # the webhook saw who asked; the watch's deletion cannot say
    evaluations: int = 0
    waived: set[str] = field(default_factory=set)
    first_used: str = ""
    last_used: str = ""

    def merge(self, waiver: Mapping[str, Any]) -> None:
        """Fill fields from a waiver mapping (the newest values win, empty ones never erase)."""
        self.seen = True
        for attr, keys in (("rule", ("rule", "rule_id")), ("owner", ("owner",)),
                           ("approver", ("approvedBy", "approved_by", "approver")),
                           ("approval", ("approval",)),
                           ("expires", ("expires",)), ("ticket", ("ticket",)), ("reason", ("reason",)),
                           ("problem", ("problem",))):
            value = _first(waiver, *keys)
            if value:
                setattr(self, attr, value)
        created_by = _first(waiver, "createdBy", "created_by")
        if created_by:
            self.created_by = created_by
        selector = _selector_text(waiver)
        if selector:
            self.resources = selector
        if waiver.get("name"):
            self.kind = "SOC2ClusterWaiver" if waiver.get("cluster") else "SOC2Waiver"
        elif not self.kind:
            self.kind = _text(waiver.get("source")) or "file"


class RegisterBuilder:
    """Folds ledger records (in ledger order) into the two registers."""

    def __init__(self) -> None:
        self._deviations: dict[DeviationKey, _Deviation] = {}
        # Per cluster, the deviations not remediated yet: an audit snapshot of that cluster that no
        # longer shows one of them remediates it.
        self._open: dict[str, set[DeviationKey]] = {}
        self._waivers: dict[str, _Waiver] = {}
        self.last_time = ""

    # -- feeding ---------------------------------------------------------------------------------

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one record of the population into account (any source; others are ignored)."""
        source = _text(record.get("source"))
        time = _text(record.get("time"))
        self.last_time = max(self.last_time, time)
        if source == "waiver":
            self._waiver_change(record, time)
            return
        context = record.get("context") if isinstance(record.get("context"), Mapping) else {}
        assert isinstance(context, Mapping)
        results = record.get("results") or ()
        for result in results:
            if result.get("status") == "waived":
                self._waiver_use(result, time)
        if source == "audit":
            for waiver in context.get("waivers") or ():
                if isinstance(waiver, Mapping):
                    self._waiver_row(waiver_id(waiver)).merge(waiver)
            self._snapshot(record, time, results)
        elif source == "admission" and record.get("decision") in ("allow", "warn"):
            self._admitted(record, time, results)

    def _waiver_row(self, wid: str) -> _Waiver:
        row = self._waivers.get(wid)
        if row is None:
            row = self._waivers[wid] = _Waiver(wid)
        return row

    def _waiver_change(self, record: Mapping[str, Any], time: str) -> None:
        context = record.get("context") if isinstance(record.get("context"), Mapping) else {}
        assert isinstance(context, Mapping)
        found = context.get("waiver")
        waiver: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        row = self._waiver_row(waiver_id(waiver, _text(record.get("subject"))))
        event = _text(context.get("event") or context.get("change"))
        actor = _text(record.get("actor"))
        if event == "waiver-rejected":
            # The control refused a change (self-approval, too long …): counted, terms not taken.
            row.rejections += 1
            row.last_rejection = f"{time} {actor}: {_text(context.get('reason'))}"
            if not row.seen:
                row.rule = row.rule or _first(waiver, "rule")
                row.owner = row.owner or _first(waiver, "owner")
            return
        if event == "waiver-delete-requested":
            row.delete_requested_by = actor
            return
        row.merge(waiver)
        if event.endswith("deleted") or event in ("removed", "revoked"):
            requested = row.delete_requested_by
            row.revoked_at = time
            row.revoked_by = requested if requested and actor in ("", "unknown") else actor
        else:
            if waiver:
                # A change record holds the waiver's whole current version: what it no longer says (an
                # approval withdrawn when the terms changed, a problem fixed by the approval) is gone.
                row.approver = _first(waiver, "approvedBy", "approved_by", "approver")
                row.problem = _first(waiver, "problem")
            if event.endswith("created") or event == "added":
                # A change's creation time is known only when its creation is in the period.
                row.created_at = time
                row.created_by = _first(waiver, "createdBy", "created_by") or actor
            row.revoked_at = row.revoked_by = ""  # re-created after a deletion

    def _waiver_use(self, result: Mapping[str, Any], time: str) -> None:
        found = result.get("waiver")
        waiver: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        rule, address = _text(result.get("rule_id")), _text(result.get("address"))
        fallback = f"{_text(waiver.get('source')) or 'waiver'} {rule} {address}"  # a waiver with no location
        row = self._waiver_row(waiver_id(waiver, fallback))
        row.merge(waiver)
        # The waiver's own rule may be a pattern (SOC2-K8S-POD-00?): a result's rule id fills it in
        # only when no waiver record said it.
        row.rule = row.rule or rule
        row.evaluations += 1
        row.waived.add(address)
        row.first_used = row.first_used or time
        row.last_used = time

    def _observe(self, key: DeviationKey, record: Mapping[str, Any], result: Mapping[str, Any],
                 time: str) -> None:
        dev = self._deviations.get(key)
        if dev is None:
            dev = self._deviations[key] = _Deviation(*key, first_seen=time, first_seq=record.get("seq"))
        dev.last_seen, dev.last_seq = time, record.get("seq")
        dev.remediated_at = ""
        dev.observations += 1
        dev.severity = _text(result.get("severity")) or dev.severity
        dev.controls.update(map(str, result.get("controls") or ()))
        dev.sources.add(_text(record.get("source")))
        dev.waived_last = result.get("status") == "waived"
        if dev.waived_last and isinstance(result.get("waiver"), Mapping):
            dev.waiver = dict(result["waiver"])
        self._open.setdefault(key[2], set()).add(key)

    def _remediate(self, key: DeviationKey, time: str) -> None:
        dev = self._deviations[key]
        if not dev.remediated_at:
            dev.remediated_at = time
        self._open.get(key[2], set()).discard(key)

    def _snapshot(self, record: Mapping[str, Any], time: str, results: Iterable[Mapping[str, Any]]) -> None:
        cluster = record_cluster(record)
        failing: set[DeviationKey] = set()
        for result in results:
            if result.get("status") in ("fail", "waived"):
                key = (_text(result.get("rule_id")), _text(result.get("address")), cluster)
                failing.add(key)
                self._observe(key, record, result, time)
        # Absent (passing, or the object is gone) from a full snapshot of the same cluster.
        for key in list(self._open.get(cluster, ())):
            if key not in failing:
                self._remediate(key, time)

    def _admitted(self, record: Mapping[str, Any], time: str, results: Iterable[Mapping[str, Any]]) -> None:
        cluster = record_cluster(record)
        for result in results:
            key = (_text(result.get("rule_id")), _text(result.get("address")), cluster)
            status = result.get("status")
            if status in ("fail", "waived"):
                self._observe(key, record, result, time)
            elif status == "pass" and key in self._open.get(cluster, ()):
                self._remediate(key, time)

    # -- the registers ---------------------------------------------------------------------------

    def deviations(self, as_of: str | None = None) -> list[dict[str, Any]]:
        """The deviation register as of *as_of* (record-format time; default: the last record)."""
        end = as_of or self.last_time
        rows = []
        for dev in self._deviations.values():
            waiver = dev.waiver
            wid = waiver_id(waiver) if waiver else ""
            expires = _text(waiver.get("expires"))
            if dev.remediated_at:
                status = "remediated"
            elif dev.waived_last and (not expires or expires >= end[:10]):
                status = "waived"
            else:
                status = "open"
            closed = dev.remediated_at or end
            register_waiver = self._waivers.get(wid)
            rows.append({
                "rule_id": dev.rule_id, "resource": dev.resource, "cluster": dev.cluster,
                "severity": dev.severity, "controls": sorted(dev.controls), "status": status,
                "first_seen": dev.first_seen, "last_seen": dev.last_seen, "remediated_at": dev.remediated_at,
                "days_open": _days_between(dev.first_seen, closed), "observations": dev.observations,
                "sources": sorted(dev.sources), "first_seq": dev.first_seq, "last_seq": dev.last_seq,
                "waiver_id": wid, "waiver_owner": _text(waiver.get("owner")),
                "waiver_approver": (register_waiver.approver if register_waiver else "")
                or _first(waiver, "approvedBy", "approved_by"),
                "waiver_expires": expires,
                "ticket": _text(waiver.get("ticket")) or (register_waiver.ticket if register_waiver else ""),
            })
        rows.sort(key=lambda r: (r["first_seen"], r["rule_id"], r["resource"], r["cluster"]))
        return rows

    def waivers(self, as_of: str | None = None) -> list[dict[str, Any]]:
        """The waiver register as of *as_of* (record-format time; default: the last record)."""
        end = (as_of or self.last_time)[:10]
        rows = []
        for w in self._waivers.values():
            expired = bool(w.expires and w.expires < end)
            if not w.seen:
                status = "rejected"
            elif w.revoked_at:
                status = "revoked"
            elif w.problem:
                status = "unusable"
            else:
                status = "expired" if expired else "active"
            rows.append({
                "waiver_id": w.waiver_id, "kind": w.kind, "rule": w.rule, "resources": w.resources,
                "owner": w.owner, "approver": w.approver, "approval": w.approval, "created_by": w.created_by,
                "created_at": w.created_at, "expires": w.expires, "ticket": w.ticket, "reason": w.reason,
                "status": status, "revoked_at": w.revoked_at, "revoked_by": w.revoked_by, "expired": expired,
                "used_after_expiry": bool(w.expires and w.last_used and w.last_used[:10] > w.expires),
                "evaluations": w.evaluations, "waived_resources": len(w.waived),
                "first_used": w.first_used, "last_used": w.last_used, "problem": w.problem,
                "rejected_changes": w.rejections, "last_rejection": w.last_rejection,
            })
        rows.sort(key=lambda r: str(r["waiver_id"]))
        return rows


def _days_between(start: str, end: str) -> float:
    """Days from *start* to *end* (record-format times), one decimal; 0 when either is missing."""
    if not start or not end:
        return 0.0
    delta = parse_time(end) - parse_time(start)
    return round(max(delta.total_seconds(), 0.0) / 86400.0, 1)


def registers(ledger: Ledger, start: datetime | str | None, end: datetime | str | None,
              population: Population | None = None, tally: PopulationTally | None = None,
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(deviations, waivers) of the records of *population* in ``[start, end)``, as of the end;
    *tally*, when given, counts what was kept and left out (for the command's header)."""
    lo, hi = time_bounds(start, end)
    tally = tally if tally is not None else PopulationTally(population or Population())
    builder = RegisterBuilder()
    for record in ledger.iter(lo, hi):
        if tally.keep(record):
            builder.add(record)
    as_of = period_end(hi, builder.last_time)
    return builder.deviations(as_of), builder.waivers(as_of)


def period_end(hi: str | None, last_time: str) -> str:
    """The instant registers are stated at: the period's end, or now for a period not over yet
    (an open deviation's days open are counted to it); the last record without an end bound."""
    if hi is None:
        return last_time
    return min(hi, now())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        value = ";".join(map(str, value))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, str]]:
    """Register rows as CSV cells (lists joined with ``;``, booleans ``true``/``false``)."""
    return [{c: _cell(r.get(c)) for c in columns} for r in rows]


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: IO[str]) -> int:
    """Write a register as CSV (header first); returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(csv_rows(rows, columns))
    return len(rows)
