"""Waiver approval, waiver duration, skipped-request counts and admission provenance against a real
kube-apiserver (issue 20): the operator runs with ``waivers.require_independent_approval`` and
``waivers.max_days``; users are distinct identities through the API server's impersonation (the
admission request's userInfo is then that user's name, uid and groups, exactly as for a user who
authenticated with their own credentials).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soc2infra.lab import ControlPlane
from soc2infra_operator import approval

from .test_admission import (
    Kubectl,
    RunningOperator,
    _name,
    delete_configuration,
    deployment,
    manifest,
    soc2waiver,
    start_operator,
    wait_for,
)

ALICE = ("alice@example.com", "u-alice", "payments-dev")  # writes the waiver
BOB = ("bob@example.com", "u-bob", "security")  # approves it
CAROL = "carol@example.com"  # an excluded user: her requests are skipped, and counted
MAX_DAYS = 90
CONFIGURATION = "approval.soc2infra.io"


def as_user(user: tuple[str, str, str]) -> list[str]:
    """kubectl flags acting as *user* (system:masters for the RBAC; the webhook sees the rest)."""
    return ["--as", user[0], "--as-uid", user[1], "--as-group", "system:masters", "--as-group", user[2]]


@pytest.fixture(scope="module")
def governed(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RunningOperator]:
    workdir = tmp_path_factory.mktemp("approval-operator")
    running = start_operator(control_plane, workdir, kubectl,
                             "--set", "waivers.require_independent_approval=true",
                             "--set", f"waivers.max_days={MAX_DAYS}",
                             "--set", "audit.initial_delay_seconds=0.2",
                             "--set", "evidence.skipped_interval_seconds=1",
                             "--set", f"scope.excluded_usernames=system:apiserver,{CAROL}",
                             configuration=CONFIGURATION, audit_interval=2)
    try:
        # The audit leader records waiver changes: wait until this operator leads.
        wait_for(lambda: any(r["source"] == "audit" for r in running.records()), timeout=60,
                 what="the operator's first audit snapshot")
        yield running
    finally:
        code = running.process.stop()
        delete_configuration(kubectl, CONFIGURATION)
        assert code == 0, running.process.log_tail()


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = _name("e2e-approval")
    kubectl("create", "namespace", name)
    return name


def get(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def waiver_records(running: RunningOperator, ns: str, name: str) -> list[dict[str, Any]]:
    return [r for r in running.records() if r["source"] == "waiver"
            and r["subject"] == f"soc2infra.io/v1alpha1/SOC2Waiver/{ns}/{name}"]


def patch_approval(kubectl: Kubectl, user: tuple[str, str, str], ns: str, name: str, approver: str) -> Any:
    return kubectl(*as_user(user), "-n", ns, "patch", "soc2waiver", name, "--type", "merge",
                   "-p", json.dumps({"spec": {"approvedBy": approver}}), check=False)


def test_a_waiver_applies_only_once_another_user_approves_it(governed, kubectl, ns):
    expires = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    w = soc2waiver("legacy-root", ns, "SOC2-K8S-POD-00?", expires, selector={"kind": "Deployment", "name": "legacy"})
    created = kubectl(*as_user(ALICE), "apply", "-f", "-", input=manifest(w), check=False)
    assert created.returncode == 0, created.stderr
    stamps = get(kubectl, "-n", ns, "soc2waiver", "legacy-root")["metadata"]["annotations"]
    creator = approval.decode(stamps[approval.CREATED_BY])
    assert creator is not None and (creator["username"], creator["uid"]) == ALICE[:2]
    assert ALICE[2] in creator["groups"] and approval.APPROVED_BY not in stamps
    wait_for(lambda: waiver_records(governed, ns, "legacy-root"), timeout=30, what="the waiver's creation record")

    # Pending: the operator knows the waiver (its record exists) and still denies the workload.
    legacy = deployment("legacy", ns, privileged=True)
    denied = kubectl("apply", "-f", "-", input=manifest(legacy), check=False)
    assert denied.returncode != 0 and "SOC2-K8S-POD-001" in denied.stderr

    # Alice approving her own waiver, or approving it in Bob's name: both rejected, and recorded.
    selfish = patch_approval(kubectl, ALICE, ns, "legacy-root", ALICE[0])
    assert selfish.returncode != 0 and "self-approval: alice@example.com created this waiver" in selfish.stderr
    forged = patch_approval(kubectl, ALICE, ns, "legacy-root", BOB[0])
    assert forged.returncode != 0 and "valid only when the approver sets it" in forged.stderr
    # Nor can anyone write the stamps by hand.
    hand = kubectl(*as_user(ALICE), "-n", ns, "annotate", "soc2waiver", "legacy-root", "--overwrite",
                   f"{approval.APPROVED_BY}={approval.encode(approval.identity(*BOB[:2]))}", check=False)
    assert hand.returncode == 0  # the mutating webhook restored the stamp ...
    assert approval.APPROVED_BY not in get(kubectl, "-n", ns, "soc2waiver", "legacy-root")["metadata"]["annotations"]
    rejected = [r for r in waiver_records(governed, ns, "legacy-root") if r["decision"] == "deny"]
    assert len(rejected) == 2 and {r["actor"] for r in rejected} == {ALICE[0]}
    assert all(r["context"]["user"]["uid"] == ALICE[1] for r in rejected)
    assert any("self-approval" in r["context"]["reason"] for r in rejected)

    # Bob approves: accepted, stamped with his identity, recorded with both.
    approved = patch_approval(kubectl, BOB, ns, "legacy-root", BOB[0])
    assert approved.returncode == 0, approved.stderr

    def approval_record() -> dict[str, Any] | None:
        return next((r for r in waiver_records(governed, ns, "legacy-root")
                     if (r["context"].get("approver") or {}).get("username") == BOB[0]), None)

    rec = wait_for(approval_record, timeout=30, what="the approval's record")
    ctx = rec["context"]
    assert rec["actor"] == ALICE[0]  # who wrote the terms, from userInfo (not the apply tool)
    assert (ctx["creator"]["username"], ctx["creator"]["uid"]) == ALICE[:2]
    assert (ctx["approver"]["username"], ctx["approver"]["uid"]) == BOB[:2] and BOB[2] in ctx["approver"]["groups"]
    assert ctx["approval"] == "independent" and ctx["approved_by"] == BOB[0]
    assert (ctx["ticket"], ctx["expires"]) == ("SEC-1234", expires)
    stored = get(kubectl, "-n", ns, "soc2waiver", "legacy-root")["metadata"]
    assert (ctx["object_uid"], ctx["resource_version"]) == (stored["uid"], stored["resourceVersion"])

    # Now the waiver applies: the workload is admitted, its record names the approver.
    wait_for(lambda: kubectl("apply", "-f", "-", input=manifest(legacy), check=False).returncode == 0,
             timeout=30, what="the approved waiver to admit the workload")
    admitted = [r for r in governed.records(f"apps/v1/Deployment/{ns}/legacy") if r["decision"] == "allow"]
    waived = [r for r in admitted[-1]["results"] if r["status"] == "waived"]
    assert waived and all(r["waiver"]["approved_by"] == BOB[0] for r in waived)

    # Deleting it: recorded with who deleted it (the watch's deletion record cannot know).
    assert kubectl(*as_user(BOB), "-n", ns, "delete", "soc2waiver", "legacy-root").returncode == 0
    events = lambda: {r["context"]["event"]: r for r in waiver_records(governed, ns, "legacy-root")}  # noqa: E731
    wait_for(lambda: "waiver-deleted" in events(), timeout=30, what="the deletion's record")
    asked = events()["waiver-delete-requested"]
    assert asked["actor"] == BOB[0] and asked["context"]["user"]["uid"] == BOB[1] and asked["decision"] == "allow"
    assert events()["waiver-deleted"]["actor"] == "unknown"


def test_a_waiver_longer_than_the_maximum_is_rejected(governed, kubectl, ns):
    too_far = (datetime.now(UTC).date() + timedelta(days=MAX_DAYS + 30)).isoformat()
    w = soc2waiver("forever", ns, "SOC2-K8S-POD-001", too_far)
    result = kubectl(*as_user(ALICE), "apply", "-f", "-", input=manifest(w), check=False)
    assert result.returncode != 0
    assert f"is {MAX_DAYS + 30} days away; waivers.max_days allows at most {MAX_DAYS}" in result.stderr
    assert kubectl("-n", ns, "get", "soc2waiver", "forever", check=False).returncode != 0


def test_admission_records_carry_identity_images_and_gitops_revision(governed, kubectl, control_plane, ns):
    digest = "sha256:" + "c" * 64
    obj = deployment("shop", ns, image=f"registry.example.com/shop:2.1@{digest}",
                     labels={"kustomize.toolkit.fluxcd.io/name": "apps",
                             "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
                     annotations={"argocd.argoproj.io/tracking-id": f"shop:apps/Deployment:{ns}/shop"})
    sidecar = {**obj["spec"]["template"]["spec"]["containers"][0], "name": "proxy", "image": "envoyproxy/envoy:v1.30"}
    obj["spec"]["template"]["spec"]["containers"].append(sidecar)
    assert kubectl(*as_user(ALICE), "apply", "--dry-run=server", "-f", "-", input=manifest(obj)).returncode == 0
    assert kubectl(*as_user(ALICE), "apply", "-f", "-", input=manifest(obj)).returncode == 0
    before = get(kubectl, "-n", ns, "deployment", "shop")["metadata"]
    obj["spec"]["replicas"] = 3
    assert kubectl(*as_user(ALICE), "apply", "-f", "-", input=manifest(obj)).returncode == 0
    dry, create, update = governed.records(f"apps/v1/Deployment/{ns}/shop")
    assert (dry["context"]["dry_run"], create["context"]["dry_run"]) == (True, False)
    assert (create["context"]["operation"], update["context"]["operation"]) == ("CREATE", "UPDATE")
    for rec in (dry, create, update):
        ctx = rec["context"]
        assert ctx["images"] == [{"container": "app", "image": f"registry.example.com/shop:2.1@{digest}",
                                  "digest": digest},
                                 {"container": "proxy", "image": "envoyproxy/envoy:v1.30"}]
        assert ctx["image_digests"] == [digest]
        assert ctx["gitops"] == {"kustomize.toolkit.fluxcd.io/name": "apps",
                                 "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                                 "argocd.argoproj.io/tracking-id": f"shop:apps/Deployment:{ns}/shop"}
        user = ctx["user"]
        assert (user["username"], user["uid"]) == ALICE[:2] and rec["actor"] == ALICE[0]
        assert {ALICE[2], "system:authenticated"} <= set(user["groups"])
        assert ctx["request_uid"] and ctx["cluster"]
    assert len({r["context"]["request_uid"] for r in (dry, create, update)}) == 3
    assert create["context"]["object_uid"] == update["context"]["object_uid"] == before["uid"]
    assert update["context"]["resource_version"] == before["resourceVersion"]  # the version it replaced
    system = get(kubectl, "namespace", "kube-system")["metadata"]["uid"]
    assert create["context"]["cluster"] == system


def test_skipped_requests_are_counted_per_namespace(governed, kubectl, ns):
    for i in range(3):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"skipped-{i}", "namespace": ns},
              "data": {"k": "v"}}
        result = kubectl("--as", CAROL, "--as-group", "system:masters", "apply", "-f", "-", input=manifest(cm))
        assert result.returncode == 0
    reason = f"user {CAROL} is excluded"

    def counted() -> int:
        return sum(row["count"] for r in governed.records() if r["context"].get("event") == "skipped-requests"
                   for row in r["context"]["skipped"] if (row["namespace"], row["reason"]) == (ns, reason))

    assert wait_for(lambda: counted() >= 3, timeout=30, what="three skipped requests counted") and counted() == 3
    rec = next(r for r in governed.records() if r["context"].get("event") == "skipped-requests")
    assert rec["source"] == "admission" and rec["decision"] is None and rec["results"] == []
    assert rec["context"]["since"] < rec["context"]["until"] and rec["context"]["total"] >= 1
    # Only counts: nothing of the objects (no payload) and no per-request records.
    assert not any(r["subject"].endswith(f"/{ns}/skipped-0") for r in governed.records())
