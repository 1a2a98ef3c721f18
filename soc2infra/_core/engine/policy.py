"""Compile policy rules (already read from YAML) into predicates indexed by target type.

Pure: the files, the YAML and the digest belong to the loader (:mod:`soc2infra._core.pack`); this
module checks the schema of one rule mapping and compiles its conditions. A schema problem
names the file, the rule and the field, so a policy author can fix it without reading Python.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from soc2infra._cogs.errors import UserError
from soc2infra._cogs.model import CATEGORIES, SEVERITIES
from soc2infra._core.engine.core import ConditionError, Predicate
from soc2infra._core.engine.registry import compile_condition

# Pod-bearing kinds share one normalized pod spec, so "@workload" rules are written once.
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "@workload": ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                  "ReplicationController"),
}
ACTIONS = ("deny", "warn", "audit")
DEFAULT_ACTION = {"critical": "deny", "high": "deny", "medium": "warn", "low": "audit"}
# Enforcement levels, after Pod Security's "enforce baseline, warn restricted": a level names why
# a rule denies or not at admission, and sets its default action. baseline: no legitimate default
# in a chart (privileged pods, host namespaces, cluster-admin bindings …), denied; restricted:
# hardening many charts do not meet yet, warned; hygiene: good practice, recorded only.
ENFORCEMENT_ACTION = {"baseline": "deny", "restricted": "warn", "hygiene": "audit"}
EXAMPLE_SOURCES = ("terraform", "kubernetes", "plan")
EXPECTATIONS = ("pass", "fail", "unknown", "skip")

_RULE_KEYS = {
    "id", "title", "severity", "category", "controls", "targets", "when", "condition", "message",
    "remediation", "description", "action", "examples", "references", "enabled", "catalog",
    "enforcement",
}


class PolicyError(UserError):
    """A policy file or rule that does not follow the schema."""

    def __init__(self, file: str, rule: str | None, field_name: str | None, message: str,
                 line: int | None = None) -> None:
        where = file + (f":{line}" if line else "")
        if rule:
            where += f" rule {rule}"
        if field_name:
            where += f" field {field_name}"
        super().__init__(f"{where}: {message}")
        self.file, self.rule, self.field, self.line = file, rule, field_name, line


@dataclass(slots=True)
class Example:
    """One pass/fail scenario carried by a rule, run by ``soc2infra policy test``."""

    name: str
    source: str  # "terraform" | "kubernetes" | "plan"
    text: str
    expect: str | dict[str, str]  # one outcome for every target resource, or per address
    files: dict[str, str] = field(default_factory=dict)  # extra files (child modules, tfvars)


@dataclass(slots=True)
class Rule:
    """A compiled rule: metadata plus its predicates."""

    id: str
    title: str
    severity: str
    category: str
    controls: tuple[str, ...]
    targets: tuple[str, ...]
    message: str
    remediation: str
    predicate: Predicate
    applies: Predicate | None = None
    action: str = "warn"
    description: str = ""
    examples: list[Example] = field(default_factory=list)
    file: str = ""
    line: int = 0
    enabled: bool = True
    #: ids of the SOC 2 catalog checks (docs/coverage.md) this rule implements, e.g. AWS-S3-ENCRYPTION
    catalog: tuple[str, ...] = ()
    #: admission enforcement level (baseline | restricted | hygiene), None when the rule has none
    enforcement: str | None = None
    #: the `condition` and `when` mappings as written (line marks removed): the data other
    #: compilers (ValidatingAdmissionPolicy CEL, soc2infra.export) translate
    condition_data: Any = None
    when_data: Any = None
    #: types or kinds the condition looks up on *other* resources (``related: {types: ...}``)
    related_types: frozenset[str] = frozenset()


@dataclass(slots=True)
class Control:
    """A SOC 2 Trust Services Criterion from the catalog."""

    id: str
    name: str
    intent: str


@dataclass(slots=True)
class PolicyPack:
    """All rules, indexed by target type, plus the SOC 2 criteria catalog and the reference
    data the rules were compiled with (``policies/data/*.yaml`` by name)."""

    rules: list[Rule]
    controls: dict[str, Control]
    digest: str
    data: Mapping[str, Any] = field(default_factory=dict)
    by_type: dict[str, list[Rule]] = field(default_factory=dict)
    _globs: list[tuple[str, Rule]] = field(default_factory=list)
    _resolved: dict[str, list[Rule]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_type, self._globs, self._resolved = {}, [], {}
        for rule in self.rules:
            if not rule.enabled:
                continue
            for t in rule.targets:
                if "*" in t or "?" in t:
                    self._globs.append((t, rule))
                else:
                    self.by_type.setdefault(t, []).append(rule)

    def with_enabled(self, enabled: Iterable[str]) -> PolicyPack:
        """A new pack in which exactly the rules with ids in *enabled* are switched on; this
        pack and its rules are left as they are."""
        wanted = frozenset(enabled)
        rules = [r if r.enabled == (r.id in wanted) else replace(r, enabled=r.id in wanted)
                 for r in self.rules]
        return PolicyPack(rules=rules, controls=self.controls, digest=self.digest, data=self.data)

    def rules_for(self, resource_type: str) -> list[Rule]:
        """Enabled rules targeting *resource_type*, exact targets and glob targets
        (``provider.*``, ``aws_*``) alike; resolved once per type."""
        got = self._resolved.get(resource_type)
        if got is None:
            got = list(self.by_type.get(resource_type, ()))
            got += [r for pattern, r in self._globs
                    if fnmatch.fnmatchcase(resource_type, pattern) and r not in got]
            self._resolved[resource_type] = got
        return got

    def rule(self, rule_id: str) -> Rule:
        """The rule with *rule_id* (KeyError when absent)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    @property
    def target_types(self) -> set[str]:
        """Every resource type or kind some enabled rule targets exactly (globs excluded)."""
        return set(self.by_type)

    def targets(self, resource_type: str) -> bool:
        """True when some enabled rule applies to *resource_type*."""
        return bool(self.rules_for(resource_type))


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def compile_rules(fname: str, document: Any, controls: dict[str, Control],
                  data: Mapping[str, Any] | None = None) -> list[Rule]:
    """Compile every rule of one policy file's parsed YAML (*document*) against the criteria
    catalog and the pack's reference *data*."""
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise PolicyError(fname, None, "rules", "a policy file is a mapping with a 'rules' list")
    return [compile_rule(fname, item, controls, data) for item in document["rules"]]


def compile_rule(fname: str, item: Any, controls: dict[str, Control],
                 data: Mapping[str, Any] | None = None) -> Rule:
    """Validate one rule mapping and compile its conditions."""
    if not isinstance(item, dict):
        raise PolicyError(fname, None, None, "each rule must be a mapping")
    line = item.get("__line__")
    rid = item.get("id")

    def fail(field_name: str, msg: str) -> PolicyError:
        return PolicyError(fname, rid if isinstance(rid, str) else None, field_name, msg, line)

    if not isinstance(rid, str) or not rid:
        raise fail("id", "required, a non-empty string")
    unknown = set(item) - _RULE_KEYS - {"__line__"}
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown field (allowed: {', '.join(sorted(_RULE_KEYS))})")
    for key in ("title", "message", "remediation"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise fail(key, "required, a non-empty string")
    if item.get("severity") not in SEVERITIES:
        raise fail("severity", f"must be one of {', '.join(SEVERITIES)}")
    if item.get("category") not in CATEGORIES:
        raise fail("category", f"must be exactly one of {', '.join(CATEGORIES)}")
    ctrl = item.get("controls")
    if not isinstance(ctrl, list) or not ctrl:
        raise fail("controls", "required, a non-empty list of SOC 2 criteria ids")
    for c in ctrl:
        if c not in controls:
            raise fail("controls", f"{c!r} is not a criterion in controls.yaml")
    targets = item.get("targets")
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise fail("targets", "required, a list of resource types or Kubernetes kinds")
    expanded: list[str] = []
    for t in targets:
        if t.startswith("@"):
            if t not in TARGET_GROUPS:
                raise fail("targets", f"unknown target group {t!r} (known: {', '.join(TARGET_GROUPS)})")
            expanded.extend(TARGET_GROUPS[t])
        else:
            expanded.append(t)
    severity = item["severity"]
    enforcement = item.get("enforcement")
    if enforcement is not None and enforcement not in ENFORCEMENT_ACTION:
        raise fail("enforcement", f"must be one of {', '.join(ENFORCEMENT_ACTION)}")
    if enforcement is not None and "action" in item:
        raise fail("action", "set either enforcement (which implies the action) or action, not both")
    default = ENFORCEMENT_ACTION[enforcement] if enforcement is not None else DEFAULT_ACTION[severity]
    action = item.get("action", default)
    if action not in ACTIONS:
        raise fail("action", f"must be one of {', '.join(ACTIONS)}")
    condition_data = _strip_lines(item.get("condition"))
    when_data = _strip_lines(item["when"]) if "when" in item else None
    try:
        predicate = compile_condition(condition_data, "condition", data)
        applies = compile_condition(when_data, "when", data) if when_data is not None else None
    except ConditionError as exc:
        raise fail(exc.field, str(exc)) from None
    examples = _examples(item.get("examples"), fail)
    return Rule(
        id=rid, title=item["title"].strip(), severity=severity, category=item["category"],
        controls=tuple(ctrl), targets=tuple(dict.fromkeys(expanded)), message=item["message"].strip(),
        remediation=item["remediation"].strip(), predicate=predicate, applies=applies, action=action,
        description=str(item.get("description", "")).strip(), examples=examples, file=fname,
        line=line or 0, enabled=bool(item.get("enabled", True)), catalog=_catalog_ids(item, fail),
        enforcement=enforcement,
        condition_data=condition_data, when_data=when_data,
        related_types=frozenset(_related_types(condition_data)),
    )


def _related_types(node: Any) -> set[str]:
    """Every ``related: {types: ...}`` named anywhere in a condition."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "related" and isinstance(value, dict):
                types = value.get("types")
                found.update([types] if isinstance(types, str) else [str(t) for t in types or []])
            found |= _related_types(value)
    elif isinstance(node, list):
        for value in node:
            found |= _related_types(value)
    return found


def _catalog_ids(item: dict[str, Any], fail: Any) -> tuple[str, ...]:
    """The optional `catalog` field: a list of catalog check ids such as AWS-S3-ENCRYPTION."""
    raw = item.get("catalog", [])
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise fail("catalog", "must be a list of catalog check ids")
    return tuple(x.strip() for x in raw)


def _examples(raw: Any, fail: Any) -> list[Example]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise fail("examples", "must be a list")
    out: list[Example] = []
    for i, ex in enumerate(raw):
        if not isinstance(ex, dict):
            raise fail(f"examples[{i}]", "must be a mapping")
        sources = [s for s in EXAMPLE_SOURCES if s in ex]
        if len(sources) != 1:
            raise fail(f"examples[{i}]", f"needs exactly one of {', '.join(EXAMPLE_SOURCES)}")
        expect = _strip_lines(ex.get("expect"))
        values = list(expect.values()) if isinstance(expect, dict) else [expect]
        if not values or any(v not in EXPECTATIONS for v in values):
            raise fail(f"examples[{i}].expect", f"must be one of {', '.join(EXPECTATIONS)} "
                       "or a mapping of resource address to one of them")
        files = _strip_lines(ex.get("files") or {})
        out.append(Example(name=str(ex.get("name", f"example {i + 1}")), source=sources[0],
                           text=str(ex[sources[0]]), expect=expect, files=files))
    return out
