"""``soc2infra-operator``: run the admission + audit operator out of cluster or in a pod.

    soc2infra-operator run --kubeconfig lab/kubeconfig --webhook-port 9443 \\
        --cert-file webhook.crt --key-file webhook.key --ca-file ca.crt --ledger evidence.db
    soc2infra-operator install-crds --kubeconfig lab/kubeconfig
    soc2infra-operator config            # print the resolved settings as JSON

Options map onto :mod:`soc2infra_operator.settings` (``--set section.field=value`` reaches any of
them); the environment (``SOC2INFRA_WEBHOOK_PORT`` …) and ``--config FILE`` fill in the rest.
``main(argv) -> int`` parses, then hands off; exit codes: 0 clean stop, 2 bad settings, 1 failure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from soc2infra import ExitCode
from soc2infra_operator.settings import OperatorSettings, SettingsError, load_settings

logger = logging.getLogger("soc2infra_operator")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soc2infra-operator", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML settings file (also $SOC2INFRA_OPERATOR_CONFIG)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    common.add_argument("--context", help="kubeconfig context")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting by dotted name, e.g. admission.mode=warn (repeatable)")
    run = sub.add_parser("run", parents=[common], help="run the operator (default)")
    run.add_argument("--webhook-addr", help="listening address (default 127.0.0.1)")
    run.add_argument("--webhook-port", type=int, help="listening port (default 9443)")
    run.add_argument("--webhook-host", help="host name the API server uses in the webhook URL")
    run.add_argument("--cert-file", help="serving certificate (PEM)")
    run.add_argument("--key-file", help="serving private key (PEM)")
    run.add_argument("--ca-file", help="CA bundle for the webhook configuration's caBundle")
    run.add_argument("--failure-policy", choices=["Fail", "Ignore"])
    run.add_argument("--timeout-seconds", type=int, help="webhook timeoutSeconds (1..30)")
    run.add_argument("--registration", choices=["self", "kopf", "none"],
                     help="who writes the ValidatingWebhookConfiguration")
    run.add_argument("--exclude-namespace", action="append", default=None, metavar="NS",
                     help="namespace not checked at admission, added to the defaults (repeatable)")
    run.add_argument("--replace-excluded-namespaces", action="append", default=None, metavar="NS",
                     help="namespaces not checked, replacing the defaults kube-system, kube-public and "
                          "kube-node-lease (repeatable or comma-separated)")
    run.add_argument("--namespace", help="the operator's own namespace (excluded; holds the audit Lease)")
    run.add_argument("--ledger", help="evidence ledger URL or SQLite path")
    run.add_argument("--audit-interval", type=float, help="seconds between background audits")
    run.add_argument("--no-audit", action="store_true", help="disable the background audit")
    run.add_argument("--policy-dir", action="append", default=None,
                     help="extra policy directory (repeatable)")
    run.add_argument("--install-crds", action="store_true", help="apply the CRDs before starting")
    run.add_argument("--liveness", help="Kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    run.add_argument("--metrics-addr", help="listening address for /metrics (default 0.0.0.0)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub.add_parser("install-crds", parents=[common], help="apply the CRDs and exit")
    sub.add_parser("config", parents=[common], help="print the resolved settings as JSON and exit")
    return p


def _overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    mapping = {
        "kubeconfig": "kubeconfig", "context": "context", "webhook_addr": "webhook.addr",
        "webhook_port": "webhook.port", "webhook_host": "webhook.host", "cert_file": "webhook.certfile",
        "key_file": "webhook.pkeyfile", "ca_file": "webhook.cafile",
        "failure_policy": "webhook.failure_policy",
        "timeout_seconds": "webhook.timeout_seconds", "registration": "webhook.registration",
        "exclude_namespace": "scope.extra_excluded_namespaces",
        "replace_excluded_namespaces": "scope.excluded_namespaces", "namespace": "scope.own_namespace",
        "ledger": "evidence.ledger", "audit_interval": "audit.interval_seconds", "policy_dir": "policy_dirs",
        "liveness": "liveness", "metrics_port": "metrics_port", "metrics_addr": "metrics_addr",
    }
    out: list[tuple[str, Any]] = []
    for key, value in (kv.split("=", 1) if "=" in kv else (kv, "") for kv in args.overrides):
        out.append((key.strip(), value))
    for attr, dotted in mapping.items():
        value = getattr(args, attr, None)
        if value is not None and attr.endswith("namespaces"):  # repeatable and comma-separated
            value = [part.strip() for item in value for part in item.split(",") if part.strip()]
        if value is not None:
            out.append((dotted, value))
    if getattr(args, "no_audit", False):
        out.append(("audit.enabled", False))
    if getattr(args, "install_crds", False):
        out.append(("install_crds", True))
    if getattr(args, "verbose", False):
        out.append(("log_level", "DEBUG"))
    return out


class _DenialFilter(logging.Filter):
    """Kopf logs every AdmissionError as "Webhook '…' failed permanently" at ERROR; a denial is the
    control working, not an error (and it is in the ledger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Webhook '") and "failed permanently: soc2infra:" in message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soc2infra-operator``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, _overrides(args))
    except SettingsError as exc:
        print(f"soc2infra-operator: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    if args.command == "config":
        from soc2infra.evidence import display_url

        shown = dataclasses.asdict(settings)
        if shown["evidence"].get("ledger"):  # the DSN's password stays out of terminals and logs
            shown["evidence"]["ledger"] = display_url(shown["evidence"]["ledger"])
        print(json.dumps(shown, indent=2, default=str))
        return ExitCode.OK
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if settings.log_level.upper() != "DEBUG":
        # One line per admission request from aiohttp and Kopf is noise (the ledger has them).
        for noisy in ("aiohttp.access", "kopf.objects"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(_DenialFilter())
    if args.command == "install-crds":
        from soc2infra_operator.install import apply_crds
        from soc2infra_operator.kube import Kube, load_configuration

        kube = Kube(load_configuration(settings.kubeconfig, settings.context))
        for name in apply_crds(kube):
            print(f"applied {name}")
        return ExitCode.OK
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run(settings))
    except SettingsError as exc:
        print(f"soc2infra-operator: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        return ExitCode.OK
    return ExitCode.OK


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (the ``operator`` extra brings it), as ``kopf run`` does:
    its TLS and socket layers are compiled, asyncio's are Python, and at admission rates the
    webhook's TLS costs as much as the decision (bench/README.md, profile). None: asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def run(settings: OperatorSettings, ready_flag: asyncio.Event | threading.Event | None = None,
              stop_flag: asyncio.Event | threading.Event | None = None) -> None:
    """Build the runtime and run Kopf until stopped (SIGTERM/SIGINT, or *stop_flag*)."""
    import kopf

    from soc2infra_operator.handlers import register
    from soc2infra_operator.kube import Kube, load_configuration
    from soc2infra_operator.runtime import Runtime, resolve_cluster_id

    if not settings.webhook.certfile:
        raise SettingsError("webhook certificate files are required (--cert-file/--key-file/--ca-file); "
                            "Kopf's self-signed mode is not used (oscrypto cannot read OpenSSL 3)")
    runtime = Runtime.build(settings)
    runtime.kube = Kube(load_configuration(settings.kubeconfig, settings.context))
    runtime.cluster_id = await asyncio.to_thread(resolve_cluster_id, runtime.kube,
                                                 settings.evidence.cluster_id)
    if settings.install_crds:
        from soc2infra_operator.install import apply_crds

        await asyncio.to_thread(apply_crds, runtime.kube)
    metrics_server = None
    if settings.metrics_port is not None:
        from soc2infra_operator.metrics import serve

        metrics_server = serve(runtime.metrics, settings.metrics_port, settings.metrics_addr)
        logger.info("metrics on http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port)
    registry = kopf.OperatorRegistry()
    ids = register(registry, runtime)
    logger.info("checking %d kinds at admission: %s", len(ids), ", ".join(runtime.kinds))
    # Everything loaded so far (Kopf, the Kubernetes client, the compiled pack) lives as long as
    # the process: out of the collector's sight, a full collection no longer walks it. Before
    # this, each one paused the webhook for about 40 ms (16 times in 20 s under load), which was
    # most of the p99 admission latency (bench/README.md).
    gc.freeze()
    try:
        await kopf.operator(
            registry=registry, clusterwide=True, standalone=settings.peering == "standalone",
            peering_name=None if settings.peering == "standalone" else settings.peering,
            liveness_endpoint=settings.liveness, ready_flag=ready_flag, stop_flag=stop_flag,
        )
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        runtime.writer.close()
        runtime.kube.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
