"""The waiver approval rule (approval.py) as pure functions, plus the waiver store's view of it and
the provenance (images, GitOps keys) that admission records carry. Plain dicts, no cluster; the
same rule is exercised end to end against the real API server in tests/e2e/test_waiver_approval.py."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from soc2infra_operator import approval, provenance
from soc2infra_operator.approval import APPROVED_BY, CREATED_BY, REQUESTED_BY, identity
from soc2infra_operator.waivers import waiver_from_object

TODAY = date(2026, 6, 1)
ALICE = identity("alice@example.com", "u-alice", ["dev"])
BOB = identity("bob@example.com", "u-bob", ["security"])


def waiver(approved_by: str | None = None, expires: str = "2026-06-30", **annotations: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"rule": "SOC2-K8S-POD-001", "reason": "vendor image", "owner": "payments",
                            "ticket": "SEC-1", "expires": expires}
    if approved_by is not None:
        spec["approvedBy"] = approved_by
    meta: dict[str, Any] = {"name": "w", "namespace": "payments", "uid": "uid-1", "resourceVersion": "7",
                            "generation": 2}
    if annotations:
        meta["annotations"] = {k.replace("_", "-"): v for k, v in annotations.items()}
    return {"apiVersion": "soc2infra.io/v1alpha1", "kind": "SOC2Waiver", "metadata": meta, "spec": spec}


def stamped(obj: dict[str, Any], review: approval.Review) -> dict[str, Any]:
    """*obj* as the mutating webhook leaves it."""
    out = copy.deepcopy(obj)
    annotations = out["metadata"].setdefault("annotations", {})
    for key, value in approval.stamp_patch(obj, review.stamps).items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return out


def create(obj: dict[str, Any], who: approval.Identity, **kw: Any) -> tuple[approval.Review, dict[str, Any]]:
    r = approval.review("CREATE", obj, None, who, today=TODAY, **kw)
    return r, stamped(obj, r)


def update(new: dict[str, Any], old: dict[str, Any], who: approval.Identity,
           **kw: Any) -> tuple[approval.Review, dict[str, Any]]:
    carried = copy.deepcopy(new)
    carried["metadata"]["annotations"] = dict(old["metadata"].get("annotations", {}))  # the API keeps them
    r = approval.review("UPDATE", carried, old, who, today=TODAY, **kw)
    return r, stamped(carried, r)


def approve(obj: dict[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["approvedBy"] = name
    return out


def test_creator_and_author_come_from_the_request_not_the_object():
    r, obj = create(waiver(), ALICE)
    assert r.problem is None and r.creator == ALICE and r.approver is None
    annotations = obj["metadata"]["annotations"]
    assert approval.decode(annotations[CREATED_BY]) == ALICE == approval.decode(annotations[REQUESTED_BY])
    assert APPROVED_BY not in annotations
    assert approval.forged(obj, r.stamps) is None


def test_independent_approval_is_accepted_and_stamped_with_both_identities():
    _r, created = create(waiver(), ALICE)
    r, approved = update(approve(created, BOB["username"]), created, BOB, require_independent=True)
    assert r.problem is None and r.approval_written
    assert r.creator == ALICE and r.approver == BOB
    w = waiver_from_object(approved, require_independent=True)
    assert w.problem is None and w.approval == "independent"
    assert w.created_by == ALICE and w.approver == BOB and w.approved_by == "bob@example.com"
    d = w.to_dict()
    assert d["createdBy"]["uid"] == "u-alice" and d["approver"]["groups"] == ["security"]
    assert (d["uid"], d["resourceVersion"], d["generation"]) == ("uid-1", "7", 2)


def test_self_approval_is_rejected_only_when_independence_is_required():
    _r, created = create(waiver(), ALICE)
    mine = approve(created, ALICE["username"])
    r, _ = update(mine, created, ALICE, require_independent=True)
    assert r.problem and r.problem.startswith("self-approval") and "alice@example.com" in r.problem
    r, selfish = update(mine, created, ALICE)
    assert r.problem is None
    assert waiver_from_object(selfish).approval == "self"
    assert waiver_from_object(selfish, require_independent=True).problem.startswith("self-approved")


def test_approving_at_creation_is_self_approval():
    r, _ = create(waiver(approved_by=ALICE["username"]), ALICE, require_independent=True)
    assert r.problem and "self-approval" in r.problem


def test_nobody_approves_on_someone_elses_behalf():
    _r, created = create(waiver(), ALICE)
    r, _ = update(approve(created, BOB["username"]), created, ALICE)
    assert r.problem and "names 'bob@example.com' but this request is from 'alice@example.com'" in r.problem
    r, _ = create(waiver(approved_by="bob@example.com"), ALICE)
    assert r.problem and "valid only when the approver sets it" in r.problem


def test_changing_approved_terms_needs_a_new_approval():
    _r, created = create(waiver(), ALICE)
    _r, approved = update(approve(created, BOB["username"]), created, BOB)
    longer = copy.deepcopy(approved)
    longer["spec"]["expires"] = "2026-12-31"
    r, _ = update(longer, approved, ALICE)
    assert r.problem and "changes the terms of a waiver approved by bob@example.com" in r.problem
    # Dropping the approval with the change is fine; the approval stamp goes with it.
    del longer["spec"]["approvedBy"]
    r, pending = update(longer, approved, ALICE)
    assert r.problem is None and r.approver is None and APPROVED_BY not in pending["metadata"]["annotations"]
    assert waiver_from_object(pending, require_independent=True).problem.startswith("awaiting approval")
    # The approver editing the terms themself is self-approval of the new terms.
    edited = copy.deepcopy(approved)
    edited["spec"]["reason"] = "changed by the approver"
    r, _ = update(edited, approved, BOB, require_independent=True)
    assert r.problem and "self-approval" in r.problem and "wrote the terms of" in r.problem


def test_label_changes_keep_the_approval():
    _r, created = create(waiver(), ALICE)
    _r, approved = update(approve(created, BOB["username"]), created, BOB)
    relabelled = copy.deepcopy(approved)
    relabelled["metadata"]["labels"] = {"team": "payments"}
    r, after = update(relabelled, approved, ALICE, require_independent=True)
    assert r.problem is None and r.approver == BOB and r.creator == ALICE
    assert approval.stamp_patch(after, r.stamps) == {}


def test_forged_or_stale_stamps_are_rejected():
    obj = waiver()
    obj["metadata"]["annotations"] = {CREATED_BY: approval.encode(BOB), REQUESTED_BY: approval.encode(BOB)}
    r = approval.review("CREATE", obj, None, ALICE, today=TODAY)
    assert approval.forged(obj, r.stamps) is not None  # claims bob created it; alice did
    # Without the stamps at all (mutating webhook missing), the validating webhook still refuses.
    bare = waiver()
    r = approval.review("CREATE", bare, None, ALICE, today=TODAY)
    assert "created-by" in (approval.forged(bare, r.stamps) or "")


def test_a_waiver_that_predates_the_webhook_is_adopted_by_its_next_writer():
    legacy = waiver()  # no stamps: created before soc2infra checked waivers
    r, touched = update(approve(legacy, BOB["username"]), legacy, BOB, require_independent=True)
    assert r.problem and "self-approval" in r.problem  # bob becomes its author by writing it
    r, touched = update(legacy, legacy, ALICE)
    assert r.problem is None and r.creator is None and r.stamps[REQUESTED_BY] == ALICE
    r, _ = update(approve(touched, BOB["username"]), touched, BOB, require_independent=True)
    assert r.problem is None


def test_unverified_approval_never_applies_when_independence_is_required():
    forged_by_hand = waiver(approved_by="bob@example.com")  # written while the webhook was away
    w = waiver_from_object(forged_by_hand, require_independent=True)
    assert w.approval == "unverified" and w.problem and "not verified" in w.problem
    assert waiver_from_object(forged_by_hand).problem is None  # without the setting: as before
    assert waiver_from_object(forged_by_hand).approved_for_entry is None  # but not shown as approved


def test_maximum_duration():
    r, _ = create(waiver(expires="2026-09-01"), ALICE, max_days=90)
    assert r.problem and "92 days away" in r.problem and "2026-08-30" in r.problem
    r, _ = create(waiver(expires="2026-08-30"), ALICE, max_days=90)
    assert r.problem is None
    r, _ = create(waiver(expires="2030-01-01"), ALICE)  # 0: no maximum
    assert r.problem is None


def test_images_and_digests_of_every_pod_bearing_kind():
    digest = "sha256:" + "b" * 64
    pod = {"containers": [{"name": "app", "image": f"registry.example.com/app:1.2@{digest}"},
                          {"name": "side", "image": "busybox:1.36"}],
           "initContainers": [{"name": "init", "image": "alpine"}]}
    deploy = {"kind": "Deployment", "spec": {"template": {"spec": pod}}}
    cron = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}}
    for obj in (deploy, cron, {"kind": "Pod", "spec": pod}):
        found = provenance.images(obj)
        assert [i["container"] for i in found] == ["init", "app", "side"]
        assert [i.get("digest") for i in found] == [None, digest, None]
    assert provenance.images({"kind": "ConfigMap", "data": {"image": "x"}}) == []
    assert provenance.images({"kind": "Pod", "spec": {"containers": "nonsense"}}) == []


def test_gitops_keys_are_kept_and_nothing_else():
    obj = {"metadata": {
        "labels": {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                   "team": "payments"},
        "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:payments/api",
                        "argocd.argoproj.io/sync-wave": "2", "helm.toolkit.fluxcd.io/revision": "7",
                        "kubectl.kubernetes.io/last-applied-configuration": "{...}"}}}
    assert provenance.gitops(obj) == {
        "kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
        "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:payments/api",
        "helm.toolkit.fluxcd.io/revision": "7"}
    assert provenance.gitops({"metadata": {"labels": "x"}}) == {}
