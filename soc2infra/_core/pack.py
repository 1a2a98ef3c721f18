"""Load the policy pack from disk: find the rule files, read their YAML (keeping line
numbers for messages), read the criteria catalog and the reference data, and take the
pack's digest. Compiling is the engine's job (:mod:`soc2infra._core.engine.policy`), which never
touches a file.

Layout of a pack directory: ``controls.yaml`` (the built-in pack only), rule files
(``*.yaml`` anywhere below), and ``data/*.yaml``: reference data that rules are compiled
with, by file stem (``data/aws-managed-policies.yaml`` → ``"aws-managed-policies"``).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from soc2infra._core.engine.policy import Control, PolicyError, PolicyPack, Rule, compile_rules
from soc2infra._core.sources import cache

DATA_DIR = "data"


def _builtin_policy_dir() -> Path:
    # The pack lives in the repository's top-level policies/ (source checkout, editable
    # install); a wheel carries it as soc2infra/policies.
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "policies", package / "policies"):
        if (candidate / "controls.yaml").is_file():
            return candidate
    return package.parent / "policies"


BUILTIN_POLICY_DIR = _builtin_policy_dir()

# libyaml's parser is about 10x faster than PyYAML's pure-Python one and still reports marks.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader that remembers the line of every rule mapping (as ``__line__``)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping  # type: ignore[no-any-return]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_controls(path: Path) -> dict[str, Control]:
    """Read the SOC 2 criteria catalog (``controls.yaml``)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, Control] = {}
    for item in data.get("controls", []):
        out[item["id"]] = Control(item["id"], item["name"], item.get("intent", ""))
    return out


def _is_data(path: Path, root: Path) -> bool:
    return path.relative_to(root).parts[0] == DATA_DIR


def policy_files(dirs: Iterable[Path]) -> list[Path]:
    """Every rule file under *dirs*, sorted for a stable digest (controls.yaml, catalog-*.yaml
    and the reference data under ``data/`` excluded)."""
    files: list[Path] = []
    for d in dirs:
        if d.is_file():
            files.append(d)
            continue
        # controls.yaml and the catalog data files (catalog-*.yaml, read by soc2infra._core.coverage)
        # sit beside the rule folders but hold no rules.
        files.extend(p for p in sorted(d.rglob("*.y*ml")) if p.name != "controls.yaml"
                     and not p.name.startswith("catalog-") and p.suffix in (".yaml", ".yml")
                     and not _is_data(p, d))
    return files


def data_files(dirs: Iterable[Path]) -> list[Path]:
    """The reference data files (``data/*.yaml``) of *dirs*, in order."""
    return [p for d in dirs if d.is_dir() for p in sorted((d / DATA_DIR).glob("*.yaml"))]


def load_data(files: Iterable[Path]) -> dict[str, Any]:
    """Reference data by file stem; a later directory's file replaces an earlier one's."""
    out: dict[str, Any] = {}
    for path in files:
        try:
            out[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise PolicyError(str(path), None, None, f"invalid YAML: {exc}",
                              mark.line + 1 if mark else None) from None
    return out


def load_pack(extra_dirs: Iterable[Path] = (), builtin: bool = True) -> PolicyPack:
    """Load and compile the built-in pack plus any user policy directories.

    Raises :class:`~soc2infra._core.engine.policy.PolicyError` on the first schema problem.
    """
    dirs = ([BUILTIN_POLICY_DIR] if builtin else []) + [Path(d) for d in extra_dirs]
    for d in dirs:
        if not d.exists():
            raise PolicyError(str(d), None, None, "policy directory does not exist")
    controls = load_controls(BUILTIN_POLICY_DIR / "controls.yaml")
    # The built-in reference data always applies: user packs add rules, not a new world.
    data_paths = list(dict.fromkeys(data_files([BUILTIN_POLICY_DIR, *dirs])))
    reference = load_data(data_paths)
    digest = hashlib.sha256()
    for path in data_paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in policy_files(dirs):
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        for rule in load_rule_file(path, raw.decode("utf-8"), controls, reference):
            if rule.id in seen:
                raise PolicyError(str(path), rule.id, "id", f"duplicate rule id (also in {seen[rule.id]})",
                                  rule.line)
            seen[rule.id] = str(path)
            rules.append(rule)
    return PolicyPack(rules=rules, controls=controls, digest="sha256:" + digest.hexdigest(), data=reference)


def load_rule_file(path: Path, text: str, controls: dict[str, Control],
                   data: dict[str, Any] | None = None) -> list[Rule]:
    """Read one policy file's YAML and compile every rule in it."""
    fname = str(path)
    return compile_rules(fname, _parse_rule_yaml(fname, text), controls, data)


def _parse_rule_yaml(fname: str, text: str) -> Any:
    """The YAML document of a rule file, from the parse cache when this exact text was read
    before: parsing the pack's YAML (examples included) was most of a warm re-scan's time."""
    directory = cache.cache_dir()
    key = hashlib.sha256(b"rules-yaml-1\0" + text.encode("utf-8")).hexdigest()
    entry = directory.parent / "pack" / key if directory is not None else None
    if entry is not None:
        try:
            return marshal.loads(entry.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            pass
    try:
        document = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(fname, None, None, f"invalid YAML: {exc}",
                          mark.line + 1 if mark else None) from None
    if entry is not None:
        _store(entry, document)
    return document


def _store(entry: Path, document: Any) -> None:
    try:
        blob = marshal.dumps(document)  # plain YAML data; a date or other object is not cached
    except ValueError:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, entry)
    except OSError:
        pass  # a cache that cannot be written only costs speed
