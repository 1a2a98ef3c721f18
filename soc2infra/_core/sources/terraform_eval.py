"""Static evaluation of a Terraform module tree into :class:`Resource` objects.

Resolves what Terraform itself could resolve at plan time without provider calls:
variables (defaults, tfvars, module inputs), locals, interpolations, conditionals, the
built-in functions in :mod:`terraform_functions`, ``count``/``for_each`` (a resource with
``count = 0`` does not exist), dynamic blocks, local child modules and references between
resources. Anything else becomes :class:`Unknown`. Every evaluation also records which
resources an attribute referenced, so cross-resource rules can follow the links.

Why one module of over 900 lines: it is one evaluator (expressions, blocks, modules and
meta-arguments recurse into each other); the built-in functions already live apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from soc2infra._cogs import limits
from soc2infra._cogs.model import ARN_SEGMENT, Error, ModuleRecord, Resource, Unknown, contains_unknown
from soc2infra._core.sources.hcl_ast import Block, Body, Expr, _split_template
from soc2infra._core.sources.terraform_functions import (
    FUNCTIONS,
    PATH_FUNCTIONS,
    UnknownLengthList,
    file_function,
    first_unknown,
    is_error,
    to_str,
)
from soc2infra._core.sources.terraform_modules import ModuleResolver
from soc2infra._core.sources.terraform_providers import (
    ProviderConfigs,
    child_configs,
    config_key,
    default_tags,
    effective_tags,
    resource_provider,
)
from soc2infra._core.sources.terraform_types import convert, parse_type

META_ARGS = frozenset({"count", "for_each", "depends_on", "provider", "providers"})
META_BLOCKS = frozenset({"lifecycle", "provisioner", "connection"})
MAX_MODULE_DEPTH = 20
IDENTITY_ATTRS = ("bucket", "name", "arn", "id", "function_name", "cluster_identifier", "identifier")


@dataclass(slots=True)
class ModuleDef:
    """The parsed blocks of one module directory."""

    dir: Path
    files: list[str] = field(default_factory=list)  # the .tf files it was read from
    variables: dict[str, Block] = field(default_factory=dict)
    locals: dict[str, tuple[Expr, str, int]] = field(default_factory=dict)
    resources: list[tuple[Block, str]] = field(default_factory=list)
    data: list[tuple[Block, str]] = field(default_factory=list)
    modules: list[tuple[Block, str]] = field(default_factory=list)
    outputs: dict[str, Expr] = field(default_factory=dict)
    waivers: dict[tuple[str, int], tuple[tuple[str, str, int], ...]] = field(default_factory=dict)
    # provider and variable blocks with their file, emitted as resources for credentials-in-code rules
    config_blocks: list[tuple[Block, str]] = field(default_factory=list)

    def add_file(self, file: str, body: Body, waivers: dict[int, tuple[tuple[str, str, int], ...]]) -> None:
        """Merge one file's top-level blocks into the module."""
        self.files.append(file)
        for blk in body.blocks:
            if blk.type == "variable" and blk.labels:
                self.variables[blk.labels[0]] = blk
                self.config_blocks.append((blk, file))
            elif blk.type == "provider" and blk.labels:
                self.config_blocks.append((blk, file))
            elif blk.type == "locals":
                for name, (expr, line) in blk.body.attrs.items():
                    self.locals[name] = (expr, file, line)
            elif blk.type == "resource" and len(blk.labels) == 2:
                self.resources.append((blk, file))
            elif blk.type == "data" and len(blk.labels) == 2:
                self.data.append((blk, file))
            elif blk.type == "module" and blk.labels:
                self.modules.append((blk, file))
            elif blk.type == "output" and blk.labels and "value" in blk.body.attrs:
                self.outputs[blk.labels[0]] = blk.body.attrs["value"][0]
            if blk.line in waivers:
                self.waivers[(file, blk.line)] = waivers[blk.line]


ModuleLoader = Callable[[Path], "ModuleDef | None"]


class _Tracked:
    """A memoized value together with the resource addresses it was computed from."""

    __slots__ = ("value", "refs")

    def __init__(self, value: Any, refs: frozenset[str]) -> None:
        self.value, self.refs = value, refs


_IN_PROGRESS = object()


class Env:
    """Evaluation scope: a module instance, local bindings and the reference tracker."""

    __slots__ = ("inst", "bindings", "tracker")

    def __init__(self, inst: ModuleInstance, bindings: dict[str, Any] | None = None,
                 tracker: set[str] | None = None) -> None:
        self.inst, self.bindings, self.tracker = inst, bindings or {}, tracker

    def bind(self, **values: Any) -> Env:
        """A child scope with extra names bound (for-expression and iterator variables)."""
        return Env(self.inst, {**self.bindings, **values}, self.tracker)

    def track(self, refs: set[str] | frozenset[str]) -> None:
        """Record that the value being computed depends on *refs*."""
        if self.tracker is not None:
            self.tracker.update(refs)


class ModuleInstance:
    """One instance of a module (the root, or ``module.x`` / ``module.x[0]``)."""

    def __init__(self, mdef: ModuleDef, prefix: str, inputs: dict[str, _Tracked], loader: ModuleLoader,
                 root_dir: Path, depth: int = 0, resolver: ModuleResolver | None = None,
                 call_path: tuple[str, ...] = (), call_site: tuple[str, int] | None = None,
                 providers: ProviderConfigs | None = None) -> None:
        self.mdef, self.prefix, self.inputs, self.loader = mdef, prefix, inputs, loader
        # Provider configurations passed down by the caller; this module's own blocks are added
        # on first use (provider_configs).
        self._inherited_providers = providers or {}
        self._providers: ProviderConfigs | None = None
        self.root_dir, self.depth = root_dir, depth
        # Non-local module sources (modules.json, downloads) and the record of every call.
        self.resolver = resolver
        # Module call names from the root (modules.json keys: "vpc.subnets") and the root-level
        # module block this instance sits under (what the user can change).
        self.call_path, self.call_site = call_path, call_site
        self._locals: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self.blocks: dict[tuple[str, str, str], BlockRef] = {}
        for blk, file in mdef.resources:
            self.blocks[("resource", blk.labels[0], blk.labels[1])] = BlockRef(self, blk, file, "resource")
        for blk, file in mdef.data:
            self.blocks[("data", blk.labels[0], blk.labels[1])] = BlockRef(self, blk, file, "data")
        self.module_calls: dict[str, ModuleCall] = {
            blk.labels[0]: ModuleCall(self, blk, file) for blk, file in mdef.modules}
        try:
            rel = mdef.dir.relative_to(root_dir)
            self.path_module = "." if str(rel) == "." else str(rel)
        except ValueError:
            self.path_module = str(mdef.dir)

    def provider_configs(self) -> ProviderConfigs:
        """Provider configurations in scope here, by local name (``aws``, ``aws.eu``)."""
        if self._providers is None:
            own: ProviderConfigs = {}
            for blk, _file in self.mdef.config_blocks:
                if blk.type == "provider" and blk.labels:
                    attrs = evaluate_body(blk.body, Env(self), "", {}, top=True)
                    own[config_key(blk.labels[0], attrs)] = attrs
            self._providers = {**self._inherited_providers, **own}
        return self._providers

    def address(self, local: str) -> str:
        """Full address of a resource address *local* inside this module instance."""
        return f"{self.prefix}.{local}" if self.prefix else local

    def var(self, name: str, env: Env) -> Any:
        got = self.inputs.get(name)
        if got is None:
            # A required input may still be passed as null: nothing is certain about it.
            return Unknown(f"var.{name} has no value", kind="unset_variable")
        env.track(got.refs)
        return got.value

    def local(self, name: str, env: Env) -> Any:
        spec = self.mdef.locals.get(name)
        return self._memoized(self._locals, f"local.{name}", spec[0] if spec else None, env)

    def output(self, name: str, env: Env) -> Any:
        return self._memoized(self._outputs, f"output {name}", self.mdef.outputs.get(name), env)

    def _memoized(self, memo: dict[str, Any], label: str, expr: Expr | None, env: Env) -> Any:
        """Evaluate *expr* once per module instance, remembering the resources it referenced so
        every later use records them too; a cycle evaluates to Unknown instead of recursing."""
        got = memo.get(label)
        if got is _IN_PROGRESS:
            return Unknown(f"{label} refers to itself", kind="error")
        if got is None:
            if expr is None:
                return Unknown(f"{label} is not defined", kind="error")
            memo[label] = _IN_PROGRESS
            refs: set[str] = set()
            got = _Tracked(evaluate(expr, Env(self, {}, refs)), frozenset(refs))
            memo[label] = got
        env.track(got.refs)
        return got.value

    def all_outputs(self, env: Env) -> dict[str, Any]:
        return {name: self.output(name, env) for name in self.mdef.outputs}

    def file_func(self) -> Callable[[Any], Any]:
        return file_function(self.mdef.dir, self.root_dir)


def _instance_key(key: Any) -> str:
    return f"[{key}]" if isinstance(key, int) else f"[{json.dumps(key)}]"


def _expand(count_or_each: tuple[str, Any] | None) -> list[tuple[Any, dict[str, Any]]] | Unknown:
    """Instances of a block as (key, bindings); Unknown when the count cannot be decided."""
    if count_or_each is None:
        return [(None, {})]
    kind, value = count_or_each
    if isinstance(value, Unknown) or contains_unknown(value) and kind == "count":
        src = _first_of(value)
        return src.derive(f"{kind} is unknown ({src.reason})")
    if kind == "count":
        try:
            n = int(value)
        except (TypeError, ValueError):
            return Unknown("count is not a number")
        limits.check_instances(n, "count")  # before allocating: count = 1000000 is refused fast
        return [(i, {"count": {"index": i}}) for i in range(max(n, 0))]
    if isinstance(value, (dict, list)):
        limits.check_instances(len(value), "for_each")
    if isinstance(value, dict):
        return [(k, {"each": {"key": k, "value": v}}) for k, v in value.items()]
    if isinstance(value, list):
        if any(isinstance(v, Unknown) for v in value):
            src = _first_of(value)
            return src.derive(f"for_each set has unknown elements ({src.reason})")
        return [(to_str(v), {"each": {"key": to_str(v), "value": v}}) for v in value]
    return Unknown("for_each is not a map or set")


def _unknown_bindings(why: Unknown) -> dict[str, Any]:
    """count.index / each.key / each.value of the one representative instance evaluated when
    count or for_each is unknown: unknown for the same reason."""
    return {"count": {"index": why.derive(f"count.index ({why.reason})")},
            "each": {"key": why.derive(f"each.key ({why.reason})"),
                     "value": why.derive(f"each.value ({why.reason})")}}


class BlockRef:
    """A ``resource``/``data`` block: its instances, evaluated on first use."""

    def __init__(self, inst: ModuleInstance, block: Block, file: str, mode: str) -> None:
        self.inst, self.block, self.file, self.mode = inst, block, file, mode
        rtype, name = block.labels
        self.type = rtype if mode == "resource" else f"data.{rtype}"
        self.local_address = f"{rtype}.{name}" if mode == "resource" else f"data.{rtype}.{name}"
        self._instances: list[InstanceRef] | None = None
        self._refused: limits.LimitExceeded | None = None
        self.has_index = "count" in block.body.attrs or "for_each" in block.body.attrs
        self.existence_unknown = False
        self.existence_reason: Unknown | None = None

    def instances(self) -> list[InstanceRef]:
        """All instances (empty when ``count = 0``); raises the limit that refused them."""
        if self._refused is not None:
            raise self._refused
        if self._instances is None:
            attrs = self.block.body.attrs
            meta: tuple[str, Any] | None = None
            base = Env(self.inst)
            try:
                if "count" in attrs:
                    meta = ("count", evaluate(attrs["count"][0], base))
                elif "for_each" in attrs:
                    meta = ("for_each", evaluate(attrs["for_each"][0], base))
                expanded = _expand(meta)
            except limits.Exhausted:
                raise
            except limits.LimitExceeded as exc:
                exc.args = (f"{self.inst.address(self.local_address)}: {exc}",)
                exc.file = exc.file or self.file
                arg = attrs.get("count") or attrs.get("for_each")
                exc.line = exc.line or (arg[1] if arg else self.block.line)
                self._refused = exc
                raise
            self._instances = []
            if isinstance(expanded, Unknown):
                # Cannot know how many exist: evaluate one representative, flagged.
                self.existence_unknown = True
                self.existence_reason = expanded
                binding = _unknown_bindings(expanded)
                self._instances.append(InstanceRef(self, self.inst.address(self.local_address), binding))
            else:
                for key, binding in expanded:
                    addr = self.local_address + ("" if key is None else _instance_key(key))
                    self._instances.append(InstanceRef(self, self.inst.address(addr), binding))
        return self._instances

    def attr(self, name: str, env: Env) -> Any:
        insts = self.instances()
        if not self.has_index and len(insts) == 1:
            return insts[0].attr(name, env)
        return Unknown(f"{self.local_address} has count/for_each: index it", kind="error")

    def index(self, key: Any, env: Env) -> Any:
        insts = self.instances()
        if self.existence_unknown:
            env.track({i.address for i in insts})
            return insts[0] if insts else Unknown("no instance")
        wanted = self.inst.address(self.local_address + _instance_key(key if not isinstance(key, float)
                                                                     else int(key)))
        for i in insts:
            if i.address == wanted:
                return i
        return Unknown(f"{wanted} does not exist", kind="error")

    def as_collection(self, env: Env) -> Any:
        insts = self.instances()
        if not self.has_index:
            return insts[0] if insts else None
        if "for_each" in self.block.body.attrs and not self.existence_unknown:
            return {to_str(i.bindings["each"]["key"]): i for i in insts}
        if self.existence_reason is not None:
            return UnknownLengthList(insts, self.existence_reason)
        return list(insts)


class InstanceRef:
    """One instance of a resource; its attributes are evaluated once, on demand."""

    def __init__(self, block: BlockRef, address: str, bindings: dict[str, Any]) -> None:
        self.block, self.address, self.bindings = block, address, bindings
        self._attrs: dict[str, Any] | None | object = None
        self.references: dict[str, frozenset[str]] = {}

    def attributes(self) -> dict[str, Any]:
        """The evaluated attribute tree (nested blocks as lists of dicts)."""
        if self._attrs is _IN_PROGRESS:
            return {}
        if self._attrs is None:
            self._attrs = _IN_PROGRESS
            refs: dict[str, set[str]] = {}
            env = Env(self.block.inst, dict(self.bindings))
            attrs = evaluate_body(self.block.block.body, env, "", refs, top=True)
            own = {self.address}  # a resource referring to itself is not a link
            self.references = {k: frozenset(v - own) for k, v in refs.items() if v - own}
            self._attrs = attrs
        return self._attrs  # type: ignore[return-value]

    def attr(self, name: str, env: Env) -> Any:
        env.track({self.address})
        attrs = self.attributes()
        if name in attrs and attrs[name] is not None:
            return attrs[name]
        return _apply_time(self, name)


def _apply_time(inst: InstanceRef, name: str) -> Unknown:
    """The value of an attribute the configuration does not set: computed by the provider,
    so known only after apply (or after the data source is read). It remembers the resource
    type and attribute, so rules can tell that an ``aws_iam_policy`` ARN is never ``"*"``."""
    rtype = inst.block.type
    parts = _arn_parts(inst, rtype) if name == "arn" else None
    return Unknown(f"{inst.address}.{name} is known only after apply", nonnull=True, kind="apply_time",
                   rtype=rtype, attr=name, candidates=KNOWN_DOMAINS.get((rtype, name)), parts=parts)


# The ARN layout of common resource types: fixed text, ARN_SEGMENT for a segment the provider
# decides (partition, region, account), None for any text (generated ids, unknown names) and
# ("attr", name) / ("path", name) for a configured argument.
_SEG = ARN_SEGMENT
_ARN = ("arn:", _SEG)
_REGIONAL = (":", _SEG, ":", _SEG)  # :region:account
ARN_LAYOUTS: dict[str, tuple[Any, ...]] = {
    "aws_s3_bucket": (*_ARN, ":s3:::", ("attr", "bucket")),
    "aws_iam_role": (*_ARN, ":iam::", _SEG, ":role/", ("path", "name")),
    "aws_iam_user": (*_ARN, ":iam::", _SEG, ":user/", ("path", "name")),
    "aws_iam_group": (*_ARN, ":iam::", _SEG, ":group/", ("path", "name")),
    "aws_iam_policy": (*_ARN, ":iam::", _SEG, ":policy/", ("path", "name")),
    "aws_sns_topic": (*_ARN, ":sns", *_REGIONAL, ":", ("attr", "name")),
    "aws_sqs_queue": (*_ARN, ":sqs", *_REGIONAL, ":", ("attr", "name")),
    "aws_lambda_function": (*_ARN, ":lambda", *_REGIONAL, ":function:", ("attr", "function_name")),
    "aws_dynamodb_table": (*_ARN, ":dynamodb", *_REGIONAL, ":table/", ("attr", "name")),
    "aws_cloudwatch_log_group": (*_ARN, ":logs", *_REGIONAL, ":log-group:", ("attr", "name")),
    "aws_kms_key": (*_ARN, ":kms", *_REGIONAL, ":key/", None),
}
"""ARN layouts: an unknown ARN of these types keeps its fixed text, so a pattern such as
``arn:aws:s3:::logs-*`` is decided against ``aws_s3_bucket.b.arn`` when the bucket name is known."""


def _arn_parts(inst: InstanceRef, rtype: str) -> tuple[str | None, ...] | None:
    layout = ARN_LAYOUTS.get(rtype)
    if layout is None:
        return None
    attrs = inst.attributes()
    out: list[str | None] = []
    for piece in layout:
        if isinstance(piece, tuple):
            kind, attr = piece
            value = attrs.get(attr)
            if kind == "path":  # IAM names sit under their path ("/" when not set)
                path = attrs.get("path", "/")
                value = f"{path.strip('/')}/{value}".lstrip("/") \
                    if isinstance(value, str) and isinstance(path, str) else None
            piece = value if isinstance(value, str) and value else None
        if piece is None and out and out[-1] is None:
            continue
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] += piece
        else:
            out.append(piece)
    return tuple(out)


KNOWN_DOMAINS: dict[tuple[str, str], tuple[str, ...]] = {
    # Every value the provider can return, so a rule can be decided over all of them.
    ("data.aws_partition", "partition"): ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b",
                                          "aws-iso-e", "aws-iso-f", "aws-eusc"),
}
"""Apply-time attributes whose possible values are a short, fixed list."""


class ModuleCall:
    """A ``module`` block: its child instances (none for non-local sources)."""

    def __init__(self, parent: ModuleInstance, block: Block, file: str) -> None:
        self.parent, self.block, self.file = parent, block, file
        self.name = block.labels[0]
        self._instances: dict[Any, ModuleInstance] | None = None
        self.external = False

    def instances(self) -> dict[Any, ModuleInstance]:
        if self._instances is not None:
            return self._instances
        self._instances = {}
        attrs = self.block.body.attrs
        base = Env(self.parent)
        source = evaluate(attrs["source"][0], base) if "source" in attrs else None
        directory = self._directory(source, base)
        child_def = self.parent.loader(directory) if directory is not None else None
        if child_def is None:
            if directory is not None:
                self._not_scanned(source, "the module directory holds no .tf files")
            self.external = True
            return self._instances
        meta: tuple[str, Any] | None = None
        if "count" in attrs:
            meta = ("count", evaluate(attrs["count"][0], base))
        elif "for_each" in attrs:
            meta = ("for_each", evaluate(attrs["for_each"][0], base))
        expanded = _expand(meta)
        if isinstance(expanded, Unknown):
            expanded = [(None, _unknown_bindings(expanded))]
        for key, binding in expanded:
            local = f"module.{self.name}" + ("" if key is None else _instance_key(key))
            prefix = f"{self.parent.prefix}.{local}" if self.parent.prefix else local
            inputs = module_inputs(child_def, self.block.body, Env(self.parent, binding))
            self._instances[key] = ModuleInstance(
                child_def, prefix, inputs, self.parent.loader, self.parent.root_dir, self.parent.depth + 1,
                resolver=self.parent.resolver, call_path=(*self.parent.call_path, self.name),
                call_site=self.parent.call_site or (self.file, self.block.line),
                providers=child_configs(self.parent.provider_configs(),
                                        attrs["providers"][0] if "providers" in attrs else None))
        return self._instances

    @property
    def address(self) -> str:
        """``module.a.module.b``: the call's address without instance keys."""
        return ".".join(f"module.{n}" for n in (*self.parent.call_path, self.name))

    def _directory(self, source: Any, env: Env) -> Path | None:
        """Where the called module's files are, or None (recorded as not scanned)."""
        if self.parent.depth > MAX_MODULE_DEPTH:
            self._not_scanned(source, f"modules nested deeper than {MAX_MODULE_DEPTH} levels")
            return None
        if isinstance(source, str) and source.startswith(("./", "../")):
            directory = _resolve_dir(self.parent.mdef.dir, source)
            if not directory.is_dir():
                self._not_scanned(source, "local module directory does not exist")
                return None
            if self.parent.resolver is not None:
                self.parent.resolver.record(ModuleRecord(
                    self.address, source, None, True, origin="local", file=self.file, line=self.block.line))
            return directory
        resolver = self.parent.resolver
        if resolver is None:
            return None
        version_expr = self.block.body.attrs.get("version")
        version = evaluate(version_expr[0], env) if version_expr else None
        return resolver.resolve(".".join((*self.parent.call_path, self.name)), self.address, source,
                                version, self.file, self.block.line)

    def _not_scanned(self, source: Any, reason: str) -> None:
        if self.parent.resolver is not None:
            self.parent.resolver.record(ModuleRecord(
                self.address, source if isinstance(source, str) else "<unknown>", None, False, reason,
                file=self.file, line=self.block.line))

    def value(self, env: Env) -> Any:
        insts = self.instances()
        if self.external:
            return Unknown(f"{self.address} was not scanned", kind="external_module")
        if list(insts) == [None]:
            return _ModuleOutputs(insts[None])
        return {k: _ModuleOutputs(v) for k, v in insts.items()} if "for_each" in self.block.body.attrs \
            else [_ModuleOutputs(v) for v in insts.values()]


@lru_cache(maxsize=4096)
def _resolve_dir(base: Path, source: str) -> Path:
    # Path.resolve() stats every component; module trees resolve the same sources many times.
    return (base / source).resolve()


class _ModuleOutputs:
    __slots__ = ("inst",)

    def __init__(self, inst: ModuleInstance) -> None:
        self.inst = inst


def _constant(expr: Expr) -> Any:
    """A constant expression (a default value) evaluated outside any module."""
    return evaluate(expr, Env(_EMPTY_INSTANCE))


def variable_default(block: Block) -> _Tracked | None:
    """A variable block's default value converted to its type, or None when it has none."""
    if "default" not in block.body.attrs:
        return None
    value = convert(_constant(block.body.attrs["default"][0]), _type_of(block), _constant)
    return _Tracked(value, frozenset())


def _type_of(block: Block) -> Any:
    spec = block.body.attrs.get("type")
    return parse_type(spec[0] if spec else None)


def variable_value(block: Block, given: _Tracked) -> _Tracked:
    """What the module sees for a variable given *given*: converted to the declared type
    (``optional()`` defaults filled in at every level); with ``nullable = false`` a null
    becomes the default. ``validation`` blocks are not evaluated (they only reject)."""
    value = given.value
    nullable = block.body.attrs.get("nullable")
    if value is None and nullable is not None and _constant(nullable[0]) is False:
        default = variable_default(block)
        return default if default is not None else given
    return _Tracked(convert(value, _type_of(block), _constant), given.refs)


def module_inputs(child: ModuleDef, call_body: Body, env: Env) -> dict[str, _Tracked]:
    """Values of the child's variables: the call's arguments, else the defaults."""
    inputs: dict[str, _Tracked] = {}
    for name, block in child.variables.items():
        if name in call_body.attrs:
            refs: set[str] = set()
            value = _materialize(evaluate(call_body.attrs[name][0], Env(env.inst, env.bindings, refs)),
                                 Env(env.inst, env.bindings, refs))
            inputs[name] = variable_value(block, _Tracked(value, frozenset(refs)))
        else:
            default = variable_default(block)
            if default is not None:
                inputs[name] = default
    return inputs


# --------------------------------------------------------------------------- expressions

def evaluate(expr: Expr, env: Env) -> Any:  # noqa: C901 - one dispatch over node kinds
    """Evaluate an expression node to a plain value (or Unknown)."""
    kind = expr[0]
    if kind == "lit":
        return expr[1]
    if kind == "tmpl":
        return _template(expr[1], env)
    if kind == "var":
        return _root(expr[1], env)
    if kind == "get":
        return _get(evaluate(expr[1], env), expr[2], env)
    if kind == "idx":
        return _index(evaluate(expr[1], env), _materialize(evaluate(expr[2], env), env), env)
    if kind == "splat":
        return _splat(evaluate(expr[1], env), expr[2], env)
    if kind == "call":
        return _call(expr[1], expr[2], expr[3], env)
    if kind == "cond":
        c = _materialize(evaluate(expr[1], env), env)
        if isinstance(c, Unknown):
            a = _materialize(evaluate(expr[2], env), env)
            b = _materialize(evaluate(expr[3], env), env)
            return _either(a, b, c)
        return evaluate(expr[2] if _truth(c) else expr[3], env)
    if kind == "bin":
        return _binary(expr[1], expr[2], expr[3], env)
    if kind == "un":
        v = _materialize(evaluate(expr[2], env), env)
        if isinstance(v, Unknown):
            return v
        if expr[1] == "!":
            return not _truth(v)
        return -v if isinstance(v, (int, float)) else Unknown("negation of a non-number")
    if kind == "tuple":
        return [_materialize(evaluate(e, env), env) for e in expr[1]]
    if kind == "obj":
        obj: dict[str, Any] = {}
        for kexpr, vexpr in expr[1]:
            k = _materialize(evaluate(kexpr, env), env)
            if isinstance(k, Unknown):
                return Unknown("object key is unknown")
            obj[to_str(k)] = _materialize(evaluate(vexpr, env), env)
        return obj
    if kind == "for":
        return _for(expr, env)
    if kind == "unknown":
        return Unknown(expr[1])
    return Unknown(f"cannot evaluate {kind}")


def _template(pieces: list[Any], env: Env) -> Any:
    """A string template. With unknown pieces the result is an unknown string that keeps its
    fixed text (``arn:${partition}:iam::aws:policy/X`` → parts ``("arn:", None, ":iam::…")``),
    so a pattern can still be decided when the fixed text alone settles it."""
    out: list[str | None] = []
    first: Unknown | None = None
    n_unknown = 0
    for part in pieces:
        v = part if isinstance(part, str) else _materialize(evaluate(part, env), env)
        if isinstance(v, Unknown):
            if len(pieces) == 1:
                return v.derive(nonnull=True)  # "${x}" is x as a string
            first = v if first is None else first
            n_unknown += 1
            out.extend(v.parts if v.parts is not None else (None,))
            continue
        if isinstance(v, (list, dict)):
            return Unknown("interpolation of a collection", nonnull=True, kind="error")
        out.append(to_str(v))
    if first is None:
        return "".join(s for s in out if s is not None)
    cands = _template_candidates(pieces, env) if n_unknown <= 2 else None
    merged: list[str | None] = []
    for piece in out:  # join adjacent fixed text, collapse adjacent unknowns
        if piece is not None and merged and merged[-1] is not None:
            merged[-1] = merged[-1] + piece
        elif piece is not None or not merged or merged[-1] is not None:
            merged.append(piece)
    return Unknown(first.reason, nonnull=True, kind=first.kind, parts=tuple(merged), candidates=cands)


def _template_candidates(pieces: list[Any], env: Env) -> tuple[str, ...] | None:
    """Every string a template can yield when each unknown piece has a short list of
    candidates (``arn:${partition}:…``); None otherwise."""
    out = [""]
    for part in pieces:
        v = part if isinstance(part, str) else _materialize(evaluate(part, env), env)
        if isinstance(v, Unknown):
            if v.candidates is None or len(out) * len(v.candidates) > 64 \
                    or not all(isinstance(c, (str, int, float, bool)) for c in v.candidates):
                return None
            out = [o + to_str(c) for o in out for c in v.candidates]
        else:
            out = [o + to_str(v) for o in out]
    return tuple(out)


def _candidates(v: Any) -> list[Any] | None:
    if isinstance(v, Unknown):
        return list(v.candidates) if v.candidates is not None else None
    return None if contains_unknown(v) else [v]


def _either(a: Any, b: Any, cond: Unknown) -> Any:
    """The value of a conditional whose condition is unknown: the common value, or an
    Unknown that remembers both candidates (so a rule can pass when both comply)."""
    ca, cb = _candidates(a), _candidates(b)
    if ca is None or cb is None:
        src = _first_of(a, b, cond)
        return src.derive(f"condition is unknown ({cond.reason})", nonnull=_nonnull(a) and _nonnull(b))
    merged: list[Any] = []
    for v in ca + cb:
        if v not in merged:
            merged.append(v)
    if len(merged) == 1:
        return merged[0]
    return Unknown(f"condition is unknown ({cond.reason})", nonnull=None not in merged,
                   candidates=tuple(merged), kind=cond.kind)


def _first_of(*values: Any) -> Unknown:
    """The first Unknown found in *values* (the caller knows there is one)."""
    for v in values:
        u = first_unknown(v)
        if u is not None:
            return u
    return Unknown("unknown")


def _nonnull(v: Any) -> bool:
    return v.nonnull if isinstance(v, Unknown) else v is not None


def _truth(v: Any) -> bool:
    if isinstance(v, str):
        return v == "true"
    return bool(v)


class _Namespace:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _TypeNamespace:
    __slots__ = ("mode", "type")

    def __init__(self, mode: str, rtype: str) -> None:
        self.mode, self.type = mode, rtype


def _root(name: str, env: Env) -> Any:
    if name in env.bindings:
        return env.bindings[name]
    if name in ("var", "local", "module", "data"):
        return _Namespace(name)
    if name == "path":
        # Terraform runs in the root module: path.cwd is its absolute directory.
        return {"module": env.inst.path_module, "root": ".", "cwd": str(env.inst.root_dir)}
    if name == "terraform":
        return {"workspace": "default"}
    if name in ("count", "each", "self"):
        return Unknown(f"{name} is not available here", kind="error")
    return _TypeNamespace("resource", name)


def _get(obj: Any, name: str, env: Env) -> Any:
    if isinstance(obj, _Namespace):
        if obj.name == "var":
            return env.inst.var(name, env)
        if obj.name == "local":
            return env.inst.local(name, env)
        if obj.name == "data":
            return _TypeNamespace("data", name)
        call = env.inst.module_calls.get(name)
        return call.value(env) if call is not None else Unknown(f"module.{name} is not defined", kind="error")
    if isinstance(obj, _TypeNamespace):
        ref = env.inst.blocks.get((obj.mode, obj.type, name))
        if ref is None:
            return Unknown(f"{obj.type}.{name} is not defined in this module", kind="error")
        if ref.has_index:
            return ref
        insts = ref.instances()
        if not insts:
            return Unknown(f"{ref.local_address} has no instances")
        env.track({insts[0].address})
        return insts[0]
    if isinstance(obj, BlockRef):
        return obj.attr(name, env)
    if isinstance(obj, InstanceRef):
        return obj.attr(name, env)
    if isinstance(obj, _ModuleOutputs):
        return obj.inst.output(name, env)
    if isinstance(obj, Unknown):
        return obj
    if isinstance(obj, dict):
        return obj[name] if name in obj else Unknown(f"no attribute {name}", kind="error")
    if isinstance(obj, list):
        # Nested blocks are lists of one map; `block.attr` is how modules commonly reach into them.
        if len(obj) == 1 and isinstance(obj[0], (dict, InstanceRef)):
            return _get(obj[0], name, env)
        return Unknown(f"attribute {name} of a list", kind="error")
    return Unknown(f"attribute {name} of a {type(obj).__name__}", kind="error")


def _index(obj: Any, key: Any, env: Env) -> Any:
    if isinstance(key, Unknown):
        if isinstance(obj, BlockRef):
            env.track({i.address for i in obj.instances()})
        return key
    if isinstance(obj, BlockRef):
        return obj.index(key, env)
    if isinstance(obj, Unknown):
        return obj
    obj = _materialize(obj, env) if isinstance(obj, (InstanceRef, _ModuleOutputs)) else obj
    if isinstance(obj, list):
        if isinstance(key, (int, float)) and not isinstance(key, bool) and -len(obj) <= int(key) < len(obj):
            return obj[int(key)]
        return Unknown("index out of range", kind="error")
    if isinstance(obj, dict):
        k = to_str(key)
        return obj[k] if k in obj else Unknown(f"no key {k}", kind="error")
    return Unknown("index of a non-collection", kind="error")


def _splat(obj: Any, ops: list[tuple[str, Any]], env: Env) -> Any:
    if isinstance(obj, BlockRef):
        items: list[Any] = list(obj.instances())
        env.track({i.address for i in items})
    elif isinstance(obj, Unknown):
        return obj
    elif obj is None:
        items = []
    elif isinstance(obj, list):
        items = obj
    else:
        items = [obj]
    out: list[Any] = []
    if isinstance(obj, BlockRef) and obj.existence_reason is not None:
        out = UnknownLengthList([], obj.existence_reason)
    for item in items:
        v = item
        for op, arg in ops:
            v = _get(v, arg, env) if op == "get" else _index(v, evaluate(arg, env), env)
        out.append(_materialize(v, env))
    return out


def _materialize(v: Any, env: Env) -> Any:
    """Turn lazy references into plain values (a whole resource or module as a map)."""
    if isinstance(v, InstanceRef):
        env.track({v.address})
        attrs = dict(v.attributes())
        for key in ("id", "arn"):
            if key not in attrs:
                attrs[key] = _apply_time(v, key)
        return attrs
    if isinstance(v, BlockRef):
        return _materialize(v.as_collection(env), env)
    if isinstance(v, _ModuleOutputs):
        return v.inst.all_outputs(env)
    if isinstance(v, (_Namespace, _TypeNamespace)):
        return Unknown("namespace used as a value")
    if isinstance(v, list) and any(isinstance(x, (InstanceRef, _ModuleOutputs)) for x in v):
        items = [_materialize(x, env) for x in v]
        return UnknownLengthList(items, v.why) if isinstance(v, UnknownLengthList) else items
    if isinstance(v, dict) and any(isinstance(x, (InstanceRef, _ModuleOutputs)) for x in v.values()):
        return {k: _materialize(x, env) for k, x in v.items()}
    return v


def _try(arg_exprs: list[Expr], env: Env) -> Any:
    """Terraform's ``try``: the first argument that evaluates without an error. An unknown is
    not an error: an argument that depends on one makes the result unknown, it does not fall
    through to the next argument."""
    last: Any = Unknown("try() without arguments", kind="error")
    for a in arg_exprs:
        v = _materialize(evaluate(a, env), env)
        if is_error(v):
            last = v
            continue
        return v
    if isinstance(last, Unknown):
        return last.derive(f"no argument of try() succeeded ({last.reason})")
    return last


def _can(arg_exprs: list[Expr], env: Env) -> Any:
    """Terraform's ``can``: false on an error, unknown while the value is unknown."""
    if len(arg_exprs) != 1:
        return Unknown("can() takes one argument", kind="error")
    v = _materialize(evaluate(arg_exprs[0], env), env)
    if is_error(v):
        return False
    return v.derive(f"can() of an unknown ({v.reason})") if isinstance(v, Unknown) else True


def _call(name: str, arg_exprs: list[Expr], expand: bool, env: Env) -> Any:
    if name == "try" and not expand:
        return _try(arg_exprs, env)
    if name == "can" and not expand:
        return _can(arg_exprs, env)
    args = [_materialize(evaluate(a, env), env) for a in arg_exprs]
    if expand and args:
        last = args.pop()
        if not isinstance(last, list):
            return Unknown(f"{name}(...) expansion of a non-list", kind="error")
        args.extend(last)
    if name == "file":
        if len(args) != 1:
            return Unknown("file() takes exactly one argument", kind="error")
        return env.inst.file_func()(args[0])
    if name == "templatefile":
        return _templatefile(args, env)
    if name in PATH_FUNCTIONS:
        return PATH_FUNCTIONS[name](env.inst.root_dir, *args)
    fn = FUNCTIONS.get(name)
    if fn is None:
        return Unknown(f"function {name}() is not evaluated statically")
    try:
        return fn(*args)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError):
        return Unknown(f"{name}() could not be evaluated", kind="error")


def _templatefile(args: list[Any], env: Env) -> Any:
    if len(args) != 2 or not isinstance(args[1], dict) or contains_unknown(args[0]):
        return Unknown("templatefile() with unknown arguments")
    text = env.inst.file_func()(args[0])
    if isinstance(text, Unknown):
        return text
    if "%{" in text.replace("%%{", ""):
        return Unknown("template directives in templatefile()")
    parts = _split_template(text)
    tenv = Env(env.inst, dict(args[1]), env.tracker)
    out = []
    for part in parts:
        v = part if isinstance(part, str) else _materialize(evaluate(part, tenv), tenv)
        if isinstance(v, (Unknown, list, dict)):
            return v if isinstance(v, Unknown) else Unknown("template interpolation of a collection")
        out.append(to_str(v))
    return "".join(out)


def _binary(op: str, le: Expr, re_: Expr, env: Env) -> Any:
    left = _materialize(evaluate(le, env), env)
    if op in ("&&", "||"):
        if not isinstance(left, Unknown):
            lt = _truth(left)
            if op == "&&" and not lt:
                return False
            if op == "||" and lt:
                return True
        right = _materialize(evaluate(re_, env), env)
        if isinstance(right, Unknown):
            return right
        rt = _truth(right)
        if isinstance(left, Unknown):
            if op == "&&" and not rt:
                return False
            if op == "||" and rt:
                return True
            return left
        return rt
    right = _materialize(evaluate(re_, env), env)
    if op in ("==", "!=") and (left is None or right is None):
        # Comparing with null needs only nullness: a collection literal is never null, even
        # when some of its elements are unknown, and so is a value known to be set.
        other = right if left is None else left
        if other is None or not isinstance(other, Unknown) or other.nonnull:
            eq = other is None
            return eq if op == "==" else not eq
        return other.derive(f"{other.reason} (compared with null)")
    if isinstance(left, Unknown) or isinstance(right, Unknown):
        return left if isinstance(left, Unknown) else right
    if op in ("==", "!="):
        if contains_unknown(left) or contains_unknown(right):
            src = _first_of(left, right)
            return src.derive(f"comparison with an unknown ({src.reason})")
        eq = _loose_eq(left, right)
        return eq if op == "==" else not eq
    try:
        lnum, rnum = _number(left), _number(right)
        if op == "+":
            return lnum + rnum
        if op == "-":
            return lnum - rnum
        if op == "*":
            return lnum * rnum
        if op == "/":
            return lnum / rnum
        if op == "%":
            return lnum % rnum
        if op == "<":
            return lnum < rnum
        if op == ">":
            return lnum > rnum
        if op == "<=":
            return lnum <= rnum
        if op == ">=":
            return lnum >= rnum
    except (TypeError, ValueError, ZeroDivisionError):
        return Unknown(f"operator {op} could not be evaluated")
    return Unknown(f"operator {op}")


def _number(v: Any) -> float | int:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, (int, float)):
        return v
    f = float(v)
    return int(f) if f.is_integer() else f


def _loose_eq(a: Any, b: Any) -> bool:
    number_vs_string = (isinstance(a, (int, float)) and isinstance(b, str)
                        or isinstance(b, (int, float)) and isinstance(a, str))
    if number_vs_string:
        return to_str(a) == to_str(b)
    return bool(a == b)


def _for(expr: Expr, env: Env) -> Any:
    _, key_var, val_var, coll_expr, key_expr, val_expr, cond, grouping = expr
    coll = _materialize(evaluate(coll_expr, env), env)
    if isinstance(coll, Unknown):
        return coll
    if isinstance(coll, dict):
        pairs = list(coll.items())
    elif isinstance(coll, list):
        pairs = list(enumerate(coll))
    else:
        return Unknown("for expression over a non-collection")
    out_list: list[Any] = []
    out_map: dict[str, Any] = {}
    limits.check_instances(len(pairs), "for expression")
    for k, v in pairs:
        limits.tick()
        scope = {val_var: v}
        if key_var:
            scope[key_var] = k
        inner = env.bind(**scope)
        if cond is not None:
            c = _materialize(evaluate(cond, inner), inner)
            if isinstance(c, Unknown):
                return Unknown("for expression filter is unknown")
            if not _truth(c):
                continue
        value = _materialize(evaluate(val_expr, inner), inner)
        if key_expr is None:
            out_list.append(value)
        else:
            key = _materialize(evaluate(key_expr, inner), inner)
            if isinstance(key, Unknown):
                return Unknown("for expression key is unknown")
            if grouping:
                out_map.setdefault(to_str(key), []).append(value)
            else:
                out_map[to_str(key)] = value
    return out_list if key_expr is None else out_map


# --------------------------------------------------------------------------- bodies

def evaluate_body(body: Body, env: Env, prefix: str, refs: dict[str, set[str]],
                  top: bool = False) -> dict[str, Any]:
    """Evaluate attributes and nested blocks (as lists of maps), recording references by path."""
    out: dict[str, Any] = {}
    for name, (expr, _line) in body.attrs.items():
        if top and name in META_ARGS:
            continue
        tracker: set[str] = set()
        out[name] = _materialize(evaluate(expr, Env(env.inst, env.bindings, tracker)),
                                 Env(env.inst, env.bindings, tracker))
        if tracker:
            refs.setdefault(prefix + name, set()).update(tracker)
    for blk in body.blocks:
        if top and blk.type in META_BLOCKS:
            continue
        if blk.type == "dynamic" and blk.labels:
            _dynamic(blk, env, prefix, refs, out)
            continue
        value = evaluate_body(blk.body, env, prefix + blk.type + ".", refs)
        existing = out.get(blk.type)
        if isinstance(existing, list):
            existing.append(value)
        else:
            out[blk.type] = [value]
    return out


def _dynamic(blk: Block, env: Env, prefix: str, refs: dict[str, set[str]], out: dict[str, Any]) -> None:
    label = blk.labels[0]
    attrs = blk.body.attrs
    iterator = label
    if "iterator" in attrs and attrs["iterator"][0][0] == "var":
        iterator = attrs["iterator"][0][1]
    content = next((b for b in blk.body.blocks if b.type == "content"), None)
    if "for_each" not in attrs or content is None:
        return
    tracker: set[str] = set()
    coll = _materialize(evaluate(attrs["for_each"][0], Env(env.inst, env.bindings, tracker)), env)
    if tracker:
        refs.setdefault(prefix + label, set()).update(tracker)
    if isinstance(coll, Unknown):
        out[label] = coll.derive(f"dynamic {label} for_each is unknown ({coll.reason})")
        return
    if coll is not None and not isinstance(coll, dict | list):  # Terraform: an error; here undecidable
        out[label] = Unknown(f"dynamic {label} for_each is not a collection")
        return
    items = list(coll.items()) if isinstance(coll, dict) else list(enumerate(coll or []))
    limits.check_instances(len(items), f"dynamic {label}")
    blocks = out.setdefault(label, [])
    if not isinstance(blocks, list):
        return
    for k, v in items:
        inner = env.bind(**{iterator: {"key": k, "value": v}})
        blocks.append(evaluate_body(content.body, inner, prefix + label + ".", refs))
    if not blocks:
        del out[label]


_EMPTY_INSTANCE = ModuleInstance(ModuleDef(Path(".")), "", {}, lambda _p: None, Path("."))


# --------------------------------------------------------------------------- emission

def collect_resources(root: ModuleInstance, errors: list[Error] | None = None,
                      budget: int | None = None) -> list[Resource]:
    """Every resource and data instance of *root* and its local child modules.

    A resource refused by a limit (see :mod:`soc2infra._cogs.limits`) becomes a located error in
    *errors* and the others are still collected; past *budget* instances, or once the
    evaluation time runs out, collection stops with one error.
    """
    out: list[Resource] = []
    sink: list[Error] = errors if errors is not None else []
    try:
        _collect(root, out, sink, budget if budget is not None else limits.current().instances_per_scan)
    except limits.LimitExceeded as exc:
        sink.append(Error(exc.file or str(root.mdef.dir), exc.line, str(exc)))
    return out


def _collect(inst: ModuleInstance, out: list[Resource], errors: list[Error], budget: int) -> None:
    for ref in inst.blocks.values():
        try:
            _collect_block(inst, ref, out, budget)
        except limits.Exhausted as exc:
            exc.file, exc.line = exc.file or ref.file, exc.line or ref.block.line
            raise
        except limits.LimitExceeded as exc:
            error = Error(exc.file or ref.file, exc.line or ref.block.line, str(exc))
            if error not in errors:  # a refused resource is reported once, however often referenced
                errors.append(error)
    out.extend(_config_resource(inst, blk, file) for blk, file in inst.mdef.config_blocks)
    for call in inst.module_calls.values():
        try:
            children = call.instances()
        except limits.Exhausted:
            raise
        except limits.LimitExceeded as exc:
            errors.append(Error(exc.file or call.file, exc.line or call.block.line, str(exc)))
            continue
        for child in children.values():
            _collect(child, out, errors, budget)


def _collect_block(inst: ModuleInstance, ref: BlockRef, out: list[Resource], budget: int) -> None:
    waivers = inst.mdef.waivers.get((ref.file, ref.block.line), ())
    instances = ref.instances()
    if len(out) + len(instances) > budget:
        raise limits.Exhausted(  # stops the whole collection: the scan's budget is spent
            f"more than {budget:,} resource instances in this scan (limits.instances_per_scan)",
            ref.block.line, ref.file)
    for instance in instances:
        limits.tick()
        attrs = instance.attributes()
        if ref.mode == "resource" and ref.type.startswith("aws_") and "tags_all" not in attrs:
            _add_effective_tags(inst, ref, attrs)
        idents = frozenset(v for k in IDENTITY_ATTRS if isinstance(v := attrs.get(k), str) and v)
        meta: dict[str, Any] = {"module": inst.prefix, "mode": ref.mode}
        if inst.call_site is not None:
            meta["module_call"] = {"file": inst.call_site[0], "line": inst.call_site[1]}
        if ref.existence_unknown:
            meta["existence"] = "unknown"
        out.append(Resource(
            kind="terraform", type=ref.type, address=instance.address, attributes=attrs,
            file=ref.file, line=ref.block.line, end_line=ref.block.end_line,
            references=instance.references, identities=idents, inline_waivers=waivers, meta=meta,
        ))


def _add_effective_tags(inst: ModuleInstance, ref: BlockRef, attrs: dict[str, Any]) -> None:
    """``tags_all``: the resource's tags over its provider's default_tags, as in a plan."""
    provider = ref.block.body.attrs.get("provider")
    config = inst.provider_configs().get(resource_provider(ref.type, provider[0] if provider else None))
    defaults = default_tags(config)
    if defaults is not None or "tags" in attrs:
        attrs["tags_all"] = effective_tags(attrs.get("tags"), defaults)


def _config_resource(inst: ModuleInstance, blk: Block, file: str) -> Resource:
    """A ``provider`` block (type ``provider.aws``, address ``provider.aws`` or
    ``provider.aws.<alias>``) or a ``variable`` block (type ``terraform_variable``, address
    ``var.<name>``, attributes default/sensitive/type/description) as a resource, so rules
    can look for credentials written into them."""
    refs: dict[str, set[str]] = {}
    if blk.type == "provider":
        attrs = evaluate_body(blk.body, Env(inst), "", refs, top=True)
        alias = attrs.get("alias")
        local = f"provider.{blk.labels[0]}" + (f".{alias}" if isinstance(alias, str) else "")
        rtype = f"provider.{blk.labels[0]}"
    else:
        attrs = {}
        default = variable_default(blk)
        if default is not None:
            attrs["default"] = default.value
        for name in ("sensitive", "description"):
            if name in blk.body.attrs:
                attrs[name] = evaluate(blk.body.attrs[name][0], Env(_EMPTY_INSTANCE))
        type_expr = blk.body.attrs.get("type")
        if type_expr is not None and type_expr[0][0] == "var":
            attrs["type"] = type_expr[0][1]
        local, rtype = f"var.{blk.labels[0]}", "terraform_variable"
    return Resource(
        kind="terraform", type=rtype, address=inst.address(local), attributes=attrs, file=file,
        line=blk.line, end_line=blk.end_line,
        references={k: frozenset(v) for k, v in refs.items() if v},
        inline_waivers=inst.mdef.waivers.get((file, blk.line), ()),
        meta={"module": inst.prefix, "mode": blk.type},
    )
