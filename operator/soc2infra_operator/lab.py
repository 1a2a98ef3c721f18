"""Running the operator as a process next to a local control plane (``soc2infra lab up``, e2e tests).

:func:`operator_argv` is the command line; :class:`OperatorProcess` starts it in its own session
(killable as a group), waits until it serves admission requests, and stops it with SIGTERM (a
clean exit removes its webhook configuration) or SIGKILL (tests of durability).
The command line and the readiness probe are :mod:`soc2infra.lab.operator`'s (one copy, shared
with ``soc2infra lab up``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soc2infra.lab import operator_argv as operator_argv
from soc2infra.lab import port_serves_tls as port_serves_tls


class OperatorProcess:
    """One operator subprocess; logs go to *log_path*."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        """Start it in a new session (its own process group)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        """The operator's pid."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Still running."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(self, probe: Any, timeout: float = 60.0, what: str = "ready") -> None:
        """Poll *probe* until true; raise with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"operator exited ({self.proc.returncode if self.proc else '?'}) "
                                   f"before {what}:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"operator not {what} after {timeout:g}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (clean exit), then SIGKILL if it does not stop in time; returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group, no clean-up of any kind."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
