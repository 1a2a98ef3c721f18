"""One place that finds kube-apiserver, etcd, helm and kubectl (and builds them on request).

Lookup order for one binary, first hit wins:

1. an explicit path passed by the caller (a CLI option or function argument);
2. its own environment variable (``SOC2INFRA_HELM``, ``SOC2INFRA_KUBECTL``, ...), then
   ``$SOC2INFRA_BIN_DIR/<name>``;
3. ``<name>`` on ``PATH``;
4. the build cache ``${SOC2INFRA_CACHE:-~/.cache/soc2infra}/bin/<key>/<name>`` filled by
   ``build-binaries.sh``.

The build recipe (``build-binaries.sh`` and the pinned Go wrapper module) ships inside the package
as ``soc2infra/k8sbin/``, so an installed wheel can build its own binaries. The script owns the
cache key: we ask it (``--check``) instead of re-implementing the hash, so the two never disagree.

``python -m soc2infra.binaries find NAME`` prints the resolved path (exit 1 if none);
``python -m soc2infra.binaries build [--helm-only]`` builds into the cache and prints the bin dir.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from soc2infra._cogs.exitcodes import ExitCode

__all__ = [
    "BINARIES", "BUILD_SCRIPT", "ENV_VARS", "BinaryNotFound", "build", "cache_dir", "find", "require",
]

#: Every binary this module resolves.
BINARIES: tuple[str, ...] = ("kube-apiserver", "etcd", "helm", "kubectl")

#: The per-binary environment variable that names it.
ENV_VARS: dict[str, str] = {
    "kube-apiserver": "SOC2INFRA_KUBE_APISERVER",
    "etcd": "SOC2INFRA_ETCD",
    "helm": "SOC2INFRA_HELM",
    "kubectl": "SOC2INFRA_KUBECTL",
}


def _build_script() -> Path:
    # In a wheel the recipe is package data (soc2infra/k8sbin); in a checkout it is tools/k8sbin.
    here = Path(__file__).resolve().parent
    shipped = here / "k8sbin" / "build-binaries.sh"
    return shipped if shipped.is_file() else here.parent / "tools" / "k8sbin" / "build-binaries.sh"


#: The build recipe (``build-binaries.sh`` next to the pinned Go wrapper module).
BUILD_SCRIPT: Path = _build_script()

# Exit code of `build-binaries.sh --check` meaning "not (completely) built yet".
_CHECK_MISSING = 3


class BinaryNotFound(RuntimeError):
    """A binary is not available from any source (and was not, or could not be, built)."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def cache_dir() -> Path | None:
    """The build cache directory for the pinned versions (it may not exist yet); None without bash."""
    return _cache_dir(os.environ.get("SOC2INFRA_CACHE"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=8)
def _cache_dir(cache_root: str | None, home: str | None) -> Path | None:
    # Memoised per cache root: a scan of many charts asks once, not once per chart (~20 ms each).
    if shutil.which("bash") is None or not BUILD_SCRIPT.is_file():
        return None
    try:
        check = subprocess.run(["bash", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True,
                               check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = _last_line(check.stdout)
    return Path(line) if check.returncode in (0, _CHECK_MISSING) and line else None


def find(name: str, explicit: str | os.PathLike[str] | None = None, *, use_path: bool = True) -> Path | None:
    """Resolve binary *name* (one of :data:`BINARIES`) in the documented order; None if absent.

    An explicit path or a per-binary environment variable is returned even when it does not exist,
    so the caller's error names what the user asked for instead of silently using another binary.
    """
    if name not in ENV_VARS:
        raise ValueError(f"unknown binary {name!r} (one of {', '.join(BINARIES)})")
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get(ENV_VARS[name])
    if from_env:
        return Path(from_env).expanduser()
    bin_dir = os.environ.get("SOC2INFRA_BIN_DIR")
    if bin_dir and _executable(Path(bin_dir).expanduser() / name):
        return Path(bin_dir).expanduser() / name
    if use_path:
        on_path = shutil.which(name)
        if on_path:
            return Path(on_path)
    cached = cache_dir()
    if cached is not None and _executable(cached / name):
        return cached / name
    return None


def _stderr_target() -> int | None:
    # sys.stderr may be an in-memory stream (pytest capture) with no descriptor: inherit fd 2 then.
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def build(helm_only: bool = False) -> Path:
    """Build the missing binaries into the cache and return its directory.

    Cold, the full set takes about 10 minutes on 2 cores (helm alone about 2-6); a complete cache
    returns at once. Progress goes to our stderr. Needs bash, Go >= 1.24 and the Go module proxy.
    """
    if shutil.which("bash") is None:
        raise BinaryNotFound("building the binaries needs bash")
    command = ["bash", str(BUILD_SCRIPT), *(["--helm-only"] if helm_only else [])]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=_stderr_target(), text=True, check=False)
    if result.returncode != 0:
        raise BinaryNotFound(f"building binaries failed (exit {result.returncode}); see the output above")
    return Path(_last_line(result.stdout))


def require(name: str, explicit: str | os.PathLike[str] | None = None, *, allow_build: bool = False,
            use_path: bool = True) -> Path:
    """Like :func:`find`, but raise :class:`BinaryNotFound` (or build, with *allow_build*) when absent."""
    found = find(name, explicit, use_path=use_path)
    if found is None and allow_build:
        built = build(helm_only=name == "helm")
        if _executable(built / name):
            return built / name
    if found is None:
        raise BinaryNotFound(
            f"{name} not found: pass its path, set {ENV_VARS[name]} or SOC2INFRA_BIN_DIR, put it on PATH, "
            f"or build it with: bash {BUILD_SCRIPT}{' --helm-only' if name == 'helm' else ''}")
    if not _executable(found):
        raise BinaryNotFound(f"{name} at {found} is missing or not executable")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``find NAME`` prints a path (exit 1 if none); ``build [--helm-only]`` prints the bin dir."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "find" and args[1] in BINARIES:
        found = find(args[1])
        if found is None or not _executable(found):
            print(f"{args[1]} not found", file=sys.stderr)
            return ExitCode.FINDINGS
        print(found)
        return ExitCode.OK
    if args and args[0] == "build" and args[1:] in ([], ["--helm-only"]):
        try:
            print(build(helm_only=args[1:] == ["--helm-only"]))
        except BinaryNotFound as exc:
            print(exc, file=sys.stderr)
            return ExitCode.ERROR
        return ExitCode.OK
    print(f"usage: python -m soc2infra.binaries find {{{'|'.join(BINARIES)}}} | build [--helm-only]",
          file=sys.stderr)
    return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
