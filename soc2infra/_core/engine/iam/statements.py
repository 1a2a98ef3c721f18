"""The IAM statement model and every syntax a policy document is written in: JSON (a
``jsonencode()`` result, a heredoc, ``file()`` content), ``statement`` blocks of a
``data "aws_iam_policy_document"`` (merged by ``sid`` as the provider does), and the
documents written at an attribute of a resource."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.paths import flatten, parse_path, resolve

Value = str | Unknown
"""A statement field element: a known string, or an Unknown placeholder."""

DATA_DOCUMENT = "data.aws_iam_policy_document"



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
    # gap → why it is unknown (an Unknown kind), when the gap came from an unknown value
    gap_kinds: dict[str, str] = field(default_factory=dict)

    def add(self, other: PolicySet, certain: bool = True) -> None:
        """Merge *other*; everything it holds becomes uncertain when *certain* is false."""
        self.entries.extend((st, sure and certain) for st, sure in other.entries)
        self.add_gaps(other)

    def add_gaps(self, other: PolicySet) -> None:
        """Take over *other*'s gaps (and why each is unknown)."""
        self.gaps.extend(other.gaps)
        self.gap_kinds.update(other.gap_kinds)

    def gap(self, text: str, kind: str | None = None) -> None:
        """Record a policy that cannot be read, and why (a key of UNKNOWN_KINDS) when known."""
        self.gaps.append(text)
        if kind is not None:
            self.gap_kinds[text] = kind

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
        out.add_gaps(found)
        merged = _override_by_sid(merged, found.statements)
    blocks = attrs.get("statement")
    if isinstance(blocks, Unknown):
        out.gap(f"the statements of {res.address} are not known statically ({blocks.reason})", blocks.kind)
    elif isinstance(blocks, list):
        own = [_block_statement(b, res.address) for b in blocks if isinstance(b, dict)]
        merged = _override_by_sid(merged, own)
    for path in ("override_policy_documents", "override_json"):
        found = policies_at(res, path, index)
        out.add_gaps(found)
        merged = _override_by_sid(merged, found.statements)
    out.add_statements(merged)
    return out


def _statements_or_gap(parsed: list[Statement] | Unknown) -> PolicySet:
    out = PolicySet()
    if isinstance(parsed, Unknown):
        out.gap(parsed.reason or "a policy is not known statically", parsed.kind)
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
        done: PolicySet = memo[key]
        return done
    memo[key] = PolicySet(gaps=[f"{res.address}.{path} refers to itself"])  # cycle guard
    out = PolicySet()
    unresolved: Unknown | None = None
    # Name the attribute too when it is not the usual one (a role's trust policy, say).
    origin = res.address if path == "policy" else f"{res.address}.{path}"
    for value in flatten(resolve(res.attributes, parse_path(path))):
        if isinstance(value, Unknown):
            partial = _partial(value)
            if partial is not None:
                out.add(_statements_or_gap(parse_policy_json(partial, origin)))
            elif unresolved is None:
                unresolved = value
        elif isinstance(value, (str, dict)):
            out.add(_statements_or_gap(parse_policy_json(value, origin)))
    if unresolved is not None:
        out.add(_referenced_policies(res, path, index, unresolved))
    memo[key] = out
    return out


def _referenced_policies(res: Resource, path: str, index: ResourceIndex, why: Unknown) -> PolicySet:
    """Follow the references of an attribute whose value is not known statically (*why*)."""
    out = PolicySet()
    targets = sorted(_refs_under(res, path))
    documents = [index.by_address.get(a) for a in targets]
    holders = [t for t in documents if t is not None and _holds_policy(t)]
    if not holders:
        hint = f" (it depends on {', '.join(targets)})" if targets else ""
        out.gap(f"{res.address}.{path} is not known statically{hint}", why.kind)
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
        found: PolicySet = memo[key]
        return found
    return policies_at(res, "policy", index)


def unknown_shape(value: Unknown) -> tuple[str, bool] | None:
    """What an unknown string can be, as an IAM pattern, and whether it is *concrete* (an
    apply-time value computed by a provider holds no ``*``/``?`` wildcard). A template keeps its
    fixed text (``arn:*:iam::aws:policy/X``), with :data:`~soc2infra._cogs.model.ARN_SEGMENT` for ARN
    segments; a resource's ARN is at least ``arn:*``. None when the fixed text itself holds
    wildcard characters (the shape would be ambiguous)."""
    if value.parts is not None:
        fixed = [p for p in value.parts if p is not None]
        if any("*" in p or "?" in p for p in fixed):
            return None
        shape = "".join("*" if p is None else p for p in value.parts)
    elif value.attr == "arn" and value.rtype is not None:
        shape = "arn:*"
    else:
        shape = "*"
    return shape, value.kind == "apply_time"
