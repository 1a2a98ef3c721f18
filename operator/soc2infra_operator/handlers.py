"""Kopf registrations: thin adapters from Kopf's callbacks to :class:`~soc2infra_operator.runtime.Runtime`.

- one ``@kopf.on.validate`` per kind the pack targets, **each with its own id** (stacked
  registrations without distinct ids give duplicate webhook names, the API server rejects the
  configuration with 422, and nothing is checked), on CREATE and UPDATE;
- a watch on SOC2Waivers feeding the waiver store;
- start-up (Kopf settings, webhook server, audit loop) and clean-up;
- login with the same credentials as the operator's own API client.

A validate handler builds a :class:`ReviewRequest` from Kopf's keyword arguments, awaits
``runtime.admit`` (decision, then durable evidence), appends warnings, and raises
``kopf.AdmissionError`` for a denial. Nothing else happens here. Reviews of a handler's own kind
reach ``runtime.admit`` straight from the webhook server (``SOC2WebhookServer``, for throughput);
the handlers stay registered: they name the webhooks and answer whatever takes Kopf's path.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from soc2infra_operator import waivers as cluster_waivers
from soc2infra_operator.admission import CURRENT_REVIEW_UID, ReviewRequest
from soc2infra_operator.runtime import Runtime
from soc2infra_operator.webhookconfig import (
    SOC2WebhookServer,
    WebhookTarget,
    handler_id,
    waiver_configurations,
    waiver_handler_id,
    webhook_configuration,
)

logger = logging.getLogger(__name__)


def _raw(body: Any) -> Any:
    # Kopf hands a Body view; its values are the raw JSON, so a shallow dict copy is the object.
    return dict(body) if isinstance(body, Mapping) else body


def request_from_kopf(*, body: Any, old: Any, operation: Any, dryrun: Any, userinfo: Any,
                      resource: Any, subresource: Any, namespace: Any) -> ReviewRequest:
    """Kopf's webhook keyword arguments → :class:`ReviewRequest`; never raises."""
    user = userinfo if isinstance(userinfo, Mapping) else {}
    groups = user.get("groups")
    group = getattr(resource, "group", "") or ""
    res = "/".join(p for p in (group, getattr(resource, "version", ""), getattr(resource, "plural", "")) if p)
    return ReviewRequest(
        operation=str(operation or "").upper(), obj=_raw(body),
        namespace=namespace if isinstance(namespace, str) and namespace else None,
        old=_raw(old) if old is not None else None, dry_run=bool(dryrun),
        username=str(user.get("username") or ""),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (), resource=res,
        subresource=subresource if isinstance(subresource, str) and subresource else None,
        uid=CURRENT_REVIEW_UID.get(), user_uid=str(user.get("uid") or ""),
    )


def make_validator(runtime: Runtime) -> Any:
    """The validating handler shared by every kind's registration."""

    async def validate(body: Any, old: Any, operation: Any, dryrun: Any, userinfo: Any, warnings: list[str],
                       resource: Any, subresource: Any = None, namespace: Any = None, **_: Any) -> None:
        req = request_from_kopf(body=body, old=old, operation=operation, dryrun=dryrun, userinfo=userinfo,
                                resource=resource, subresource=subresource, namespace=namespace)
        response = await runtime.admit(req)
        warnings.extend(response.warnings)
        if not response.allowed:
            raise kopf.AdmissionError(response.message, code=response.code)

    return validate


def make_waiver_handlers(runtime: Runtime) -> tuple[Any, Any]:
    """The validating and mutating handlers for SOC2Waivers (approval.py decides both)."""

    def request(body: Any, old: Any, operation: Any, dryrun: Any, userinfo: Any, resource: Any,
                subresource: Any, namespace: Any) -> ReviewRequest:
        return request_from_kopf(body=body, old=old, operation=operation, dryrun=dryrun, userinfo=userinfo,
                                 resource=resource, subresource=subresource, namespace=namespace)

    async def validate(body: Any, old: Any, operation: Any, dryrun: Any, userinfo: Any, resource: Any,
                       subresource: Any = None, namespace: Any = None, **_: Any) -> None:
        req = request(body, old, operation, dryrun, userinfo, resource, subresource, namespace)
        problem = await runtime.admit_waiver(req)
        if problem is not None:
            raise kopf.AdmissionError(f"soc2infra: {problem}", code=403)

    def mutate(body: Any, old: Any, operation: Any, dryrun: Any, userinfo: Any, resource: Any, patch: Any,
               subresource: Any = None, namespace: Any = None, **_: Any) -> None:
        req = request(body, old, operation, dryrun, userinfo, resource, subresource, namespace)
        for key, value in runtime.waiver_stamps(req).items():
            patch.metadata.annotations[key] = value  # None removes the annotation

    return validate, mutate


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> list[str]:
    """Register every handler on *registry*; returns the validate handler ids."""
    s = runtime.settings
    ids: list[str] = []
    validator = make_validator(runtime)
    for kind in runtime.kinds:
        hid = handler_id(kind)
        group = runtime.group_of(kind)
        selector: dict[str, Any] = {"kind": kind} if group is None else {"group": group, "kind": kind}
        kopf.on.validate(**selector, id=hid, operations=["CREATE", "UPDATE"], side_effects=False,
                         ignore_failures=s.webhook.failure_policy == "Ignore", persistent=False,
                         registry=registry)(validator)
        ids.append(hid)

    def on_waiver(event: Mapping[str, Any], **_: Any) -> None:
        # Sync on purpose: Kopf runs it in a thread, so a ledger write never blocks admissions.
        obj = event.get("object")
        actor = ""
        managed = ((obj or {}).get("metadata") or {}).get("managedFields") if isinstance(obj, dict) else None
        if isinstance(managed, list) and managed:
            actor = str((managed[-1] or {}).get("manager") or "")
        runtime.waiver_event(event.get("type"), obj, actor)

    validate_waiver, mutate_waiver = make_waiver_handlers(runtime)
    for plural in (cluster_waivers.PLURAL, cluster_waivers.CLUSTER_PLURAL):
        kopf.on.validate(cluster_waivers.GROUP, cluster_waivers.VERSION, plural,
                         id=waiver_handler_id("validate", plural), operations=["CREATE", "UPDATE", "DELETE"],
                         side_effects=False, persistent=False, registry=registry)(validate_waiver)
        kopf.on.mutate(cluster_waivers.GROUP, cluster_waivers.VERSION, plural,
                       id=waiver_handler_id("mutate", plural), operations=["CREATE", "UPDATE"],
                       side_effects=False, persistent=False, registry=registry)(mutate_waiver)

    kopf.on.event(cluster_waivers.GROUP, cluster_waivers.VERSION, cluster_waivers.PLURAL, id="soc2waivers",
                  registry=registry)(on_waiver)
    kopf.on.event(cluster_waivers.GROUP, cluster_waivers.VERSION, cluster_waivers.CLUSTER_PLURAL,
                  id="soc2clusterwaivers", registry=registry)(on_waiver)

    async def login(**_: Any) -> kopf.ConnectionInfo:
        from soc2infra_operator.kube import connection_info

        return kopf.ConnectionInfo(**connection_info(runtime.kube.configuration))

    kopf.on.login(id="soc2infra-login", registry=registry)(login)

    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, runtime)
        if s.enforcement != "webhook":
            start_vap_sync(runtime)
        if s.audit.enabled:
            runtime.audit_task = asyncio.create_task(audit_loop(runtime), name="soc2infra-audit")
        runtime.skipped_task = asyncio.create_task(skipped_loop(runtime), name="soc2infra-skipped")
        if s.anchor.target and s.evidence.ledger:
            from soc2infra_operator.anchoring import anchor_loop

            anchor_tasks.append(asyncio.create_task(
                anchor_loop(s.anchor, s.evidence.ledger, s.evidence.signing_key), name="soc2infra-anchor"))

    anchor_tasks: list[asyncio.Task[None]] = []
    kopf.on.startup(id="soc2infra-startup", registry=registry)(startup)

    async def cleanup(**_: Any) -> None:
        for task in anchor_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if runtime.vap_task is not None:
            runtime.vap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.vap_task
            if s.webhook.remove_on_exit:
                # Out of cluster (the default), a stopped operator leaves no Deny policy behind;
                # in a cluster (remove_on_exit: false) the policies keep enforcing while it restarts.
                from soc2infra_operator.vapsync import sync

                try:
                    result = await asyncio.to_thread(sync, runtime.kube, [])
                    logger.info("removed %d ValidatingAdmissionPolicy objects", result.deleted)
                except Exception:  # noqa: BLE001 - shutting down: log, do not mask the exit
                    logger.exception("could not remove the ValidatingAdmissionPolicies")
        if runtime.skipped_task is not None:
            runtime.skipped_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.skipped_task
        with contextlib.suppress(Exception):
            await runtime.flush_skipped()  # the counts since the last record
        if runtime.audit_task is not None:
            runtime.audit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.audit_task
        if runtime.audit_inflight is not None and not runtime.audit_inflight.done():
            # A run already in its thread finishes (reports and snapshot stay consistent) before
            # the ledger is closed.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runtime.audit_inflight, timeout=60)
        if s.webhook.registration == "self" and s.webhook.remove_on_exit:
            await asyncio.to_thread(remove_webhook_configuration, runtime)

    kopf.on.cleanup(id="soc2infra-cleanup", registry=registry)(cleanup)
    return ids


def start_vap_sync(runtime: Runtime) -> None:
    """enforcement vap/hybrid: keep the ValidatingAdmissionPolicies in sync (see vapsync.py)."""
    from soc2infra_operator.vapsync import sync_loop

    runtime.loop = asyncio.get_running_loop()
    runtime.vap_wake = asyncio.Event()
    runtime.vap_task = asyncio.create_task(
        sync_loop(runtime.kube, runtime.vap_objects, runtime.vap_wake,
                  runtime.settings.audit.interval_seconds), name="soc2infra-vap-sync")


def configure_kopf(settings: kopf.OperatorSettings, runtime: Runtime) -> None:
    """Kopf settings for this operator: our webhook server, no Events, peering as configured."""
    s = runtime.settings
    w = s.webhook
    settings.posting.enabled = False  # no RBAC to create Events; decisions go to the ledger
    settings.peering.standalone = s.peering == "standalone"
    if s.peering != "standalone":
        settings.peering.name = s.peering
        settings.peering.clusterwide = True
    server_kwargs: dict[str, Any] = {"addr": w.addr, "port": w.port, "host": w.host or w.addr,
                                     "certfile": w.certfile, "pkeyfile": w.pkeyfile, "cafile": w.cafile}
    if not w.certfile:
        # Kopf would generate a self-signed certificate through oscrypto, which cannot read
        # OpenSSL 3.0.10+; refuse instead of failing obscurely at the first request.
        raise kopf.PermanentError("webhook.certfile and webhook.pkeyfile are required (no self-signed mode)")
    register_self = w.registration == "self"
    routes = {handler_id(kind): (runtime.group_of(kind), kind) for kind in runtime.kinds}
    settings.admission.server = SOC2WebhookServer(
        on_client_config=(lambda cc: apply_webhook_configuration(runtime, cc)) if register_self else None,
        fail_closed=w.failure_policy == "Fail", routes=routes, admit=runtime.admit, refuse=runtime.refuse,
        **server_kwargs)
    settings.admission.managed = f"auto.{w.configuration_name}" if w.registration == "kopf" else None


def webhook_targets(runtime: Runtime) -> list[WebhookTarget]:
    """The API resources of every checked kind, from discovery (kinds absent from the cluster are
    skipped: a CRD installed later is picked up at the next start)."""
    discovered = runtime.kube.discover()
    targets: list[WebhookTarget] = []
    for kind in runtime.kinds:
        group = runtime.group_of(kind)
        found = [r for r in discovered.get(kind, []) if group is None or r.group == group]
        by_group: dict[str, list[Any]] = {}
        for r in found:
            by_group.setdefault(r.group, []).append(r)
        for grp, items in by_group.items():
            versions = tuple(sorted({r.version for r in items}))
            targets.append(WebhookTarget(handler_id(kind), kind, grp, versions, items[0].plural,
                                         items[0].namespaced))
    return targets


def apply_webhook_configuration(runtime: Runtime, client_config: dict[str, Any]) -> dict[str, Any]:
    """Create or replace our ValidatingWebhookConfiguration for the server's client config."""
    w = runtime.settings.webhook
    if w.cafile and "caBundle" not in client_config:
        client_config["caBundle"] = base64.b64encode(Path(w.cafile).read_bytes()).decode("ascii")
    config = webhook_configuration(runtime.settings, webhook_targets(runtime), client_config)
    path = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{w.configuration_name}"
    result: dict[str, Any] = runtime.kube.apply(path, config)
    logger.info("registered %d validating webhooks in %s", len(config["webhooks"]), w.configuration_name)
    for waiver_config in waiver_configurations(runtime.settings, client_config):
        plural = waiver_config["kind"].lower() + "s"
        runtime.kube.apply(f"/apis/admissionregistration.k8s.io/v1/{plural}/{waiver_config['metadata']['name']}",
                           waiver_config)
    return result


def remove_webhook_configuration(runtime: Runtime) -> None:
    """Delete our ValidatingWebhookConfiguration (clean exit of an out-of-cluster operator)."""
    name = runtime.settings.webhook.configuration_name
    for plural, config_name in (("validatingwebhookconfigurations", name),
                                ("validatingwebhookconfigurations", f"{name}-waivers"),
                                ("mutatingwebhookconfigurations", f"{name}-waivers")):
        try:
            runtime.kube.delete(f"/apis/admissionregistration.k8s.io/v1/{plural}/{config_name}")
        except Exception:  # noqa: BLE001 - shutting down: log, do not mask the exit
            logger.exception("could not remove the webhook configuration %s", config_name)


async def skipped_loop(runtime: Runtime) -> None:
    """Record the skipped-request counts every ``evidence.skipped_interval_seconds``."""
    while True:
        await asyncio.sleep(runtime.settings.evidence.skipped_interval_seconds)
        await runtime.flush_skipped()


async def audit_loop(runtime: Runtime) -> None:
    """Run the audit every ``audit.interval_seconds`` until cancelled."""
    from soc2infra_operator.audit import Auditor

    a = runtime.settings.audit
    auditor = Auditor(runtime.kube, runtime.policy, runtime.settings, runtime.writer, runtime.identity,
                      on_context=runtime.set_context,
                      cluster_name=runtime.cluster_id or str(runtime.kube.configuration.host))
    await asyncio.sleep(a.initial_delay_seconds)
    while True:
        was_leader = runtime.audit_leader
        try:
            # Shielded: cancelling the loop must not orphan a run half-way; clean-up awaits it.
            runtime.audit_inflight = asyncio.get_running_loop().run_in_executor(None, auditor.run_once)
            outcome = await asyncio.shield(runtime.audit_inflight)
            runtime.audit_leader = outcome.leader
            if outcome.leader and not was_leader:
                # Waiver changes are recorded by the leader as they happen; what changed while no
                # replica led (or before the first did) is recorded now, once per version.
                written = await asyncio.to_thread(runtime.record_present_waivers)
                logger.info("audit leadership: recorded %d waivers with no record of their version", written)
            runtime.last_audit = outcome
            runtime.metrics.observe_audit(outcome)
            logger.info("audit: %s (leader=%s, %d reports, %.2fs)", outcome.summary, outcome.leader,
                        outcome.reports_written, outcome.seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed round must not end the audit
            logger.exception("audit run failed")
        await asyncio.sleep(a.interval_seconds)
