"""operator/Dockerfile, checked statically (no container runtime here): multi-stage, pinned base,
hash-pinned lock installed with --require-hashes, numeric non-root user matching the chart,
entrypoint = the console script, and the chart's default image is the one it documents building.
The same entrypoint command runs from a wheel-installed environment in tests/e2e/test_wheel.py."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "operator" / "Dockerfile"
LOCK = ROOT / "operator" / "requirements.lock"
CHART = ROOT / "charts" / "soc2infra"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_multi_stage_with_a_base_pinned_by_exact_tag_or_digest() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for ref in froms:
        image = ref.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: _args()[m.group(1)], image)
        pinned_digest = re.search(r"@sha256:[0-9a-f]{64}$", image)
        exact_tag = re.search(r":\d+\.\d+\.\d+[\w.-]*$", image)
        assert pinned_digest or exact_tag, f"{image} is neither digest-pinned nor an exact version tag"
        assert not image.endswith(":latest")


def test_runs_as_the_charts_numeric_non_root_user() -> None:
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit() and int(gid) != 0)
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert f"runAsUser: {uid}" in deployment and "readOnlyRootFilesystem: true" in deployment
    if gid:
        assert f"runAsGroup: {gid}" in deployment


def test_read_only_root_filesystem_friendly() -> None:
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    # No bytecode writes at run time, HOME and caches on /tmp (an emptyDir in the chart).
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
    assert "mountPath: /tmp" in (CHART / "templates" / "deployment.yaml").read_text()


def test_dependencies_come_from_the_lock_with_require_hashes() -> None:
    runs = [rest for word, rest in instructions() if word == "RUN"]
    installs = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    locked = [cmd for cmd in installs if "requirements.lock" in cmd]
    assert locked and all("--require-hashes" in cmd for cmd in locked)
    # The only other install is the project's own wheel: no index, no dependencies.
    for cmd in installs:
        if cmd not in locked:
            assert "--no-deps" in cmd and "--no-index" in cmd and ".whl" in cmd, cmd


def test_lock_pins_every_dependency_with_hashes() -> None:
    text = LOCK.read_text(encoding="utf-8")
    entries = re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})+)", text, re.M)
    pinned = {_norm(name) for name, _, _ in entries}
    requirement_lines = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(entries) == len(requirement_lines) > 20, "every requirement has == and at least one hash"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["operator"] + \
        project["optional-dependencies"]["postgres"]
    for requirement in wanted:
        name = _norm(re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0])
        assert name in pinned, f"{name} (pyproject) is not in the lock: regenerate it"


def test_entrypoint_is_the_operators_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    [entrypoint] = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["soc2infra-operator"] and "soc2infra-operator" in scripts
    [cmd] = [rest for word, rest in instructions() if word == "CMD"]
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert json.loads(cmd) == ["run"] and "args: [run]" in deployment


def test_every_copied_path_exists() -> None:
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: missing in the repository"


def test_the_charts_default_image_is_what_the_dockerfile_builds() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version and values["image"]["tag"] in ("", version)
    build = re.search(r"docker build -f operator/Dockerfile -t (\S+):(\S+) \.", DOCKERFILE.read_text())
    assert build, "the Dockerfile documents its build command"
    assert (build.group(1), build.group(2)) == (values["image"]["repository"], chart["appVersion"])
