"""House rules a reviewer would otherwise check by eye (issue 13): long modules say why, internal
modules are private, and exits go through named codes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "soc2infra", ROOT / "operator" / "soc2infra_operator"]
PUBLIC = {"soc2infra/__init__.py", "soc2infra/cli.py", "soc2infra/binaries.py"}
PUBLIC_PACKAGES = ("soc2infra/evidence/", "soc2infra/lab/", "soc2infra/export/")
LONG = 500


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", [p for p in modules() if len(p.read_text().splitlines()) > LONG], ids=rel)
def test_a_long_module_says_why_in_its_docstring(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "Why one module" in doc, f"{rel(path)} is over {LONG} lines and its docstring does not say why"


def test_every_internal_module_of_soc2infra_is_in_a_private_package() -> None:
    stray = [rel(p) for p in (ROOT / "soc2infra").rglob("*.py")
             if rel(p) not in PUBLIC and not rel(p).startswith(PUBLIC_PACKAGES)
             and not any(part.startswith("_") and part != "__init__.py"
                         for part in p.relative_to(ROOT / "soc2infra").parts)]
    assert stray == []


def test_the_public_packages_declare_their_api() -> None:
    import soc2infra
    import soc2infra.evidence
    import soc2infra.export.vap
    import soc2infra.lab

    for module in (soc2infra, soc2infra.evidence, soc2infra.export.vap, soc2infra.lab):
        assert module.__all__, module.__name__
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], (module.__name__, missing)


def _literal_exits(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) \
                and type(node.value.value) is int:
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "exit" and node.args \
                and isinstance(node.args[0], ast.Constant) and type(node.args[0].value) is int:
            lines.append(node.lineno)
    return lines


ENTRY_POINTS = [ROOT / "soc2infra" / "cli.py", ROOT / "soc2infra" / "binaries.py",
                ROOT / "operator" / "soc2infra_operator" / "main.py",
                ROOT / "operator" / "soc2infra_operator" / "__main__.py",
                *sorted((ROOT / "soc2infra" / "_cli").glob("*.py"))]


@pytest.mark.parametrize("path", ENTRY_POINTS, ids=rel)
def test_commands_exit_with_named_codes(path: Path) -> None:
    assert _literal_exits(ast.parse(path.read_text())) == [], f"{rel(path)}: use ExitCode, not a number"


def test_the_literal_exit_check_can_fail() -> None:
    assert _literal_exits(ast.parse("def f():\n    return 2\n")) == [2]
    assert _literal_exits(ast.parse("import sys\nsys.exit(3)\n")) == [2]


def test_commands_return_their_exit_code_through_clicks_own_runner() -> None:
    # click's standalone runner (what CliRunner and `python -m` use) ignores return values unless the
    # root group turns them into the exit status.
    from click.testing import CliRunner

    from soc2infra.cli import cli

    assert CliRunner().invoke(cli, ["explain", "SOC2-AWS-S3-007"]).exit_code == 0
    assert CliRunner().invoke(cli, ["waiver", "suggest"], input="deployment.apps/x created\n").exit_code == 1
