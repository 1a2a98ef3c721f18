"""``soc2infra lab up|down|status``: a local kube-apiserver + etcd (and the operator) to try
admission control without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import click

from soc2infra._cogs.exitcodes import FINDINGS, OK

DEFAULT_WORKDIR = Path(".soc2infra-lab")


@click.group()
def lab() -> None:
    """A local control plane on loopback for trying admission control."""


@lab.command("up")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_WORKDIR,
              show_default=True, help="Where the kubeconfig, certificates, logs and state go.")
@click.option("--operator/--no-operator", default=True, show_default=True,
              help="Also start the soc2infra admission operator against the lab.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab's details as JSON.")
def lab_up_cmd(workdir: Path, operator: bool, as_json: bool) -> int:
    """Start (or reuse) the lab and print the KUBECONFIG to use with kubectl."""
    from soc2infra.lab import lab_up, operator_process_spec

    hook = (lambda info: [operator_process_spec(info)]) if operator else None
    info = lab_up(workdir, build=True, extra_processes=hook)
    kubectl_dir = _link_kubectl(workdir)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return OK
    state = "already running" if info.reused else f"started in {info.startup_seconds:.1f} s"
    click.echo(f"lab {state}: {info.server}")
    for name, pid in info.pids.items():
        click.echo(f"  {name:<16} pid {pid}")
    click.echo(f"\nexport KUBECONFIG={info.kubeconfig}")
    if kubectl_dir is not None:
        click.echo(f"export PATH={kubectl_dir.resolve()}:$PATH   # a kubectl of the apiserver's version")
    click.echo(f"logs: {info.logs_dir}    stop with: soc2infra lab down --workdir {workdir}")
    return OK


@lab.command("down")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_WORKDIR,
              show_default=True)
@click.option("--purge", is_flag=True, help="Also delete logs, certificates and the kubeconfig.")
def lab_down_cmd(workdir: Path, purge: bool) -> int:
    """Stop every process of the lab."""
    from soc2infra.lab import lab_down

    lab_down(workdir, purge=purge)
    click.echo("lab stopped")
    return OK


@lab.command("status")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_WORKDIR,
              show_default=True)
def lab_status_cmd(workdir: Path) -> int:
    """Show whether the lab is running (exit 1 when it is not)."""
    from soc2infra.lab import lab_status

    info = lab_status(workdir)
    if info is None:
        click.echo("lab is not running")
        return FINDINGS  # "not running" is the answer to the question, not an error
    click.echo(json.dumps(info.to_dict(), indent=2))
    return OK


def _link_kubectl(workdir: Path) -> Path | None:
    """``<workdir>/bin/kubectl`` → the cached kubectl built with the apiserver (a distribution's
    kubectl may be outside the supported version skew); None when there is none."""
    from soc2infra.lab import BinariesMissing, ensure_binaries

    try:
        kubectl = ensure_binaries(build=False) / "kubectl"
    except BinariesMissing:
        return None
    if not kubectl.is_file():
        return None
    link = workdir / "bin" / "kubectl"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(kubectl.resolve())
    return link.parent
