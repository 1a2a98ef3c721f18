"""The README's lab walkthrough, run as written, in a fresh clone.

Each command of the README block runs in one bash session (so ``export`` carries over). A command
whose comment says "denied" must fail with the rule ids in its message; every other must succeed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def readme_lab_commands() -> list[tuple[str, str]]:
    """(command, comment) for each line of the README's lab walkthrough block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Try it locally.*?```sh\n(.*?)```", text, re.S)
    assert block, "README lost its lab walkthrough"
    commands = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            commands.append((command.strip(), comment.strip()))
    return commands


def test_readme_lab_walkthrough_runs_as_written(bin_dir: Path, tmp_path: Path,
                                                session_env: dict[str, str]) -> None:
    commands = readme_lab_commands()
    assert commands[0][0].startswith("soc2infra lab up") and commands[-1][0] == "soc2infra lab down"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    script = ["cd " + str(clone)]
    for i, (command, _) in enumerate(commands):
        script.append(f"{command}\necho \"@@{i} rc=$?\"")
    env = {**session_env, "SOC2INFRA_BIN_DIR": str(bin_dir),
           # soc2infra from this interpreter's environment; kubectl comes from the README's own
           # PATH line (the lab links the apiserver's kubectl): the machine's may be older.
           "PATH": os.pathsep.join([str(Path(sys.executable).parent)] + [
               d for d in session_env["PATH"].split(os.pathsep) if d and Path(d).resolve() != bin_dir.resolve()])}
    env.pop("KUBECONFIG", None)
    try:
        done = subprocess.run(["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True,
                              timeout=280, check=False)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "soc2infra"), "lab", "down", "--workdir",
                        str(clone / ".soc2infra-lab")], env=env, capture_output=True, check=False)
    out = done.stdout + done.stderr
    sections = re.split(r"@@(\d+) rc=(\d+)\n", done.stdout)
    codes = {int(sections[i]): int(sections[i + 1]) for i in range(1, len(sections) - 1, 3)}
    assert sorted(codes) == list(range(len(commands))), out[-4000:]
    for i, (command, comment) in enumerate(commands):
        if "denied" in comment:
            assert codes[i] != 0, f"{command!r} was admitted\n{out[-4000:]}"
        else:
            assert codes[i] == 0, f"{command!r} failed ({codes[i]})\n{out[-4000:]}"
    assert "SOC2-K8S-" in done.stderr  # the denial names the rules
    assert (clone / ".soc2infra-lab" / "bin" / "kubectl").resolve() == (bin_dir / "kubectl").resolve()

    # The lab's CA and admin keys stay private and out of git.
    lab = clone / ".soc2infra-lab"
    keys = [p for p in lab.rglob("*") if p.is_file() and ("key" in p.name or p.name == "kubeconfig")]
    assert keys, sorted(p.name for p in lab.rglob("*"))
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in keys} == {p.name: "0o600" for p in keys}
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert ".soc2infra-lab" not in status
