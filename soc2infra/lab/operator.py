"""The admission operator as a process next to the lab: its command line, a readiness probe,
and the :class:`~soc2infra.lab.ProcessSpec` that ``soc2infra lab up`` starts. The operator is
run as ``python -m soc2infra_operator`` (a separate process), so nothing here imports it."""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from soc2infra.lab.controlplane import ProcessSpec, free_port

if TYPE_CHECKING:
    from soc2infra.lab import LabInfo


def operator_argv(kubeconfig: Path | str, port: int, certfile: Path | str, pkeyfile: Path | str,
                  cafile: Path | str, ledger: Path | str | None = None, audit_interval: float | None = None,
                  extra: Sequence[str] = (), python: str | None = None) -> list[str]:
    """``python -m soc2infra_operator run …`` for an out-of-cluster operator on 127.0.0.1:*port*."""
    argv = [python or sys.executable, "-m", "soc2infra_operator", "run", "--kubeconfig", str(kubeconfig),
            "--webhook-addr", "127.0.0.1", "--webhook-port", str(port), "--cert-file", str(certfile),
            "--key-file", str(pkeyfile), "--ca-file", str(cafile), "--install-crds"]
    if ledger is not None:
        argv += ["--ledger", str(ledger)]
    if audit_interval is not None:
        argv += ["--audit-interval", str(audit_interval)]
    return [*argv, *extra]


def port_serves_tls(port: int, cafile: Path | str, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Whether an HTTPS server with a certificate from *cafile* answers on *port*."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                ctx.wrap_socket(sock, server_hostname=host):
            return True
    except OSError:
        return False


def operator_process_spec(info: LabInfo, port: int | None = None, ledger: Path | None = None) -> ProcessSpec:
    """The operator against a lab (the ``lab_up`` hook): serving the lab's webhook certificate on a
    free loopback port, registering its own webhook configuration, auditing every 60 s and
    recording evidence in *ledger* (default ``<workdir>/evidence.db``). Ready when its HTTPS
    endpoint answers with the lab's webhook certificate."""
    port = port or free_port()
    argv = operator_argv(info.kubeconfig, port, info.webhook.certfile, info.webhook.pkeyfile,
                         info.webhook.cafile, ledger or info.workdir / "evidence.db", audit_interval=60,
                         extra=["--webhook-host", "127.0.0.1"])
    return ProcessSpec(name="operator", argv=argv, ready=lambda: port_serves_tls(port, info.webhook.cafile),
                       ready_timeout=60)
