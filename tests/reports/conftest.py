"""A small pack and a scan result with one of everything the reports must show.

Built from plain model objects so each format test states exactly what it expects:
open failures in two files, a finding with two criteria, an inline and a file waiver,
an undecidable result, a resource read from standard input, absolute paths inside and
outside ``base_dir``, passes, input errors and a warning. Every resource carries
``ATTRIBUTE_SECRET`` in its attributes, which no report may ever print.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from soc2infra._cogs.model import Error, Finding, Resource, ScanResult, Waiver
from soc2infra._core.engine.policy import Control, PolicyPack, Rule
from soc2infra._core.engine.registry import compile_condition
from soc2infra._core.reports import ReportInput

BASE = "/repo"
ATTRIBUTE_SECRET = "Attr-Secret-Never-Printed-5d1e"

CONTROLS = {
    "CC6.1": Control("CC6.1", "Logical access security architecture", ""),
    "CC6.3": Control("CC6.3", "Role-based, least-privilege authorization", ""),
    "CC6.6": Control("CC6.6", "Boundary protection", ""),
    "CC7.2": Control("CC7.2", "Anomaly monitoring", ""),
    "C1.1": Control("C1.1", "Protection of confidential information", ""),
}


def make_rule(rule_id: str, severity: str, category: str, controls: tuple[str, ...], targets: tuple[str, ...],
              enabled: bool = True) -> Rule:
    return Rule(id=rule_id, title=f"Title of {rule_id}", severity=severity, category=category,
                controls=controls, targets=targets, message=f"{{address}} breaks {rule_id}",
                remediation=f"Fix {rule_id} like this.", predicate=compile_condition({"path": "x", "exists": True}),
                description=f"Why {rule_id} matters.", enabled=enabled)


RULES = [
    make_rule("T-ENC-001", "high", "encryption", ("CC6.1", "C1.1"), ("aws_s3_bucket",)),
    make_rule("T-LOG-001", "low", "logging", ("CC7.2",), ("aws_s3_bucket",)),
    make_rule("T-NET-001", "critical", "network", ("CC6.6", "CC6.1"), ("aws_security_group",)),
    make_rule("T-K8S-001", "medium", "access", ("CC6.3",), ("Deployment",)),
    make_rule("T-OFF-001", "low", "integrity", ("CC6.1",), ("aws_s3_bucket",), enabled=False),
]


def make_pack(rules: list[Rule] | None = None) -> PolicyPack:
    return PolicyPack(rules=list(RULES if rules is None else rules), controls=dict(CONTROLS),
                      digest="sha256:" + "ab" * 32)


def res(address: str, rtype: str, file: str, line: int = 1, kind: str = "terraform", end_line: int = 0) -> Resource:
    return Resource(kind=kind, type=rtype, address=address, file=file, line=line, end_line=end_line,
                    attributes={"password": ATTRIBUTE_SECRET, "tags": {"token": ATTRIBUTE_SECRET}})


def finding(rule_id: str, resource: Resource, *, status: str = "fail", waiver: Waiver | None = None,
            details: dict[str, Any] | None = None, message: str | None = None) -> Finding:
    rule = next(r for r in RULES if r.id == rule_id)
    return Finding(rule_id=rule.id, title=rule.title, severity=rule.severity, category=rule.category,
                   controls=rule.controls, message=message or f"{resource.address} breaks {rule.id}",
                   remediation=rule.remediation, resource=resource, status=status,  # type: ignore[arg-type]
                   suppressed=waiver is not None, waiver=waiver, details=details or {})


def sample_result() -> ScanResult:
    data = res("aws_s3_bucket.data", "aws_s3_bucket", "infra/main.tf", 3, end_line=9)
    logs = res("aws_s3_bucket.logs[0]", "aws_s3_bucket", f"{BASE}/infra/main.tf", 12)
    web = res("aws_security_group.web", "aws_security_group", "infra/network.tf", 1)
    api = res("apps/v1/Deployment/payments/api", "Deployment", "k8s/deploy.yaml", 4, kind="kubernetes")
    piped = res("aws_s3_bucket.piped", "aws_s3_bucket", "<stdin>", 0)
    outside = res("aws_s3_bucket.far", "aws_s3_bucket", "/elsewhere/far.tf", 2)
    findings = [
        finding("T-ENC-001", data, details={"argument": "password", "value": "At******"}),
        finding("T-LOG-001", data, waiver=Waiver(source="inline", reason="logs go to CloudTrail",
                                                 location="infra/main.tf:2")),
        finding("T-NET-001", web),
        finding("T-ENC-001", logs, status="unknown", details={"unresolved": ["var.kms_key"]}),
        finding("T-K8S-001", api, waiver=Waiver(source="file", reason="legacy service, replaced in Q3",
                                                owner="platform@example.com", ticket="SEC-7",
                                                expires="2099-01-01", location=".soc2infra-waivers.yaml:3")),
        finding("T-LOG-001", piped),
        finding("T-ENC-001", outside),
    ]
    return ScanResult(
        resources=[data, logs, web, api, piped, outside],
        findings=findings,
        errors=[Error("infra/broken.tf", 4, "invalid HCL: unexpected '}'"),
                Error("/elsewhere/unreadable.tf", None, "cannot read file"),
                Error("<stdin>", 2, "invalid JSON: Expecting value")],
        warnings=["waiver for T-K8S-001 on apps/v1/Deployment/payments/api expires in 5 days"],
        rules_evaluated=4,
        pack_digest="sha256:" + "ab" * 32,
        passes=[("T-LOG-001", "aws_s3_bucket.logs[0]"), ("T-NET-001", "aws_security_group.db"),
                ("T-K8S-001", "apps/v1/Deployment/payments/web")],
    )


@pytest.fixture
def attribute_secret() -> str:
    """The value every sample resource carries in its attributes (must never be printed)."""
    return ATTRIBUTE_SECRET


@pytest.fixture
def make_finding() -> Callable[..., Finding]:
    """The sample's finding builder: ``make_finding(rule_id, resource, status=, waiver=, details=)``."""
    return finding


@pytest.fixture
def make_resource() -> Callable[..., Resource]:
    """The sample's resource builder: ``make_resource(address, type, file, line, kind=)``."""
    return res


@pytest.fixture
def pack() -> PolicyPack:
    return make_pack()


@pytest.fixture
def sample(pack: PolicyPack) -> ReportInput:
    """The full sample, paths relative to ``/repo``."""
    return ReportInput(result=sample_result(), pack=pack, threshold="low", tool_version="9.9.9", base_dir=BASE)


@pytest.fixture
def empty(pack: PolicyPack) -> ReportInput:
    """A clean scan: resources and passes, no findings, no errors."""
    bucket = res("aws_s3_bucket.ok", "aws_s3_bucket", "main.tf")
    result = ScanResult(resources=[bucket], rules_evaluated=4, pack_digest=pack.digest,
                        passes=[("T-ENC-001", "aws_s3_bucket.ok"), ("T-LOG-001", "aws_s3_bucket.ok")])
    return ReportInput(result=result, pack=pack, base_dir=BASE)


@pytest.fixture
def make_input(pack: PolicyPack) -> Callable[..., ReportInput]:
    """Build an input from findings (and optional ScanResult fields) with the sample pack."""

    def build(findings: list[Finding], threshold: str = "low", **fields: Any) -> ReportInput:
        resources = list({id(f.resource): f.resource for f in findings}.values())
        result = ScanResult(resources=resources, findings=findings, rules_evaluated=4,
                            pack_digest=pack.digest, **fields)
        return ReportInput(result=result, pack=pack, threshold=threshold, base_dir=BASE)

    return build
