"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback, for tests and ``lab up``.

There are no nodes, controllers, scheduler or pods: only the API server and its admission chain.
That is exactly what admission-webhook and ``kubectl --dry-run=server`` tests need, and it is
ready in a few seconds. Flags follow envtest (controller-runtime's test control plane).

Processes run in their own sessions (hence process groups) so teardown can ``killpg`` them along
with anything they spawned. Every start records pids in ``<workdir>/state.json`` so a different
process (``soc2infra lab down``) can stop a control plane it did not start.

Why one module of about 600 lines: starting, probing, recording and stopping the two processes
share their state file and process-group handling; most of the length is flags and clean-up.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime as _dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from soc2infra._cogs.errors import UserError
from soc2infra.lab.binaries import binary, ensure_binaries
from soc2infra.lab.pki import ControlPlanePKI, write_control_plane_pki

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "STATE_FILE", "ControlPlane", "ControlPlaneError", "ProcessRecord", "ProcessSpec", "free_port",
    "is_running", "read_state", "spawn", "stop_processes", "write_state",
]

#: Name of the JSON state file inside a control plane's workdir.
STATE_FILE = "state.json"
STATE_SCHEMA = 1
CONTEXT_NAME = "soc2infra-lab"
ADMIN_USER = "soc2infra-admin"
SERVICE_CIDR = "10.0.0.0/24"

# How long to wait after SIGTERM before SIGKILL. The data is throw-away, so there is no reason to
# wait for a graceful apiserver drain any longer than this.
_TERM_GRACE = 3.0
_POLL = 0.05


class ControlPlaneError(UserError, RuntimeError):
    """The control plane failed to start (message includes the relevant log tails)."""


# --------------------------------------------------------------------------------------------------
# Process helpers (shared with soc2infra.lab for detached labs and extra processes)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSpec:
    """A process to start next to the control plane (e.g. the admission operator).

    ``env`` is merged over the current environment. ``ready`` (optional) is polled until it returns
    true or ``ready_timeout`` seconds pass; the process counts as failed if it exits first.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 30.0


@dataclass(frozen=True)
class ProcessRecord:
    """What we remember about a started process to find (and only that process) again later.

    ``start_time`` is the kernel's start time in clock ticks (``/proc/<pid>/stat`` field 22): with
    the pid it identifies the process even if the pid is later reused by something else.
    """

    name: str
    pid: int
    pgid: int
    start_time: int
    log: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the state file."""
        return {"name": self.name, "pid": self.pid, "pgid": self.pgid, "start_time": self.start_time,
                "log": self.log}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["name"]), int(data["pid"]), int(data["pgid"]), int(data["start_time"]),
                   str(data.get("log", "")))


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, pgrp, start_time)`` of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def _reap(pid: int) -> None:
    # Our own children linger as zombies until waited for; other processes' are not ours to reap.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_running(record: ProcessRecord) -> bool:
    """True if the recorded process still exists (not a zombie) and is the same process."""
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    return stat is not None and stat[0] != "Z" and stat[2] == record.start_time


def _group_alive(pgid: int) -> bool:
    """True if any non-zombie process is still in process group ``pgid``."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                return True
    return False


def _may_signal_group(record: ProcessRecord) -> bool:
    """Whether signalling ``record``'s process group can only hit processes we started.

    If the leader is alive with our start time, the group is ours. If the leader is gone, the
    kernel does not hand out its pid (== the pgid) while the group has members, so any remaining
    members are ours too. Only a live leader with a *different* start time (pid reused) is foreign.
    """
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    return stat is None or stat[0] == "Z" or stat[2] == record.start_time


def stop_processes(records: Iterable[ProcessRecord], *, grace: float = _TERM_GRACE) -> None:
    """SIGTERM each record's process group, wait up to ``grace`` seconds, then SIGKILL survivors.

    Records are signalled in the given order (pass dependents first). Never signals a process
    whose pid was reused by something else.
    """
    groups = [r.pgid for r in records if _may_signal_group(r)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while True:
            for pgid in groups:
                _reap(pgid)
            groups = [g for g in groups if _group_alive(g)]
            if not groups or time.monotonic() > deadline:
                break
            time.sleep(_POLL)
        if not groups:
            return


_PR_SET_PDEATHSIG = 1


def _pdeathsig_preexec() -> Callable[[], None]:
    # Resolve prctl in the parent: the child (between fork and exec) should only make the call, not
    # dlopen/dlsym, which take locks another parent thread may have held at fork time.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        # Ask the kernel to SIGKILL the child when the thread that forked it dies, so a test run
        # killed with SIGKILL/SIGTERM (no atexit, no finalizers) leaks no apiserver.
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    return preexec


def spawn(
    spec: ProcessSpec, log_path: Path, *, die_with_parent: bool = False
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``spec`` in a new session with stdout+stderr appended to ``log_path``.

    A new session means its own process group (killable as a unit) and no controlling terminal,
    so it survives the parent's exit and terminal hang-ups: that is what makes a lab detached.
    ``die_with_parent`` additionally ties its life to the calling thread (PR_SET_PDEATHSIG).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(spec.env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(spec.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=spec.cwd, env=env, start_new_session=True,
            preexec_fn=_pdeathsig_preexec() if die_with_parent else None,
        )
    stat = _proc_stat(proc.pid)
    record = ProcessRecord(spec.name, proc.pid, proc.pid, stat[2] if stat else 0, str(log_path))
    return proc, record


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (callers must tolerate losing a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def write_state(workdir: Path, state: Mapping[str, Any]) -> Path:
    """Atomically write the JSON state file of the control plane in ``workdir``."""
    path = workdir / STATE_FILE
    tmp = path.with_suffix(f".tmp.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_state(workdir: Path) -> dict[str, Any] | None:
    """The state recorded in ``workdir``, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads((workdir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == STATE_SCHEMA else None


# --------------------------------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)  # a handle on running processes: identity, not field, equality
class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, with an admin kubeconfig.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. With ``workdir=None`` a
    temporary directory is created and removed on stop. ``detached=True`` is for ``lab up``: no
    atexit teardown and no parent-death signal, so the processes outlive this Python process and
    are stopped later from the state file.
    """

    workdir: Path | None = None
    bin_dir: Path | None = None
    detached: bool = False
    start_timeout: float = 60.0
    extra_apiserver_args: Sequence[str] = ()
    keep_workdir: bool = False

    etcd_port: int = field(default=0, init=False)
    etcd_peer_port: int = field(default=0, init=False)
    apiserver_port: int = field(default=0, init=False)
    pki: ControlPlanePKI | None = field(default=None, init=False, repr=False)
    processes: list[ProcessRecord] = field(default_factory=list, init=False)
    startup_seconds: float = field(default=0.0, init=False)
    _popens: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False, repr=False)
    _owns_workdir: bool = field(default=False, init=False, repr=False)
    _atexit_registered: bool = field(default=False, init=False, repr=False)

    # ---- paths and URLs ------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The working directory (logs, PKI, etcd data, kubeconfig, state file)."""
        if self.workdir is None:
            raise ControlPlaneError("control plane not started")
        return self.workdir

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (self-contained: certificates are embedded)."""
        return self.dir / "kubeconfig"

    @property
    def server(self) -> str:
        """The apiserver URL, e.g. ``https://127.0.0.1:41234``."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        """CA certificate that signed the apiserver's serving cert (and the admin client cert)."""
        return self._pki().ca_file

    @property
    def etcd_url(self) -> str:
        """etcd client URL (plain HTTP on loopback)."""
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def logs_dir(self) -> Path:
        """Directory holding ``etcd.log``, ``kube-apiserver.log`` and logs of extra processes."""
        return self.dir / "logs"

    @property
    def state_file(self) -> Path:
        """Path of the JSON state file."""
        return self.dir / STATE_FILE

    def _pki(self) -> ControlPlanePKI:
        if self.pki is None:
            raise ControlPlaneError("control plane not started")
        return self.pki

    # ---- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start etcd and kube-apiserver, wait until ready, write kubeconfig and state file.

        Raises :class:`ControlPlaneError` (after cleaning up) if either does not come up within
        ``start_timeout`` seconds, and :class:`~soc2infra.lab.binaries.BinariesMissing` if the
        binaries are not built.
        """
        if self.processes:
            raise ControlPlaneError("control plane already started")
        if self.workdir is not None:
            previous = read_state(self.workdir.resolve()) or {}
            if any(is_running(ProcessRecord.from_dict(p)) for p in previous.get("processes", [])):
                raise ControlPlaneError(
                    f"a control plane is already running in {self.workdir}; stop it first (lab_down)"
                )
        t0 = time.monotonic()
        bin_dir = self.bin_dir or ensure_binaries(build=False)
        etcd_bin, apiserver_bin = binary(bin_dir, "etcd"), binary(bin_dir, "kube-apiserver")
        self.bin_dir = bin_dir
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="soc2infra-cp-"))
            self._owns_workdir = not self.keep_workdir
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.detached and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self.pki = write_control_plane_pki(self.dir / "pki", admin_user=ADMIN_USER)
            self._start_processes(etcd_bin, apiserver_bin, t0)
            self._write_kubeconfig()
            self.startup_seconds = time.monotonic() - t0
            write_state(self.dir, self.state())
        except BaseException:
            self.stop()
            raise
        return self

    def _start_processes(self, etcd_bin: Path, apiserver_bin: Path, t0: float) -> None:
        # Ports are picked free but can be taken between the check and the bind; retry on a clash.
        for attempt in range(3):
            self.etcd_port, self.etcd_peer_port, self.apiserver_port = self._pick_ports()
            data_dir = self.dir / "etcd-data"
            shutil.rmtree(data_dir, ignore_errors=True)
            # Both start at once: kube-apiserver retries its etcd connection, and overlapping etcd's
            # start-up with the apiserver's (CPU-bound) initialisation saves a few hundred ms.
            self._spawn("etcd", [str(etcd_bin), *self.etcd_args(data_dir)])
            self._spawn("kube-apiserver", [str(apiserver_bin), *self.apiserver_args()])
            for name, probe in (("etcd", self._etcd_healthy), ("kube-apiserver", self._apiserver_ready)):
                if self._wait(name, probe, t0):
                    continue
                if attempt < 2 and self._port_clash(name):
                    self._kill_all()
                    break
                self._fail(name)
            else:
                return

    def restart_apiserver(self, down_seconds: float = 0.0) -> float:
        """Stop kube-apiserver at once (SIGTERM, then SIGKILL with no grace), keep it down for
        *down_seconds*, start it again on the same port against the same etcd and wait until it is
        ready; returns the seconds it was unavailable. For fault tests: clients must reconnect."""
        old = next((r for r in self.processes if r.name == "kube-apiserver"), None)
        if old is None or self.bin_dir is None:
            raise ControlPlaneError("control plane not started")
        t0 = time.monotonic()
        stop_processes([old], grace=0.0)
        self.processes.remove(old)
        time.sleep(down_seconds)
        self._spawn("kube-apiserver", [str(binary(self.bin_dir, "kube-apiserver")), *self.apiserver_args()])
        if not self._wait("kube-apiserver", self._apiserver_ready, time.monotonic()):
            self._fail("kube-apiserver")
        write_state(self.dir, self.state())
        return time.monotonic() - t0

    @staticmethod
    def _pick_ports() -> tuple[int, int, int]:
        ports: list[int] = []
        while len(ports) < 3:
            port = free_port()
            if port not in ports:
                ports.append(port)
        return ports[0], ports[1], ports[2]

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.logs_dir / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")  # a retry must not show the previous attempt's errors
        # PDEATHSIG is tied to the forking *thread*: only use it from the main thread, or a control
        # plane started from a worker thread would die when that thread finishes.
        die = not self.detached and threading.current_thread() is threading.main_thread()
        proc, record = spawn(ProcessSpec(name, argv), log, die_with_parent=die)
        self._popens.append(proc)
        self.processes.append(record)

    def _wait(self, name: str, probe: Callable[[], bool], t0: float) -> bool:
        record = next(r for r in reversed(self.processes) if r.name == name)
        while time.monotonic() - t0 < self.start_timeout:
            if not is_running(record):
                return False
            if probe():
                return True
            time.sleep(_POLL)
        return False

    def _port_clash(self, name: str) -> bool:
        return "address already in use" in _log_tail(self.logs_dir / f"{name}.log", 200).lower()

    def _fail(self, name: str) -> None:
        record = next(r for r in reversed(self.processes) if r.name == name)
        why = "exited" if not is_running(record) else f"not ready after {self.start_timeout:.0f}s"
        tail = _log_tail(self.logs_dir / f"{name}.log")
        raise ControlPlaneError(f"{name} {why}; last lines of {self.logs_dir / (name + '.log')}:\n{tail}")

    def etcd_args(self, data_dir: Path) -> list[str]:
        """etcd flags: single member, loopback only, no fsync (the data is throw-away)."""
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            "--name=soc2infra-lab",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            # The peer listener defaults to :2380 on all interfaces; pin it to a free loopback port
            # so two control planes (or a real etcd) never collide.
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=soc2infra-lab={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def apiserver_args(self) -> list[str]:
        """kube-apiserver flags (envtest-style), plus ``extra_apiserver_args``."""
        pki = self._pki()
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={pki.dir}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            "--advertise-address=127.0.0.1",
            # No endpoints controller exists to reconcile the kubernetes Service's endpoints.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            # No controller-manager creates service accounts/tokens, so the plugin would reject pods.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={pki.ca_file}",
            f"--tls-cert-file={pki.serving_cert_file}",
            f"--tls-private-key-file={pki.serving_key_file}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub_file}",
            f"--service-account-signing-key-file={pki.sa_key_file}",
            *self.extra_apiserver_args,
        ]

    # ---- probes --------------------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the apiserver and presents the admin client certificate."""
        pki = self._pki()
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        ctx.load_cert_chain(str(pki.admin_cert_file), str(pki.admin_key_file))
        return ctx

    def request(self, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET ``path`` on the apiserver as admin; returns ``(status, body)`` (HTTP errors included)."""
        try:
            ctx = self.ssl_context()
            with urllib.request.urlopen(self.server + path, timeout=timeout, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _apiserver_ready(self) -> bool:
        # /readyz alone is not enough: the `default` namespace is created by a post-start hook
        # that can finish just after readiness, and tests create things in it straight away.
        try:
            return (self.request("/readyz", timeout=2)[0] == 200
                    and self.request("/api/v1/namespaces/default", timeout=2)[0] == 200)
        except (OSError, ssl.SSLError):
            return False

    # ---- outputs -------------------------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        pki = self._pki()

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT_NAME,
                          "cluster": {"server": self.server,
                                      "certificate-authority-data": b64(pki.ca_file)}}],
            "users": [{"name": ADMIN_USER,
                       "user": {"client-certificate-data": b64(pki.admin_cert_file),
                                "client-key-data": b64(pki.admin_key_file)}}],
            "contexts": [{"name": CONTEXT_NAME,
                          "context": {"cluster": CONTEXT_NAME, "user": ADMIN_USER, "namespace": "default"}}],
            "current-context": CONTEXT_NAME,
        }
        # The kubeconfig embeds a cluster-admin key: create it 0600 from the start.
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(config, fh, sort_keys=False)

    def state(self) -> dict[str, Any]:
        """The JSON-friendly state recorded in the state file."""
        return {
            "schema": STATE_SCHEMA,
            "workdir": str(self.dir),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ca_file": str(self.ca_file),
            "bin_dir": str(self.bin_dir),
            "ports": {"etcd": self.etcd_port, "etcd_peer": self.etcd_peer_port,
                      "kube-apiserver": self.apiserver_port},
            "processes": [r.to_dict() for r in self.processes],
            "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "startup_seconds": round(self.startup_seconds, 3),
            "detached": self.detached,
        }

    def api_client(self) -> ApiClient:
        """A ``kubernetes`` (python client) ApiClient for the admin user; needs the ``kubernetes`` package."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(config_file=str(self.kubeconfig))
        return client

    def is_running(self) -> bool:
        """True if etcd and kube-apiserver are both still running."""
        return bool(self.processes) and all(is_running(r) for r in self.processes)

    # ---- teardown ------------------------------------------------------------------------------

    def _kill_all(self) -> None:
        # apiserver first: stopping etcd under it only produces a burst of connection errors.
        stop_processes(reversed(self.processes))
        for proc in self._popens:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self._popens.clear()
        self.processes.clear()

    def stop(self) -> None:
        """Stop all processes (killing their process groups), then remove the state file and, if
        the workdir was a temporary one we created, the workdir. Idempotent."""
        self._kill_all()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self.workdir is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / STATE_FILE).unlink()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)
