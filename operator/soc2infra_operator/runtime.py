"""The operator's state and the glue between the pure parts and the outside world.

A :class:`Runtime` holds the compiled pack, the resolved admission policy, the waiver store, the
latest admission context from the audit, the evidence writer and the API client. Kopf handlers
(``handlers.py``) call its methods and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soc2infra import PolicyPack, Resource, load_pack
from soc2infra_operator import approval
from soc2infra_operator import waivers as cluster_waivers
from soc2infra_operator.admission import (
    BUILTIN_GROUPS,
    FILE_ONLY_KINDS,
    AdmissionPolicy,
    AdmissionResponse,
    Decision,
    ReviewRequest,
    build_response,
    decide,
    failure_decision,
    kubernetes_kinds,
    rule_relations,
)
from soc2infra_operator.evidence import (
    EvidenceError,
    EvidenceWriter,
    admission_record,
    instance_id,
    skipped_record,
    waiver_record,
    waiver_rejection_record,
)
from soc2infra_operator.metrics import OperatorMetrics
from soc2infra_operator.settings import OperatorSettings
from soc2infra_operator.vapsync import desired_objects, enforcement_plan, webhook_kinds, webhook_pack
from soc2infra_operator.waivers import WaiverStore

logger = logging.getLogger(__name__)


def admission_kinds(pack: PolicyPack, settings: OperatorSettings) -> list[str]:
    """Kinds that get a validating webhook: every Kubernetes kind the pack targets (minus
    configuration-file kinds), or the configured subset."""
    kinds = [k for k in kubernetes_kinds(pack) if k not in FILE_ONLY_KINDS]
    if settings.admission.kinds:
        kinds = [k for k in kinds if k in settings.admission.kinds]
    return kinds


def resolve_cluster_id(kube: Any, configured: str | None) -> str:
    """The cluster id for evidence: *configured*, else the kube-system namespace's uid (stable for
    the cluster's life, different in every cluster); empty when neither can be had."""
    if configured:
        return configured
    try:
        namespace = kube.call("GET", "/api/v1/namespaces/kube-system")
        return str((namespace.get("metadata") or {}).get("uid") or "")
    except Exception:  # noqa: BLE001 - no read access to kube-system: records say so by an empty id
        logger.warning("could not read the kube-system namespace uid; set evidence.cluster_id")
        return ""


@dataclass(slots=True)
class Runtime:
    """Everything a running operator shares between its handlers and background tasks."""

    settings: OperatorSettings
    pack: PolicyPack
    policy: AdmissionPolicy
    writer: EvidenceWriter
    waivers: WaiverStore = field(default_factory=WaiverStore)
    context: tuple[Resource, ...] = ()
    kube: Any = None  # soc2infra_operator.kube.Kube, created at start-up
    identity: str = field(default_factory=instance_id)
    audit_leader: bool = False
    audit_task: asyncio.Task[None] | None = None
    audit_inflight: asyncio.Future[Any] | None = None  # the audit run executing in a thread
    last_audit: Any = None  # AuditOutcome of the last run (tests, liveness)
    rule_meta: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    # enforcement vap/hybrid: rules enforced by ValidatingAdmissionPolicies, and the policy the
    # webhook decides with (those rules disabled); None: the webhook decides every rule.
    cel_rules: frozenset[str] = frozenset()
    webhook_policy: AdmissionPolicy | None = None
    cluster_id: str = ""  # evidence.cluster_id, or the kube-system namespace uid (resolve_cluster_id)
    vap_wake: asyncio.Event | None = None  # set on waiver changes: resync the policies
    vap_task: asyncio.Task[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None  # the operator's loop (waiver events arrive in threads)
    # Requests skipped since the last skipped-requests record: (namespace, reason, dry run) → count.
    skipped: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    skipped_since: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    skipped_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.metrics.watch_waivers(self.waivers.snapshot, self.policy.waiver_warning_days)

    @classmethod
    def build(cls, settings: OperatorSettings, writer: EvidenceWriter | None = None) -> Runtime:
        """Load the pack and resolve the admission policy (no I/O besides reading policy files)."""
        pack = load_pack([Path(d) for d in settings.policy_dirs], builtin=settings.builtin_policies)
        policy = AdmissionPolicy.build(pack, settings, rule_relations(pack))
        ev = settings.evidence
        writer = writer or EvidenceWriter.open(ev.ledger, ev.timeout_seconds, ev.signing_key)
        cel_rules = enforcement_plan(pack, settings.enforcement).cel_rules
        webhook_policy = (AdmissionPolicy.build(webhook_pack(pack, cel_rules), settings, rule_relations(pack))
                          if cel_rules else None)
        return cls(settings=settings, pack=pack, policy=policy, writer=writer,
                   waivers=WaiverStore(settings.waivers.require_independent_approval),
                   rule_meta={r.id: (r.severity, r.controls) for r in pack.rules},
                   cel_rules=cel_rules, webhook_policy=webhook_policy)

    @property
    def kinds(self) -> list[str]:
        """Kinds with a validating webhook."""
        return webhook_kinds(admission_kinds(self.pack, self.settings), self.pack, self.cel_rules,
                             self.settings.enforcement)

    def group_of(self, kind: str) -> str | None:
        """The API group a kind is pinned to (None: any group)."""
        return BUILTIN_GROUPS.get(kind)

    # ---- admission --------------------------------------------------------------------------

    def decide(self, req: ReviewRequest) -> Decision:
        """The decision for *req*; an internal error becomes a failure decision, never a crash."""
        try:
            return decide(req, self.webhook_policy or self.policy, self.waivers.snapshot(), self.context,
                          datetime.now(UTC).date())
        except Exception as exc:  # noqa: BLE001 - a bug must answer by the failure policy, not 500
            logger.exception("admission evaluation failed")
            return failure_decision(req, f"internal error ({type(exc).__name__})",
                                    self.settings.webhook.failure_policy == "Fail")

    async def admit(self, req: ReviewRequest) -> AdmissionResponse:
        """Decide, commit the evidence durably, then answer (the order is the guarantee)."""
        started = time.perf_counter()
        decision = self.decide(req)
        decision = await self.record(decision)
        self.metrics.observe_decision(decision, time.perf_counter() - started)
        return build_response(decision)

    async def refuse(self, req: ReviewRequest, reason: str) -> AdmissionResponse:
        """Answer a request the control could not read (by the failure policy), recorded like any
        decision: the ledger shows the attempt and why it was not checked."""
        decision = failure_decision(req, reason, self.settings.webhook.failure_policy == "Fail")
        decision = await self.record(decision)
        self.metrics.observe_decision(decision, 0.0)
        return build_response(decision)

    async def record(self, decision: Decision) -> Decision:
        """Commit the decision's record; on failure apply the evidence failure policy."""
        if decision.verdict == "skip":
            self.skipped[(decision.namespace or "", decision.reason, decision.dry_run)] += 1
            return decision
        if not self.writer.enabled:
            return decision
        if decision.dry_run and not self.settings.evidence.record_dry_run:
            return decision
        started = time.perf_counter()
        try:
            await self.writer.commit(admission_record(decision, self.pack.digest, self.rule_meta,
                                                      self.cluster_id))
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
        except EvidenceError as exc:
            self.metrics.commit_failures.inc()
            logger.error("admission evidence not recorded for %s: %s", decision.address, exc)
            if not decision.allowed:
                # Denied anyway: the safe answer stands, and says that it has no record (every
                # response either has its evidence record or tells the requester it has none).
                return dataclasses.replace(decision, notes=(*decision.notes,
                                           f"soc2infra could not record evidence ({exc}); denied anyway"))
            if self.settings.evidence_fail_closed:
                return dataclasses.replace(decision, verdict="error", allowed=False,
                                           reason=f"evidence could not be recorded: {exc}")
            return dataclasses.replace(decision, notes=(*decision.notes,
                                       f"soc2infra could not record evidence ({exc}); admitted anyway"))
        return decision

    async def flush_skipped(self) -> None:
        """Record the skipped-request counts gathered since the last flush (one record, none when
        nothing was skipped); on failure the counts are kept for the next flush."""
        now = datetime.now(UTC).isoformat()
        if not self.skipped or not self.writer.enabled:
            self.skipped_since = now
            return
        counts, since = self.skipped, self.skipped_since
        self.skipped, self.skipped_since = Counter(), now
        try:
            await self.writer.commit(skipped_record(counts, since, now, self.cluster_id, self.pack.digest))
        except EvidenceError as exc:
            logger.error("skipped-request counts not recorded (kept for the next try): %s", exc)
            self.skipped.update(counts)
            self.skipped_since = since

    # ---- waivers ----------------------------------------------------------------------------

    def review_waiver(self, req: ReviewRequest) -> approval.Review:
        """The approval rule (approval.py) applied to a CREATE/UPDATE of a waiver."""
        w = self.settings.waivers
        return approval.review(req.operation, req.obj, req.old,
                               approval.identity(req.username, req.user_uid, req.groups),
                               require_independent=w.require_independent_approval, max_days=w.max_days,
                               today=datetime.now(UTC).date())

    def waiver_stamps(self, req: ReviewRequest) -> dict[str, str | None]:
        """Mutating webhook: the annotation changes that stamp who created, wrote and approved."""
        if req.operation not in ("CREATE", "UPDATE") or not isinstance(req.obj, dict):
            return {}
        return approval.stamp_patch(req.obj, self.review_waiver(req).stamps)

    async def admit_waiver(self, req: ReviewRequest) -> str | None:
        """Validating webhook for waivers: why the request is rejected (recorded), or None. A
        deletion is always allowed and recorded with the deleting user (a watch event cannot say
        who deleted)."""
        if req.operation == "DELETE":
            await self._record_waiver_request("waiver-delete-requested", req, None)
            return None
        if req.operation not in ("CREATE", "UPDATE") or not isinstance(req.obj, dict):
            return None
        verdict = self.review_waiver(req)
        problem = verdict.problem or approval.forged(req.obj, verdict.stamps)
        if problem is None:
            return None
        await self._record_waiver_request("waiver-rejected", req, problem)
        return problem

    async def _record_waiver_request(self, event: str, req: ReviewRequest, problem: str | None) -> None:
        """Record a waiver request as the webhook saw it: the requesting user and, for a
        rejection, why (a failure to record never changes the answer)."""
        if not self.writer.enabled:
            return
        obj = req.obj if isinstance(req.obj, dict) else req.old
        waiver = cluster_waivers.waiver_from_object(obj).to_dict()
        subject = "soc2infra.io/v1alpha1/" + (
            "SOC2ClusterWaiver/" + waiver["name"] if waiver.get("cluster")
            else f"SOC2Waiver/{waiver['namespace']}/{waiver['name']}")
        try:
            await self.writer.commit(waiver_rejection_record(
                subject, req.operation, req.actor, problem or "", self.pack.digest, self.cluster_id, req.uid,
                req.dry_run, waiver, event=event))
        except EvidenceError as exc:
            logger.error("%s not recorded: %s", event, exc)

    def record_present_waivers(self) -> int:
        """On becoming the audit leader: record every known waiver whose current version (object
        uid and resourceVersion) has no record yet — e.g. created before any replica led, or while
        no leader was recording. Returns how many were recorded. Blocking (call in a thread)."""
        if not self.writer.enabled:
            return 0
        try:
            recorded = self.writer.recorded_waiver_versions()
        except Exception as exc:  # noqa: BLE001 - a failed read must not stop the audit loop
            logger.error("could not read the ledger's waiver records: %s", exc)
            return 0
        written = 0
        for waiver in self.waivers.snapshot():
            if not waiver.uid or (waiver.uid, waiver.resource_version) in recorded:
                continue
            try:
                self.writer.commit_sync(waiver_record("waiver-present", waiver.to_dict(), self.pack.digest,
                                                      cluster=self.cluster_id))
                written += 1
            except EvidenceError as exc:
                logger.error("waiver %s not recorded: %s", waiver.location, exc)
        return written

    def waiver_event(self, event_type: str | None, obj: Any, actor: str = "") -> None:
        """Apply a watch event to the waiver store; the audit leader records real changes."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        cluster = isinstance(obj, dict) and obj.get("kind") == cluster_waivers.CLUSTER_KIND
        ns = (meta or {}).get("namespace") or ("" if cluster else "default")
        name = (meta or {}).get("name") or ""
        if event_type == "DELETED":
            waiver = self.waivers.delete(ns, name)
            change = "waiver-deleted"
            actor = ""  # not the author: who deleted it is in the waiver-delete-requested record
        else:
            waiver = self.waivers.upsert(obj)
            change = "waiver-created" if event_type == "ADDED" else "waiver-changed"
        if self.vap_wake is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.vap_wake.set)  # the policies' waiver conditions change
        if waiver is None or event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return  # the initial listing (type None) is state, not a change
        if waiver.problem:
            logger.warning("%s is unusable and never applies: %s", waiver.location, waiver.problem)
        if self.audit_leader and self.writer.enabled:
            try:
                self.writer.commit_sync(waiver_record(change, waiver.to_dict(), self.pack.digest,
                                                      cluster=self.cluster_id, manager=actor,
                                                      deleted=change == "waiver-deleted"))
            except EvidenceError as exc:
                logger.error("waiver change not recorded: %s", exc)

    def vap_objects(self) -> list[dict[str, Any]]:
        """The ValidatingAdmissionPolicies and bindings the cluster should hold now."""
        plan = enforcement_plan(self.pack, self.settings.enforcement)
        return desired_objects(plan, self.policy.actions, self.settings, self.waivers.snapshot(),
                               datetime.now(UTC).date(), self.pack.digest)

    def set_context(self, resources: Sequence[Resource]) -> None:
        """Replace the admission context (objects of kinds cross-object rules look up)."""
        self.context = tuple(resources)
