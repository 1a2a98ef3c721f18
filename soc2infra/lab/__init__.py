"""Local lab: a real kube-apiserver + etcd on loopback, detached, for demos and manual testing.

``lab_up(workdir)`` starts a control plane whose processes keep running after the calling Python
process exits, writes ``<workdir>/kubeconfig`` and ``<workdir>/state.json`` (pids, ports, paths),
and returns a :class:`LabInfo`. ``lab_down(workdir)`` stops whatever that state file records.

Processes that belong with the lab (the admission operator) are added through the
``extra_processes`` hook of :func:`lab_up`: they are started detached as well, recorded in the
state file, and stopped first by :func:`lab_down`.

Test code wanting an attached control plane (stopped at exit) uses :class:`ControlPlane` directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soc2infra.lab.binaries import BINARIES, BinariesMissing, ensure_binaries
from soc2infra.lab.controlplane import (
    STATE_FILE,
    ControlPlane,
    ControlPlaneError,
    ProcessRecord,
    ProcessSpec,
    free_port,
    is_running,
    read_state,
    spawn,
    stop_processes,
    write_state,
)
from soc2infra.lab.operator import operator_argv, operator_process_spec, port_serves_tls
from soc2infra.lab.pki import WebhookPKI, write_webhook_pki

__all__ = [
    "BINARIES", "BinariesMissing", "ControlPlane", "ControlPlaneError", "ExtraProcesses", "LabInfo",
    "ProcessRecord", "ProcessSpec", "WebhookPKI", "ensure_binaries", "free_port", "lab_down", "lab_status",
    "lab_up", "operator_argv", "operator_process_spec", "port_serves_tls", "write_webhook_pki",
]


@dataclass(frozen=True)
class LabInfo:
    """Where a running lab is and how to reach it."""

    workdir: Path
    kubeconfig: Path
    server: str
    ca_file: Path
    state_file: Path
    #: Serving cert/key and CA for an admission webhook on 127.0.0.1 (for kopf.WebhookServer).
    webhook: WebhookPKI
    processes: tuple[ProcessRecord, ...]
    startup_seconds: float
    #: True when lab_up found this lab already running and returned it unchanged.
    reused: bool = False

    @property
    def pids(self) -> dict[str, int]:
        """Process name -> pid."""
        return {p.name: p.pid for p in self.processes}

    @property
    def logs_dir(self) -> Path:
        """Directory with one ``<name>.log`` per process."""
        return self.workdir / "logs"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``soc2infra lab up --json``)."""
        return {
            "workdir": str(self.workdir), "kubeconfig": str(self.kubeconfig), "server": self.server,
            "ca_file": str(self.ca_file), "state_file": str(self.state_file),
            "webhook": self.webhook.to_dict(), "pids": self.pids, "logs_dir": str(self.logs_dir),
            "startup_seconds": self.startup_seconds, "reused": self.reused,
        }


#: Hook for lab_up: given the freshly started lab, return the processes to start alongside it
#: (e.g. the operator, pointed at ``info.kubeconfig`` and serving with ``info.webhook``).
ExtraProcesses = Callable[[LabInfo], Sequence[ProcessSpec]]


@contextlib.contextmanager
def _locked(workdir: Path) -> Iterator[None]:
    # Serialise lab_up/lab_down on one workdir (two terminals, or up racing down).
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _records(state: dict[str, Any]) -> list[ProcessRecord]:
    return [ProcessRecord.from_dict(p) for p in state.get("processes", [])]


def _info_from_state(state: dict[str, Any], *, reused: bool) -> LabInfo:
    workdir = Path(state["workdir"])
    webhook = state.get("webhook") or {}
    return LabInfo(
        workdir=workdir,
        kubeconfig=Path(state["kubeconfig"]),
        server=str(state["server"]),
        ca_file=Path(state["ca_file"]),
        state_file=workdir / STATE_FILE,
        webhook=WebhookPKI(Path(webhook.get("certfile", "")), Path(webhook.get("pkeyfile", "")),
                           Path(webhook.get("cafile", ""))),
        processes=tuple(_records(state)),
        startup_seconds=float(state.get("startup_seconds", 0.0)),
        reused=reused,
    )


def lab_status(workdir: Path) -> LabInfo | None:
    """The lab recorded in ``workdir`` if all its processes are still running, else None."""
    state = read_state(workdir.resolve())
    if state is None:
        return None
    records = _records(state)
    if not records or not all(is_running(r) for r in records):
        return None
    return _info_from_state(state, reused=True)


def _start_extra(spec: ProcessSpec, logs_dir: Path) -> ProcessRecord:
    _, record = spawn(spec, logs_dir / f"{spec.name}.log", die_with_parent=False)
    if spec.ready is None:
        return record
    deadline = time.monotonic() + spec.ready_timeout
    while time.monotonic() < deadline:
        if not is_running(record):
            break
        with contextlib.suppress(Exception):  # a probe that raises just means "not yet"
            if spec.ready():
                return record
        time.sleep(0.1)
    tail = "\n".join(Path(record.log).read_text(errors="replace").splitlines()[-25:])
    stop_processes([record])
    raise ControlPlaneError(
        f"extra process {spec.name!r} did not become ready; last lines of {record.log}:\n{tail}"
    )


def lab_up(
    workdir: Path,
    *,
    build: bool = True,
    bin_dir: Path | None = None,
    extra_processes: ExtraProcesses | None = None,
    start_timeout: float = 60.0,
) -> LabInfo:
    """Start a detached control plane in ``workdir`` and return how to reach it.

    If the lab recorded in ``workdir`` is already fully running it is returned as is
    (``reused=True``); a half-dead one is stopped and replaced. ``build`` allows building missing
    binaries (slow the first time). ``extra_processes`` is called with the started lab and returns
    further processes to run detached alongside it (e.g. the operator); they are recorded in the
    state file and stopped by :func:`lab_down`. On any failure everything started is stopped again.
    """
    workdir = workdir.resolve()
    with _locked(workdir):
        running = lab_status(workdir)
        if running is not None:
            return running
        # A half-dead lab (e.g. after a reboot or a crash) is stopped completely before starting anew.
        _down_locked(workdir)

        cp = ControlPlane(
            workdir=workdir, bin_dir=bin_dir or ensure_binaries(build=build), detached=True,
            start_timeout=start_timeout,
        ).start()
        extras: list[ProcessRecord] = []
        try:
            webhook = write_webhook_pki(workdir / "webhook")
            state = cp.state()
            state["webhook"] = webhook.to_dict()
            info = _info_from_state(state, reused=False)
            for spec in extra_processes(info) if extra_processes else ():
                extras.append(_start_extra(spec, cp.logs_dir))
                # Record as we go so a crash part-way still leaves every started pid in the state.
                state["processes"] = [r.to_dict() for r in (*cp.processes, *extras)]
                write_state(workdir, state)
            state["processes"] = [r.to_dict() for r in (*cp.processes, *extras)]
            write_state(workdir, state)
        except BaseException:
            stop_processes(reversed(extras))
            cp.stop()
            raise
        return _info_from_state(state, reused=False)


def _down_locked(workdir: Path) -> bool:
    state = read_state(workdir)
    stopped = False
    if state is not None:
        # Reverse start order: extra processes (which talk to the apiserver) first, etcd last.
        records = _records(state)
        stopped = any(is_running(r) for r in records)
        stop_processes(reversed(records))
    with contextlib.suppress(FileNotFoundError):
        (workdir / STATE_FILE).unlink()
    shutil.rmtree(workdir / "etcd-data", ignore_errors=True)
    return stopped


def lab_down(workdir: Path, *, purge: bool = False) -> None:
    """Stop the lab recorded in ``workdir`` (no-op if none is running).

    Kills the recorded process groups (never a process whose pid was since reused), removes the
    state file and etcd data. Logs, PKI and kubeconfig stay for inspection unless ``purge`` is
    true; purging removes only files the lab itself creates, never the rest of ``workdir``.
    """
    workdir = workdir.resolve()
    if not workdir.exists():
        return
    with _locked(workdir):
        _down_locked(workdir)
        if purge:
            for name in ("logs", "pki", "webhook"):
                shutil.rmtree(workdir / name, ignore_errors=True)
            for name in ("kubeconfig", STATE_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (workdir / name).unlink()
    if purge:
        with contextlib.suppress(FileNotFoundError):
            (workdir / ".lock").unlink()
        with contextlib.suppress(OSError):
            workdir.rmdir()  # only if nothing else lives there
