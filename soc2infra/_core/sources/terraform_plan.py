"""Terraform plan JSON source (``terraform show -json plan.out``).

Values come from ``planned_values`` (every module expanded, every known value resolved);
``resource_changes[].change.after_unknown`` marks what is known only after apply, which
becomes :class:`Unknown`. References between resources come from ``configuration``
(expressions keep their ``references``), so the same cross-resource rules work unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

from soc2infra._cogs.limits import LimitExceeded, check_depth, too_deep
from soc2infra._cogs.model import Error, Resource, Unknown
from soc2infra._core.sources.terraform_eval import IDENTITY_ATTRS

_INDEX_RE = re.compile(r"\[[^\]]*\]")


def looks_like_plan(data: Any) -> bool:
    """True for a parsed ``terraform show -json`` document of a plan."""
    return isinstance(data, dict) and "planned_values" in data and (
        "format_version" in data or "terraform_version" in data)


def strip_indexes(address: str) -> str:
    """``module.a[0].aws_s3_bucket.b["x"]`` → ``module.a.aws_s3_bucket.b``."""
    return _INDEX_RE.sub("", address)


def load_plan_text(text: str, file: str) -> tuple[list[Resource], list[Error]]:
    """Parse plan JSON text into resources; malformed input becomes a located error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [Error(file, exc.lineno, f"invalid JSON: {exc.msg}")]
    except RecursionError:  # nested past what the parser can hold: located, the other files go on
        deep = too_deep(text, "JSON")
        return [], [Error(file, deep.line, str(deep))]
    try:
        check_depth(data)  # the plan walkers below recurse: refuse what they could not hold
    except LimitExceeded:
        deep = too_deep(text, "JSON")
        return [], [Error(file, deep.line, str(deep))]
    if not looks_like_plan(data):
        return [], [Error(file, 1, "not a Terraform plan (no planned_values)")]
    return load_plan(data, file)


def _dict(value: Any) -> dict[str, Any]:
    # A plan is input like any other: a field of the wrong type is treated as absent.
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def load_plan(data: dict[str, Any], file: str) -> tuple[list[Resource], list[Error]]:
    """Resources of a parsed plan document."""
    errors: list[Error] = []
    unknowns: dict[str, Any] = {}
    for rc in _dicts(data.get("resource_changes")):
        if isinstance(rc.get("change"), dict):
            unknowns[str(rc.get("address"))] = rc["change"].get("after_unknown") or {}
            actions = _list(rc["change"].get("actions"))
            if "delete" in actions and "create" not in actions:
                unknowns[str(rc.get("address"))] = None  # being destroyed: not part of the result
    raw: list[dict[str, Any]] = []
    root = _dict(_dict(data.get("planned_values")).get("root_module"))
    _walk_planned(root, raw)
    config_root = _dict(_dict(data.get("configuration")).get("root_module"))
    config_refs = _config_references(config_root, "")
    configured = _configured_keys(config_root, "") if config_root else None
    by_config: dict[str, list[str]] = {}
    for r in raw:
        by_config.setdefault(strip_indexes(str(r.get("address", ""))), []).append(str(r.get("address")))
    resources: list[Resource] = []
    for r in raw:
        address = str(r.get("address", ""))
        if not address or unknowns.get(address, {}) is None and address in unknowns:
            continue
        values = r.get("values") if isinstance(r.get("values"), dict) else {}
        attrs = _merge_unknown(values, unknowns.get(address) or {})
        if configured is not None:
            attrs = _settle_unknowns(attrs, configured.get(strip_indexes(address)))
        mode = r.get("mode", "managed")
        rtype = str(r.get("type", ""))
        refs = _instance_references(address, config_refs.get(strip_indexes(address), {}), by_config)
        idents = frozenset(v for k in IDENTITY_ATTRS if isinstance(v := attrs.get(k), str) and v)
        resources.append(Resource(
            kind="terraform", type=rtype if mode == "managed" else f"data.{rtype}", address=address,
            attributes=attrs, file=file, line=0, references=refs, identities=idents,
            meta={"mode": "resource" if mode == "managed" else "data", "plan": True,
                  "module": r.get("_module", ""), "scope": f"plan:{file}"},
        ))
    return resources, errors


def _configured_keys(module: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """Config address → the arguments and nested blocks written in the configuration (the
    plan's ``expressions`` tree)."""
    out: dict[str, dict[str, Any]] = {}
    for r in _dicts(module.get("resources")):
        local = f"{r.get('type')}.{r.get('name')}" if r.get("mode") == "managed" \
            else f"data.{r.get('type')}.{r.get('name')}"
        out[prefix + local] = _dict(r.get("expressions"))
    for name, call in _dict(module.get("module_calls")).items():
        out.update(_configured_keys(_dict(_dict(call).get("module")), f"{prefix}module.{name}."))
    return out


def _settle_unknowns(attrs: dict[str, Any], configured: dict[str, Any] | None) -> dict[str, Any]:
    """A value known only after apply is, for rules, either *set* (it was written in the
    configuration, e.g. ``kms_key_id = aws_kms_key.k.arn``) or *not set* (a provider-computed
    default such as a bucket's inline ``versioning`` block, or a Cloud SQL instance's
    ``settings.ip_configuration.ssl_mode``). Nested blocks written in the configuration are
    settled the same way, element by element."""
    if configured is None:
        return attrs
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, Unknown):
            if key not in configured:
                continue
            value = Unknown(value.reason, nonnull=True)
        else:
            blocks = configured.get(key)
            if isinstance(value, list) and isinstance(blocks, list):
                value = [_settle_unknowns(v, blocks[i])
                         if isinstance(v, dict) and i < len(blocks) and isinstance(blocks[i], dict) else v
                         for i, v in enumerate(value)]
        out[key] = value
    return out


def _walk_planned(module: dict[str, Any], out: list[dict[str, Any]]) -> None:
    for r in _dicts(module.get("resources")):
        out.append({**r, "_module": str(module.get("address", ""))})
    for child in _dicts(module.get("child_modules")):
        _walk_planned(child, out)


def _merge_unknown(values: Any, unknown: Any) -> Any:
    if unknown is True:
        return Unknown("known after apply")
    if isinstance(values, dict):
        out = {k: _merge_unknown(v, unknown.get(k) if isinstance(unknown, dict) else None)
               for k, v in values.items()}
        if isinstance(unknown, dict):
            for k, u in unknown.items():
                if k not in out and u is True:
                    out[k] = Unknown("known after apply")
                elif k not in out and isinstance(u, (dict, list)) and _any_true(u):
                    out[k] = _merge_unknown(None, u)
        return out
    if isinstance(values, list):
        return [_merge_unknown(v, unknown[i] if isinstance(unknown, list) and i < len(unknown) else None)
                for i, v in enumerate(values)]
    if values is None and isinstance(unknown, (dict, list)):
        if isinstance(unknown, list):
            return [_merge_unknown(None, u) for u in unknown]
        return {k: _merge_unknown(None, u) for k, u in unknown.items() if _any_true(u)}
    return values


def _any_true(u: Any) -> bool:
    if u is True:
        return True
    if isinstance(u, dict):
        return any(_any_true(v) for v in u.values())
    if isinstance(u, list):
        return any(_any_true(v) for v in u)
    return False


def _config_references(module: dict[str, Any], prefix: str,
                       var_refs: dict[str, set[str]] | None = None) -> dict[str, dict[str, set[str]]]:
    """Config address → {attribute path → referenced config addresses}, following
    module inputs (``var.x`` inside a module) and outputs (``module.m.out``)."""
    var_refs = var_refs or {}
    out: dict[str, dict[str, set[str]]] = {}
    resources = {f"{r.get('type')}.{r.get('name')}" if r.get("mode") == "managed"
                 else f"data.{r.get('type')}.{r.get('name')}" for r in _dicts(module.get("resources"))}
    calls = _dict(module.get("module_calls"))
    output_refs: dict[str, dict[str, set[str]]] = {}
    for name, call in calls.items():
        call = _dict(call)
        child_prefix = f"{prefix}module.{name}."
        child_vars = {k: _resolve_refs(_expr_refs(v), resources, prefix, var_refs, {})
                      for k, v in _dict(call.get("expressions")).items()}
        child = _dict(call.get("module"))
        out.update(_config_references(child, child_prefix, child_vars))
        child_resources = {f"{r.get('type')}.{r.get('name')}" for r in _dicts(child.get("resources"))}
        output_refs[name] = {oname: _resolve_refs(_expr_refs(_dict(o).get("expression") or {}),
                                                  child_resources, child_prefix, child_vars, {})
                             for oname, o in _dict(child.get("outputs")).items()}
    for r in _dicts(module.get("resources")):
        local = f"{r.get('type')}.{r.get('name')}" if r.get("mode") == "managed" \
            else f"data.{r.get('type')}.{r.get('name')}"
        paths: dict[str, set[str]] = {}
        _collect_expr_refs(r.get("expressions") or {}, "", paths)
        resolved = {p: _resolve_refs(refs, resources, prefix, var_refs, output_refs)
                    for p, refs in paths.items()}
        out[prefix + local] = {p: v for p, v in resolved.items() if v}
    return out


def _expr_refs(expr: Any) -> set[str]:
    found: set[str] = set()
    _collect_expr_refs(expr, "", {"": found})
    return {r for refs in [found] for r in refs}


def _collect_expr_refs(expr: Any, path: str, out: dict[str, set[str]]) -> None:
    if isinstance(expr, dict):
        if "references" in expr and isinstance(expr["references"], list):
            out.setdefault(path, set()).update(str(x) for x in expr["references"])
        for k, v in expr.items():
            if k in ("references", "constant_value"):
                continue
            _collect_expr_refs(v, f"{path}.{k}" if path else k, out) if isinstance(v, (dict, list)) else None
    elif isinstance(expr, list):
        for item in expr:
            _collect_expr_refs(item, path, out)
    if path == "" and "" in out and len(out) > 1:
        pass


def _resolve_refs(refs: set[str], resources: set[str], prefix: str, var_refs: dict[str, set[str]],
                  output_refs: dict[str, dict[str, set[str]]]) -> set[str]:
    out: set[str] = set()
    for ref in refs:
        parts = strip_indexes(ref).split(".")
        if parts[0] == "var" and len(parts) >= 2:
            out |= var_refs.get(parts[1], set())
        elif parts[0] == "module" and len(parts) >= 3:
            out |= output_refs.get(parts[1], {}).get(parts[2], set())
        elif parts[0] == "data" and len(parts) >= 3 and ".".join(parts[:3]) in resources:
            out.add(prefix + ".".join(parts[:3]))
        elif len(parts) >= 2 and ".".join(parts[:2]) in resources:
            out.add(prefix + ".".join(parts[:2]))
    return out


def _instance_references(address: str, config: dict[str, set[str]],
                         by_config: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    module_prefix = address.rsplit(".", 2)[0] + "." if address.count(".") > 1 else ""
    refs: dict[str, frozenset[str]] = {}
    for path, targets in config.items():
        found: set[str] = set()
        for target in targets:
            instances = by_config.get(target, [])
            same_module = ([i for i in instances if i.startswith(module_prefix)]
                           if module_prefix else instances)
            found.update(same_module or instances)
        found.discard(address)
        if found:
            refs[path] = frozenset(found)
    return refs
