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

- a request that is denied anyway stays denied (denying is the safe answer);
- any other request is rejected when ``fail_closed`` (default: follows the webhook's
  ``failurePolicy``, so ``Fail`` means "no evidence, no admission"), or admitted with a warning.

Dry-run requests are checked like any other and recorded with ``context.dry_run: true`` (a
denied dry run in a CI gate is still a preventive control operating); nothing else happens for
them. Skipped requests (excluded namespaces and users) are not recorded: they are outside the
control's scope, which the settings document.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from soc2infra_operator.admission import Decision, RuleOutcome

logger = logging.getLogger(__name__)

SOURCE_ADMISSION = "admission"
SOURCE_AUDIT = "audit"
SOURCE_WAIVER = "waiver"


class EvidenceError(RuntimeError):
    """A record could not be committed (ledger unavailable, timeout)."""


def instance_id() -> str:
    """Which operator process wrote a record (pod name in a cluster)."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def _result(o: RuleOutcome, address: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_id": o.rule_id, "status": "waived" if o.waived else o.status, "severity": o.severity,
        "controls": list(o.controls), "address": address, "action": o.action,
    }
    if o.waiver is not None:
        out["waiver"] = {**o.waiver, "status": o.waiver_status}
    return out


RuleMeta = Mapping[str, tuple[str, tuple[str, ...]]]


def admission_record(decision: Decision, pack_digest: str,
                     pack_severities: RuleMeta | None = None) -> dict[str, Any]:
    """The ledger entry for one evaluated admission request.

    ``results`` holds every rule evaluated on the object: failures (``fail``/``unknown``, or
    ``waived`` with the waiver) and passes (``pass``; severity and controls from
    *pack_severities*, rule id → (severity, controls), when given) — the population an auditor
    samples. ``decision`` is the verdict: allow, warn, waived, deny or error.
    """
    results = [_result(o, decision.address) for o in decision.outcomes]
    meta = pack_severities or {}
    for rule_id in decision.passed:
        severity, controls = meta.get(rule_id, ("", ()))
        results.append({"rule_id": rule_id, "status": "pass", "severity": severity,
                        "controls": list(controls), "address": decision.address})
    context: dict[str, Any] = {
        "operation": decision.operation, "dry_run": decision.dry_run, "request_uid": decision.request_uid,
        "instance": instance_id(),
    }
    if decision.reason:
        context["reason"] = decision.reason
    if decision.notes:
        context["notes"] = list(decision.notes)
    return {
        "source": SOURCE_ADMISSION,
        "actor": dict(decision.actor),
        "subject": {"address": decision.address, "kind": decision.kind, "namespace": decision.namespace,
                    "name": decision.name},
        "pack_digest": pack_digest,
        "results": results,
        "decision": decision.verdict,
        "context": context,
    }


def audit_record(results: Sequence[Mapping[str, Any]], pack_digest: str, summary: Mapping[str, Any],
                 waivers: Iterable[Mapping[str, Any]] = (), cluster: str = "") -> dict[str, Any]:
    """The ledger entry for one background audit run (the state of the whole cluster)."""
    return {
        "source": SOURCE_AUDIT,
        "actor": {"username": "soc2infra-operator", "instance": instance_id()},
        "subject": {"cluster": cluster, "scope": "cluster"},
        "pack_digest": pack_digest,
        "results": [dict(r) for r in results],
        "decision": "snapshot",
        "context": {"summary": dict(summary), "waivers": list(waivers), "instance": instance_id()},
    }


def waiver_record(event: str, waiver: Mapping[str, Any], pack_digest: str, actor: str = "") -> dict[str, Any]:
    """The ledger entry for a SOC2Waiver created, changed or deleted (waivers are evidence too)."""
    return {
        "source": SOURCE_WAIVER,
        "actor": {"username": actor or "unknown", "instance": instance_id()},
        "subject": {"address": f"soc2infra.io/v1alpha1/SOC2Waiver/{waiver.get('namespace')}/"
                               f"{waiver.get('name')}",
                    "kind": "SOC2Waiver", "namespace": waiver.get("namespace"), "name": waiver.get("name")},
        "pack_digest": pack_digest,
        "results": [],
        "decision": event,
        "context": {"waiver": dict(waiver)},
    }


class Committer(Protocol):
    """What the operator needs from the ledger's group committer."""

    async def append_async(self, entry: dict[str, Any]) -> Any: ...  # noqa: D102

    def append_sync(self, entry: dict[str, Any]) -> Any: ...  # noqa: D102


class EvidenceWriter:
    """Commits records durably, with a deadline; ``None`` ledger URL means evidence is off."""

    def __init__(self, committer: Committer | None, timeout: float, closer: Any = None) -> None:
        self._committer = committer
        self._timeout = timeout
        self._closer = closer

    @property
    def enabled(self) -> bool:
        """Whether records are written at all."""
        return self._committer is not None

    @classmethod
    def open(cls, url: str | None, timeout: float) -> EvidenceWriter:
        """Open the ledger at *url* with a group committer (or a disabled writer for None)."""
        if not url:
            return cls(None, timeout)
        from soc2infra import evidence

        ledger = evidence.open_ledger(url)
        committer = evidence.GroupCommitter(ledger)
        return cls(committer, timeout, closer=(committer, ledger))

    async def commit(self, entry: dict[str, Any]) -> Any:
        """Append *entry* and wait until it is durable; raises :class:`EvidenceError`."""
        if self._committer is None:
            return None
        try:
            return await asyncio.wait_for(self._committer.append_async(_redacted(entry)), self._timeout)
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
            return self._committer.append_sync(_redacted(entry))
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


def _redacted(entry: dict[str, Any]) -> dict[str, Any]:
    # Records built here never carry object content, but the ledger's own redact() is the single
    # place that knows what a secret looks like: apply it as a second line of defence.
    try:
        from soc2infra.evidence import redact
    except ImportError:  # pragma: no cover - the evidence package is part of the distribution
        return entry
    return redact(entry)
