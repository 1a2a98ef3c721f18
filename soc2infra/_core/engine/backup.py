"""Backup coverage across resources: is a data store selected by an AWS Backup plan?

``backup_covered`` resolves every ``aws_backup_selection`` of the scan against the resource being
evaluated, the way AWS Backup assigns resources to a plan:

- selected when an entry of ``resources`` refers to it (expression or literal ARN/name), or a
  wildcard ARN matches its ARN shape, or a ``selection_tag`` matches its tags (OR);
- and every ``condition`` (string_equals / string_like / string_not_equals / string_not_like on
  ``aws:ResourceTag/<key>``) holds (AND);
- and no ``not_resources`` entry matches it.

Tags are the resource's ``tags`` (``tags_all`` in plans) merged over the AWS provider's
``default_tags``. The selection's plan (``plan_id``) must keep recovery points at least
``min_retention_days`` in one of its rules (no ``delete_after`` = kept until deleted).

Covered → true. Not selected by any resolvable selection → false. A selection whose entries or
plan cannot be resolved (ARNs from data sources, variables without values, a plan outside the
tree, unknown tags) → unknown, never a silent pass or fail.

The ARN shape of each resource type comes from the rule (data, not code)::

    backup_covered:
      min_retention_days: 35
      arns:
        aws_db_instance: "arn:aws:rds:{region}:{account}:db:{identifier}"
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from collections.abc import Mapping
from typing import Any

from soc2infra._cogs.model import Resource, Unknown
from soc2infra._core.engine.core import (
    CompileEnv,
    ConditionError,
    EvalContext,
    Predicate,
    ResourceIndex,
    Tri,
    t_and,
    t_or,
)

SELECTION = "aws_backup_selection"
_DEFAULT_TAGS: weakref.WeakKeyDictionary[ResourceIndex, dict[str, Any]] = weakref.WeakKeyDictionary()
PLAN = "aws_backup_plan"
_TAG_KEY = "aws:ResourceTag/"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_SCOPE = ("region", "account")  # placeholders a tree cannot know: the selection's own account/region


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [] if value is None else [value]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def _refs(sel: Resource, attr: str) -> set[str]:
    return {a for p, addrs in sel.references.items() if _under(p, attr) for a in addrs}


def _arn_match(pattern: str, template: str | None, res: Resource) -> Tri:
    """Does the (possibly wildcard) ARN *pattern* match *res*, whose ARN has the shape *template*?"""
    if pattern == "*":
        return True
    if template is None:
        return False
    p_parts, t_parts = pattern.split(":", 5), template.split(":", 5)
    if len(p_parts) != 6 or len(t_parts) != 6:
        return False
    results: list[Tri] = []
    for p, t in zip(p_parts, t_parts, strict=True):
        names = _PLACEHOLDER.findall(t)
        if not names:
            results.append(fnmatch.fnmatchcase(t, p))
            continue
        if all(n in _ANY_SCOPE for n in names):
            results.append(True)  # the selection and the resource live in the same account/region
            continue
        values: dict[str, str] = {}
        unknown = False
        for n in names:
            v = res.attributes.get(n)
            if isinstance(v, str):
                values[n] = v
            elif n not in _ANY_SCOPE:
                unknown = True
        if unknown:
            # The name is not known: a pattern that accepts any name still matches.
            results.append(True if fnmatch.fnmatchcase(_PLACEHOLDER.sub("x", t), p)
                           and fnmatch.fnmatchcase(_PLACEHOLDER.sub("y-z", t), p) else None)
        else:
            def fill(m: re.Match[str], v: dict[str, str] = values) -> str:
                return v.get(m.group(1), "*")

            filled = _PLACEHOLDER.sub(fill, t)
            results.append(fnmatch.fnmatchcase(filled, p))
    return t_and(results)


def _entries_match(sel: Resource, attr: str, res: Resource, template: str | None,
                   index_addresses: Mapping[str, Resource]) -> Tri:
    """Does some entry of ``resources`` / ``not_resources`` select *res*?"""
    refs = _refs(sel, attr)
    if res.address in refs:
        return True
    entries = _flatten(sel.attributes.get(attr))
    results: list[Tri] = []
    unresolved = 0
    for entry in entries:
        if isinstance(entry, Unknown):
            unresolved += 1
        elif isinstance(entry, str):
            results.append(True if entry in res.identities else _arn_match(entry, template, res))
    # Each unknown entry is an expression; those that refer to other resources of this tree are
    # explained (they select those resources, not this one). The rest could be anything.
    in_tree = {a for a in refs if a in index_addresses and not a.startswith("data.")}
    whole_unknown = isinstance(sel.attributes.get(attr), Unknown)
    if (whole_unknown and (not refs or refs - in_tree)) or (not whole_unknown and unresolved > len(in_tree)):
        results.append(None)
    return t_or(results) if results else False


def _tags(res: Resource, defaults: dict[str, Any]) -> dict[str, Any] | None:
    own = res.attributes.get("tags_all")
    if own is None or (isinstance(own, dict) and not own):
        own = res.attributes.get("tags")
    if isinstance(own, Unknown):
        return None
    return {**defaults, **own} if isinstance(own, dict) else dict(defaults)


def _default_tags(ctx: EvalContext) -> dict[str, Any]:
    """Provider default_tags that every AWS provider block of the scan agrees on (an aliased
    provider with other defaults makes that key unknown); computed once per index."""
    cached = _DEFAULT_TAGS.get(ctx.index)
    if cached is None:
        cached = _DEFAULT_TAGS[ctx.index] = _merge_default_tags(ctx)
    return cached


def _merge_default_tags(ctx: EvalContext) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    providers = [r for r in ctx.index.by_type.get("provider.aws", ())]
    seen: list[dict[str, Any]] = []
    for p in providers:
        tags: dict[str, Any] = {}
        for block in _flatten(p.attributes.get("default_tags")):
            if isinstance(block, dict) and isinstance(block.get("tags"), dict):
                tags.update(block["tags"])
        seen.append(tags)
    for key in {k for t in seen for k in t}:
        values = [t.get(key, Unknown("not in every provider's default_tags")) for t in seen]
        merged[key] = values[0] if all(v == values[0] and not isinstance(v, Unknown) for v in values) \
            else Unknown("provider default_tags differ between provider blocks")
    return merged


def _tag_test(tags: dict[str, Any] | None, key: Any, value: Any, op: str) -> Tri:
    if tags is None or isinstance(key, Unknown) or isinstance(value, Unknown):
        return None
    have = tags.get(str(key))
    if isinstance(have, Unknown):
        return None
    if op in ("equals", "STRINGEQUALS"):
        return have is not None and str(have) == str(value)
    if op == "like":
        return have is not None and fnmatch.fnmatchcase(str(have), str(value))
    if op == "not_equals":
        return have is None or str(have) != str(value)
    return have is None or not fnmatch.fnmatchcase(str(have), str(value))  # not_like


def _conditions(sel: Resource, tags: dict[str, Any] | None) -> Tri:
    results: list[Tri] = []
    for block in _flatten(sel.attributes.get("condition")):
        if not isinstance(block, dict):
            results.append(None)
            continue
        for op in ("equals", "like", "not_equals", "not_like"):
            for test in _flatten(block.get(f"string_{op}")):
                key = test.get("key") if isinstance(test, dict) else None
                key = key[len(_TAG_KEY):] if isinstance(key, str) and key.startswith(_TAG_KEY) else key
                value = test.get("value") if isinstance(test, dict) else None
                results.append(_tag_test(tags, key, value, op))
    return t_and(results)


def _selection_tags(sel: Resource, tags: dict[str, Any] | None) -> Tri:
    results = [_tag_test(tags, t.get("key"), t.get("value"), str(t.get("type", "STRINGEQUALS")).upper())
               if isinstance(t, dict) else None for t in _flatten(sel.attributes.get("selection_tag"))]
    return t_or(results) if results else False


def _plan_keeps(sel: Resource, ctx: EvalContext, min_days: float) -> Tri:
    plans = [ctx.index.by_address[a] for a in _refs(sel, "plan_id")
             if a in ctx.index.by_address and ctx.index.by_address[a].type == PLAN]
    if not plans:
        return None  # plan outside the tree: its retention cannot be checked
    results: list[Tri] = []
    for plan in plans:
        for rule in _flatten(plan.attributes.get("rule")):
            if not isinstance(rule, dict):
                results.append(None)
                continue
            deletes = [lc.get("delete_after") for lc in _flatten(rule.get("lifecycle"))
                       if isinstance(lc, dict)]
            deletes = [d for d in deletes if d is not None]
            if not deletes:
                results.append(True)
            elif any(isinstance(d, Unknown) for d in deletes):
                results.append(None)
            else:
                results.append(all(_as_float(d) >= min_days for d in deletes))
    return t_or(results) if results else False


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return -1.0


def _c_backup_covered(arg: Any, _spec: Mapping[str, Any], where: str, _env: CompileEnv) -> Predicate:
    """``backup_covered: {min_retention_days: 35, arns: {type: template}}``."""
    if arg is True:
        arg = {}
    if not isinstance(arg, Mapping):
        raise ConditionError("backup_covered takes a mapping (min_retention_days, arns)", where)
    unknown_keys = set(arg) - {"min_retention_days", "arns"}
    if unknown_keys:
        raise ConditionError(f"backup_covered: unknown keys {sorted(unknown_keys)}", where)
    min_days = arg.get("min_retention_days", 35)
    if isinstance(min_days, bool) or not isinstance(min_days, (int, float)) or min_days < 0:
        raise ConditionError("backup_covered.min_retention_days must be a non-negative number", where)
    arns = arg.get("arns", {})
    if not isinstance(arns, Mapping) or not all(isinstance(v, str) for v in arns.values()):
        raise ConditionError("backup_covered.arns maps resource types to ARN templates", where + ".arns")

    def pred(ctx: EvalContext) -> Tri:
        selections = ctx.index.by_type.get(SELECTION, ())
        if not selections:
            return False  # nothing selects anything (the common case: checked first, it is cheap)
        res = ctx.subject or ctx.resource
        template = arns.get(res.type)
        addresses = ctx.index.by_address
        tags = _tags(res, _default_tags(ctx))
        results: list[Tri] = []
        for sel in selections:
            by_entry = _entries_match(sel, "resources", res, template, addresses)
            picked = t_or([by_entry, _selection_tags(sel, tags)])
            if picked is False:
                continue
            excluded = _entries_match(sel, "not_resources", res, template, addresses)
            selected = t_and([picked, _conditions(sel, tags), None if excluded is None else not excluded])
            if selected is False:
                continue
            results.append(t_and([selected, _plan_keeps(sel, ctx, float(min_days))]))
        got = t_or(results) if results else False
        ctx.notes["backup_selections"] = len(results)
        return got

    return pred


BACKUP_OPERATORS = {"backup_covered": _c_backup_covered}
"""Backup operators, registered into the condition language by :mod:`soc2infra._core.engine.registry`."""
