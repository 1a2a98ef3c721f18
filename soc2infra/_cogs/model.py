"""The data every layer shares: resources in, findings and errors out.

Everything here is plain data (dataclasses, picklable) so sources can run in worker
processes, results can be cached, and the engine stays free of I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
CATEGORIES: tuple[str, ...] = (
    "encryption", "authentication", "logging", "backup",
    "availability", "access", "network", "integrity",
)


UNKNOWN_KINDS: dict[str, str] = {
    "apply_time": "known only after apply",
    "unset_variable": "a variable without a value",
    "external_module": "a module that was not scanned",
    "not_scanned": "defined outside the scanned files",
    "evaluator_limit": "beyond what soc2infra evaluates statically",
    "error": "an expression Terraform would reject",
}
"""Why a value is unknown (``Unknown.kind``) and how reports word it. The first four are
values the scanned files do not determine; the last two are gaps in soc2infra's evaluator."""


ARN_SEGMENT = "\x00"
"""In ``Unknown.parts`` text: an unknown ARN segment (partition, region, account id), which
never contains ``:`` or ``/``; ``None`` parts may be any text."""


class Unknown:
    """A value that cannot be decided statically (a computed attribute, an unset input).

    Unknowns propagate through expressions; a rule that depends on one yields an
    explicit "unknown" result instead of a silent pass. ``kind`` (a key of
    :data:`UNKNOWN_KINDS`) and ``reason`` say why; ``rtype``/``attr`` name the resource type
    and attribute an apply-time value comes from; ``parts`` keeps the fixed text of a
    template around its unknown pieces (``None`` marks an unknown piece).
    """

    __slots__ = ("reason", "nonnull", "candidates", "kind", "rtype", "attr", "parts")

    def __init__(self, reason: str = "", nonnull: bool = False,
                 candidates: tuple[Any, ...] | None = None, kind: str = "evaluator_limit",
                 rtype: str | None = None, attr: str | None = None,
                 parts: tuple[str | None, ...] | None = None) -> None:
        self.reason = reason
        # Set when the value is certainly present (a reference to another resource's ARN, a
        # required variable): `exists` holds even though the value itself is not known.
        self.nonnull = nonnull
        # The only values it can take, when known (both branches of `var.x ? "a" : "b"`):
        # a rule holds if it holds for every candidate (catalog pitfall PF-02).
        self.candidates = candidates
        self.kind = kind
        self.rtype, self.attr, self.parts = rtype, attr, parts

    def derive(self, reason: str | None = None, nonnull: bool | None = None,
               parts: tuple[str | None, ...] | None = None) -> Unknown:
        """A new unknown computed from this one: same kind and origin, new wording."""
        return Unknown(self.reason if reason is None else reason,
                       self.nonnull if nonnull is None else nonnull, None, self.kind,
                       self.rtype, self.attr, parts)

    @property
    def is_gap(self) -> bool:
        """True when the cause is soc2infra's evaluator, not a value Terraform lacks too."""
        return self.kind in ("evaluator_limit", "error")

    def __repr__(self) -> str:
        extra = f", candidates={self.candidates!r}" if self.candidates is not None else ""
        return f"Unknown({self.reason!r}, kind={self.kind!r}{extra})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unknown, (self.reason, self.nonnull, self.candidates, self.kind, self.rtype,
                          self.attr, self.parts))

    def __bool__(self) -> bool:
        # A stray truth test on an unknown is a bug in the caller; make it loud.
        raise TypeError("truth value of Unknown is undecidable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown)

    def __hash__(self) -> int:
        return hash(Unknown)


def contains_unknown(v: Any) -> bool:
    """True when *v* is or contains an Unknown."""
    if isinstance(v, Unknown):
        return True
    if isinstance(v, list):
        return any(contains_unknown(x) for x in v)
    if isinstance(v, dict):
        return any(contains_unknown(x) for x in v.values())
    return False


def is_unknown(value: Any) -> bool:
    """True when *value* is an :class:`Unknown` placeholder."""
    return isinstance(value, Unknown)


@dataclass(slots=True)
class Resource:
    """One infrastructure object, whatever format it came from.

    ``attributes`` is the attribute tree as plain dicts/lists/scalars; nested Terraform
    blocks are lists of dicts (as in plan JSON). ``references`` maps a dotted attribute
    path to the addresses of the resources its expression referenced.
    """

    kind: str  # "terraform" or "kubernetes"
    type: str  # "aws_s3_bucket", "Deployment", …
    address: str  # "module.logs.aws_s3_bucket.this", "apps/v1/Deployment/payments/api"
    attributes: dict[str, Any]
    file: str = ""
    line: int = 0
    end_line: int = 0
    references: dict[str, frozenset[str]] = field(default_factory=dict)
    # Addresses other resources may use to refer to this one by value (bucket names, ARNs …).
    identities: frozenset[str] = frozenset()
    namespace: str | None = None  # Kubernetes namespace (None = cluster scoped)
    # Inline waivers written next to the resource: (rule_id or "*", reason, line).
    inline_waivers: tuple[tuple[str, str, int], ...] = ()
    # Source-specific facts (helm chart, template file, module path, existence unknown …).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Last segment of the address (the resource or object name)."""
        return self.address.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class Error:
    """An input or configuration problem, located as precisely as possible."""

    file: str
    line: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (part of the scan result contract)."""
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class Waiver:
    """Why a finding is accepted: inline comment, waiver file entry or cluster waiver."""

    source: str  # "inline", "file", "annotation", "cluster", "baseline"
    reason: str
    owner: str | None = None
    ticket: str | None = None
    expires: str | None = None  # ISO date
    location: str | None = None  # where the waiver is written (file:line or object)
    approved_by: str | None = None  # who approved it (cluster waivers: only a verified approval)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


Status = Literal["fail", "unknown"]


@dataclass(frozen=True, slots=True)
class UnknownReason:
    """Why a finding is undecided: the kind (a key of :data:`UNKNOWN_KINDS`), the reason
    naming the expression, and for apply-time values the resource type and attribute."""

    kind: str
    reason: str
    rtype: str | None = None
    attr: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``unknown[].reasons[]`` in the contract)."""
        out: dict[str, Any] = {"kind": self.kind, "reason": self.reason}
        if self.rtype is not None:
            out["resource_type"] = self.rtype
        if self.attr is not None:
            out["attribute"] = self.attr
        return out


@dataclass(slots=True)
class Finding:
    """A rule that did not pass on a resource (failed, or could not be decided)."""

    rule_id: str
    title: str
    severity: str
    category: str
    controls: tuple[str, ...]
    message: str
    remediation: str
    resource: Resource
    status: Status = "fail"
    suppressed: bool = False
    waiver: Waiver | None = None
    # Masked evidence of what was found (never a secret value), e.g. {"value": "ab****"}.
    details: dict[str, Any] = field(default_factory=dict)
    # Why an "unknown" finding could not be decided (empty for failures).
    reasons: tuple[UnknownReason, ...] = ()

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Finding:
        """The inverse of :meth:`to_dict` (a resource without attributes: reports need none)."""
        res = item["resource"]
        meta: dict[str, Any] = {}
        if "module_call" in res:
            meta["module_call"] = dict(res["module_call"])
        if "root" in res:
            meta["root"] = res["root"]
        resource = Resource(kind=res["kind"], type=res["type"], address=res["address"], attributes={},
                            file=res.get("file", ""), line=int(res.get("line") or 0), meta=meta)
        return cls(rule_id=item["rule_id"], title=item["title"], severity=item["severity"],
                   category=item["category"], controls=tuple(item["controls"]), message=item["message"],
                   remediation=item["remediation"], resource=resource, status=item["status"],
                   suppressed=bool(item.get("suppressed")),
                   waiver=Waiver(**item["waiver"]) if item.get("waiver") else None,
                   details=dict(item.get("details", {})),
                   reasons=tuple(UnknownReason(r["kind"], r["reason"], r.get("resource_type"),
                                               r.get("attribute")) for r in item.get("reasons", ())))

    @property
    def reason_text(self) -> str:
        """The reasons of an unknown finding in one line (``kind: reason; …``), else ""."""
        return "; ".join(f"{r.kind}: {r.reason}" for r in self.reasons)

    @property
    def fingerprint(self) -> str:
        """Stable identity of the finding across runs (rule + resource address)."""
        return f"{self.rule_id}::{self.resource.address}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the documented ``findings[]`` item)."""
        res = self.resource
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "category": self.category,
            "controls": list(self.controls),
            "status": self.status,
            "message": self.message,
            "remediation": self.remediation,
            "suppressed": self.suppressed,
            "resource": {
                "kind": res.kind,
                "type": res.type,
                "address": res.address,
                "file": res.file,
                "line": res.line,
            },
        }
        call = res.meta.get("module_call")
        if isinstance(call, dict):
            out["resource"]["module_call"] = {"file": str(call.get("file", "")),
                                              "line": int(call.get("line", 0))}
        root = res.meta.get("root")
        if isinstance(root, str):
            out["resource"]["root"] = root
        if self.reasons:
            out["reasons"] = [r.to_dict() for r in self.reasons]
        if self.waiver is not None:
            out["waiver"] = self.waiver.to_dict()
        if self.details:
            out["details"] = self.details
        return out


@dataclass(slots=True)
class ModuleRecord:
    """One module call of the configuration and what became of it."""

    address: str  # module.vpc, module.vpc.module.subnets (instance keys left out)
    source: str
    version: str | None  # the constraint written in the configuration
    scanned: bool
    reason: str = ""  # why it was not scanned
    resolved_version: str | None = None  # the version evaluated (registry modules)
    origin: str = ""  # "terraform init", "download", or "local"
    location: str = ""  # where it was read from (a directory) or fetched from (a URL, no credentials)
    digest: str = ""  # sha256 of the module's .tf files, for the lock record
    file: str = ""  # the calling module block
    line: int = 0
    root: str = ""  # the root module it was called from

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> ModuleRecord:
        """The inverse of :meth:`to_dict`."""
        return cls(address=item["address"], source=item["source"], version=item.get("version"),
                   scanned=item["scanned"], reason=item.get("reason", ""),
                   resolved_version=item.get("resolved_version"), origin=item.get("origin", ""),
                   location=item.get("location", ""), digest=item.get("digest", ""),
                   file=item.get("file", ""), line=int(item.get("line") or 0), root=item.get("root", ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``coverage.modules[]`` item of the result contract)."""
        out: dict[str, Any] = {"address": self.address, "source": self.source, "scanned": self.scanned}
        for key in ("version", "resolved_version", "reason", "origin", "location", "digest", "root", "file"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.line:
            out["line"] = self.line
        return out


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """An input file discovery saw and did not read, with the reason."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``coverage.skipped_files[]`` item)."""
        return {"path": self.path, "reason": self.reason}


@dataclass(slots=True)
class Coverage:
    """What the scan covered: every module call and its fate, and the files it skipped.

    Nothing is left out in silence: a module that could not be read is listed here with the
    reason, and values coming out of it are unknown.
    """

    modules: list[ModuleRecord] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)

    @property
    def unscanned_modules(self) -> list[ModuleRecord]:
        """Module calls whose resources were not evaluated."""
        return [m for m in self.modules if not m.scanned]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``coverage`` section of the result contract)."""
        return {
            "modules": [m.to_dict() for m in sorted(self.modules, key=lambda m: (m.root, m.address))],
            "modules_not_scanned": len(self.unscanned_modules),
            "skipped_files": [f.to_dict() for f in self.skipped_files],
        }

    def summary(self) -> str:
        """One line for every format's summary, empty when everything was scanned."""
        missing = self.unscanned_modules
        if not missing:
            return ""
        noun = "module" if len(missing) == 1 else "modules"
        shown = "; ".join(f"{m.address} ({m.reason})" for m in missing[:5])
        more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
        return f"{len(missing)} {noun} not scanned: {shown}{more}"


@dataclass(slots=True)
class ScanResult:
    """Everything one scan produced; reports and evidence are rendered from this."""

    resources: list[Resource] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # status "fail" and "unknown"
    errors: list[Error] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rules_evaluated: int = 0
    pack_digest: str = ""
    # (rule_id, address) pairs that passed; kept for JUnit/evidence populations.
    passes: list[tuple[str, str]] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    # Set when the resources themselves are not at hand (a result merged from shards' JSON).
    resource_count: int | None = None

    @property
    def resource_total(self) -> int:
        """How many resources the scan read."""
        return len(self.resources) if self.resource_count is None else self.resource_count

    @property
    def failures(self) -> list[Finding]:
        """Findings whose rule failed (not unknown)."""
        return [f for f in self.findings if f.status == "fail"]

    @property
    def unknowns(self) -> list[Finding]:
        """Findings whose rule could not be decided."""
        return [f for f in self.findings if f.status == "unknown"]


def control_sort_key(control_id: str) -> tuple[object, ...]:
    """Natural order for criterion ids: ``CC6.2`` before ``CC6.10``, ``A1.1`` before ``CC1.1``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", control_id))
