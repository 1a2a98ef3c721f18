"""Who is covered by which policy: AWS-managed policies by ARN, principals (users, groups,
roles), their inline and attached policies and group membership."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.iam.statements import (
    PolicySet,
    Statement,
    _cache,
    _refs_under,
    _statements_or_gap,
    document_policies,
    policies_at,
    unknown_shape,
)
from soc2infra._core.engine.paths import flatten, parse_path, resolve

PRINCIPAL_KINDS = {"aws_iam_user": "user", "aws_iam_group": "group", "aws_iam_role": "role"}
# Resources that belong to one IAM user (their `user` argument names it).
USER_OWNED = {
    "aws_iam_user_login_profile": "user",
    "aws_iam_access_key": "user",
    "aws_iam_user_ssh_key": "user",
    "aws_iam_service_specific_credential": "user_name",
    "aws_iam_signing_certificate": "user_name",
}




# --------------------------------------------------------------------------- AWS managed policies

_MANAGED_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")
MANAGED_POLICIES_DATA = "aws-managed-policies"
"""The name of the reference data (``policies/data/aws-managed-policies.yaml``) read by the loader."""


class ManagedPolicies:
    """The table of AWS-managed policies (name → the statements that decide what it allows),
    built from the pack's reference data."""

    def __init__(self, table: Mapping[str, Any] | None = None) -> None:
        self._table: Mapping[str, Any] = table or {}
        self._memo: dict[str, list[Statement] | Unknown | None] = {}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ManagedPolicies:
        """The table in *data* (the pack's reference data), parsed once per data mapping."""
        raw = data.get(MANAGED_POLICIES_DATA)
        key = id(raw)
        held = _FROM_DATA.get(key)
        if held is None or held[0] is not raw:
            table = raw.get("policies") if isinstance(raw, Mapping) else None
            held = (raw, cls(table if isinstance(table, Mapping) else None))
            _FROM_DATA[key] = held
        return held[1]

    def statements(self, arn: str) -> list[Statement] | Unknown | None:
        """Statements of an AWS-managed policy ARN; Unknown when the name is not in the table;
        None when *arn* is not an AWS-managed policy at all."""
        if arn not in self._memo:
            self._memo[arn] = self._statements(arn)
        return self._memo[arn]

    def _statements(self, arn: str) -> list[Statement] | Unknown | None:
        m = _MANAGED_ARN.match(arn)
        if m is None:
            return None
        entries = self._table.get(m.group(1))
        if not isinstance(entries, list):
            return Unknown(f"AWS managed policy {m.group(1)} is not in soc2infra's table of managed policies")
        return [Statement(effect="Allow", actions=tuple(e.get("actions") or ()),
                          not_actions=tuple(e.get("not_actions") or ()),
                          resources=tuple(e.get("resources") or ()), origin=arn)
                for e in entries if isinstance(e, Mapping)]


# Parsed tables by the identity of their raw data (kept alive here, so an id is never reused).
_FROM_DATA: dict[int, tuple[Any, ManagedPolicies]] = {}


def managed_policy_statements(arn: str, managed: ManagedPolicies) -> list[Statement] | Unknown | None:
    """Statements of an AWS-managed policy ARN (see :meth:`ManagedPolicies.statements`)."""
    return managed.statements(arn)


def policy_arn_policies(arn: str, index: ResourceIndex, managed: ManagedPolicies) -> PolicySet:
    """The statements behind a policy ARN: an AWS-managed policy known by name, or a
    customer policy defined in the scanned tree; anything else is a gap."""
    known = managed.statements(arn)
    if known is not None:
        return _statements_or_gap(known)
    name = arn.rsplit("/", 1)[-1]
    for res in index.by_type.get("aws_iam_policy", ()):
        if arn in res.identities or res.attributes.get("name") == name:
            return document_policies(res, index)
    out = PolicySet()
    out.gap(f"policy {arn} is defined outside the scanned tree", "not_scanned")
    return out


_MANAGED_SHAPE = re.compile(r"arn:\*:iam::aws:policy/([^*?]+)")


def _arns_of(value: Unknown) -> list[str]:
    """The ARNs an unknown can be, when that is decided: its candidates (every partition),
    or the one AWS-managed policy a template names around an unknown partition."""
    if value.candidates is not None and all(isinstance(c, str) for c in value.candidates):
        return sorted(set(value.candidates))
    managed = _managed_arn_of(value)
    return [managed] if managed is not None else []


def _managed_arn_of(value: Unknown) -> str | None:
    """The AWS-managed policy an unknown ARN names when only its partition is unknown
    (``arn:${data.aws_partition.current.partition}:iam::aws:policy/AdministratorAccess``).
    The managed-policy table is the same in every partition."""
    shape = unknown_shape(value)
    m = _MANAGED_SHAPE.fullmatch(shape[0]) if shape is not None and value.parts is not None else None
    return f"arn:aws:iam::aws:policy/{m.group(1)}" if m else None


def arn_policies_at(res: Resource, path: str, index: ResourceIndex, managed: ManagedPolicies) -> PolicySet:
    """Policies named by ARN at *path* of *res* (``policy_arn``, ``managed_policy_arns``):
    literal ARNs, or references to ``aws_iam_policy`` / ``data.aws_iam_policy`` resources."""
    out = PolicySet()
    unresolved: Unknown | None = None
    for value in flatten(resolve(res.attributes, parse_path(path))):
        if isinstance(value, str):
            out.add(policy_arn_policies(value, index, managed))
        elif isinstance(value, Unknown):
            names = _arns_of(value)
            for arn in names:
                out.add(policy_arn_policies(arn, index, managed))
            if not names and unresolved is None:
                unresolved = value
    if unresolved is None:
        return out
    targets = sorted(_refs_under(res, path))
    found = [t for a in targets if (t := index.by_address.get(a)) is not None]
    if not found:
        out.gap(f"{res.address}.{path} is not known statically ({unresolved.reason})", unresolved.kind)
    for target in found:
        out.add(_policy_resource_policies(target, index, managed))
    return out


def _policy_resource_policies(target: Resource, index: ResourceIndex, managed: ManagedPolicies) -> PolicySet:
    if target.type == "aws_iam_policy":
        return document_policies(target, index)
    if target.type == "data.aws_iam_policy":
        # A looked-up policy: known when it names an AWS-managed policy.
        for key in ("arn", "name"):
            value = target.attributes.get(key)
            if isinstance(value, str):
                arn = value if key == "arn" else f"arn:aws:iam::aws:policy/{value}"
                found = policy_arn_policies(arn, index, managed)
                if not found.gaps or key == "name":
                    return found
    out = PolicySet()
    out.gap(f"the policy of {target.address} is not known statically", "apply_time")
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
    found: _LinkTable = memo[key]
    return found


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
    groups, gaps = _groups_and_gaps(user, index)
    return groups, gaps.gaps


def _groups_and_gaps(user: Principal, index: ResourceIndex) -> tuple[list[tuple[Principal, bool]], PolicySet]:
    groups: list[tuple[Principal, bool]] = []
    gaps = PolicySet()
    for mtype, user_attr, group_attr in MEMBERSHIPS:
        for membership, certain in linked(index, mtype, user_attr, user):
            values = flatten(resolve(membership.attributes, parse_path(group_attr)))
            groups += [(_group_named(v, index), certain) for v in values if isinstance(v, str)]
            if any(isinstance(v, Unknown) for v in values):
                refs = [index.by_address.get(a) for a in sorted(_refs_under(membership, group_attr))]
                refd = [principal_of(r) for r in refs if r is not None and r.type == "aws_iam_group"]
                groups += [(g, certain) for g in refd]
                if not refd:
                    why = next(v for v in values if isinstance(v, Unknown))
                    gaps.gap(f"the groups of {membership.address} are not known statically", why.kind)
    return groups, gaps


def effective_policies(principal: Principal, index: ResourceIndex, managed: ManagedPolicies) -> PolicySet:
    """Every statement that applies to *principal*: inline and managed policies attached
    to it, plus (for a user) those of its groups. Trust policies are not included."""
    memo = _cache(index)
    key = ("effective", principal.key, id(managed))
    if key in memo:
        done: PolicySet = memo[key]
        return done
    memo[key] = PolicySet()  # a group cannot contain itself, but never loop
    out = PolicySet()
    if principal.resource is None:
        out.gap(f"{principal.label} is not defined in the scanned tree: its policies are unknown",
                "not_scanned")
    elif principal.kind == "role":
        out.add(policies_at(principal.resource, "inline_policy.policy", index))
        out.add(arn_policies_at(principal.resource, "managed_policy_arns", index, managed))
    for rtype, via, policy_attr, by_arn in ATTACHMENTS[principal.kind]:
        for attachment, certain in linked(index, rtype, via, principal):
            found = (arn_policies_at(attachment, policy_attr, index, managed) if by_arn
                     else policies_at(attachment, policy_attr, index))
            out.add(found, certain)
    if principal.kind == "user":
        groups, gaps = _groups_and_gaps(principal, index)
        out.add_gaps(gaps)
        for group, certain in groups:
            out.add(effective_policies(group, index, managed), certain)
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
