"""The control file a user edits, and the control matrix generated from it and the policy pack.

``.soc2infra-controls.yaml`` (found in the working directory, or given with ``--controls``) says,
per SOC 2 criterion, what the pack cannot know: who owns the control, how often it operates,
how it is tested, and optionally a better description for this organisation::

    version: 1
    controls:
      CC6.1:
        owner: Platform team (platform@example.com)
        frequency: continuous (every admission request); audit every 10 minutes
        test_procedure: >-
          Sample 25 rows of populations/CC6.1.csv with `soc2infra evidence sample`; for each,
          trace request_uid to the API server audit log and re-run the rule on the object.
        description: Workloads run with least privilege.   # replaces the catalog's intent

Every key is optional; a criterion left out gets the defaults (owner empty, frequency and test
procedure generated from the evidence sources). An unknown criterion, an unknown key or a value
that is not text is an error naming the file and line (exit 2).

:func:`control_matrix` builds one row per criterion: id, name, description, owner, frequency,
test procedure, the rules of the pack mapped to it and the rules that produced evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soc2infra._cogs import limits
from soc2infra._cogs.errors import UserError

CONTROL_FILE_NAMES: tuple[str, ...] = (".soc2infra-controls.yaml", ".soc2infra-controls.yml")
FIELDS: tuple[str, ...] = ("owner", "frequency", "test_procedure", "description")
MATRIX_COLUMNS: tuple[str, ...] = ("criterion", "name", "description", "owner", "frequency",
                                   "test_procedure", "mapped_rules", "rules_with_evidence",
                                   "population_rows", "population_file")
DEFAULT_FREQUENCY = "continuous: every admission request; the background audit on its schedule"


class ControlFileError(UserError):
    """A control file that cannot be used; the message names the file and the line."""

    def __init__(self, file: Path | str, line: int | None, message: str) -> None:
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {message}")
        self.file, self.line = str(file), line


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """What the control file says about one criterion (None: not given)."""

    owner: str | None = None
    frequency: str | None = None
    test_procedure: str | None = None
    description: str | None = None


def find_control_file(start: Path) -> Path | None:
    """The control file in *start* (the working directory), if there is one."""
    for name in CONTROL_FILE_NAMES:
        path = start / name
        if path.is_file():
            return path
    return None


def load_control_file(path: Path, known: Sequence[str] | None = None) -> dict[str, ControlSettings]:
    """Read and validate *path*; *known* lists the criteria of the pack (others are refused)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlFileError(path, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            limits.check_yaml_node(root)
    except limits.LimitExceeded as exc:
        raise ControlFileError(path, exc.line, str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ControlFileError(path, mark.line + 1 if mark else None, f"invalid YAML: {exc}") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ControlFileError(path, _line(root), "expected a mapping with 'version' and 'controls'")
    out: dict[str, ControlSettings] = {}
    for key_node, value_node in root.value:
        key = str(key_node.value)
        if key == "version":
            if value_node.value not in ("1",):
                raise ControlFileError(path, _line(value_node),
                                       f"unsupported version {value_node.value!r} (use 1)")
        elif key == "controls":
            if not isinstance(value_node, yaml.MappingNode):
                raise ControlFileError(path, _line(value_node),
                                       "'controls' must map criterion ids to settings")
            out = _controls(path, value_node, known)
        else:
            raise ControlFileError(path, _line(key_node), f"unknown key {key!r} (use version, controls)")
    return out


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


def _controls(path: Path, node: Any, known: Sequence[str] | None) -> dict[str, ControlSettings]:
    import yaml

    out: dict[str, ControlSettings] = {}
    for key_node, value_node in node.value:
        cid = str(key_node.value)
        if known is not None and cid not in known:
            raise ControlFileError(path, _line(key_node), f"unknown criterion {cid!r} (not in the policy "
                                   "pack's catalog; `soc2infra controls` lists them)")
        if cid in out:
            raise ControlFileError(path, _line(key_node), f"criterion {cid!r} is given twice")
        if not isinstance(value_node, yaml.MappingNode):
            raise ControlFileError(path, _line(value_node),
                                   f"{cid}: expected a mapping of {', '.join(FIELDS)}")
        values: dict[str, str] = {}
        for field_node, field_value in value_node.value:
            name = str(field_node.value)
            if name not in FIELDS:
                raise ControlFileError(path, _line(field_node),
                                       f"{cid}: unknown key {name!r} (use {', '.join(FIELDS)})")
            if not isinstance(field_value, yaml.ScalarNode) or field_value.tag != "tag:yaml.org,2002:str" \
                    or not str(field_value.value).strip():
                raise ControlFileError(path, _line(field_value), f"{cid}.{name}: expected non-empty text")
            values[name] = str(field_value.value).strip()
        out[cid] = ControlSettings(**values)
    return out


def default_test_procedure(cid: str, rules: Sequence[str]) -> str:
    """The test procedure written for a criterion the control file leaves out."""
    if not rules:
        return "No rule of the policy pack maps to this criterion: evidence comes from outside soc2infra."
    return (f"Inspect populations/{cid}.csv (every evaluation of {', '.join(sorted(rules))} in the period); "
            f"draw a sample with `soc2infra evidence sample --criterion {cid} -n 25 --seed SEED`; for each "
            "row, re-check the record against the ledger (`evidence verify-export`) and trace it to the "
            "API server's audit log (request uid) or the commit it scanned; review every row of the "
            "deviation register mapped to it.")


def control_matrix(criteria: Sequence[Mapping[str, Any]], rules_by_control: Mapping[str, Sequence[str]],
                   settings: Mapping[str, ControlSettings]) -> list[dict[str, Any]]:
    """One row per criterion of the report (*criteria*: the report's ``criteria`` list)."""
    rows = []
    for c in criteria:
        cid = str(c["id"])
        mine = settings.get(cid, ControlSettings())
        rules = sorted(rules_by_control.get(cid, ()))
        rows.append({
            "criterion": cid, "name": c.get("name", ""),
            "description": mine.description or c.get("intent", ""),
            "owner": mine.owner or "",
            "frequency": mine.frequency or (DEFAULT_FREQUENCY if rules else "n/a"),
            "test_procedure": mine.test_procedure or default_test_procedure(cid, rules),
            "mapped_rules": rules,
            "rules_with_evidence": list(c.get("population", {}).get("rules", [])),
            "population_rows": int(c.get("population", {}).get("evaluations", 0)),
            "population_file": f"populations/{safe_name(cid)}.csv",
        })
    return rows


def safe_name(cid: str) -> str:
    """A criterion id as a file name."""
    return "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in cid)
