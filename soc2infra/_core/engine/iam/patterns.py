"""IAM wildcard matching: action and resource patterns (``*``, ``?``) against names and
against each other, and the statement-level questions built on it (does a statement cover
an action, grant a write, apply to every resource, carry a condition)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from functools import cache, lru_cache

from soc2infra._cogs.model import ARN_SEGMENT, Unknown
from soc2infra._core.engine.core import Tri, t_and, t_not, t_or
from soc2infra._core.engine.iam.statements import Condition, Statement, Value, unknown_shape


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


ShapeTest = Callable[[str, bool], Tri]


def _any_of(values: tuple[Value, ...], test: Callable[[str], bool],
            shape_test: ShapeTest | None = None) -> Tri:
    """True when a known element passes *test*; unknown when none does but one is unknown,
    unless *shape_test* decides every unknown element from its shape (:func:`unknown_shape`)."""
    known, unknown = _known(values)
    if any(test(v) for v in known):
        return True
    if not unknown:
        return False
    if shape_test is None:
        return None
    verdicts: list[Tri] = []
    for v in values:
        if isinstance(v, Unknown):
            shape = unknown_shape(v)
            verdicts.append(None if shape is None else shape_test(*shape))
    return t_or(verdicts)


def _never_wildcard(shape: str, concrete: bool) -> Tri:
    """Can a value of this shape be the pattern ``*`` or ``arn:*``? A concrete value never is."""
    if concrete:
        return False
    return None if shape_admits(shape, "*") or shape_admits(shape, "arn:*") else False


def overlap_by_shape(queries: frozenset[str]) -> ShapeTest:
    """A shape test: does a value of this shape overlap one of *queries*?"""
    def test(shape: str, concrete: bool) -> Tri:
        if concrete and any(pattern_covers(q, shape.replace(ARN_SEGMENT, "*")) for q in queries):
            return True  # every value of the shape is matched by a query
        return None if any(shape_overlaps(shape, q) for q in queries) else False

    return test


@lru_cache(maxsize=4096)
def _shape_regex(shape: str) -> re.Pattern[str]:
    tokens = {"*": ".*", "?": ".", ARN_SEGMENT: "[^:/]*"}
    out = [tokens.get(ch, re.escape(ch)) for ch in shape]
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def shape_admits(shape: str, text: str) -> bool:
    """Can an unknown of this shape (:func:`unknown_shape`) be exactly *text*?"""
    return _shape_regex(shape).fullmatch(text) is not None


@lru_cache(maxsize=16384)
def shape_overlaps(shape: str, pattern: str) -> bool:
    """Can an unknown of this shape be a name the IAM *pattern* matches? Like
    :func:`patterns_overlap`, with ARN segments that never span ``:`` or ``/``."""
    a, b = shape.lower(), pattern.lower()
    wild = "*" + ARN_SEGMENT
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] in wild:
            todo.append((i + 1, j))
        if j < len(b) and b[j] == "*":
            todo.append((i, j + 1))
        if i < len(a) and j < len(b):
            seg_ok = a[i] != ARN_SEGMENT or b[j] not in ":/"
            if seg_ok and (a[i] in "*?" + ARN_SEGMENT or b[j] in "*?" or a[i] == b[j]):
                todo.append((i if a[i] in wild else i + 1, j if b[j] == "*" else j + 1))
    return False


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
    return _any_of(st.resources, lambda r: pattern_covers(r, "*") or pattern_covers(r, "arn:*"),
                   _never_wildcard)


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


