"""Core types of the condition language and its three-valued (Kleene) logic.

A compiled predicate takes an :class:`EvalContext` and returns ``True`` (holds),
``False`` (does not hold) or ``None`` (unknown: it depends on a value that cannot be
decided statically). Every operator module builds on these types; none of them imports
the registry (:mod:`soc2infra._core.engine.registry`), which hands each operator a
:class:`CompileEnv` (the sub-compiler for nested conditions, and reference data) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soc2infra._cogs.model import Resource, contains_unknown
from soc2infra._core.engine.paths import collecting_unknowns, parse_path, resolve

Tri = bool | None
Predicate = Callable[["EvalContext"], Tri]
SubCompiler = Callable[[Any, str], Predicate]
"""Compiles a nested condition (spec, where) with the full operator registry."""


@dataclass(frozen=True, slots=True)
class CompileEnv:
    """What an operator may use while it compiles: the sub-compiler for nested conditions and
    the pack's reference data (``policies/data/*.yaml`` by name, read by the pack loader)."""

    compile: SubCompiler
    data: Mapping[str, Any] = field(default_factory=dict)


Compiler = Callable[[Any, Mapping[str, Any], str, CompileEnv], Predicate]
"""An operator: (its argument, the whole condition mapping, where, compile env) → predicate."""


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``field`` names the offending key path."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class EvalContext:
    """What a predicate sees: the current value (resource attributes or a list element),
    the resource being evaluated and the index of every resource in the scan."""

    value: Any
    resource: Resource
    index: ResourceIndex
    notes: dict[str, Any] = field(default_factory=dict)
    # The resource the rule is about, when `resource` is a related one (inside related.where).
    subject: Resource | None = None

    def with_value(self, value: Any) -> EvalContext:
        """Same resource and index, a new current value (for quantifiers)."""
        return EvalContext(value, self.resource, self.index, self.notes, self.subject)


class ResourceIndex:
    """Lookup tables over all resources of one scan, built once, used by cross-resource rules."""

    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources
        self.by_type: dict[str, list[Resource]] = {}
        self.by_address: dict[str, Resource] = {}
        # address → [(referencing resource, attribute path)]
        self.inbound: dict[str, list[tuple[Resource, str]]] = {}
        # identity value (bucket name, ARN …) → resources having it
        self.by_identity: dict[str, list[Resource]] = {}
        self._value_tables: dict[tuple[str, str], dict[str, list[Resource]]] = {}
        self._unresolved: dict[tuple[frozenset[str], str], list[Resource]] = {}
        self._base: ResourceIndex | None = None  # see plus()
        self._touched: frozenset[str] = frozenset()
        for res in resources:
            self.by_type.setdefault(res.type, []).append(res)
            self.by_address[res.address] = res
            for path, targets in res.references.items():
                for target in targets:
                    self.inbound.setdefault(target, []).append((res, path))
            for ident in res.identities:
                self.by_identity.setdefault(ident, []).append(res)

    def plus(self, extra: Resource) -> ResourceIndex:
        """This index with *extra* added after its resources, replacing the one at the same address:
        what ``ResourceIndex([*others, extra])`` gives, where *others* are this index's resources
        but the one at *extra*'s address. Tables are shared and only the entries *extra* changes
        are copied, and value lookups on types it does not touch use (and fill) this index's
        caches: admission adds the object under review to the cluster's objects from the last
        audit per request, in time independent of their number."""
        old = self.by_address.get(extra.address)
        idx = ResourceIndex([])
        idx.resources = [r for r in self.resources if r is not old] + [extra]
        idx._base = self
        idx._touched = frozenset({extra.type} | ({old.type} if old is not None else set()))
        idx.by_type = dict(self.by_type)
        for t in idx._touched:
            kept = [r for r in self.by_type.get(t, ()) if r is not old]
            idx.by_type[t] = [*kept, extra] if t == extra.type else kept
        idx.by_address = dict(self.by_address)
        idx.by_address[extra.address] = extra
        idx.inbound = dict(self.inbound)
        idx.by_identity = dict(self.by_identity)
        if old is not None:  # its entries go (and keys left empty, as a fresh index has none)
            for targets in old.references.values():
                for target in targets:
                    _without(idx.inbound, target, [e for e in idx.inbound.get(target, ()) if e[0] is not old])
            for ident in old.identities:
                _without(idx.by_identity, ident, [r for r in idx.by_identity.get(ident, ()) if r is not old])
            if not idx.by_type.get(old.type):
                idx.by_type.pop(old.type, None)
        for path, targets in extra.references.items():
            for target in targets:
                idx.inbound[target] = [*idx.inbound.get(target, ()), (extra, path)]
        for ident in extra.identities:
            idx.by_identity[ident] = [*idx.by_identity.get(ident, ()), extra]
        return idx

    def referencing(self, target: Resource, types: frozenset[str], via: str | None) -> list[Resource]:
        """Resources of *types* whose attribute *via* (or any attribute) refers to *target*,
        by reference expression or by literal value equal to one of its identities."""
        found: dict[int, Resource] = {}
        for res, path in self.inbound.get(target.address, ()):
            if res.type in types and (via is None or _path_under(path, via)):
                found[id(res)] = res
        if target.identities and via is not None:
            for t in types:
                by_value = self._values_at(t, via)
                for ident in target.identities:
                    for res in by_value.get(ident, ()):
                        found[id(res)] = res
        return list(found.values())

    def _values_at(self, rtype: str, via: str) -> dict[str, list[Resource]]:
        """String value at *via* → resources of *rtype* holding it; built once per pair so
        literal-reference lookups stay linear in the number of resources."""
        if self._base is not None and rtype not in self._touched:
            return self._base._values_at(rtype, via)  # the same resources of that type: its cache
        key = (rtype, via)
        table = self._value_tables.get(key)
        if table is None:
            table = {}
            vpath = parse_path(via)
            with collecting_unknowns(active=False):  # other resources' unknowns explain nothing here
                for res in self.by_type.get(rtype, ()):
                    for v in resolve(res.attributes, vpath):
                        if isinstance(v, str):
                            table.setdefault(v, []).append(res)
            self._value_tables[key] = table
        return table

    def unresolved(self, types: frozenset[str], via: str) -> list[Resource]:
        """Resources of *types* whose attribute *via* holds a value that cannot be known and
        refers to no managed resource of the scan (a variable without a value, a data source,
        an ID from outside the tree): each may point at any resource. Built once per pair."""
        key = (types, via)
        found = self._unresolved.get(key)
        if found is None:
            found = []
            vpath = parse_path(via)
            for t in sorted(types):
                for res in self.by_type.get(t, ()):
                    if not any(contains_unknown(v) for v in resolve(res.attributes, vpath)):
                        continue
                    targets = {a for p, addrs in res.references.items() if _path_under(p, via) for a in addrs}
                    if not any(a in self.by_address and self.by_address[a].meta.get("mode") != "data"
                               for a in targets):
                        found.append(res)
            self._unresolved[key] = found
        return found

    def referenced_by(self, source: Resource, types: frozenset[str], via: str | None) -> list[Resource]:
        """Resources of *types* that *source* refers to (from attribute *via*, or any)."""
        out: dict[int, Resource] = {}
        for path, targets in source.references.items():
            if via is not None and not _path_under(path, via):
                continue
            for addr in targets:
                res = self.by_address.get(addr)
                if res is not None and res.type in types:
                    out[id(res)] = res
        if via is not None:
            for v in resolve(source.attributes, parse_path(via)):
                if isinstance(v, str):
                    for res in self.by_identity.get(v, ()):
                        if res.type in types:
                            out[id(res)] = res
        return list(out.values())


def _without(table: dict[str, list[Any]], key: str, kept: list[Any]) -> None:
    if kept:
        table[key] = kept
    else:
        table.pop(key, None)


def _path_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


# --------------------------------------------------------------------------- logic

def t_and(values: list[Tri]) -> Tri:
    """Kleene AND."""
    unknown = False
    for v in values:  # a plain loop: rules call this per path step, generators cost more here
        if v is False:
            return False
        if v is None:
            unknown = True
    return None if unknown else True


def t_or(values: list[Tri]) -> Tri:
    """Kleene OR."""
    unknown = False
    for v in values:
        if v is True:
            return True
        if v is None:
            unknown = True
    return None if unknown else False


def t_not(value: Tri) -> Tri:
    """Kleene NOT."""
    return None if value is None else not value




def bool_arg(arg: Any, where: str) -> bool:
    """An operator argument that must be true or false."""
    if not isinstance(arg, bool):
        raise ConditionError("expected true or false", where)
    return arg
