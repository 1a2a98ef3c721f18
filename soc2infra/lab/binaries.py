"""Locate (and on request build) the kube-apiserver, etcd and helm binaries.

Lookup order:

1. ``$SOC2INFRA_BIN_DIR`` - a directory that must already hold all binaries (never built into).
2. The build cache filled by ``build-binaries.sh``:
   ``${SOC2INFRA_CACHE:-~/.cache/soc2infra}/bin/<key>/``, where ``<key>`` hashes the pinned Go
   module and versions. The script owns the key computation; we ask it (``--check``) rather than
   re-implementing the hash here, so the two can never disagree.

The recipe and single-binary lookups live in :mod:`soc2infra.binaries` (shipped in the wheel, so
this works from an installed package too); this module only needs a directory holding the set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from soc2infra import binaries
from soc2infra._cogs.errors import UserError

__all__ = [
    "BINARIES", "BUILD_SCRIPT", "BinariesMissing", "binary", "build_command", "ensure_binaries",
]

#: Binaries every bin dir must contain.
BINARIES: tuple[str, ...] = ("kube-apiserver", "etcd", "helm")

#: The build script (package data in a wheel, tools/k8sbin/ in a checkout).
BUILD_SCRIPT: Path = binaries.BUILD_SCRIPT

# Exit code of `build-binaries.sh --check` meaning "not built yet" (anything else is an error).
_CHECK_MISSING = 3


class BinariesMissing(UserError, RuntimeError):
    """The control-plane binaries are not available (and were not, or could not be, built)."""


def build_command() -> list[str]:
    """The command that builds the binaries into the cache (for messages and CI scripts)."""
    return ["bash", str(BUILD_SCRIPT)]


def binary(bin_dir: Path, name: str) -> Path:
    """Path of binary ``name`` inside ``bin_dir``; raise :class:`BinariesMissing` if not executable."""
    path = bin_dir / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BinariesMissing(f"{name} not found or not executable at {path}")
    return path


def _missing(bin_dir: Path) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _stderr_target() -> int | None:
    # sys.stderr may be an in-memory stream (pytest --capture=sys) with no file descriptor; then let
    # the child inherit fd 2 instead.
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def ensure_binaries(build: bool = False) -> Path:
    """Return the directory holding kube-apiserver, etcd and helm.

    With ``build=True`` a missing set is built by ``tools/build-binaries.sh`` (about 6 minutes cold
    on 2 cores; instant once cached; its progress goes to our stderr). Raises
    :class:`BinariesMissing` when the binaries are absent and cannot or may not be built, or when
    the build fails.
    """
    override = os.environ.get("SOC2INFRA_BIN_DIR")
    if override:
        bin_dir = Path(override).expanduser()
        missing = _missing(bin_dir)
        if missing:
            raise BinariesMissing(
                f"SOC2INFRA_BIN_DIR={bin_dir} lacks {', '.join(missing)} (unset it to use the build cache)"
            )
        return bin_dir

    if not BUILD_SCRIPT.is_file():
        raise BinariesMissing(
            f"no control-plane binaries: set SOC2INFRA_BIN_DIR to a directory holding {', '.join(BINARIES)} "
            f"(the build script {BUILD_SCRIPT} is missing from this installation)"
        )

    check = subprocess.run(
        [*build_command(), "--check"], capture_output=True, text=True, check=False
    )
    if check.returncode == 0:
        return Path(_last_line(check.stdout))
    if check.returncode != _CHECK_MISSING:
        raise BinariesMissing(f"{BUILD_SCRIPT} --check failed ({check.returncode}): {check.stderr.strip()}")
    if not build:
        raise BinariesMissing(
            f"control-plane binaries are not built yet (expected in {_last_line(check.stdout)}); "
            f"build them with: {' '.join(build_command())}"
        )

    # The build's stderr goes to ours so a 6-minute build shows progress instead of looking hung.
    result = subprocess.run(
        build_command(), stdout=subprocess.PIPE, stderr=_stderr_target(), text=True, check=False
    )
    if result.returncode != 0:
        raise BinariesMissing(
            f"building control-plane binaries failed (exit {result.returncode}); see its output above"
        )
    bin_dir = Path(_last_line(result.stdout))
    missing = _missing(bin_dir)
    if missing:
        raise BinariesMissing(f"build reported success but {', '.join(missing)} missing in {bin_dir}")
    return bin_dir


KCM = "kube-controller-manager"


def ensure_controller_manager(bin_dir: Path, build: bool = False) -> Path:
    """kube-controller-manager next to the other binaries (optional: only the
    ValidatingAdmissionPolicy type-checking test runs it). With ``build=True`` it is built by
    ``tools/build-binaries.sh --with-kcm`` into the cache; ``$SOC2INFRA_BIN_DIR`` is never built into."""
    path = bin_dir / KCM
    if os.access(path, os.X_OK):
        return path
    if not build or os.environ.get("SOC2INFRA_BIN_DIR") or not BUILD_SCRIPT.is_file():
        raise BinariesMissing(f"{KCM} not found in {bin_dir} (build it with: "
                              f"{' '.join(build_command())} --with-kcm)")
    result = subprocess.run([*build_command(), "--with-kcm"], stdout=subprocess.PIPE, stderr=_stderr_target(),
                            text=True, check=False)
    built = Path(_last_line(result.stdout)) / KCM if result.returncode == 0 else path
    if not os.access(built, os.X_OK):
        raise BinariesMissing(f"building {KCM} failed (exit {result.returncode}); see its output above")
    return built
