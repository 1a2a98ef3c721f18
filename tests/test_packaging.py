"""The explicit package list in pyproject.toml covers every Python package in the repo."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top in ("soc2infra", "soc2infra_operator"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"


def test_every_policy_folder_ships_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"soc2infra.policies." + d.name for d in (ROOT / "policies").iterdir()
               if d.is_dir() and any(d.glob("*.yaml"))}
    assert folders - listed == set(), "list new policy folders in [tool.setuptools] packages and package-data"
