"""Project configuration: ``.soc2infra.yaml`` or ``[tool.soc2infra]`` in ``pyproject.toml``.

Precedence is flags > configuration file > defaults. Scalar flags replace the file's value;
list flags (``--policy-dir``, ``--enable``, ``--disable``) extend it, so a repository can fix
an organisation policy directory in its config and a pipeline can still add one.

The file is found by walking up from the working directory to the repository root (the
directory holding ``.git``); paths inside it are relative to the file, not to where the
scan runs. A bad file is a :class:`ConfigError` naming the file, the key and (for YAML)
the line: the CLI turns it into exit code 2.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soc2infra._cogs import limits
from soc2infra._cogs.errors import UserError
from soc2infra._cogs.model import CATEGORIES, SEVERITIES
from soc2infra._core.reports import FORMATS

if TYPE_CHECKING:
    from soc2infra._core.engine.policy import PolicyPack

CONFIG_FILE_NAMES = (".soc2infra.yaml", ".soc2infra.yml")
DEFAULT_WARNING_DAYS = 14
DEFAULT_KUBE_VERSION = "1.34.0"  # what helm renders charts for


class ConfigError(UserError):
    """A configuration file that cannot be used; names the file, the key and the line if known."""

    def __init__(self, file: str, key: str | None, message: str, line: int | None = None) -> None:
        where = file + (f":{line}" if line else "")
        super().__init__(f"{where}: {f'key {key!r}: ' if key else ''}{message}")
        self.file, self.key, self.line = file, key, line


@dataclass(frozen=True, slots=True)
class RuleSelection:
    """Which rules run: the pack (built-in + extra directories) minus disabled, within enabled.

    Patterns are rule-id globs (``SOC2-AWS-S3-*``) or category names (``logging``).
    An empty ``enable`` means every rule the pack enables.
    """

    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    policy_dirs: tuple[Path, ...] = ()
    builtin: bool = True


@dataclass(frozen=True, slots=True)
class WaiverSettings:
    """Where accepted findings come from, and how early expiries are announced."""

    file: Path | None = None  # None: look for .soc2infra-waivers.yaml
    warning_days: int = DEFAULT_WARNING_DAYS
    baseline: Path | None = None
    max_days: int = 0  # max_waiver_days: entries expiring further ahead are errors (0: no maximum)


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Inputs to a scan besides the paths and the pack."""

    var_files: tuple[Path, ...] = ()
    helm_values: tuple[Path, ...] = ()
    kube_version: str = DEFAULT_KUBE_VERSION
    jobs: int | None = None
    base_dir: Path | None = None  # paths in results are relative to this (default: cwd)
    # Fetch registry/git/HTTP modules that `terraform init` has not fetched (network access).
    download_external_modules: bool = False
    limits: limits.Limits | None = None  # None: the limits from the environment or the defaults


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How the scan runs around the plain pipeline (flags only): the result cache, one shard of a
    CI matrix, the checkov lens."""

    result_cache: bool = True
    shard: tuple[int, int] | None = None  # (I, N): the I-th of N parts
    with_checkov: bool = False
    all_checkov: bool = False


class ShardError(UserError):
    """A ``--shard`` value that is not ``I/N`` with 1 ≤ I ≤ N."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` → ``(2, 4)``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ShardError(f"--shard must be I/N with 1 <= I <= N (for example 2/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """Where the report goes and how it looks."""

    file: Path | None = None  # None: standard output
    color: bool = True  # only ever used on a terminal


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    """Recording scans in the evidence ledger."""

    ledger: str | None = None  # None: do not record
    key: Path | None = None  # Ed25519 private key that signs the record


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a scan needs to know beyond its paths, fully resolved: the one options
    object, built once from the configuration file and the flags (:func:`load_settings`)."""

    severity_threshold: str = "low"
    fail_on_unknown: bool = False
    fail_on_unscanned: bool = False
    download_external_modules: bool = False
    format: str = "text"
    rules: RuleSelection = field(default_factory=RuleSelection)
    waivers: WaiverSettings = field(default_factory=WaiverSettings)
    source: Path | None = None  # the configuration file these came from, if any
    inputs: ScanOptions = field(default_factory=ScanOptions)
    output: OutputSettings = field(default_factory=OutputSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    changed_only: bool = False  # the paths are changed files (pre-commit), not scan roots
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)


# Every key a configuration file may set, with what it means (shown in the unknown-key error).
_KEYS: dict[str, str] = {
    "severity_threshold": "lowest severity that fails the scan",
    "format": "output format",
    "fail_on_unknown": "treat undecidable results as failures",
    "fail_on_unscanned": "treat modules that could not be scanned as failures",
    "download_external_modules": "fetch registry/git/HTTP modules terraform init has not fetched",
    "enable": "only these rules or categories (globs)",
    "disable": "never these rules or categories (globs)",
    "policy_dirs": "extra rule directories",
    "builtin_policies": "load the built-in policy pack",
    "waiver_file": "the waiver file",
    "waiver_warning_days": "warn this many days before a waiver expires",
    "max_waiver_days": "waiver file entries may expire at most this many days ahead (0: no maximum)",
    "baseline": "baseline file of accepted existing findings",
    "limits": "bounds on hostile input (file_bytes, depth, yaml_aliases, yaml_nodes, yaml_alias_nodes, "
              "instances_per_resource, instances_per_scan, seconds_per_file)",
}


def find_repo_root(start: Path) -> Path | None:
    """The nearest directory at or above *start* holding ``.git``."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def find_config(start: Path) -> Path | None:
    """The configuration file that applies at *start*: the nearest ``.soc2infra.yaml``, or a
    ``pyproject.toml`` with a ``[tool.soc2infra]`` table, walking up to the repository root."""
    start = start.resolve()
    for d in (start, *start.parents):
        for name in CONFIG_FILE_NAMES:
            if (d / name).is_file():
                return d / name
        pyproject = d / "pyproject.toml"
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
        if (d / ".git").exists():
            break  # a config above the repository belongs to someone else
    return None


def _has_tool_table(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    # Cheap pre-check before parsing TOML; the parse in read_config is authoritative.
    return "[tool.soc2infra]" in text or "[tool.soc2infra." in text


def read_config(path: Path) -> dict[str, Any]:
    """Validated values from a configuration file, keys normalised (``-`` → ``_``) and paths
    made absolute relative to the file's directory. Raises :class:`ConfigError`."""
    file = str(path)
    if path.name == "pyproject.toml":
        raw, lines = _read_pyproject(path), dict[str, int]()
        where = f"{file} [tool.soc2infra]"
    else:
        raw, lines = _read_yaml(path)
        where = file
    out: dict[str, Any] = {}
    for key, value in raw.items():
        norm = str(key).replace("-", "_")
        if norm not in _KEYS:
            raise ConfigError(where, str(key), f"unknown key (allowed: {', '.join(sorted(_KEYS))})",
                              lines.get(str(key)))
        try:
            out[norm] = _clean(norm, value, path.parent)
        except ValueError as exc:
            raise ConfigError(where, str(key), str(exc), lines.get(str(key))) from None
    return out


def _read_yaml(path: Path) -> tuple[Mapping[str, Any], dict[str, int]]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            limits.check_yaml_node(node)  # the file is in the repository: strangers edit it too
        data = yaml.safe_load(text)
    except limits.LimitExceeded as exc:
        raise ConfigError(str(path), None, str(exc), exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(str(path), None, f"invalid YAML: {exc}", mark.line + 1 if mark else None) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), None, "expected a mapping of settings", 1)
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {str(k.value): k.start_mark.line + 1 for k, _v in node.value}
    return data, lines


def _read_pyproject(path: Path) -> Mapping[str, Any]:
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), None, f"invalid TOML: {exc}") from None
    table = data.get("tool", {}).get("soc2infra", {})
    if not isinstance(table, dict):
        raise ConfigError(str(path), "tool.soc2infra", "must be a table")
    return table


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a list of strings")
    return tuple(v.strip() for v in value)


def _clean(key: str, value: Any, base: Path) -> Any:
    if key == "severity_threshold":
        if not isinstance(value, str) or value not in SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SEVERITIES)}, got {value!r}")
        return value
    if key == "format":
        if not isinstance(value, str) or value not in FORMATS:  # a mapping is unhashable
            raise ValueError(f"must be one of {', '.join(FORMATS)}, got {value!r}")
        return value
    if key in ("fail_on_unknown", "builtin_policies", "fail_on_unscanned", "download_external_modules"):
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if key in ("enable", "disable"):
        return _str_list(value)
    if key == "policy_dirs":
        return tuple(base / p for p in _str_list(value))
    if key in ("waiver_file", "baseline"):
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a path (relative to the configuration file)")
        target = base / value
        if not target.is_file():
            raise ValueError(f"{target} does not exist")
        return target
    if key in ("waiver_warning_days", "max_waiver_days"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"must be a whole number of days ≥ 0, got {value!r}")
        return value
    if key == "limits":
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of limit names to numbers")
        return limits.from_mapping(value, base=limits.current())
    raise AssertionError(key)  # every key in _KEYS is handled above


def resolve_settings(file_values: Mapping[str, Any], flags: Mapping[str, Any],
                     source: Path | None = None) -> Settings:
    """Combine defaults, configuration values and command-line flags (``None`` = not given).

    Scalars: flag > file > default. Lists (``policy_dirs``, ``enable``, ``disable``): file + flag.
    """

    def pick(key: str, default: Any) -> Any:
        if flags.get(key) is not None:
            return flags[key]
        return file_values.get(key, default)

    def extend(key: str) -> tuple[Any, ...]:
        return tuple(file_values.get(key, ())) + tuple(flags.get(key) or ())

    return Settings(
        severity_threshold=pick("severity_threshold", "low"),
        fail_on_unknown=bool(pick("fail_on_unknown", False)),
        fail_on_unscanned=bool(pick("fail_on_unscanned", False)),
        download_external_modules=bool(pick("download_external_modules", False)),
        format=pick("format", "text"),
        rules=RuleSelection(enable=extend("enable"), disable=extend("disable"),
                            policy_dirs=extend("policy_dirs"), builtin=bool(pick("builtin_policies", True))),
        waivers=WaiverSettings(file=pick("waiver_file", None),
                               warning_days=int(pick("waiver_warning_days", DEFAULT_WARNING_DAYS)),
                               baseline=pick("baseline", None),
                               max_days=int(pick("max_waiver_days", 0))),
        source=source,
        # Flag-only groups (no configuration key): what to read and where results go.
        inputs=ScanOptions(var_files=tuple(flags.get("var_file") or ()),
                           helm_values=tuple(flags.get("helm_values") or ()),
                           kube_version=flags.get("kube_version") or DEFAULT_KUBE_VERSION,
                           jobs=flags.get("jobs"),
                           download_external_modules=bool(pick("download_external_modules", False)),
                           limits=file_values.get("limits")),
        output=OutputSettings(file=flags.get("output_file"), color=not flags.get("no_color")),
        evidence=EvidenceSettings(ledger=flags.get("evidence_ledger"), key=flags.get("evidence_key")),
        changed_only=bool(flags.get("changed_only")),
        pipeline=PipelineSettings(result_cache=not flags.get("no_cache"),
                                  shard=parse_shard(flags["shard"]) if flags.get("shard") else None,
                                  with_checkov=bool(flags.get("with_checkov")),
                                  all_checkov=bool(flags.get("all_checkov"))),
    )


def load_settings(flags: Mapping[str, Any], config_file: Path | None = None, use_config: bool = True,
                  cwd: Path | None = None) -> Settings:
    """Find (or take) the configuration file and resolve it against *flags*."""
    if not use_config:
        return resolve_settings({}, flags)
    path = config_file or find_config(cwd or Path.cwd())
    if path is None:
        return resolve_settings({}, flags)
    return resolve_settings(read_config(path), flags, path)


def _pattern_matches(pattern: str, rule_id: str, category: str) -> bool:
    return pattern == category or fnmatch.fnmatchcase(rule_id, pattern)


def select_rules(pack: PolicyPack, selection: RuleSelection) -> tuple[PolicyPack, list[str]]:
    """The pack with its rules enabled/disabled per *selection* (a new pack; *pack* is left
    as it is), and warnings for patterns that match no rule and no category (almost always
    a typo)."""
    if not selection.enable and not selection.disable:
        return pack, []
    enabled = []
    for rule in pack.rules:
        on = rule.enabled
        if selection.enable:
            on = any(_pattern_matches(p, rule.id, rule.category) for p in selection.enable)
        if any(_pattern_matches(p, rule.id, rule.category) for p in selection.disable):
            on = False
        if on:
            enabled.append(rule.id)
    warnings = [f"rule pattern {p!r} matches no rule or category"
                for p in _unmatched(selection.enable + selection.disable, pack)]
    return pack.with_enabled(enabled), warnings


def _unmatched(patterns: Iterable[str], pack: PolicyPack) -> list[str]:
    return [p for p in dict.fromkeys(patterns)
            if p not in CATEGORIES and not any(fnmatch.fnmatchcase(r.id, p) for r in pack.rules)]
