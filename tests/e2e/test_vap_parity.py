"""Parity of the exported ValidatingAdmissionPolicies with the engine, on the real API server.

Every Kubernetes rule example of the pack (pass and fail) and the project's own manifests are
sent as server-side dry-run creates to a kube-apiserver that has only the exported policies
installed (no webhook). Two passes, each with every policy installed at once:

1. every binding set to ``[Warn]`` and every policy to ``failurePolicy: Fail``: each failing rule
   shows up as one warning, so the set of rules the API server's CEL fails is compared with the
   set the engine fails, rule by rule; a CEL runtime error is a failure of the test;
2. the bindings the exporter writes (deny → Deny, warn → Warn, audit → Audit): the verdict
   (deny / warn / allow) is compared with the webhook's own decision function on the same object.

A policy the API server refuses to create (a CEL compile error) fails the test, and so does a
type-checking warning: kube-controller-manager's ValidatingAdmissionPolicy status controller runs
against the same API server and every policy's ``status.typeChecking`` is read.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.evaluate import evaluate
from soc2infra._core.engine.policy import PolicyPack
from soc2infra._core.pack import load_pack
from soc2infra._core.sources.kubernetes import object_to_resource
from soc2infra.export.k8s_schema import KINDS
from soc2infra.export.vap import export_objects, kubernetes_rules, plan_pack
from soc2infra.lab import BinariesMissing, ControlPlane
from soc2infra.lab.binaries import ensure_controller_manager
from soc2infra.lab.rest import Reply, RestClient
from soc2infra_operator.admission import AdmissionPolicy, ReviewRequest, decide
from soc2infra_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
# The project's own manifests (the Helm chart's templates need rendering and are left out).
MANIFESTS = sorted(p for d in ("plain", "overlay") for p in (ROOT / "examples" / "kubernetes" / d).glob("**/*.yaml"))
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_RULE_IN_WARNING = re.compile(r"ValidatingAdmissionPolicy '[^']+' with binding '[^']+': (SOC2-[A-Z0-9-]+) ")


@dataclass(frozen=True)
class Case:
    label: str
    obj: dict[str, Any]


def _compiled_pack() -> tuple[PolicyPack, set[str]]:
    """The pack with only the rules that have a CEL form enabled (what the policies enforce)."""
    pack = load_pack()
    compiled = {p.rule.id for p in plan_pack(pack) if p.cel}
    return pack.with_enabled(compiled), compiled


def _cases() -> list[Case]:
    pack = load_pack()
    out: list[Case] = []
    for rule in kubernetes_rules(pack):
        for ex in rule.examples:
            if ex.source != "kubernetes":
                continue
            for i, doc in enumerate(yaml.safe_load_all(ex.text)):
                if isinstance(doc, dict) and doc.get("kind") in KINDS:
                    out.append(Case(f"{rule.id} [{ex.name}] #{i}", doc))
    for path in MANIFESTS:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if isinstance(doc, dict) and doc.get("kind") in KINDS:
                out.append(Case(f"{path.relative_to(ROOT)} #{i}", doc))
    return out


def _namespaces(cases: list[Case]) -> set[str]:
    found = {"default"}
    for c in cases:
        meta = c.obj.get("metadata") or {}
        if KINDS[c.obj["kind"]].namespaced:
            found.add(meta.get("namespace") or "default")
    return found


def _apply(client: RestClient, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        plural = "validatingadmissionpolicies" if obj["kind"] == "ValidatingAdmissionPolicy" \
            else "validatingadmissionpolicybindings"
        reply = client.request("POST", f"{ADMISSION}/{plural}", obj)
        assert reply.status == 201, f"{obj['kind']} {obj['metadata']['name']} refused: {reply.message}"


def _delete_all(client: RestClient) -> None:
    for plural in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        reply = client.request("DELETE", f"{ADMISSION}/{plural}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsoc2infra")
        assert reply.status == 200, reply.message


def _wait_active(client: RestClient, cases: list[Case], expect_warning: bool) -> None:
    """Policies take effect once the API server's informer sees them: wait for a known failure."""
    probe = next(c for c in cases if "SOC2-K8S-POD-001 [privileged init container" in c.label)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = client.create(probe.obj, dry_run=True)
        if (reply.warnings if expect_warning else reply.status == 403):
            # every policy is created before the probe: once one is active, give the rest a moment
            time.sleep(1.5)
            return
        time.sleep(0.2)
    raise AssertionError("the exported policies never took effect")


@pytest.fixture(scope="module")
def vap_client(control_plane: ControlPlane) -> Iterator[RestClient]:
    client = RestClient(control_plane.server, control_plane.ssl_context())
    for ns in _namespaces(_cases()):
        reply = client.request("POST", "/api/v1/namespaces",
                               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        assert reply.status in (201, 409), reply.message
    yield client
    _delete_all(client)


@pytest.fixture(scope="module")
def status_controller(control_plane: ControlPlane, bin_dir: Path) -> Iterator[None]:
    """kube-controller-manager with only the ValidatingAdmissionPolicy status controller."""
    try:
        kcm = ensure_controller_manager(bin_dir, build=True)
    except BinariesMissing as err:
        pytest.skip(f"kube-controller-manager unavailable: {err}")  # a failure under CI=true (tests/conftest.py)
    log = (control_plane.logs_dir / "kube-controller-manager.log").open("w")
    proc = subprocess.Popen([str(kcm), f"--kubeconfig={control_plane.kubeconfig}", "--leader-elect=false",
                             "--controllers=validatingadmissionpolicy-status-controller", "--secure-port=0"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_every_policy_type_checks_against_the_schemas(vap_client: RestClient, status_controller: None) -> None:
    plans = [p for p in plan_pack(load_pack()) if p.cel]
    _delete_all(vap_client)
    _apply(vap_client, export_objects(plans))

    def checked() -> list[dict[str, Any]] | None:
        items = vap_client.request("GET", f"{ADMISSION}/validatingadmissionpolicies").body.get("items") or []
        done = [i for i in items if (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"]]
        return items if items and len(done) == len(items) else None

    deadline = time.monotonic() + 60
    items = None
    while items is None and time.monotonic() < deadline:
        items = checked()
        time.sleep(0.5)
    assert items is not None, "the status controller never type-checked the policies"
    assert len(items) == len(plans)
    warnings = {i["metadata"]["name"]: w for i in items
                if (w := ((i.get("status") or {}).get("typeChecking") or {}).get("expressionWarnings"))}
    assert warnings == {}, warnings
    assert all("typeChecking" in i["status"] for i in items)


def _send_all(client: RestClient, cases: list[Case]) -> list[Reply]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda c: client.create(c.obj, dry_run=True), cases))


def _settled(compare: Callable[[list[Reply]], list[str]], client: RestClient, cases: list[Case],
             timeout: float = 90.0) -> tuple[list[Reply], list[str]]:
    """Send every case until the API server agrees with the engine or *timeout* passes.

    The API server loads new policies through an informer, one by one and asynchronously: on a
    loaded machine the last of 40 may take seconds. A real difference persists and is returned."""
    deadline = time.monotonic() + timeout
    while True:
        replies = _send_all(client, cases)
        mismatches = compare(replies)
        if not mismatches or time.monotonic() > deadline:
            return replies, mismatches
        time.sleep(1.0)


def _is_vap_denial(reply: Reply) -> bool:
    return reply.status == 403 and "ValidatingAdmissionPolicy" in reply.message


def test_every_rule_fails_exactly_where_the_engine_fails(vap_client: RestClient) -> None:
    pack, compiled = _compiled_pack()
    plans = [p for p in plan_pack(load_pack()) if p.cel]
    objects = export_objects(plans, actions={p.rule.id: "warn" for p in plans})
    for obj in objects:  # surface CEL runtime errors instead of ignoring them
        if obj["kind"] == "ValidatingAdmissionPolicy":
            obj["spec"]["failurePolicy"] = "Fail"
    _delete_all(vap_client)
    _apply(vap_client, objects)
    cases = _cases()
    _wait_active(vap_client, cases, expect_warning=True)
    excluded = set(OperatorSettings().scope.all_excluded_namespaces)
    compared, refused = 0, []

    def compare(replies: list[Reply]) -> list[str]:
        nonlocal compared, refused
        compared, refused, mismatches = 0, [], []
        for case, reply in zip(cases, replies, strict=True):
            errors = [w for w in reply.warnings if "resulted in error" in w or "evaluation" in w.lower()]
            assert not errors, f"{case.label}: CEL error on the API server: {errors}"
            if reply.status not in (200, 201, 409):
                refused.append(f"{case.label}: {reply.status} {reply.message[:160]}")
                continue
            got = {m.group(1) for w in reply.warnings if (m := _RULE_IN_WARNING.search(w))}
            res = object_to_resource(case.obj, file="parity")
            if res.namespace in excluded and res.attributes.get("_namespace") is not None or \
                    (case.obj["kind"] == "Namespace" and res.name in excluded):
                if got:
                    mismatches.append(f"{case.label}: policies ran in an excluded namespace: {got}")
                continue
            findings, _ = evaluate([res], pack, ResourceIndex([res]), only=[res])
            want = {f.rule_id for f in findings if f.status == "fail" and f.rule_id in compiled}
            compared += 1
            if got != want:
                mismatches.append(f"{case.label}: API server {sorted(got)} engine {sorted(want)}")
        return mismatches

    _replies, mismatches = _settled(compare, vap_client, cases)
    assert not mismatches, "\n".join(mismatches)
    # Objects the API server itself refuses (invalid examples) say nothing about parity; they
    # must stay a small minority or the test would prove little.
    print(f"parity: {compared} objects compared rule by rule, {len(refused)} refused by API validation")
    print("\n".join(refused))
    assert compared >= 100 and len(refused) <= compared // 5, (compared, refused)


def test_verdicts_match_the_webhook_with_the_exported_actions(vap_client: RestClient) -> None:
    pack, _compiled = _compiled_pack()
    settings = OperatorSettings()
    policy = AdmissionPolicy.build(pack, settings)
    plans = [p for p in plan_pack(load_pack()) if p.cel]
    _delete_all(vap_client)
    _apply(vap_client, export_objects(plans, actions=policy.actions))
    cases = _cases()
    _wait_active(vap_client, cases, expect_warning=False)
    counts = {"deny": 0, "warn": 0, "allow": 0}

    def compare(replies: list[Reply]) -> list[str]:
        mismatches = []
        counts.update(deny=0, warn=0, allow=0)
        for case, reply in zip(cases, replies, strict=True):
            if reply.status not in (200, 201, 409) and not _is_vap_denial(reply):
                continue  # refused by the API server's own validation (counted in the other test)
            got = "deny" if _is_vap_denial(reply) else "warn" if reply.warnings else "allow"
            ns = (case.obj.get("metadata") or {}).get("namespace") or "default"
            req = ReviewRequest(operation="CREATE", obj=case.obj, namespace=None if case.obj["kind"] in
                                ("Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass") else ns,
                                dry_run=True, username="soc2infra-admin")
            decision = decide(req, policy)
            want = {"deny": "deny", "warn": "warn"}.get(decision.verdict, "allow")
            counts[got] += 1
            if got != want:
                mismatches.append(f"{case.label}: API server {got}, webhook {want} ({reply.message[:200]})")
        return mismatches

    _replies, mismatches = _settled(compare, vap_client, cases)
    assert not mismatches, "\n".join(mismatches)
    assert counts["deny"] >= 20 and counts["warn"] >= 5 and counts["allow"] >= 10, counts
