"""IAM policy documents as data, and who is covered by which policy.

Every way a policy is written in Terraform or plan JSON (a ``jsonencode()`` result, a
heredoc or quoted JSON string, ``file()``/``templatefile()`` content, a
``data "aws_iam_policy_document"``) is turned into one statement model
(:class:`Statement`). Attachments are then followed across resources (inline and managed
policies on users, groups and roles, group membership) so a rule can ask what applies to
a principal. Rules query all of it through the declarative operators in
:data:`IAM_OPERATORS`; no rule needs Python of its own.

Three-valued throughout: a value that cannot be known statically stays an
:class:`~soc2infra.model.Unknown` inside the statement, and a policy that cannot be
resolved at all (an ARN defined outside the scanned tree) is a *gap*. Gaps and unknowns
turn results into *unknown*, never into a silent pass or fail.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from soc2infra.engine.conditions import (
    Compiler,
    ConditionError,
    EvalContext,
    Predicate,
    ResourceIndex,
    Tri,
    compile_condition,
    t_and,
    t_not,
    t_or,
)
from soc2infra.engine.paths import flatten, parse_path, resolve
from soc2infra.model import Resource, Unknown

Value = str | Unknown
"""A statement field element: a known string, or an Unknown placeholder."""

DATA_DOCUMENT = "data.aws_iam_policy_document"
PRINCIPAL_KINDS = {"aws_iam_user": "user", "aws_iam_group": "group", "aws_iam_role": "role"}
# Resources that belong to one IAM user (their `user` argument names it).
USER_OWNED = {
    "aws_iam_user_login_profile": "user",
    "aws_iam_access_key": "user",
    "aws_iam_user_ssh_key": "user",
    "aws_iam_service_specific_credential": "user_name",
    "aws_iam_signing_certificate": "user_name",
}


# --------------------------------------------------------------------------- model

@dataclass(frozen=True, slots=True)
class Condition:
    """One condition entry: ``{"Bool": {"aws:MultiFactorAuthPresent": ["false"]}}`` is
    ``Condition("Bool", "aws:MultiFactorAuthPresent", ("false",))``."""

    operator: Value
    key: Value
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    """One IAM policy statement; list fields keep Unknown elements where values are computed."""

    effect: Value
    actions: tuple[Value, ...] = ()
    not_actions: tuple[Value, ...] = ()
    resources: tuple[Value, ...] = ()
    not_resources: tuple[Value, ...] = ()
    # (type, identifier): ("AWS", "arn:aws:iam::123456789012:root"), ("Service", "ec2.amazonaws.com")
    principals: tuple[tuple[Value, Value], ...] = ()
    not_principals: tuple[tuple[Value, Value], ...] = ()
    conditions: tuple[Condition, ...] = ()
    sid: str = ""
    origin: str = ""  # where the document came from: a resource address or a managed-policy ARN

    def view(self) -> StatementView:
        """A plain-data view of the statement, so ordinary path tests work on it too."""
        return StatementView(self)


class StatementView(dict[str, Any]):
    """What ``where`` conditions see: a dict (for path tests) carrying its :class:`Statement`."""

    __slots__ = ("statement",)

    def __init__(self, st: Statement) -> None:
        super().__init__(
            sid=st.sid, effect=st.effect, actions=list(st.actions), not_actions=list(st.not_actions),
            resources=list(st.resources), not_resources=list(st.not_resources),
            principals=[{"type": t, "identifier": i} for t, i in st.principals],
            conditions=[{"operator": c.operator, "key": c.key, "values": list(c.values)}
                        for c in st.conditions],
            origin=st.origin,
        )
        self.statement = st


@dataclass(slots=True)
class PolicySet:
    """Statements that apply (each flagged certain or only possible) plus the gaps: policies
    that exist but cannot be read statically. A gap makes any conclusion unknown."""

    entries: list[tuple[Statement, bool]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def add(self, other: PolicySet, certain: bool = True) -> None:
        """Merge *other*; everything it holds becomes uncertain when *certain* is false."""
        self.entries.extend((st, sure and certain) for st, sure in other.entries)
        self.gaps.extend(other.gaps)

    def add_statements(self, statements: Iterable[Statement]) -> None:
        """Add statements known to apply."""
        self.entries.extend((st, True) for st in statements)

    @property
    def statements(self) -> list[Statement]:
        """The statements, certain or not."""
        return [st for st, _sure in self.entries]


# --------------------------------------------------------------------------- JSON documents

def _lookup(obj: Mapping[str, Any], key: str) -> Any:
    """Case-insensitive key lookup: hand-written policies are not consistent about case."""
    if key in obj:
        return obj[key]
    low = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def _values(raw: Any) -> tuple[Value, ...]:
    """A policy field (string or list) as a tuple of strings and Unknowns."""
    if raw is None:
        return ()
    if isinstance(raw, Unknown):
        return (raw,)
    items = raw if isinstance(raw, list) else [raw]
    out: list[Value] = []
    for item in items:
        if isinstance(item, Unknown):
            out.append(item)
        elif isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, (str, int, float)):
            out.append(str(item))
        elif item is not None:
            out.append(Unknown("a nested value where a string was expected"))
    return tuple(out)


def _json_principals(raw: Any) -> tuple[tuple[Value, Value], ...]:
    if raw is None:
        return ()
    if isinstance(raw, Unknown):
        return ((raw, raw),)
    if isinstance(raw, str):
        # "Principal": "*" means everyone, exactly like {"AWS": "*"}.
        return (("AWS", raw),)
    if not isinstance(raw, dict):
        return ((Unknown("principal"), Unknown("principal")),)
    return tuple((str(ptype), ident) for ptype, ids in raw.items() for ident in _values(ids))


def _json_conditions(raw: Any) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        u = Unknown("condition")
        return (Condition(u, u, (u,)),)
    out: list[Condition] = []
    for op, entries in raw.items():
        if not isinstance(entries, dict):
            u = Unknown("condition")
            out.append(Condition(str(op), u, (u,)))
            continue
        out.extend(Condition(str(op), str(key), _values(vals)) for key, vals in entries.items())
    return tuple(out)


def _json_statement(raw: Any, origin: str) -> Statement:
    if not isinstance(raw, dict):
        return Statement(effect=Unknown("statement"), origin=origin)
    effect = _lookup(raw, "Effect")
    return Statement(
        effect=effect if isinstance(effect, (str, Unknown)) else Unknown("effect"),
        actions=_values(_lookup(raw, "Action")), not_actions=_values(_lookup(raw, "NotAction")),
        resources=_values(_lookup(raw, "Resource")), not_resources=_values(_lookup(raw, "NotResource")),
        principals=_json_principals(_lookup(raw, "Principal")),
        not_principals=_json_principals(_lookup(raw, "NotPrincipal")),
        conditions=_json_conditions(_lookup(raw, "Condition")),
        sid=_sid(_lookup(raw, "Sid")), origin=origin,
    )


def parse_policy_json(document: Any, origin: str) -> list[Statement] | Unknown:
    """Statements of a JSON policy (text or already decoded); Unknown when it is not a policy."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return Unknown(f"the policy of {origin} is not valid JSON")
    if not isinstance(document, dict):
        return Unknown(f"the policy of {origin} is not a JSON object")
    raw = _lookup(document, "Statement")
    if raw is None:
        return []
    if isinstance(raw, Unknown):
        return raw
    return [_json_statement(s, origin) for s in (raw if isinstance(raw, list) else [raw])]


def _partial(value: Unknown) -> Any:
    """The structure behind an unknown ``jsonencode()`` result, when the source kept it
    (a value with computed leaves, such as ``Resource = aws_s3_bucket.b.arn``)."""
    return getattr(value, "partial", None)


# --------------------------------------------------------------------------- data aws_iam_policy_document

def _block_principals(blocks: Any) -> tuple[tuple[Value, Value], ...]:
    if blocks is None:
        return ()
    if isinstance(blocks, Unknown):
        return ((blocks, blocks),)
    out: list[tuple[Value, Value]] = []
    for blk in blocks if isinstance(blocks, list) else [blocks]:
        if not isinstance(blk, dict):
            continue
        ptype = blk.get("type")
        ptype_v: Value = ptype if isinstance(ptype, (str, Unknown)) else Unknown("principal type")
        # The provider writes type "*" with identifiers ["*"] for everyone: same as AWS "*".
        if ptype_v == "*":
            ptype_v = "AWS"
        out.extend((ptype_v, ident) for ident in _values(blk.get("identifiers")))
    return tuple(out)


def _block_conditions(blocks: Any) -> tuple[Condition, ...]:
    if blocks is None:
        return ()
    if isinstance(blocks, Unknown):
        return (Condition(blocks, blocks, (blocks,)),)
    out: list[Condition] = []
    for blk in blocks if isinstance(blocks, list) else [blocks]:
        if isinstance(blk, dict):
            test, variable = blk.get("test"), blk.get("variable")
            out.append(Condition(test if isinstance(test, (str, Unknown)) else Unknown("test"),
                                 variable if isinstance(variable, (str, Unknown)) else Unknown("variable"),
                                 _values(blk.get("values"))))
    return tuple(out)


def _block_statement(blk: dict[str, Any], origin: str) -> Statement:
    effect = blk.get("effect", "Allow")
    return Statement(
        effect=effect if isinstance(effect, (str, Unknown)) else "Allow",
        actions=_values(blk.get("actions")), not_actions=_values(blk.get("not_actions")),
        resources=_values(blk.get("resources")), not_resources=_values(blk.get("not_resources")),
        principals=_block_principals(blk.get("principals")),
        not_principals=_block_principals(blk.get("not_principals")),
        conditions=_block_conditions(blk.get("condition")),
        sid=_sid(blk.get("sid")), origin=origin,
    )


def _sid(raw: Any) -> str:
    """A statement id as text; an absent, null or unknown id is "" (such a statement never
    replaces another by ``sid``, which is the conservative reading: both are kept)."""
    if raw is None or isinstance(raw, Unknown):
        return ""
    return str(raw)


def _override_by_sid(base: list[Statement], overrides: list[Statement]) -> list[Statement]:
    """The provider's merge rule: a statement with the same ``sid`` replaces the earlier one,
    anything else is appended."""
    out = list(base)
    for st in overrides:
        at = next((i for i, old in enumerate(out) if st.sid and old.sid == st.sid), None)
        if at is None:
            out.append(st)
        else:
            out[at] = st
    return out


def data_document_policies(res: Resource, index: ResourceIndex) -> PolicySet:
    """Statements of a ``data "aws_iam_policy_document"``: its ``source_policy_documents``
    (and ``source_json``), its own ``statement`` blocks, then ``override_policy_documents``
    (and ``override_json``), merged by ``sid`` as the provider does."""
    attrs = res.attributes
    rendered = attrs.get("json")
    if isinstance(rendered, str):  # plan JSON carries the rendered document
        return _statements_or_gap(parse_policy_json(rendered, res.address))
    out = PolicySet()
    merged: list[Statement] = []
    for path in ("source_policy_documents", "source_json"):
        found = policies_at(res, path, index)
        out.gaps.extend(found.gaps)
        merged = _override_by_sid(merged, found.statements)
    blocks = attrs.get("statement")
    if isinstance(blocks, Unknown):
        out.gaps.append(f"the statements of {res.address} are not known statically")
    elif isinstance(blocks, list):
        own = [_block_statement(b, res.address) for b in blocks if isinstance(b, dict)]
        merged = _override_by_sid(merged, own)
    for path in ("override_policy_documents", "override_json"):
        found = policies_at(res, path, index)
        out.gaps.extend(found.gaps)
        merged = _override_by_sid(merged, found.statements)
    out.add_statements(merged)
    return out


def _statements_or_gap(parsed: list[Statement] | Unknown) -> PolicySet:
    out = PolicySet()
    if isinstance(parsed, Unknown):
        out.gaps.append(parsed.reason or "a policy is not known statically")
    else:
        out.add_statements(parsed)
    return out


# --------------------------------------------------------------------------- documents on a resource

def _cache(index: ResourceIndex) -> dict[Any, Any]:
    """Per-scan memo (parsed documents, attachment tables) living as long as the index."""
    memo = getattr(index, "_iam_cache", None)
    if memo is None:
        memo = {}
        index._iam_cache = memo  # type: ignore[attr-defined]
    return memo


def _refs_under(res: Resource, path: str) -> set[str]:
    """Addresses referenced by the attribute at *path* (or anything below it)."""
    out: set[str] = set()
    for p, targets in res.references.items():
        if p == path or p.startswith(path + "."):
            out |= targets
    return out


def policies_at(res: Resource, path: str, index: ResourceIndex) -> PolicySet:
    """Every policy document written at attribute *path* of *res* (a JSON string, a list of
    them, or an expression referring to a policy document data source or policy resource)."""
    memo = _cache(index)
    key = ("doc", id(res), path)
    if key in memo:
        return memo[key]
    memo[key] = PolicySet(gaps=[f"{res.address}.{path} refers to itself"])  # cycle guard
    out = PolicySet()
    unresolved = 0
    # Name the attribute too when it is not the usual one (a role's trust policy, say).
    origin = res.address if path == "policy" else f"{res.address}.{path}"
    for value in flatten(resolve(res.attributes, parse_path(path))):
        if isinstance(value, Unknown):
            partial = _partial(value)
            if partial is not None:
                out.add(_statements_or_gap(parse_policy_json(partial, origin)))
            else:
                unresolved += 1
        elif isinstance(value, (str, dict)):
            out.add(_statements_or_gap(parse_policy_json(value, origin)))
    if unresolved:
        out.add(_referenced_policies(res, path, index))
    memo[key] = out
    return out


def _referenced_policies(res: Resource, path: str, index: ResourceIndex) -> PolicySet:
    """Follow the references of an attribute whose value is not known statically."""
    out = PolicySet()
    targets = sorted(_refs_under(res, path))
    documents = [index.by_address.get(a) for a in targets]
    holders = [t for t in documents if t is not None and _holds_policy(t)]
    if not holders:
        hint = f" (it depends on {', '.join(targets)})" if targets else ""
        out.gaps.append(f"{res.address}.{path} is not known statically{hint}")
        return out
    for target in holders:
        out.add(document_policies(target, index))
    return out


def _holds_policy(res: Resource) -> bool:
    return res.type == DATA_DOCUMENT or "policy" in res.attributes


def document_policies(res: Resource, index: ResourceIndex) -> PolicySet:
    """The statements of a policy-holding resource: a policy document data source, or any
    resource with a ``policy`` argument (``aws_iam_policy``, ``aws_s3_bucket_policy`` …)."""
    if res.type == DATA_DOCUMENT:
        memo = _cache(index)
        key = ("datadoc", id(res))
        if key not in memo:
            memo[key] = PolicySet(gaps=[f"{res.address} refers to itself"])
            memo[key] = data_document_policies(res, index)
        return memo[key]
    return policies_at(res, "policy", index)


# --------------------------------------------------------------------------- AWS managed policies

_READ = ("*:Get*", "*:List*", "*:Describe*", "*:BatchGet*", "*:View*", "*:Search*", "*:Lookup*")
# The statements that decide what a managed policy allows (admin, write or read only),
# not verbatim copies of the AWS documents.
MANAGED_POLICIES: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    # name: [(Allow | NotAction marker, actions or not-actions, resources)]
    "AdministratorAccess": [("Action", ("*",), ("*",))],
    "PowerUserAccess": [
        ("NotAction", ("iam:*", "organizations:*", "account:*"), ("*",)),
        ("Action", ("iam:CreateServiceLinkedRole", "iam:DeleteServiceLinkedRole", "iam:ListRoles",
                    "organizations:DescribeOrganization", "account:ListRegions"), ("*",)),
    ],
    "IAMFullAccess": [
        ("Action", ("iam:*", "organizations:DescribeAccount", "organizations:DescribeOrganization",
                    "organizations:ListAccounts"), ("*",)),
    ],
    "IAMReadOnlyAccess": [("Action", ("iam:GenerateCredentialReport", "iam:Get*", "iam:List*",
                                      "iam:SimulateCustomPolicy", "iam:SimulatePrincipalPolicy"), ("*",))],
    "IAMUserChangePassword": [("Action", ("iam:ChangePassword",), ("arn:aws:iam::*:user/${aws:username}",)),
                              ("Action", ("iam:GetAccountPasswordPolicy",), ("*",))],
    "ReadOnlyAccess": [("Action", _READ, ("*",))],
    "ViewOnlyAccess": [("Action", ("*:List*", "*:Describe*", "*:View*"), ("*",))],
    "SecurityAudit": [("Action", _READ, ("*",))],
    "AmazonS3FullAccess": [("Action", ("s3:*", "s3-object-lambda:*"), ("*",))],
    "AmazonS3ReadOnlyAccess": [("Action", ("s3:Get*", "s3:List*", "s3:Describe*", "s3-object-lambda:Get*",
                                           "s3-object-lambda:List*"), ("*",))],
    "AmazonEC2FullAccess": [("Action", ("ec2:*", "elasticloadbalancing:*", "cloudwatch:*", "autoscaling:*",
                                        "iam:CreateServiceLinkedRole"), ("*",))],
    "AmazonEC2ReadOnlyAccess": [("Action", ("ec2:Describe*", "elasticloadbalancing:Describe*",
                                            "cloudwatch:ListMetrics", "cloudwatch:GetMetricStatistics",
                                            "cloudwatch:Describe*", "autoscaling:Describe*"), ("*",))],
    "AmazonDynamoDBFullAccess": [("Action", ("dynamodb:*", "dax:*", "application-autoscaling:*",
                                             "cloudwatch:*", "iam:PassRole"), ("*",))],
    "AmazonRDSFullAccess": [("Action", ("rds:*", "application-autoscaling:*", "cloudwatch:*",
                                        "ec2:Describe*"), ("*",))],
    "AWSLambda_FullAccess": [("Action", ("lambda:*", "cloudformation:DescribeStacks", "iam:PassRole",
                                         "logs:*", "s3:*"), ("*",))],
    "AWSLambdaBasicExecutionRole": [("Action", ("logs:CreateLogGroup", "logs:CreateLogStream",
                                                "logs:PutLogEvents"), ("*",))],
    "AmazonSSMManagedInstanceCore": [("Action", ("ssm:DescribeAssociation", "ssm:GetDocument",
                                                 "ssm:UpdateInstanceInformation", "ssmmessages:*",
                                                 "ec2messages:*"), ("*",))],
    "AmazonEKSClusterPolicy": [("Action", ("autoscaling:DescribeAutoScalingGroups", "ec2:CreateTags",
                                           "ec2:Describe*", "elasticloadbalancing:*", "kms:DescribeKey"),
                                ("*",))],
    "AmazonEKSWorkerNodePolicy": [("Action", ("ec2:Describe*", "eks:DescribeCluster",
                                              "eks-auth:AssumeRoleForPodIdentity"), ("*",))],
    "AmazonEKS_CNI_Policy": [("Action", ("ec2:AssignPrivateIpAddresses", "ec2:AttachNetworkInterface",
                                         "ec2:CreateNetworkInterface", "ec2:Describe*"), ("*",))],
    "AmazonEC2ContainerRegistryReadOnly": [("Action", ("ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                                       "ecr:GetDownloadUrlForLayer", "ecr:Describe*",
                                                       "ecr:List*"), ("*",))],
}
_MANAGED_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")


@lru_cache(maxsize=1024)
def managed_policy_statements(arn: str) -> list[Statement] | Unknown | None:
    """Statements of an AWS-managed policy ARN; Unknown when the name is not in the table;
    None when *arn* is not an AWS-managed policy at all."""
    m = _MANAGED_ARN.match(arn)
    if m is None:
        return None
    table = MANAGED_POLICIES.get(m.group(1))
    if table is None:
        return Unknown(f"AWS managed policy {m.group(1)} is not in soc2infra's table of managed policies")
    return [Statement(effect="Allow", actions=acts if kind == "Action" else (),
                      not_actions=acts if kind == "NotAction" else (), resources=res, origin=arn)
            for kind, acts, res in table]


def policy_arn_policies(arn: str, index: ResourceIndex) -> PolicySet:
    """The statements behind a policy ARN: an AWS-managed policy known by name, or a
    customer policy defined in the scanned tree; anything else is a gap."""
    managed = managed_policy_statements(arn)
    if managed is not None:
        return _statements_or_gap(managed)
    name = arn.rsplit("/", 1)[-1]
    for res in index.by_type.get("aws_iam_policy", ()):
        if arn in res.identities or res.attributes.get("name") == name:
            return document_policies(res, index)
    out = PolicySet()
    out.gaps.append(f"policy {arn} is defined outside the scanned tree")
    return out


def arn_policies_at(res: Resource, path: str, index: ResourceIndex) -> PolicySet:
    """Policies named by ARN at *path* of *res* (``policy_arn``, ``managed_policy_arns``):
    literal ARNs, or references to ``aws_iam_policy`` / ``data.aws_iam_policy`` resources."""
    out = PolicySet()
    unresolved = False
    for value in flatten(resolve(res.attributes, parse_path(path))):
        if isinstance(value, str):
            out.add(policy_arn_policies(value, index))
        elif isinstance(value, Unknown):
            unresolved = True
    if not unresolved:
        return out
    targets = sorted(_refs_under(res, path))
    found = [t for a in targets if (t := index.by_address.get(a)) is not None]
    if not found:
        out.gaps.append(f"{res.address}.{path} is not known statically")
    for target in found:
        out.add(_policy_resource_policies(target, index))
    return out


def _policy_resource_policies(target: Resource, index: ResourceIndex) -> PolicySet:
    if target.type == "aws_iam_policy":
        return document_policies(target, index)
    if target.type == "data.aws_iam_policy":
        # A looked-up policy: known when it names an AWS-managed policy.
        for key in ("arn", "name"):
            value = target.attributes.get(key)
            if isinstance(value, str):
                arn = value if key == "arn" else f"arn:aws:iam::aws:policy/{value}"
                found = policy_arn_policies(arn, index)
                if not found.gaps or key == "name":
                    return found
    out = PolicySet()
    out.gaps.append(f"the policy of {target.address} is not known statically")
    return out


# --------------------------------------------------------------------------- principals and attachments

@dataclass(frozen=True, slots=True)
class Principal:
    """An IAM user, group or role: defined in the tree (*resource*) or only named."""

    kind: str  # user | group | role
    names: frozenset[str]
    resource: Resource | None = None

    @property
    def key(self) -> tuple[str, str | frozenset[str]]:
        """Identity for memoisation."""
        return (self.kind, self.resource.address if self.resource is not None else self.names)

    @property
    def label(self) -> str:
        """How the principal is named in notes."""
        if self.resource is not None:
            return self.resource.address
        return f"{self.kind} {', '.join(sorted(self.names))}"


def principal_of(res: Resource) -> Principal:
    """The principal a user/group/role resource defines."""
    names = set(res.identities)
    name = res.attributes.get("name")
    if isinstance(name, str):
        names.add(name)
    return Principal(PRINCIPAL_KINDS[res.type], frozenset(names), res)


# (attachment type, attribute naming the principal, attribute holding the policy, policy by ARN?)
ATTACHMENTS: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "user": (("aws_iam_user_policy", "user", "policy", False),
             ("aws_iam_user_policy_attachment", "user", "policy_arn", True),
             ("aws_iam_policy_attachment", "users", "policy_arn", True)),
    "group": (("aws_iam_group_policy", "group", "policy", False),
              ("aws_iam_group_policy_attachment", "group", "policy_arn", True),
              ("aws_iam_policy_attachment", "groups", "policy_arn", True)),
    "role": (("aws_iam_role_policy", "role", "policy", False),
             ("aws_iam_role_policy_attachment", "role", "policy_arn", True),
             ("aws_iam_policy_attachment", "roles", "policy_arn", True)),
}
# (membership type, attribute naming the user, attribute naming the group(s))
MEMBERSHIPS = (("aws_iam_user_group_membership", "user", "groups"),
               ("aws_iam_group_membership", "users", "group"))


@dataclass(slots=True)
class _LinkTable:
    """Resources of one type indexed by the principal their attribute *via* names."""

    by_name: dict[str, list[Resource]] = field(default_factory=dict)
    by_address: dict[str, list[Resource]] = field(default_factory=dict)
    undecided: list[Resource] = field(default_factory=list)  # the name is unknown and unreferenced


def _link_table(index: ResourceIndex, rtype: str, via: str) -> _LinkTable:
    memo = _cache(index)
    key = ("links", rtype, via)
    if key not in memo:
        table = _LinkTable()
        vpath = parse_path(via)
        for res in index.by_type.get(rtype, ()):
            values = flatten(resolve(res.attributes, vpath))
            refs = _refs_under(res, via)
            for v in values:
                if isinstance(v, str):
                    table.by_name.setdefault(v, []).append(res)
            for addr in refs:
                table.by_address.setdefault(addr, []).append(res)
            if any(isinstance(v, Unknown) for v in values) and not refs:
                table.undecided.append(res)
        memo[key] = table
    return memo[key]


def linked(index: ResourceIndex, rtype: str, via: str, principal: Principal) -> list[tuple[Resource, bool]]:
    """Resources of *rtype* whose *via* names *principal*: (resource, certain). A resource whose
    *via* cannot be known statically may name it: it is returned as not certain."""
    table = _link_table(index, rtype, via)
    found: dict[int, Resource] = {}
    if principal.resource is not None:
        for res in table.by_address.get(principal.resource.address, ()):
            found[id(res)] = res
    for name in principal.names:
        for res in table.by_name.get(name, ()):
            found[id(res)] = res
    out = [(res, True) for res in found.values()]
    out += [(res, False) for res in table.undecided if id(res) not in found]
    return out


def _group_named(name: str, index: ResourceIndex) -> Principal:
    for res in index.by_identity.get(name, ()):
        if res.type == "aws_iam_group":
            return principal_of(res)
    return Principal("group", frozenset([name]))


def groups_of(user: Principal, index: ResourceIndex) -> tuple[list[tuple[Principal, bool]], list[str]]:
    """The groups *user* belongs to (certain or possible) and what could not be resolved."""
    groups: list[tuple[Principal, bool]] = []
    gaps: list[str] = []
    for mtype, user_attr, group_attr in MEMBERSHIPS:
        for membership, certain in linked(index, mtype, user_attr, user):
            values = flatten(resolve(membership.attributes, parse_path(group_attr)))
            groups += [(_group_named(v, index), certain) for v in values if isinstance(v, str)]
            if any(isinstance(v, Unknown) for v in values):
                refs = [index.by_address.get(a) for a in sorted(_refs_under(membership, group_attr))]
                refd = [principal_of(r) for r in refs if r is not None and r.type == "aws_iam_group"]
                groups += [(g, certain) for g in refd]
                if not refd:
                    gaps.append(f"the groups of {membership.address} are not known statically")
    return groups, gaps


def effective_policies(principal: Principal, index: ResourceIndex) -> PolicySet:
    """Every statement that applies to *principal*: inline and managed policies attached
    to it, plus (for a user) those of its groups. Trust policies are not included."""
    memo = _cache(index)
    key = ("effective", principal.key)
    if key in memo:
        return memo[key]
    memo[key] = PolicySet()  # a group cannot contain itself, but never loop
    out = PolicySet()
    if principal.resource is None:
        out.gaps.append(f"{principal.label} is not defined in the scanned tree: its policies are unknown")
    elif principal.kind == "role":
        out.add(policies_at(principal.resource, "inline_policy.policy", index))
        out.add(arn_policies_at(principal.resource, "managed_policy_arns", index))
    for rtype, via, policy_attr, by_arn in ATTACHMENTS[principal.kind]:
        for attachment, certain in linked(index, rtype, via, principal):
            found = (arn_policies_at(attachment, policy_attr, index) if by_arn
                     else policies_at(attachment, policy_attr, index))
            out.add(found, certain)
    if principal.kind == "user":
        groups, gaps = groups_of(principal, index)
        out.gaps.extend(gaps)
        for group, certain in groups:
            out.add(effective_policies(group, index), certain)
    memo[key] = out
    return out


def principal_for(res: Resource, index: ResourceIndex, via: str | None = None) -> Principal | Unknown:
    """The IAM principal a resource is about: itself for users, groups and roles; the user
    named by ``user`` for login profiles, access keys and other per-user credentials."""
    if res.type in PRINCIPAL_KINDS and via is None:
        return principal_of(res)
    attr = via or USER_OWNED.get(res.type)
    if attr is None:
        return Unknown(f"{res.type} is not an IAM principal")
    targets = index.referenced_by(res, frozenset(PRINCIPAL_KINDS), attr)
    if targets:
        return principal_of(sorted(targets, key=lambda r: r.address)[0])
    value = res.attributes.get(attr)
    if isinstance(value, str):
        return Principal("user", frozenset([value]))
    return Unknown(f"the principal named by {res.address}.{attr} is not known statically")


# --------------------------------------------------------------------------- action, resource matching

def pattern_matches(pattern: str, name: str) -> bool:
    """IAM wildcard match (``*`` and ``?``), case-insensitive, of a concrete *name*."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name.lower(), re.S) is not None


@lru_cache(maxsize=16384)
def pattern_covers(general: str, specific: str) -> bool:
    """True when every name matched by *specific* is matched by *general* (both may hold
    ``*``/``?``), e.g. ``iam:*`` covers ``iam:Pass*``; ``iam:Get*`` does not cover ``iam:*``."""
    g, s = general.lower(), specific.lower()

    @cache
    def go(i: int, j: int) -> bool:
        if j == len(s):
            return all(c == "*" for c in g[i:])
        if i == len(g):
            return False
        if g[i] == "*":  # absorbs nothing, or the next token of s (whatever it is)
            return go(i + 1, j) or go(i, j + 1)
        if g[i] == "?":
            return s[j] != "*" and go(i + 1, j + 1)
        return s[j] not in "*?" and s[j] == g[i] and go(i + 1, j + 1)

    return go(0, 0)


@lru_cache(maxsize=16384)
def patterns_overlap(a: str, b: str) -> bool:
    """True when some name is matched by both wildcard patterns."""
    a, b = a.lower(), b.lower()
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            todo.append((i + 1, j))
        if j < len(b) and b[j] == "*":
            todo.append((i, j + 1))
        if i < len(a) and j < len(b) and (a[i] in "*?" or b[j] in "*?" or a[i] == b[j]):
            todo.append((i if a[i] == "*" else i + 1, j if b[j] == "*" else j + 1))
    return False


def _known(values: tuple[Value, ...]) -> tuple[list[str], bool]:
    """The known strings, and whether an unknown element is present."""
    return [v for v in values if isinstance(v, str)], any(isinstance(v, Unknown) for v in values)


def _any_of(values: tuple[Value, ...], test: Callable[[str], bool]) -> Tri:
    """True when a known element passes *test*; unknown when none does but one is unknown."""
    known, unknown = _known(values)
    if any(test(v) for v in known):
        return True
    return None if unknown else False


def covers_action(st: Statement, query: str) -> Tri:
    """The statement's Action/NotAction applies to every action matching *query*."""
    if st.not_actions:
        # NotAction grants everything except what it lists: all of *query* unless one overlaps.
        return t_not(_any_of(st.not_actions, lambda p: patterns_overlap(p, query)))
    return _any_of(st.actions, lambda p: pattern_covers(p, query))


def matches_action(st: Statement, query: str) -> Tri:
    """The statement's Action/NotAction applies to at least one action matching *query*."""
    if st.not_actions:
        return t_not(_any_of(st.not_actions, lambda p: pattern_covers(p, query)))
    return _any_of(st.actions, lambda p: patterns_overlap(p, query))


READ_PREFIXES = ("get", "list", "describe", "view", "read", "search", "lookup", "batchget", "head", "query",
                 "scan")


def is_read_only_pattern(pattern: str) -> bool:
    """An action pattern that can only name read actions: its action part starts with a
    literal read verb (``s3:Get*``, ``ec2:Describe*``); ``s3:*`` and ``*`` are not."""
    _service, _, action = pattern.lower().partition(":")
    literal = re.split(r"[*?]", action, maxsplit=1)[0]
    return any(literal.startswith(p) for p in READ_PREFIXES)


def grants_write(st: Statement) -> Tri:
    """The statement's actions include at least one that is not read only."""
    if st.not_actions:
        # NotAction leaves (nearly) everything: write unless it excludes every action.
        return t_not(_any_of(st.not_actions, lambda p: pattern_covers(p, "*")))
    return _any_of(st.actions, lambda p: not is_read_only_pattern(p))


def covers_all_actions(st: Statement, except_services: frozenset[str]) -> Tri:
    """The statement applies to every action, or to every action of every service other
    than *except_services* (the usual shape of an MFA-enforcing Deny with NotAction)."""
    if st.not_actions:
        if not except_services:
            return False
        known, unknown = _known(st.not_actions)
        if any(p.lower().partition(":")[0] not in except_services for p in known):
            return False
        return None if unknown else True
    return _any_of(st.actions, lambda p: pattern_covers(p, "*"))


def resource_is_wildcard(st: Statement) -> Tri:
    """The statement applies to every resource (``*``, ``arn:*``) or uses NotResource."""
    if st.not_resources:
        return True
    return _any_of(st.resources, lambda r: pattern_covers(r, "*") or pattern_covers(r, "arn:*"))


def _norm_text(v: str) -> str:
    return v.strip().lower()


def condition_matches(cond: Condition, operators: frozenset[str] | None, keys: frozenset[str] | None,
                      values: frozenset[str] | None) -> Tri:
    """Does one condition have one of *operators*, a key matching one of *keys* (shell
    patterns) and one of *values*? Each filter is optional; comparisons ignore case, as IAM
    does for keys and operators."""
    parts: list[Tri] = []
    if operators is not None:
        op = cond.operator
        parts.append(None if isinstance(op, Unknown) else _norm_text(op) in operators)
    if keys is not None:
        # Keys may be shell patterns ("*:sub" for any OIDC provider's subject claim).
        key = cond.key
        parts.append(None if isinstance(key, Unknown)
                     else any(fnmatch.fnmatchcase(_norm_text(key), k) for k in keys))
    if values is not None:
        parts.append(_any_of(cond.values, lambda v: _norm_text(v) in values))
    return t_and(parts)


# --------------------------------------------------------------------------- operator helpers

def _names(arg: Any, where: str, lower: bool = True) -> frozenset[str]:
    items = arg if isinstance(arg, list) else [arg]
    if not items or not all(isinstance(i, (str, bool, int)) for i in items):
        raise ConditionError("expected a string or a list of strings", where)
    out = []
    for i in items:
        text = ("true" if i else "false") if isinstance(i, bool) else str(i)
        out.append(text.lower() if lower else text)
    return frozenset(out)


def _statement(ctx: EvalContext) -> Statement | None:
    value = ctx.value
    return value.statement if isinstance(value, StatementView) else None


def _statement_test(test: Callable[[Statement], Tri]) -> Predicate:
    """A predicate over the statement in ``ctx.value`` (false outside ``where`` of an IAM operator)."""

    def pred(ctx: EvalContext) -> Tri:
        st = _statement(ctx)
        return False if st is None else test(st)

    return pred


def _over_queries(queries: frozenset[str], test: Callable[[Statement, str], Tri]) -> Predicate:
    return _statement_test(lambda st: t_or([test(st, q) for q in sorted(queries)]))


# --------------------------------------------------------------------------- statement-level operators

def _c_effect(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``effect: Allow`` (or Deny), case-insensitive."""
    wanted = _names(arg, where)

    def test(st: Statement) -> Tri:
        return None if isinstance(st.effect, Unknown) else st.effect.lower() in wanted

    return _statement_test(test)


def _c_action_matches(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``action_matches: "iam:Pass*"`` (or a list): the statement applies to at least one such action."""
    return _over_queries(_names(arg, where, lower=False), matches_action)


def _c_covers_action(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``covers_action: "iam:*"`` (or a list, any of): the statement applies to every such action."""
    return _over_queries(_names(arg, where, lower=False), covers_action)


def _c_allows_action(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``allows_action: "iam:*"``: an Allow statement covering every such action."""
    queries = _names(arg, where, lower=False)

    def test(st: Statement) -> Tri:
        effect = None if isinstance(st.effect, Unknown) else st.effect.lower() == "allow"
        return t_and([effect, t_or([covers_action(st, q) for q in sorted(queries)])])

    return _statement_test(test)


def _c_covers_all_actions(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``covers_all_actions: true`` or ``{except_services: [iam, sts]}``."""
    if arg is True:
        services: frozenset[str] = frozenset()
    elif isinstance(arg, Mapping) and set(arg) <= {"except_services"}:
        services = _names(arg.get("except_services", []) or [""], f"{where}.except_services") - {""}
    else:
        raise ConditionError("covers_all_actions takes true or {except_services: [...]}", where)
    return _statement_test(lambda st: covers_all_actions(st, services))


def _c_grants_write(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``grants_write: true``: the statement's actions include a non-read action."""
    want = _bool_arg(arg, where)
    return _statement_test(lambda st: grants_write(st) if want else t_not(grants_write(st)))


def _c_resource_is_wildcard(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``resource_is_wildcard: true``: Resource ``*`` (or NotResource)."""
    want = _bool_arg(arg, where)
    return _statement_test(lambda st: resource_is_wildcard(st) if want else t_not(resource_is_wildcard(st)))


def _c_resource_matches(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``resource_matches: "arn:aws:s3:::logs*"``: some Resource overlaps the pattern."""
    queries = _names(arg, where, lower=False)

    def test(st: Statement) -> Tri:
        if st.not_resources:
            return t_not(_any_of(st.not_resources, lambda r: any(pattern_covers(r, q) for q in queries)))
        return _any_of(st.resources, lambda r: any(patterns_overlap(r, q) for q in queries))

    return _statement_test(test)


def _c_has_condition(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``has_condition: {key: aws:MultiFactorAuthPresent, operator: [Bool], values: [false]}``:
    the statement has a condition matching every filter given (each one or a list)."""
    if not isinstance(arg, Mapping) or not arg or not set(arg) <= {"key", "operator", "values"}:
        raise ConditionError("has_condition takes a mapping of key, operator and/or values", where)
    keys = _names(arg["key"], f"{where}.key") if "key" in arg else None
    ops = _names(arg["operator"], f"{where}.operator") if "operator" in arg else None
    vals = _names(arg["values"], f"{where}.values") if "values" in arg else None
    return _statement_test(lambda st: t_or([condition_matches(c, ops, keys, vals) for c in st.conditions]))


def _c_principal_types(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``principal_types: [AWS]``: the statement names a principal of one of these types
    (AWS, Service, Federated, CanonicalUser; ``"Principal": "*"`` counts as AWS)."""
    wanted = _names(arg, where)

    def test(st: Statement) -> Tri:
        types = tuple(t for t, _i in st.principals)
        return _any_of(types, lambda t: t.lower() in wanted)

    return _statement_test(test)


def _c_principal_matches(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``principal_matches: {type: AWS, identifiers: ["*"]}``: a principal of that type whose
    identifier equals one of *identifiers*, or matches one of the shell patterns in ``glob``."""
    if not isinstance(arg, Mapping) or not set(arg) <= {"type", "identifiers", "glob"}:
        raise ConditionError("principal_matches takes {type, identifiers and/or glob}", where)
    types = _names(arg["type"], f"{where}.type") if "type" in arg else None
    exact = _names(arg["identifiers"], f"{where}.identifiers", lower=False) if "identifiers" in arg else None
    globs = _names(arg["glob"], f"{where}.glob", lower=False) if "glob" in arg else None

    def one(ptype: Value, ident: Value) -> Tri:
        parts: list[Tri] = []
        if types is not None:
            parts.append(None if isinstance(ptype, Unknown) else ptype.lower() in types)
        if exact is not None or globs is not None:
            if isinstance(ident, Unknown):
                parts.append(None)
            else:
                parts.append((exact is not None and ident in exact)
                             or (globs is not None and any(fnmatch.fnmatchcase(ident, g) for g in globs)))
        return t_and(parts)

    return _statement_test(lambda st: t_or([one(t, i) for t, i in st.principals]))


def _bool_arg(arg: Any, where: str) -> bool:
    if not isinstance(arg, bool):
        raise ConditionError("expected true or false", where)
    return arg


# --------------------------------------------------------------------------- document-level operators

QUANTIFIERS = ("any", "all", "none")


def _statement_query(arg: Any, where: str, allowed: set[str]) -> tuple[Predicate | None, str]:
    if not isinstance(arg, Mapping) or not set(arg) <= allowed:
        raise ConditionError(f"expected a mapping with keys among {sorted(allowed)}", where)
    quantifier = arg.get("quantifier", "any")
    if quantifier not in QUANTIFIERS:
        raise ConditionError(f"quantifier must be one of {', '.join(QUANTIFIERS)}", f"{where}.quantifier")
    inner = compile_condition(arg["where"], f"{where}.where") if "where" in arg else None
    return inner, quantifier


def _describe(st: Statement, position: int) -> dict[str, str]:
    return {"statement": st.sid or f"#{position + 1}", "policy": st.origin}


def quantify(policies: PolicySet, inner: Predicate | None, quantifier: str, ctx: EvalContext) -> Tri:
    """Apply *inner* to every statement and combine with *quantifier* (any | all | none),
    Kleene style: an uncertain statement can only make the result unknown, and so can a gap.
    The deciding statement and any gaps are written to ``ctx.notes`` (they become finding details)."""
    results: list[Tri] = []
    hit: dict[str, str] | None = None
    miss: dict[str, str] | None = None
    views: dict[Statement, StatementView] = _cache(ctx.index).setdefault("views", {})
    for position, (st, certain) in enumerate(policies.entries):
        view = views.get(st)
        if view is None:
            view = views[st] = st.view()  # built once per scan: many rules ask about the same statements
        r = True if inner is None else inner(EvalContext(view, ctx.resource, ctx.index, ctx.notes))
        if r is True and hit is None and certain:
            hit = _describe(st, position)
        if r is False and miss is None and certain:
            miss = _describe(st, position)
        if quantifier == "all":
            results.append(r if certain or r is True else None)
        else:
            results.append(r if certain or r is False else None)
    results += [None] * len(policies.gaps)
    if quantifier == "all":
        outcome = t_and(results)
    else:
        outcome = t_or(results)
        outcome = t_not(outcome) if quantifier == "none" else outcome
    _note(ctx, outcome, quantifier, hit, miss, policies.gaps)
    return outcome


def _note(ctx: EvalContext, outcome: Tri, quantifier: str, hit: dict[str, str] | None,
          miss: dict[str, str] | None, gaps: list[str]) -> None:
    if outcome is None and gaps:
        ctx.notes["unresolved"] = sorted(set(gaps))
    if outcome is False and quantifier == "none" and hit is not None:
        ctx.notes["matching_statement"] = hit
    if outcome is False and quantifier == "all" and miss is not None:
        ctx.notes["failing_statement"] = miss


def _c_iam_statements(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``iam_statements: {path: policy, where: C, quantifier: any|all|none}``: the statements
    of the policy document(s) at *path* (default ``policy``; a policy document data source
    is its own document) tested with C."""
    inner, quantifier = _statement_query(arg, where, {"path", "where", "quantifier"})
    path = arg.get("path")

    def pred(ctx: EvalContext) -> Tri:
        res = ctx.resource
        if path is None and res.type == DATA_DOCUMENT:
            found = document_policies(res, ctx.index)
        else:
            found = policies_at(res, str(path or "policy"), ctx.index)
        return quantify(found, inner, quantifier, ctx)

    return pred


def _c_iam_trust(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``iam_trust: {where: C, quantifier: any|all|none}``: the statements of a role's trust
    policy (``assume_role_policy``)."""
    inner, quantifier = _statement_query(arg, where, {"where", "quantifier"})
    def pred(ctx: EvalContext) -> Tri:
        return quantify(policies_at(ctx.resource, "assume_role_policy", ctx.index), inner, quantifier, ctx)

    return pred


def _c_iam_effective_statements(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``iam_effective_statements: {where: C, quantifier: any|all|none, via: user}``: every
    statement that applies to the principal (inline and attached policies, and for a user
    those of its groups). On a login profile or access key the principal is its user;
    *via* names another attribute holding a principal."""
    inner, quantifier = _statement_query(arg, where, {"where", "quantifier", "via"})
    via = arg.get("via")

    def pred(ctx: EvalContext) -> Tri:
        principal = principal_for(ctx.resource, ctx.index, via)
        if isinstance(principal, Unknown):
            ctx.notes["unresolved"] = [principal.reason]
            return None
        ctx.notes["principal"] = principal.label
        return quantify(effective_policies(principal, ctx.index), inner, quantifier, ctx)

    return pred


def _c_first_of_type(arg: Any, _spec: Mapping[str, Any], where: str) -> Predicate:
    """``first_of_type: true``: this resource has the smallest address among the resources of
    its type in the scan. Anchors a tree-level rule on one resource, so it is reported once."""
    want = _bool_arg(arg, where)

    def pred(ctx: EvalContext) -> Tri:
        peers = ctx.index.by_type.get(ctx.resource.type, ())
        first = min((r.address for r in peers), default=ctx.resource.address)
        return (first == ctx.resource.address) == want

    return pred


IAM_OPERATORS: dict[str, Compiler] = {
    # over a resource
    "iam_statements": _c_iam_statements,
    "iam_trust": _c_iam_trust,
    "iam_effective_statements": _c_iam_effective_statements,
    "first_of_type": _c_first_of_type,
    # over one statement (inside `where`)
    "effect": _c_effect,
    "action_matches": _c_action_matches,
    "covers_action": _c_covers_action,
    "allows_action": _c_allows_action,
    "covers_all_actions": _c_covers_all_actions,
    "grants_write": _c_grants_write,
    "resource_is_wildcard": _c_resource_is_wildcard,
    "resource_matches": _c_resource_matches,
    "has_condition": _c_has_condition,
    "principal_types": _c_principal_types,
    "principal_matches": _c_principal_matches,
}
"""IAM operators, registered into the condition language by :mod:`soc2infra.engine.conditions`."""
