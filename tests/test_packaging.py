"""The explicit package list in pyproject.toml covers every Python package in the repo."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top in (ROOT / "soc2infra", ROOT / "operator"):
        for init in top.rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(top.parent if top.name == "soc2infra" else top).parts))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"


def test_every_policy_folder_ships_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"soc2infra.policies." + d.name for d in (ROOT / "policies").iterdir()
               if d.is_dir() and any(d.glob("*.yaml"))}
    assert folders - listed == set(), "list new policy folders in [tool.setuptools] packages and package-data"


def test_operator_folder_does_not_shadow_the_standard_library():
    """operator/ holds the operator package; an operator/__init__.py would shadow `import operator`."""
    assert (ROOT / "operator" / "soc2infra_operator" / "__init__.py").is_file()
    assert not (ROOT / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
