"""Evidence the operator writes to the ledger: admission decisions, audit snapshots, waiver changes.

Record shapes are pure functions of decisions (no object content ever enters a record: only
addresses, rule results, the requesting user and waiver metadata, so Secret data and env values
cannot leak). :class:`EvidenceWriter` commits them through the ledger's group committer.

Durability at admission: the handler awaits :meth:`EvidenceWriter.commit` *before* it returns,
and Kopf only writes the HTTP response after the handler returns, so every response the API
server received has a committed record (the group committer resolves only once the commit is
durable). The reverse does not hold: a record may exist for a request whose response was never
delivered (the process died between commit and send) — extra evidence, never missing evidence.

When the commit fails or takes longer than ``evidence.timeout_seconds``:

- a request that is denied anyway stays denied (denying is the safe answer), with a warning that
  it has no record;
- any other request is rejected when ``fail_closed`` (default: follows the webhook's
  ``failurePolicy``, so ``Fail`` means "no evidence, no admission"), or admitted with a warning.

Dry-run requests are checked like any other and recorded with ``context.dry_run: true`` (a
denied dry run in a CI gate is still a preventive control operating); nothing else happens for
them. Skipped requests (excluded namespaces and users, trusted controllers) are not recorded one by
one: they are outside the control's scope, which the settings document; each replica counts them
per namespace and reason and records the counts every ``evidence.skipped_interval_seconds``
(:func:`skipped_record`), so the population of requests the webhook received is complete.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from soc2infra import UserError
from soc2infra_operator.admission import Decision, RuleOutcome

logger = logging.getLogger(__name__)

SOURCE_ADMISSION = "admission"
SOURCE_AUDIT = "audit"
SOURCE_WAIVER = "waiver"


class EvidenceError(UserError, RuntimeError):
    """A record could not be committed (ledger unavailable, timeout)."""


def instance_id() -> str:
    """Which operator process wrote a record (pod name in a cluster)."""
    return _instance_of(os.getpid())


@functools.lru_cache(maxsize=4)
def _instance_of(pid: int) -> str:
    # Cached per process (every admission record names it; the host name is a system call).
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}:{pid}"


def _result(o: RuleOutcome, address: str) -> dict[str, Any]:
    out: dict[str, Any] = {"rule_id": o.rule_id, "status": "waived" if o.waived else o.status,
                           "severity": o.severity, "controls": list(o.controls), "address": address}
    if o.waived and o.waiver is not None:
        out["waiver"] = dict(o.waiver)
    return out


RuleMeta = Mapping[str, tuple[str, tuple[str, ...]]]
# Ledger decisions for admission are allow | deny | warn: a waived object was allowed, and an
# object the control could not check was denied or allowed by the failure policy.
_LEDGER_DECISION = {"allow": "allow", "waived": "allow", "warn": "warn", "deny": "deny"}


def admission_record(decision: Decision, pack_digest: str,
                     pack_severities: RuleMeta | None = None, cluster: str = "") -> dict[str, Any]:
    """The ledger entry for one admission request that was evaluated (or could not be).

    ``results`` holds every rule evaluated on the object: failures (``fail``/``unknown``, or
    ``waived`` with the waiver) and passes (``pass``; severity and controls from
    *pack_severities*, rule id → (severity, controls), when given) — the population an auditor
    samples. ``decision`` is allow, warn or deny; ``context`` keeps the finer verdict (waived,
    error), each failing rule's admission action (a list of ``{rule_id, action}``: rule ids are
    values, never keys, so redaction cannot mistake ``…SECRET…`` for a secret), the operation,
    whether it was a dry run, and what traces the record to the API server's audit log and to the
    object: ``request_uid``, ``user`` (username, uid, groups), ``object_uid``, ``resource_version``
    and the ``cluster`` id; for pod-bearing objects ``images`` (container, image, digest when
    pinned) and ``image_digests``, and ``gitops`` (Argo CD / Flux tracking keys) when present.
    """
    results = [_result(o, decision.address) for o in decision.outcomes]
    meta = pack_severities or {}
    for rule_id in decision.passed:
        severity, controls = meta.get(rule_id, ("", ()))
        results.append({"rule_id": rule_id, "status": "pass", "severity": severity or None,
                        "controls": list(controls), "address": decision.address})
    context: dict[str, Any] = {
        "verdict": decision.verdict, "operation": decision.operation, "dry_run": decision.dry_run,
        "kind": decision.kind, "namespace": decision.namespace, "name": decision.name,
        "groups": list(decision.actor.get("groups") or []), "instance": instance_id(),
        "request_uid": decision.request_uid, "cluster": cluster,
        "user": {"username": str(decision.actor.get("username") or ""),
                 "uid": str(decision.actor.get("uid") or ""),
                 "groups": list(decision.actor.get("groups") or [])},
        "object_uid": decision.object_uid, "resource_version": decision.resource_version,
    }
    if decision.images:
        # Change linkage (CC8.1): what runs, pinned by digest when the spec pins it.
        context["images"] = [dict(i) for i in decision.images]
        context["image_digests"] = sorted({i["digest"] for i in decision.images if i.get("digest")})
    if decision.gitops:
        context["gitops"] = dict(decision.gitops)
    if decision.outcomes:
        context["actions"] = [{"rule_id": o.rule_id, "action": o.action} for o in decision.outcomes]
    if decision.mode != "enforce":
        # Staged rollout: what enforcing would have rejected (soc2infra evidence report lists it).
        context["mode"] = decision.mode
        if decision.would_deny:
            context["would_deny"] = decision.would_deny
    if decision.reason:
        context["reason"] = decision.reason
    if decision.notes:
        context["notes"] = list(decision.notes)
    ledger_decision = _LEDGER_DECISION.get(decision.verdict, "allow" if decision.allowed else "deny")
    return {
        "source": SOURCE_ADMISSION,
        "actor": str(decision.actor.get("username") or "unknown"),
        "subject": decision.address or "(unreadable object)",
        "pack_digest": pack_digest,
        "results": results,
        "decision": ledger_decision,
        "context": context,
    }


def audit_record(results: Sequence[Mapping[str, Any]], pack_digest: str, summary: Mapping[str, Any],
                 waivers: Iterable[Mapping[str, Any]] = (), cluster: str = "",
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ledger entry for one background audit run (the state of the whole cluster).

    ``decision`` is ``fail`` when any rule failed on any object, else ``pass``. *extra* goes into
    the context (the rollout facts: admission mode, deny-level rules, namespaces not enforced).
    """
    items = [dict(r) for r in results]
    return {
        "source": SOURCE_AUDIT,
        "actor": f"soc2infra-operator/{instance_id()}",
        "subject": f"cluster:{cluster}" if cluster else "cluster",
        "pack_digest": pack_digest,
        "results": items,
        "decision": "fail" if any(r.get("status") == "fail" for r in items) else "pass",
        "context": {"summary": dict(summary), "waivers": list(waivers), "instance": instance_id(),
                    "cluster": cluster, **(extra or {})},
    }


def _waiver_subject(waiver: Mapping[str, Any]) -> str:
    if waiver.get("cluster"):
        return f"soc2infra.io/v1alpha1/SOC2ClusterWaiver/{waiver.get('name')}"
    return f"soc2infra.io/v1alpha1/SOC2Waiver/{waiver.get('namespace')}/{waiver.get('name')}"


def waiver_record(event: str, waiver: Mapping[str, Any], pack_digest: str, actor: str = "",
                  cluster: str = "", manager: str = "", deleted: bool = False) -> dict[str, Any]:
    """The ledger entry for a SOC2Waiver created, changed, deleted, or present when this replica
    started recording (waivers are evidence too).

    ``actor`` is the user whose request wrote the waiver's current terms, as the operator's
    webhook stamped it from the request's userInfo (never the apply tool); ``context`` names the
    creator, the approver (both with username, uid and groups, or null when not on record), the
    approval status, the ticket and the expiry, and the object's uid and resourceVersion (which
    version of the waiver the record is about). *manager* (the managedFields manager, i.e. the
    tool) is kept as a hint only. A deletion's actor is ``unknown``: a watch event does not say
    who deleted; the webhook's ``waiver-delete-requested`` record does.
    """
    requested = waiver.get("requestedBy") if isinstance(waiver.get("requestedBy"), Mapping) else None
    context: dict[str, Any] = {
        "event": event, "waiver": dict(waiver), "cluster": cluster, "instance": instance_id(),
        "creator": waiver.get("createdBy"), "approver": waiver.get("approver"),
        "approved_by": waiver.get("approvedBy"), "approval": waiver.get("approval", "none"),
        "ticket": waiver.get("ticket"), "expires": waiver.get("expires"),
        "object_uid": waiver.get("uid", ""), "resource_version": waiver.get("resourceVersion", ""),
    }
    if manager:
        context["manager"] = manager
    who = "unknown" if deleted else str((requested or {}).get("username") or actor or "unknown")
    return {
        "source": SOURCE_WAIVER,
        "actor": who,
        "subject": _waiver_subject(waiver),
        "pack_digest": pack_digest,
        "results": [],
        "decision": None,
        "context": context,
    }


def waiver_rejection_record(subject: str, operation: str, user: Mapping[str, Any], reason: str,
                            pack_digest: str, cluster: str = "", request_uid: str = "",
                            dry_run: bool = False, waiver: Mapping[str, Any] | None = None,
                            event: str = "waiver-rejected") -> dict[str, Any]:
    """The ledger entry for a waiver request as the webhook saw it: a change the operator
    rejected (self-approval, an approval on someone else's behalf, a waiver longer than
    ``waivers.max_days``: the control operating, with who asked and why it was refused;
    ``decision: deny``), or a deletion (``event: waiver-delete-requested``, who asked for it;
    ``decision: allow``)."""
    return {
        "source": SOURCE_WAIVER,
        "actor": str(user.get("username") or "unknown"),
        "subject": subject,
        "pack_digest": pack_digest,
        "results": [],
        "decision": "deny" if event == "waiver-rejected" else "allow",
        "context": {"event": event, "operation": operation, "reason": reason,
                    "user": dict(user), "cluster": cluster, "request_uid": request_uid, "dry_run": dry_run,
                    "waiver": dict(waiver or {}), "instance": instance_id()},
    }


def skipped_record(counts: Mapping[tuple[str, str, bool], int], since: str, until: str, cluster: str,
                   pack_digest: str) -> dict[str, Any]:
    """The ledger entry counting the admission requests this replica skipped in ``[since, until)``
    (excluded namespaces and users, trusted controllers, subresources …), per namespace, reason and
    dry-run flag, without any payload: the population of requests is complete, the skipped ones
    are counted rather than recorded one by one. ``decision`` is null: nothing was decided."""
    rows = [{"namespace": ns, "reason": reason, "dry_run": dry, "count": n}
            for (ns, reason, dry), n in sorted(counts.items())]
    return {
        "source": SOURCE_ADMISSION,
        "actor": f"soc2infra-operator/{instance_id()}",
        "subject": f"skipped-requests:{cluster}" if cluster else "skipped-requests",
        "pack_digest": pack_digest,
        "results": [],
        "decision": None,
        "context": {"event": "skipped-requests", "since": since, "until": until, "cluster": cluster,
                    "instance": instance_id(), "total": sum(counts.values()), "skipped": rows},
    }


class Committer(Protocol):
    """What the operator needs from the ledger's group committer."""

    async def append_async(self, entry: dict[str, Any]) -> Any: ...  # noqa: D102

    def append_sync(self, entry: dict[str, Any]) -> Any: ...  # noqa: D102


class EvidenceWriter:
    """Commits records durably, with a deadline; ``None`` ledger URL means evidence is off."""

    def __init__(self, committer: Committer | None, timeout: float, closer: Any = None,
                 ledger: Any = None) -> None:
        self._committer = committer
        self._timeout = timeout
        self._closer = closer
        self._ledger = ledger  # soc2infra.evidence.Ledger, for the few reads the operator makes

    def recorded_waiver_versions(self) -> set[tuple[str, str]]:
        """(object uid, resourceVersion) of every waiver version the ledger has a record of.

        Read once when this replica becomes the audit leader (rare), by the ledger's source column
        so only waiver records are parsed."""
        import json

        found: set[tuple[str, str]] = set()
        if self._ledger is None:
            return found
        for row in self._ledger.iter_rows():
            if row.source != SOURCE_WAIVER:
                continue
            context = json.loads(row.body).get("context") or {}
            if context.get("object_uid"):
                found.add((str(context["object_uid"]), str(context.get("resource_version") or "")))
        return found

    @property
    def enabled(self) -> bool:
        """Whether records are written at all."""
        return self._committer is not None

    @classmethod
    def open(cls, url: str | None, timeout: float, signing_key: str | None = None) -> EvidenceWriter:
        """Open the ledger at *url* with a group committer (or a disabled writer for None)."""
        if not url:
            return cls(None, timeout)
        from soc2infra.evidence import GroupCommitter, open_ledger

        ledger = open_ledger(url, Path(signing_key) if signing_key else None)
        committer = GroupCommitter(ledger)
        # Closing order matters: the committer flushes its queue into the ledger first.
        return cls(committer, timeout, closer=(committer, ledger), ledger=ledger)

    async def commit(self, entry: dict[str, Any]) -> Any:
        """Append *entry* and wait until it is durable; raises :class:`EvidenceError`."""
        if self._committer is None:
            return None
        try:
            # Awaited in this task under a deadline (wait_for made a task per record).
            async with asyncio.timeout(self._timeout):
                return await self._committer.append_async(entry)
        except TimeoutError:
            raise EvidenceError(f"the ledger did not commit within {self._timeout:g}s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any ledger failure is reported the same way
            raise EvidenceError(f"the ledger rejected the record: {exc}") from exc

    def commit_sync(self, entry: dict[str, Any]) -> Any:
        """Blocking variant for threads (the audit loop)."""
        if self._committer is None:
            return None
        try:
            return self._committer.append_sync(entry)
        except Exception as exc:  # noqa: BLE001
            raise EvidenceError(f"the ledger rejected the record: {exc}") from exc

    def close(self) -> None:
        """Flush and close the committer and the ledger."""
        for thing in self._closer or ():
            close = getattr(thing, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing at shutdown must not mask the exit
                    logger.exception("closing the evidence ledger failed")
