"""Waivers: accepted findings, each with a reason (and, in the waiver file, an owner and expiry).

One model everywhere. A :class:`WaiverEntry` says "rule R on resource A is accepted because …";
it comes from a waiver file (``.soc2infra-waivers.yaml``), an inline comment
(``# soc2infra:ignore RULE-ID reason``, read by the sources into ``Resource.inline_waivers``) or
a Kubernetes annotation (parsed into the same field). :func:`match_waiver` is a pure function
of the entries, the finding's rule and address, and today's date, so the CLI and the admission
operator decide suppression the same way.

A waiver file entry without a reason, an owner or an expiry date is rejected: an accepted risk
nobody owns and nobody revisits is exactly what an auditor asks about. An entry may name who
approved it (``approvedBy``; in a file the approval is as good as the review of the change that
wrote it), and with ``max_waiver_days`` set an entry expiring further ahead is an error.
An expired entry stops suppressing (the finding blocks again) and is reported; one due within the
warning window still suppresses but produces a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from soc2infra._cogs.model import Error, Finding, Resource, Waiver

WAIVER_FILE_NAME = ".soc2infra-waivers.yaml"
WAIVER_FILE_NAMES = (WAIVER_FILE_NAME, ".soc2infra-waivers.yml")
DEFAULT_WARNING_DAYS = 14

WaiverStatus = Literal["none", "active", "expiring", "expired"]

_REQUIRED = ("rule", "resource", "reason", "owner", "expires")
_ALLOWED = frozenset(_REQUIRED) | {"ticket", "approvedBy", "approved_by"}


@dataclass(frozen=True, slots=True)
class WaiverEntry:
    """One accepted finding pattern.

    ``rule`` and ``resource`` are exact values or glob patterns: ``*`` matches any run of
    characters (dots and slashes included, so ``module.legacy.*`` covers a whole module) and
    ``?`` one character; everything else is literal, so ``aws_s3_bucket.x[0]`` needs no escaping.
    """

    rule: str
    resource: str
    reason: str
    source: str = "file"  # "file", "inline", "annotation", "cluster"
    owner: str | None = None
    ticket: str | None = None
    expires: date | None = None  # None: no expiry (inline waivers live and die with the code)
    location: str | None = None  # file:line of the entry, for messages and the report
    approved_by: str | None = None  # who approved the accepted risk (waiver file: approvedBy)

    def matches(self, rule_id: str, address: str) -> bool:
        """True when this entry covers *rule_id* on *address* (expiry not considered)."""
        return _glob_match(self.rule, rule_id) and _glob_match(self.resource, address)

    def to_waiver(self) -> Waiver:
        """The record attached to a suppressed finding (``model.Waiver``)."""
        return Waiver(source=self.source, reason=self.reason, owner=self.owner, ticket=self.ticket,
                      expires=self.expires.isoformat() if self.expires else None, location=self.location,
                      approved_by=self.approved_by)


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _glob_match(pattern: str, value: str) -> bool:
    if pattern == value or pattern == "*":
        return True
    if "*" not in pattern and "?" not in pattern:
        return False
    return _glob_regex(pattern).fullmatch(value) is not None


def entry_status(entry: WaiverEntry, today: date, warning_days: int = DEFAULT_WARNING_DAYS) -> WaiverStatus:
    """``active``, ``expiring`` (due within *warning_days*) or ``expired`` (past its date).

    A waiver is valid through its expiry date and stops suppressing the day after.
    """
    if entry.expires is None:
        return "active"
    if entry.expires < today:
        return "expired"
    return "expiring" if (entry.expires - today).days <= warning_days else "active"


def match_entry(waivers: Sequence[WaiverEntry], rule_id: str, address: str, today: date,
                warning_days: int = DEFAULT_WARNING_DAYS) -> tuple[WaiverEntry | None, WaiverStatus]:
    """Like :func:`match_waiver`, but returns the entry itself (for per-entry reporting)."""
    expired: WaiverEntry | None = None
    for entry in waivers:
        if not entry.matches(rule_id, address):
            continue
        status = entry_status(entry, today, warning_days)
        if status != "expired":
            return entry, status
        expired = expired or entry
    return (expired, "expired") if expired is not None else (None, "none")


def match_waiver(waivers: Sequence[WaiverEntry], rule_id: str, address: str, today: date,
                 warning_days: int = DEFAULT_WARNING_DAYS) -> tuple[Waiver | None, WaiverStatus]:
    """The waiver that decides *rule_id* on *address*, and its status.

    The first matching entry that has not expired wins (``active`` or ``expiring``: the finding
    is suppressed). When only expired entries match, the first of them is returned with status
    ``expired``: the finding is *not* suppressed, and the caller reports the expired waiver.
    ``(None, "none")`` when nothing matches. Pure: no I/O, no clock.
    """
    entry, status = match_entry(waivers, rule_id, address, today, warning_days)
    return (entry.to_waiver() if entry is not None else None), status


def parse_waiver_data(data: Any, file: str, lines: dict[int, int] | None = None, max_days: int = 0,
                      today: date | None = None) -> tuple[list[WaiverEntry], list[Error]]:
    """Validate already-loaded waiver file data (a ``waivers:`` list, or a bare list).

    Every bad entry becomes an :class:`Error` naming the file, the entry's line, its index and
    the field; good entries are still returned (the scan exits 2 anyway, because errors win).
    *lines* maps entry index to its line in the file. With *max_days* (> 0) an entry expiring
    more than that many days after *today* is a bad entry too (``max_waiver_days``).
    """
    lines = lines or {}
    if data is None:
        return [], []
    items = data.get("waivers") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"waivers"}:
        extra = sorted(str(k) for k in set(data) - {"waivers"})
        return [], [Error(file, 1, f"unknown top-level key {extra[0]!r} (expected 'waivers:')")]
    if items is None:
        return [], []
    if not isinstance(items, list):
        return [], [Error(file, 1, "expected a list of waivers under 'waivers:'")]
    entries: list[WaiverEntry] = []
    errors: list[Error] = []
    for i, item in enumerate(items):
        line = lines.get(i)
        entry, problem = _parse_entry(item, f"{file}:{line}" if line else file)
        if entry is not None and problem is None and max_days > 0:
            problem = _too_long(entry, max_days, today or date.today())
        if problem:
            name = f" ({item.get('rule')} on {item.get('resource')})" if isinstance(item, dict) else ""
            errors.append(Error(file, line, f"waiver #{i + 1}{name}: {problem}"))
        elif entry is not None:
            entries.append(entry)
    return entries, errors


def _too_long(entry: WaiverEntry, max_days: int, today: date) -> str | None:
    if entry.expires is None or (entry.expires - today).days <= max_days:
        return None
    return (f"'expires' {entry.expires} is {(entry.expires - today).days} days away; max_waiver_days allows "
            f"at most {max_days}")


def _parse_entry(item: Any, location: str) -> tuple[WaiverEntry | None, str | None]:
    if not isinstance(item, dict):
        return None, "each waiver must be a mapping with rule, resource, reason, owner, expires"
    unknown = sorted(str(k) for k in set(item) - _ALLOWED)
    if unknown:
        return None, f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_ALLOWED))})"
    for key in _REQUIRED:
        value = item.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            why = {"reason": "say why the risk is accepted", "owner": "name who answers for it",
                   "expires": "an ISO date (YYYY-MM-DD) when it must be reviewed"}.get(key, "required")
            return None, f"missing {key!r}: {why}"
    if "approvedBy" in item and "approved_by" in item:
        return None, "give 'approvedBy' once (not also 'approved_by')"
    for key in ("rule", "resource", "reason", "owner", "ticket", "approvedBy", "approved_by"):
        if key in item and item[key] is not None and not isinstance(item[key], str | int):
            return None, f"{key!r} must be a string"
    expires = item["expires"]
    if not isinstance(expires, date):
        try:
            expires = date.fromisoformat(str(expires).strip())
        except ValueError:
            return None, f"'expires' must be an ISO date (YYYY-MM-DD), got {item['expires']!r}"
    ticket = item.get("ticket")
    approver = item.get("approvedBy", item.get("approved_by"))
    if approver is not None and not str(approver).strip():
        return None, "'approvedBy' is empty: name who approved the accepted risk, or leave it out"
    return WaiverEntry(rule=str(item["rule"]).strip(), resource=str(item["resource"]).strip(),
                       reason=str(item["reason"]).strip(), source="file", owner=str(item["owner"]).strip(),
                       ticket=str(ticket).strip() if ticket is not None else None,
                       expires=expires.date() if isinstance(expires, datetime) else expires,
                       location=location,
                       approved_by=str(approver).strip() if approver is not None else None), None


def load_waiver_file(path: Path, max_days: int = 0, today: date | None = None
                     ) -> tuple[list[WaiverEntry], list[Error]]:
    """Read and validate a waiver file (entries expiring more than *max_days* after *today* are
    errors when *max_days* > 0). Problems are returned as located errors."""
    import yaml  # only scans that use a waiver file pay for PyYAML

    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Error(file, None, f"cannot read waiver file: {getattr(exc, 'strerror', None) or exc}")]
    from soc2infra._cogs.limits import LimitExceeded, check_yaml_node

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            check_yaml_node(node)  # the file is in the repository: bounded like every input
        data = yaml.safe_load(text)
    except LimitExceeded as exc:
        return [], [Error(file, exc.line, str(exc))]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [Error(file, mark.line + 1 if mark else None, f"invalid YAML: {exc}")]
    except RecursionError:
        return [], [Error(file, None, "invalid YAML: nested too deeply")]
    return parse_waiver_data(data, file, _entry_lines(node), max_days, today)


def _entry_lines(node: Any) -> dict[int, int]:
    """Line of each waiver entry (index → line), read from the YAML node tree."""
    import yaml

    seq = node
    if isinstance(node, yaml.MappingNode):
        seq = next((v for k, v in node.value if getattr(k, "value", None) == "waivers"), None)
    if not isinstance(seq, yaml.SequenceNode):
        return {}
    return {i: item.start_mark.line + 1 for i, item in enumerate(seq.value)}


def find_waiver_file(candidates: Iterable[Path]) -> Path | None:
    """The first ``.soc2infra-waivers.yaml`` in *candidates* (directories, in priority order)."""
    seen: set[Path] = set()
    for d in candidates:
        if d in seen:
            continue
        seen.add(d)
        for name in WAIVER_FILE_NAMES:
            p = d / name
            if p.is_file():
                return p
    return None


def inline_entries(finding: Finding) -> tuple[list[WaiverEntry], list[str]]:
    """The inline waivers written on a finding's resource, as entries for :func:`match_waiver`.

    A waiver without a reason is rejected with a warning and does not suppress.
    """
    res = finding.resource
    entries: list[WaiverEntry] = []
    warnings: list[str] = []
    for rule_id, reason, line in res.inline_waivers:
        where = f"{res.file}:{line}" if res.file and line else (res.file or res.address)
        if rule_id != finding.rule_id:  # one rule by its id: a wildcard is an error (inline_waiver_errors)
            continue
        if not reason:
            warnings.append(f"{where}: inline waiver for {rule_id} has no reason and is ignored")
            continue
        source = "annotation" if res.kind == "kubernetes" and not line else "inline"
        entries.append(WaiverEntry(rule=rule_id, resource=res.address, reason=reason, source=source,
                                   location=where))
    return entries, warnings


_WILDCARD = re.compile(r"[*?\[\]]")


def inline_waiver_errors(resources: Iterable[Resource]) -> list[Error]:
    """Inline waivers that name rules by a pattern (``# soc2infra:ignore *``) suppress nothing
    and are errors: an inline waiver has no owner and no expiry, so it may only accept one rule,
    named by its id; broad exceptions belong in the waiver file."""
    errors: list[Error] = []
    for res in resources:
        for rule_id, _reason, line in res.inline_waivers:
            if _WILDCARD.search(rule_id):
                errors.append(Error(res.file, line or res.line,
                                    f"inline waiver {rule_id!r} on {res.address} must name one rule id; "
                                    "put broad exceptions in the waiver file (owner, expiry)"))
    return list(dict.fromkeys(errors))


def apply_inline_waivers(findings: list[Finding]) -> list[str]:
    """Suppress findings whose resource carries a matching inline waiver with a reason.

    Returns warnings (a waiver without a reason is rejected and does not suppress).
    """
    warnings: list[str] = []
    for f in findings:
        entries, warns = inline_entries(f)
        warnings.extend(warns)
        waiver, status = match_waiver(entries, f.rule_id, f.resource.address, date.min)
        if waiver is not None and status != "expired":
            f.suppressed = True
            f.waiver = waiver
    return list(dict.fromkeys(warnings))


def apply_waiver_entries(findings: list[Finding], entries: Sequence[WaiverEntry], today: date,
                         warning_days: int = DEFAULT_WARNING_DAYS) -> list[str]:
    """Suppress findings covered by waiver file entries; returns the governance warnings.

    Findings already suppressed (inline) are left alone. A finding whose only matching
    waiver has expired stays unsuppressed and records the expired waiver in
    ``details["expired_waiver"]``. Each expired or soon-expiring entry is reported once.
    """
    no_longer: dict[WaiverEntry, list[str]] = {}
    expiring: dict[WaiverEntry, None] = {}
    for f in findings:
        if f.suppressed:
            continue
        entry, status = match_entry(entries, f.rule_id, f.resource.address, today, warning_days)
        if entry is None:
            continue
        if status == "expired":
            f.details["expired_waiver"] = entry.to_waiver().to_dict()
            no_longer.setdefault(entry, []).append(f"{f.rule_id} on {f.resource.address}")
            continue
        f.suppressed = True
        f.waiver = entry.to_waiver()
        if status == "expiring":
            expiring[entry] = None
    warnings: list[str] = []
    for entry in entries:
        where = entry.location or "waiver file"
        what = f"waiver for {entry.rule} on {entry.resource} (owner {entry.owner})"
        if entry in no_longer:
            warnings.append(f"{where}: {what} expired on {entry.expires}; no longer suppressed: "
                            f"{', '.join(no_longer[entry])}")
        elif entry_status(entry, today, warning_days) == "expired":
            warnings.append(f"{where}: {what} expired on {entry.expires} and matches no finding; remove it")
        elif entry in expiring:
            assert entry.expires is not None
            days = (entry.expires - today).days
            plural = "s" if days != 1 else ""
            warnings.append(f"{where}: {what} expires on {entry.expires} (in {days} day{plural}); "
                            "renew it or fix the finding")
    return warnings
