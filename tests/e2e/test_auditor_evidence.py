"""What an auditor relies on (issue 20), proven on ledgers built by real admission.

One scene for the module: a real kube-apiserver + etcd (the lab), and four operator processes
(``python -m soc2infra_operator``, as out of cluster) standing for two clusters, ``lab-a`` and
``lab-b`` (``evidence.cluster_id``): each cluster has one operator writing a SQLite ledger and one
writing a real PostgreSQL ledger, so the two clusters share one ledger per backend, exactly as two
clusters' operators pointed at one database do. Each cluster owns its namespace (the other's is
excluded, so the API server sends each request to one cluster's webhooks). Through kubectl: allowed,
denied, dry-run and waived requests, an update, audit snapshots, and a SOC2Waiver. Every record is
signed (``evidence.signing_key``); ``evidence anchor`` checkpoints the head into a git repository
in the middle of the traffic.

Then every assertion goes through ``soc2infra evidence …`` as a user runs it (a subprocess), for
both backends: population filters, traceable records, a tampered tail, a rewritten chain with and
without anchor and signatures (what can and cannot be detected), the package and its manifest, and
reproducible samples. Tampering is done with direct SQL on a copy of the ledger, as someone with
write access to the database would.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soc2infra.evidence import open_ledger
from soc2infra.evidence.records import canonical_json, load_signer, record_hash
from soc2infra.lab import ControlPlane, free_port, operator_argv, port_serves_tls, write_webhook_pki
from soc2infra_operator.lab import OperatorProcess

from .test_admission import deployment, manifest, soc2waiver
from .test_ha import postgres_dsn  # noqa: F401 - a fixture: a throwaway PostgreSQL for this module

pytestmark = pytest.mark.timeout(300)

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
SOC2INFRA = str(Path(sys.executable).parent / "soc2infra")
CLUSTERS = ("lab-a", "lab-b")
BACKENDS = ("sqlite", "postgres")
PLANTED = "hunter2-planted-in-env"  # a literal credential in a manifest: denied, and never recorded
# Distinct identities through the API server's impersonation (the admission request's userInfo is
# then theirs, as for users with their own credentials); system:masters only for RBAC.
ALICE = ("alice@example.com", "u-alice", "payments-dev")  # asks for the waiver
BOB = ("bob@example.com", "u-bob", "security")  # approves it
BOT = "deploy-bot@example.com"  # an excluded user: requests skipped, and counted
MAX_WAIVER_DAYS = 90


def as_user(user: tuple[str, str, str]) -> list[str]:
    """kubectl flags acting as *user*."""
    return ["--as", user[0], "--as-uid", user[1], "--as-group", "system:masters", "--as-group", user[2]]


# --------------------------------------------------------------------------- ledgers as stored

@dataclass
class Store:
    """A ledger and direct SQL on its database (an attacker's write access: no triggers)."""

    backend: str
    url: str

    def records(self) -> list[dict[str, Any]]:
        ledger = open_ledger(self.url, create=False)
        try:
            return list(ledger.iter())
        finally:
            ledger.close()

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) on a copy made by :meth:`copy` (no triggers)."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.url, isolation_level=None)
            try:
                return conn.execute(statement, tuple(params)).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement.replace("?", "%s"), tuple(params))
            return cur.fetchall() if cur.description else []

    def copy(self, workdir: Path) -> Store:
        """A copy of the ledger to tamper with, without the append-only triggers."""
        if self.backend == "sqlite":
            target = workdir / f"copy-{uuid.uuid4().hex[:8]}.db"
            source = sqlite3.connect(self.url)
            try:
                dest = sqlite3.connect(target)
                source.backup(dest)
                dest.close()
            finally:
                source.close()
            copied = Store("sqlite", str(target))
            for (name,) in copied.sql("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
                copied.sql(f"DROP TRIGGER {name}")
            return copied
        import psycopg

        dsn, _, _ = self.url.partition("?")
        source_schema = self.url.rpartition("%3D")[2]
        schema = "tamper_" + uuid.uuid4().hex[:10]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
            for table in ("evidence_records", "evidence_head", "evidence_meta"):
                conn.execute(f"CREATE TABLE {schema}.{table} (LIKE {source_schema}.{table} INCLUDING ALL)")
                conn.execute(f"INSERT INTO {schema}.{table} SELECT * FROM {source_schema}.{table}")
        return Store("postgres", f"{dsn}?options=-csearch_path%3D{schema}")

    # -- what a forger does

    def body(self, seq: int) -> dict[str, Any]:
        (text,) = self.sql("SELECT body FROM evidence_records WHERE seq = ?", (seq,))[0]
        record: dict[str, Any] = json.loads(text)
        return record

    def put(self, record: dict[str, Any]) -> None:
        self.sql("UPDATE evidence_records SET body = ?, hash = ?, prev_hash = ? WHERE seq = ?",
                 (canonical_json(record), record["hash"], record["prev_hash"], record["seq"]))

    def head_seq(self) -> int:
        return int(self.sql("SELECT seq FROM evidence_head WHERE id = 1")[0][0])

    def truncate_after(self, seq: int) -> None:
        """Delete every record after *seq* and move the head back to it (a careful forger)."""
        (digest, stamp) = self.sql("SELECT hash, time FROM evidence_records WHERE seq = ?", (seq,))[0]
        self.sql("DELETE FROM evidence_records WHERE seq > ?", (seq,))
        self.sql("UPDATE evidence_head SET seq = ?, hash = ?, time = ? WHERE id = 1", (seq, digest, stamp))

    def rewrite_from(self, first: int, change: Callable[[dict[str, Any]], None],
                     resign: Path | None = None) -> None:
        """Apply *change* to record *first*, then re-hash (and with *resign*, re-sign) every record
        after it so the chain links again, and move the head: a consistent forgery."""
        signer = load_signer(resign) if resign else None
        prev: str | None = None
        for seq in range(first, self.head_seq() + 1):
            record = self.body(seq)
            if seq == first:
                change(record)
            if prev is not None:
                record["prev_hash"] = prev
            record.pop("signature", None)
            record["hash"] = record_hash(record)
            if signer is not None:
                record["signature"] = signer.sign(record["hash"])
            self.put(record)
            prev = record["hash"]
        self.sql("UPDATE evidence_head SET hash = ? WHERE id = 1", (prev,))


# --------------------------------------------------------------------------- the scene

@dataclass
class Scene:
    stores: dict[str, Store]
    workdir: Path
    private_key: Path
    public_key: Path
    anchors: Path  # git repository with one anchors file per backend (--name)
    anchored: dict[str, str]  # backend -> SEQ:HASH printed by `evidence anchor`
    namespaces: dict[str, str]  # cluster -> namespace
    day: str  # the UTC day of the traffic (the period)
    admin: str = ""
    uids: dict[str, str] = field(default_factory=dict)  # deployment name -> stored uid
    rv_before_update: str = ""
    pr_head: str = ""  # the commit a CI scan of a pull request recorded
    pr_base: str = ""
    repo: Path | None = None  # the infrastructure repository whose main the pull request merged into
    self_approval: str = ""  # what kubectl said when Alice approved her own waiver
    too_long: str = ""  # ... and when she asked for one longer than the maximum
    s3: str = ""  # s3://bucket/prefix: the Object Lock anchors (MinIO)
    s3_env: dict[str, str] = field(default_factory=dict)  # AWS_* for the CLI


def _git(repo: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo), "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def _ci_scan(scene: Scene) -> None:
    """A pull request's CI scan (GitHub Actions environment, a real git work tree with an uncommitted
    change) recorded in both ledgers, then the history of ``main``: the pull request merged with a
    merge commit, and a hotfix pushed straight to main that no pipeline scanned."""
    repo = scene.workdir / "infra"
    (repo / "k8s").mkdir(parents=True)
    app = repo / "k8s" / "app.yaml"
    app.write_text(manifest(deployment("api", "payments")))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "payments api")
    base = _git(repo, "rev-parse", "HEAD").strip()
    _git(repo, "checkout", "-q", "-b", "feature/pin-images")
    app.write_text(manifest(deployment("api", "payments", privileged=True)))
    _git(repo, "commit", "-q", "-am", "api: privileged for the vendor agent")
    scene.pr_head = _git(repo, "rev-parse", "HEAD").strip()
    app.write_text(manifest(deployment("api", "payments", privileged=True, image="nginx:latest")))  # dirty
    event = scene.workdir / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 17, "head": {"sha": scene.pr_head},
                                                  "base": {"sha": base}}}))
    env = {"PATH": f"{Path(SOC2INFRA).parent}:/usr/bin:/bin", "HOME": str(scene.workdir),
           "SOC2INFRA_CACHE": str(scene.workdir / "cache"), "CI": "true", "GITHUB_ACTIONS": "true",
           "GITHUB_REPOSITORY": "acme/infra", "GITHUB_RUN_ID": "4242", "GITHUB_ACTOR": "dev-alice",
           "GITHUB_EVENT_NAME": "pull_request", "GITHUB_HEAD_REF": "feature/pin-images",
           "GITHUB_BASE_REF": "main", "GITHUB_SHA": "c" * 40, "GITHUB_EVENT_PATH": str(event)}
    for store in scene.stores.values():
        _run("scan", "k8s", "--evidence", store.url, "--evidence-key", str(scene.private_key), "--format", "json",
             cwd=repo, env=env, check=1)
    scene.pr_base = base
    _git(repo, "checkout", "-q", "--", ".")
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "feature/pin-images", "-m", "Merge pull request #17 from acme/pin-images")
    (repo / "k8s" / "hotfix.yaml").write_text(manifest(deployment("worker", "payments")))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "hotfix: worker")
    scene.repo = repo


def _run(*args: str, check: int | None = 0, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``soc2infra ARGS`` as a user types it; *check*: the exit code expected (None: any)."""
    done = subprocess.run([SOC2INFRA, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False,
                          env=env)
    if check is not None:
        assert done.returncode == check, (f"soc2infra {' '.join(args)} exited {done.returncode}, not {check}\n"
                                          f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
    return done


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _skipped(records: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The skipped-request counts recorded for *namespace* (one row per reason and dry-run flag)."""
    return [row for r in records if r["context"].get("event") == "skipped-requests"
            for row in r["context"]["skipped"] if row["namespace"] == namespace]


def _subjects(store: Store, cluster: str, source: str = "admission") -> set[str]:
    return {r["subject"] for r in store.records()
            if r["source"] == source and r["context"].get("cluster") == cluster}


@pytest.fixture(scope="module")
def scene(control_plane: ControlPlane, kubectl: Kubectl, postgres_dsn: str,  # noqa: F811
          minio: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    workdir = tmp_path_factory.mktemp("auditor")
    private_key, public_key = workdir / "evidence.key", workdir / "evidence.pub"
    _run("evidence", "keygen", str(private_key), str(public_key))
    anchors = workdir / "anchors"
    anchors.mkdir()
    subprocess.run(["git", "init", "-q", str(anchors)], check=True)
    stores = {"sqlite": Store("sqlite", str(workdir / "evidence.db")), "postgres": Store("postgres", postgres_dsn)}
    suffix = uuid.uuid4().hex[:6]
    namespaces = {cluster: f"auditor-{cluster}-{suffix}" for cluster in CLUSTERS}
    for ns in namespaces.values():
        kubectl("create", "namespace", ns)
    scene = Scene(stores, workdir, private_key, public_key, anchors, {}, namespaces,
                  datetime.now(UTC).date().isoformat())
    bucket = "anchors-" + suffix
    minio.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    scene.s3, scene.s3_env = f"s3://{bucket}/soc2", {**os.environ, **minio.env()}

    processes: list[tuple[OperatorProcess, str]] = []
    try:
        # Two clusters x two backends; each cluster's operators leave the other's namespace alone.
        for cluster in CLUSTERS:
            others = [ns for c, ns in namespaces.items() if c != cluster]
            for backend, store in stores.items():
                name = f"{cluster}-{backend}"
                pki = write_webhook_pki(workdir / name / "webhook")
                port = free_port()
                configuration = f"soc2infra-{name}-{suffix}.io"
                argv = operator_argv(
                    control_plane.kubeconfig, port, pki.certfile, pki.pkeyfile, pki.cafile, store.url,
                    audit_interval=3600,
                    extra=["--set", f"webhook.configuration_name={configuration}",
                           "--set", f"evidence.cluster_id={cluster}",
                           "--set", f"evidence.signing_key={private_key}",
                           "--set", "audit.initial_delay_seconds=0.5",
                           "--set", "waivers.require_independent_approval=true",
                           "--set", f"waivers.max_days={MAX_WAIVER_DAYS}",
                           "--set", f"scope.excluded_usernames=system:apiserver,{BOT}",
                           "--set", "evidence.skipped_interval_seconds=1",
                           *(f"--exclude-namespace={ns}" for ns in others)])
                proc = OperatorProcess(argv, workdir / name / "operator.log").start()
                processes.append((proc, configuration))
                proc.wait_until(lambda port=port, ca=pki.cafile: port_serves_tls(port, ca), timeout=90,
                                what="serving TLS")
        # Routed through the API server: a canary dry run per cluster reaches both of its ledgers;
        # the first audit snapshot of each operator is in (it records waiver changes from then on).
        for cluster, ns in namespaces.items():
            def routed(cluster: str = cluster, ns: str = ns) -> bool:
                name = f"canary-{uuid.uuid4().hex[:6]}"
                kubectl("apply", "--dry-run=server", "-f", "-", check=False, input=manifest(
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}}))
                return all(f"v1/ConfigMap/{ns}/{name}" in _subjects(s, cluster) for s in stores.values())

            _wait(routed, 90, f"{cluster}'s webhooks")
            for store in stores.values():
                _wait(lambda store=store, cluster=cluster: _subjects(store, cluster, "audit"), 60,
                      f"{cluster}'s first audit snapshot in {store.backend}")

        a, b = namespaces["lab-a"], namespaces["lab-b"]
        expires = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()

        def apply(*objects: dict[str, Any], dry_run: bool = False, ok: bool = True) -> None:
            args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
            done = kubectl(*args, input=manifest(*objects), check=False)
            assert (done.returncode == 0) == ok, done.stderr

        apply(deployment("web", a))
        apply(deployment("priv", a, privileged=True), ok=False)
        leaky = deployment("leaky", a)
        leaky["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "DB_PASSWORD", "value": PLANTED}]
        apply(leaky, ok=False)
        apply(deployment("dry-ok", a), dry_run=True)
        apply(deployment("dry-bad", a, privileged=True), dry_run=True, ok=False)
        # Alice asks for a waiver; until someone else approves it, it does not apply.
        kubectl(*as_user(ALICE), "apply", "-f", "-",
                input=manifest(soc2waiver("vendor", a, "SOC2-K8S-POD-00?", expires, selector={"name": "waived"})))
        apply(deployment("waived", a, privileged=True), ok=False)

        def approve(user: tuple[str, str, str], approver: str) -> subprocess.CompletedProcess[str]:
            return kubectl(*as_user(user), "-n", a, "patch", "soc2waiver", "vendor", "--type", "merge",
                           "-p", json.dumps({"spec": {"approvedBy": approver}}), check=False)

        scene.self_approval = approve(ALICE, ALICE[0]).stderr
        approved = approve(BOB, BOB[0])
        assert approved.returncode == 0, approved.stderr
        # The approval reaches the operators' caches through their watch: retry until admitted.
        _wait(lambda: kubectl("apply", "-f", "-", check=False, input=manifest(
            deployment("waived", a, privileged=True))).returncode == 0, 30, "the approved waiver to admit 'waived'")
        too_far = (datetime.now(UTC).date() + timedelta(days=MAX_WAIVER_DAYS + 30)).isoformat()
        scene.too_long = kubectl(*as_user(ALICE), "apply", "-f", "-", check=False, input=manifest(
            soc2waiver("forever", a, "SOC2-K8S-POD-001", too_far))).stderr
        for i in range(2):  # the deploy bot is not checked: counted per namespace, no record each
            kubectl("--as", BOT, "--as-group", "system:masters", "apply", "-f", "-", input=manifest(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"bot-{i}", "namespace": a}}))
        apply(deployment("web-b", b))
        apply(deployment("priv-b", b, privileged=True), ok=False)
        apply(deployment("dry-b", b), dry_run=True)
        _ci_scan(scene)
        # The head as of now, anchored outside the ledger; the traffic below comes after it.
        for backend, store in stores.items():
            scene.anchored[backend] = _run("evidence", "anchor", store.url, "--git", str(anchors), "--name",
                                           backend, "--signing-key", str(private_key)).stdout.strip()
            # The same head in an Object Lock bucket (COMPLIANCE: nobody can delete it early).
            s3 = _run("evidence", "anchor", store.url, "--s3", scene.s3, "--name", backend, "--signing-key",
                      str(private_key), "--retention-days", "1", env=scene.s3_env)
            assert s3.stdout.strip() == scene.anchored[backend] and "COMPLIANCE until" in s3.stderr
        scene.rv_before_update = kubectl("-n", a, "get", "deployment", "web", "-o",
                                         "jsonpath={.metadata.resourceVersion}").stdout
        web = deployment("web", a)
        web["metadata"]["labels"]["release"] = "2"
        apply(web)
        apply(deployment("late", b))
        for name, ns in (("web", a), ("waived", a), ("web-b", b)):
            scene.uids[name] = kubectl("-n", ns, "get", "deployment", name, "-o",
                                       "jsonpath={.metadata.uid}").stdout
        for store in stores.values():
            _wait(lambda store=store: f"apps/v1/Deployment/{b}/late" in _subjects(store, "lab-b"), 30,
                  f"the last request in {store.backend}")
            _wait(lambda store=store: _skipped(store.records(), a), 30, f"the bot's requests counted in {store.backend}")
    finally:
        codes = []
        for proc, configuration in processes:
            codes.append(proc.stop())
            # A clean stop removes them; never leave a failurePolicy=Fail webhook to the next module.
            kubectl("delete", "validatingwebhookconfiguration", configuration, f"{configuration}-waivers",
                    "--ignore-not-found", check=False)
            kubectl("delete", "mutatingwebhookconfiguration", f"{configuration}-waivers", "--ignore-not-found",
                    check=False)
    assert codes == [0] * len(codes), [p.log_tail() for p, _ in processes]
    first = next(r for r in stores["sqlite"].records() if r["source"] == "admission")
    scene.admin = first["actor"]
    yield scene


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(scene: Scene, backend: str) -> Store:
    return scene.stores[backend]


_EXPORTS: dict[tuple[str, ...], tuple[list[dict[str, Any]], str]] = {}


def _export(store: Store, scene: Scene, *flags: str) -> tuple[list[dict[str, Any]], str]:
    """``evidence export`` of the scene's period (each distinct command runs once: the scene's
    ledgers do not change, tampering works on copies)."""
    key = (store.url, *flags)
    if key not in _EXPORTS:
        done = _run("evidence", "export", store.url, "--from", scene.day, "--to", scene.day, *flags)
        _EXPORTS[key] = ([json.loads(line) for line in done.stdout.splitlines()], done.stderr)
    records, stderr = _EXPORTS[key]
    return [dict(r) for r in records], stderr


def _by_subject(records: list[dict[str, Any]], subject: str) -> list[dict[str, Any]]:
    return [r for r in records if r["subject"] == subject]


# --------------------------------------------------------------------------- populations

def test_dry_runs_are_left_out_unless_asked_for(scene: Scene, store: Store) -> None:
    a = scene.namespaces["lab-a"]
    records, stderr = _export(store, scene)
    everything, _ = _export(store, scene, "--include-dry-run")
    dry = [r for r in everything if r["context"].get("dry_run") is True]
    # kubectl --dry-run=server: the two in lab-a, one in lab-b, and the canaries.
    assert {f"apps/v1/Deployment/{a}/dry-ok", f"apps/v1/Deployment/{a}/dry-bad"} <= {r["subject"] for r in dry}
    assert [r["decision"] for r in _by_subject(dry, f"apps/v1/Deployment/{a}/dry-bad")] == ["deny"]
    assert not any(r["context"].get("dry_run") for r in records)
    assert len(records) == len(everything) - len(dry) and records
    # The export states its population: parameters, seq range, tool version and totals that tie.
    assert f"wrote {len(records)} records;" in stderr and "include_dry_run=false" in stderr
    assert f"{len(records)} of {len(everything)} records in the population" in stderr
    assert f"excluded: {len(dry)} dry_run" in stderr and "soc2infra " in stderr
    seqs = [r["seq"] for r in everything]
    assert f"seq {min(seqs)}..{max(seqs)}" in stderr


def test_cluster_and_source_pick_their_records(scene: Scene, store: Store) -> None:
    a, b = scene.namespaces["lab-a"], scene.namespaces["lab-b"]
    for cluster, mine, other in (("lab-a", a, b), ("lab-b", b, a)):
        records, stderr = _export(store, scene, "--cluster", cluster, "--include-dry-run")
        assert records and {r["context"]["cluster"] for r in records} == {cluster}
        requests = [r for r in records if r["source"] == "admission" and "event" not in r["context"]]
        assert requests and all(r["context"]["namespace"] == mine for r in requests)
        # The two "clusters" share one API server: each operator watches every SOC2Waiver and
        # records it under its own cluster id, so only waiver records may name the other namespace.
        assert not any(other in r["subject"] for r in records if r["source"] != "waiver")
        assert f"clusters={cluster}" in stderr
    audit, _ = _export(store, scene, "--source", "audit")
    assert {r["source"] for r in audit} == {"audit"}
    assert {r["context"]["cluster"] for r in audit} == set(CLUSTERS)  # one snapshot per operator
    assert {r["subject"] for r in audit} == {f"cluster:{c}" for c in CLUSTERS}
    admission, _ = _export(store, scene, "--source", "admission", "--cluster", "lab-b")
    assert {r["subject"] for r in admission} == {f"apps/v1/Deployment/{b}/{n}" for n in ("web-b", "priv-b", "late")}


def test_ci_scans_are_their_own_source_with_change_linkage(scene: Scene, store: Store) -> None:
    [scan], stderr = _export(store, scene, "--source", "scan")
    assert "sources=scan" in stderr
    assert (scan["source"], scan["actor"], scan["subject"], scan["decision"]) == ("ci", "dev-alice", "k8s", "fail")
    change = scan["context"]["change"]
    # The pull request's head commit (the one reviewed), not GITHUB_SHA's merge commit; the tree
    # was modified after it, which the record says.
    assert (change["pr_number"], change["head_commit"], change["base_commit"]) == (17, scene.pr_head, scene.pr_base)
    assert (change["branch"], change["base_branch"], change["dirty"]) == ("feature/pin-images", "main", True)
    assert change["ci_identity"]["ci"] == "github-actions" and change["ci_identity"]["run_id"] == "4242"
    assert change["tool_version"]
    assert any(r["rule_id"] == "SOC2-K8S-POD-001" and r["status"] == "fail" for r in scan["results"])
    # A scan belongs to no cluster: a cluster's population leaves it out.
    records, _ = _export(store, scene, "--cluster", "lab-a")
    assert all(r["source"] != "ci" for r in records)


def test_admission_records_trace_to_the_api_server_and_the_object(scene: Scene, store: Store) -> None:
    a = scene.namespaces["lab-a"]
    records, _ = _export(store, scene, "--source", "admission")
    records = [r for r in records if "event" not in r["context"]]  # requests, not skipped counts
    create, update = _by_subject(records, f"apps/v1/Deployment/{a}/web")
    assert (create["context"]["operation"], update["context"]["operation"]) == ("CREATE", "UPDATE")
    for record in (create, update):
        ctx = record["context"]
        assert ctx["dry_run"] is False and ctx["cluster"] == "lab-a" and record["decision"] == "allow"
        assert ctx["user"]["username"] == record["actor"] == scene.admin != ""
        assert "system:masters" in ctx["user"]["groups"]
        assert ctx["object_uid"] == scene.uids["web"] != ""
        assert ctx["image_digests"] == ["sha256:" + "a" * 64]  # what ran, pinned (CC8.1 linkage)
    assert create["context"]["request_uid"] != update["context"]["request_uid"]
    assert len({r["context"]["request_uid"] for r in records}) == len(records)  # one per review
    # The version the update was decided on: the stored object's before the change.
    assert update["context"]["resource_version"] == scene.rv_before_update != ""
    [denied] = _by_subject(records, f"apps/v1/Deployment/{a}/priv")
    # The uid the API server gave the object it then refused: recorded, though never stored.
    assert denied["decision"] == "deny" and denied["context"]["object_uid"] not in ("", *scene.uids.values())
    assert {"rule_id": "SOC2-K8S-POD-001", "action": "deny"} in denied["context"]["actions"]
    # Denied while the waiver waited for approval; admitted once Bob approved it.
    pending, waived = _by_subject(records, f"apps/v1/Deployment/{a}/waived")
    assert (pending["decision"], waived["decision"]) == ("deny", "allow")
    assert waived["context"]["object_uid"] == scene.uids["waived"]
    pod001 = next(r for r in waived["results"] if r["rule_id"] == "SOC2-K8S-POD-001")
    assert pod001["status"] == "waived" and pod001["waiver"]["ticket"] == "SEC-1234"
    assert (pod001["waiver"]["owner"], pod001["waiver"]["approved_by"]) == ("payments@example.com", BOB[0])


def test_waivers_name_who_asked_and_who_approved_and_self_approval_is_refused(scene: Scene,
                                                                             store: Store) -> None:
    a = scene.namespaces["lab-a"]
    assert f"self-approval: {ALICE[0]} created this waiver" in scene.self_approval
    assert f"waivers.max_days allows at most {MAX_WAIVER_DAYS}" in scene.too_long
    records, stderr = _export(store, scene, "--source", "waiver", "--cluster", "lab-a")
    assert "sources=waiver" in stderr and {r["context"]["cluster"] for r in records} == {"lab-a"}
    vendor = _by_subject(records, f"soc2infra.io/v1alpha1/SOC2Waiver/{a}/vendor")
    [created] = [r for r in vendor if r["context"]["event"] == "waiver-created"]
    # Who asked comes from the request's userInfo, not from the apply tool or the owner field.
    assert created["actor"] == ALICE[0] and created["context"]["approval"] == "none"
    assert (created["context"]["creator"]["username"], created["context"]["creator"]["uid"]) == ALICE[:2]
    [selfish] = [r for r in vendor if r["decision"] == "deny"]
    assert selfish["actor"] == ALICE[0] and "self-approval" in selfish["context"]["reason"]
    [approved] = [r for r in vendor if (r["context"].get("approver") or {}).get("username") == BOB[0]]
    ctx = approved["context"]
    assert (ctx["approval"], ctx["approved_by"], ctx["approver"]["uid"]) == ("independent", BOB[0], BOB[1])
    assert (approved["actor"], ctx["creator"]["username"], ctx["ticket"]) == (ALICE[0], ALICE[0], "SEC-1234")
    [forever] = _by_subject(records, f"soc2infra.io/v1alpha1/SOC2Waiver/{a}/forever")
    assert forever["decision"] == "deny" and f"at most {MAX_WAIVER_DAYS}" in forever["context"]["reason"]
    assert all(r["key_id"].startswith("ed25519:") and r["signature"] for r in records)


def test_skipped_requests_are_counted_per_namespace(scene: Scene, store: Store) -> None:
    a = scene.namespaces["lab-a"]
    records, _ = _export(store, scene, "--source", "admission", "--cluster", "lab-a")
    rows = _skipped(records, a)
    assert sum(row["count"] for row in rows) == 2 and all(BOT in row["reason"] for row in rows)
    # Counts only: no record of each request, nothing of the objects.
    assert not any(r["subject"].endswith(("/bot-0", "/bot-1")) for r in records)


def test_rule_ids_are_never_redacted_and_secrets_never_recorded(scene: Scene, store: Store) -> None:
    records, _ = _export(store, scene, "--include-dry-run")
    [leaky] = _by_subject(records, f"apps/v1/Deployment/{scene.namespaces['lab-a']}/leaky")
    assert leaky["decision"] == "deny"
    assert {"rule_id": "SOC2-K8S-SECRET-001", "action": "deny"} in leaky["context"]["actions"]
    assert any(r["rule_id"] == "SOC2-K8S-SECRET-001" and r["status"] == "fail" for r in leaky["results"])
    everything = json.dumps(records) + _run("evidence", "export", store.url, "--format", "csv",
                                            "--include-dry-run").stdout
    assert PLANTED not in everything and "[REDACTED]" not in everything


def test_a_csv_export_is_rechecked_against_the_ledger(scene: Scene, store: Store, backend: str,
                                                      tmp_path: Path) -> None:
    population = tmp_path / "population.csv"
    done = _run("evidence", "export", store.url, "--from", scene.day, "--to", scene.day, "--format", "csv",
                "--cluster", "lab-a", "-o", str(population))
    rows = list(csv.DictReader(population.open(newline="")))
    assert f"wrote {len(rows)} rows to {population}" in done.stderr and "clusters=lab-a" in done.stderr
    key = ["--public-key", str(scene.public_key), "--expect-head", scene.anchored[backend]]
    done = _run("evidence", "verify-export", str(population), store.url, *key)
    assert done.stdout.startswith(f"OK: {population}: {len(rows)} rows of ")
    # One failing result turned into a pass in the file: named by seq.
    text = population.read_text()
    row = next(r for r in rows if r["status"] == "fail")
    population.write_text(text.replace(f"{row['rule_id']},fail,", f"{row['rule_id']},pass,", 1))
    done = _run("evidence", "verify-export", str(population), store.url, *key, check=1)
    assert done.stdout.startswith("MISMATCH:") and f"seq {row['seq']}" in done.stdout


def test_signed_and_anchored_chain_verifies(scene: Scene, store: Store, backend: str) -> None:
    anchor = _run("evidence", "anchor-head", "--git", str(scene.anchors), "--name", backend,
                  "--public-key", str(scene.public_key)).stdout.strip()
    assert anchor == scene.anchored[backend]
    s3 = _run("evidence", "anchor-head", "--s3", scene.s3, "--name", backend, "--public-key", str(scene.public_key),
              env=scene.s3_env)
    assert s3.stdout.strip() == anchor and "COMPLIANCE until" in s3.stderr
    done = _run("evidence", "verify", store.url, "--public-key", str(scene.public_key), "--expect-head", anchor,
                "--json")
    result = json.loads(done.stdout)
    n = len(store.records())
    assert (result["ok"], result["records"], result["signatures"], result["fully_trusted"]) == (True, n, n, False)
    seq = int(anchor.split(":")[0])
    assert result["anchored_through"] == seq < n  # the update and 'late' came after the anchor
    assert result["trust"].startswith(f"records 1..{seq} match the anchor ({anchor}) and carry valid "
                                      "signatures and can be relied on")


# --------------------------------------------------------------------------- tampering

def test_tampered_tail_names_the_trustworthy_range(scene: Scene, store: Store, backend: str,
                                                   tmp_path: Path) -> None:
    anchor = scene.anchored[backend]
    seq = int(anchor.split(":")[0])
    key = ["--public-key", str(scene.public_key)]
    copy = store.copy(tmp_path)
    last = copy.head_seq()
    # Edit the newest record (an admission after the anchor) in place: caught at that record; the
    # anchored prefix is relied on, the records between the anchor and it only link consistently.
    record = copy.body(last)
    record["decision"] = "deny" if record["decision"] != "deny" else "allow"
    copy.put(record)
    done = _run("evidence", "verify", copy.url, *key, "--expect-head", anchor, check=1)
    assert done.stdout.startswith(f"BROKEN at seq {last}: the content does not match its hash")
    assert (f"Trust: records 1..{seq} match the anchor ({anchor}) and carry valid signatures and can be "
            f"relied on; records {seq + 1}..{last - 1} only link consistently after it") in done.stdout
    # Delete the tail from before the anchor and move the head back: internally consistent, so
    # without the anchor nothing shows (honestly reported as consistency only) ...
    copy = store.copy(tmp_path)
    copy.truncate_after(seq - 2)
    as_json = json.loads(_run("evidence", "verify", copy.url, *key, "--json").stdout)
    assert (as_json["ok"], as_json["records"], as_json["fully_trusted"]) == (True, seq - 2, False)
    assert "internal consistency only" in as_json["trust"]
    # ... and with it, nothing is proven beyond what still links.
    done = _run("evidence", "verify", copy.url, *key, "--expect-head", anchor, check=1)
    assert done.stdout.startswith(f"BROKEN at seq {seq - 1}:")
    assert (f"records 1..{seq - 2} link consistently and carry valid signatures, but the anchor ({anchor}) "
            "was NOT confirmed") in done.stdout
    # A truncation after the newest anchor cannot be seen by it: anchors must be taken often.
    copy = store.copy(tmp_path)
    copy.truncate_after(seq + 1)
    done = _run("evidence", "verify", copy.url, *key, "--expect-head", anchor)
    assert f"anchored through seq {seq}" in done.stdout
    # Deleting tail records without moving the head is caught by the head table.
    copy = store.copy(tmp_path)
    copy.sql("DELETE FROM evidence_records WHERE seq > ?", (last - 2,))
    done = _run("evidence", "verify", copy.url, *key, check=1)
    assert done.stdout.startswith(f"BROKEN at seq {last - 1}:")


def _deny_to_allow(scene: Scene, store: Store) -> int:
    """The seq of the denied privileged Deployment in lab-a (before the anchor)."""
    subject = f"apps/v1/Deployment/{scene.namespaces['lab-a']}/priv"
    return next(r["seq"] for r in store.records() if r["subject"] == subject)


def _forge(record: dict[str, Any]) -> None:
    record["decision"] = "allow"
    record["results"] = [dict(r, status="pass") for r in record["results"]]


def test_rewritten_chain_what_is_and_is_not_detected(scene: Scene, store: Store, backend: str, minio: Any,
                                                     tmp_path: Path) -> None:
    anchor = scene.anchored[backend]
    key = ["--public-key", str(scene.public_key)]
    target = _deny_to_allow(scene, store)
    assert target < int(anchor.split(":")[0])
    # A forger without the signing key turns the denial into an allow and re-hashes the chain.
    copy = store.copy(tmp_path)
    copy.rewrite_from(target, _forge)
    # Hashes alone cannot tell: the rewritten chain is internally consistent.
    as_json = json.loads(_run("evidence", "verify", copy.url, "--json").stdout)
    assert as_json["ok"] and "internal consistency only" in as_json["trust"]
    # The public key catches it at the first rewritten record, without any anchor.
    done = _run("evidence", "verify", copy.url, *key, check=1)
    assert done.stdout.startswith(f"BROKEN at seq {target}:") and "signature" in done.stdout
    assert f"Trust: records 1..{target - 1} link consistently and carry valid signatures" in done.stdout
    # A forger who also holds the writer's signing key (it lives where the ledger is written):
    # signatures verify, only the anchor kept outside the ledger catches the rewrite.
    copy = store.copy(tmp_path)
    copy.rewrite_from(target, _forge, resign=scene.private_key)
    done = _run("evidence", "verify", copy.url, *key)
    assert done.stdout.startswith("OK:") and "signatures valid" in done.stdout
    done = _run("evidence", "verify", copy.url, *key, "--expect-head", anchor, check=1)
    assert f"the anchor ({anchor}) was NOT confirmed" in done.stdout
    assert "none of them is proven intact" in done.stdout
    # Nor can that forger remove the anchor from the Object Lock bucket (COMPLIANCE mode), so the
    # head read back from it still exposes the rewrite.
    from botocore.exceptions import ClientError

    client = minio.client()
    bucket, _, prefix = scene.s3.removeprefix("s3://").partition("/")
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"{prefix}/{backend}/")["Versions"]
    assert versions
    for version in versions:
        with pytest.raises(ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert refused.value.response["Error"]["Code"] in {"AccessDenied", "InvalidRequest"}
    head = _run("evidence", "anchor-head", "--s3", scene.s3, "--name", backend, "--public-key",
                str(scene.public_key), env=scene.s3_env).stdout.strip()
    assert head == anchor
    _run("evidence", "verify", copy.url, *key, "--expect-head", head, check=1)
    # The report exits 1 on the broken chain and says so; on the untouched ledger it exits 0.
    report = _run("evidence", "report", copy.url, "--from", scene.day, "--to", scene.day, *key, "--expect-head",
                  anchor, "-o", str(tmp_path / "broken.html"), check=1)
    assert "evidence chain BROKEN" in report.stderr and "NOT confirmed" in report.stderr
    _run("evidence", "report", store.url, "--from", scene.day, "--to", scene.day, *key, "--expect-head", anchor,
         "-o", str(tmp_path / "ok.html"))


def test_report_exits_1_on_a_broken_chain_and_states_its_population(scene: Scene, store: Store,
                                                                    tmp_path: Path) -> None:
    out, data = tmp_path / "r.html", tmp_path / "r.json"
    done = _run("evidence", "report", store.url, "--from", scene.day, "--to", scene.day, "-o", str(out),
                "--json-output", str(data), "--cluster", "lab-b")
    assert "clusters=lab-b" in done.stdout
    report = json.loads(data.read_text())
    assert set(report["population"]["by_cluster"]) == {"lab-b"}
    assert "not signed and not anchored" in out.read_text()  # amber without key and anchor
    copy = store.copy(tmp_path)
    seq = _deny_to_allow(scene, store)
    record = copy.body(seq)
    _forge(record)
    copy.put(record)
    done = _run("evidence", "report", copy.url, "--from", scene.day, "--to", scene.day, "-o", str(out), check=1)
    assert f"evidence chain BROKEN at seq {seq}" in done.stderr
    assert f"records 1..{seq - 1} link consistently" in done.stderr


# --------------------------------------------------------------------------- registers

def test_registers_show_the_approved_waiver_and_what_it_covers(scene: Scene, store: Store) -> None:
    a = scene.namespaces["lab-a"]
    period = ["--from", scene.day, "--to", scene.day, "--cluster", "lab-a", "--format", "json"]
    done = _run("evidence", "register", store.url, "--kind", "waivers", *period)
    assert "clusters=lab-a" in done.stderr
    [vendor] = [w for w in json.loads(done.stdout) if w["waiver_id"] == f"SOC2Waiver {a}/vendor"]
    assert (vendor["approver"], vendor["created_by"], vendor["ticket"], vendor["status"]) == (
        BOB[0], ALICE[0], "SEC-1234", "active")
    assert vendor["owner"] == "payments@example.com" and vendor["evaluations"] >= 1 and vendor["waived_resources"] == 1
    deviations = json.loads(_run("evidence", "register", store.url, "--kind", "deviations", *period).stdout)
    waived = [d for d in deviations if d["resource"].endswith(f"/{a}/waived")]
    assert waived and {d["status"] for d in waived} == {"waived"}
    assert {(d["waiver_approver"], d["ticket"]) for d in waived} == {(BOB[0], "SEC-1234")}
    # A denied request never reached the cluster: the preventive control worked, no deviation.
    assert not [d for d in deviations if d["resource"].endswith((f"/{a}/priv", f"/{a}/leaky"))]
    assert {d["cluster"] for d in deviations} == {"lab-a"}


def test_merged_changes_without_a_scan_are_listed(scene: Scene, store: Store) -> None:
    assert scene.repo is not None
    args = ["evidence", "changes", store.url, "--repo", str(scene.repo), "--branch", "main",
            "--from", scene.day, "--to", scene.day]
    done = _run(*args, "--json", "--all", check=1)
    rows = {row["subject"]: row for row in json.loads(done.stdout)["rows"]}
    merge = rows["Merge pull request #17 from acme/pin-images"]
    # Scanned in the pull request's pipeline: the record names the head commit the merge brought in.
    assert merge["scanned"] and merge["linked_by"] == "merged head" and merge["scan_decisions"] == ["fail"]
    assert {s for s, row in rows.items() if not row["scanned"]} == {"payments api", "hotfix: worker"}
    done = _run(*args, check=1)
    assert "3 merged change(s) on main, 2 without a scan record" in done.stderr
    assert "NOT SCANNED" in done.stdout and "hotfix: worker" in done.stdout and "#17" not in done.stdout


# --------------------------------------------------------------------------- package and sample

def test_package_manifest_verifies_and_catches_an_edit(scene: Scene, store: Store, backend: str,
                                                       tmp_path: Path) -> None:
    anchor = scene.anchored[backend]
    package = tmp_path / "soc2.zip"
    controls = tmp_path / "controls.yaml"  # what the pack cannot know: the owner, how it is tested
    controls.write_text("version: 1\ncontrols:\n  CC6.1:\n    owner: Platform team (platform@example.com)\n"
                        "    test_procedure: Sample 25 rows of populations/CC6.1.csv; trace each request uid.\n")
    done = _run("evidence", "package", store.url, "--from", scene.day, "--to", scene.day, "-o", str(package),
                "--public-key", str(scene.public_key), "--expect-head", anchor, "--controls", str(controls))
    assert "include_dry_run=false" in done.stdout
    done = _run("evidence", "verify-package", str(package))
    assert done.stdout.startswith("OK: every file")
    with zipfile.ZipFile(package) as zf:
        manifest_data = json.loads(zf.read("manifest.json"))
        files = {name: zf.read(name) for name in zf.namelist()}
    assert manifest_data["checked_against"]["anchor"] == anchor
    assert manifest_data["checked_against"]["signed"] is True
    assert manifest_data["checked_against"]["anchored_through"] == int(anchor.split(":")[0])
    records = [json.loads(line) for line in files["records.jsonl"].splitlines()]
    exported, _ = _export(store, scene)
    assert [r["seq"] for r in records] == [r["seq"] for r in exported]  # the same population
    assert manifest_data["population"]["records_in_population"] == len(records)
    assert {"control-matrix.csv", "management-assertion.md", "populations/CC6.1.csv", "summary.csv",
            "deviations.csv", "waivers.csv", "prior-period.csv"} <= set(files)
    matrix = {row["criterion"]: row for row in csv.DictReader(io.StringIO(files["control-matrix.csv"].decode()))}
    assert matrix["CC6.1"]["owner"] == "Platform team (platform@example.com)"
    assert matrix["CC6.1"]["test_procedure"].startswith("Sample 25 rows")
    assert "SOC2-K8S-POD-001" in matrix["CC6.1"]["mapped_rules"]
    # The headline numbers tie to the records in the package.
    summary = {row["metric"]: row for row in csv.DictReader(io.StringIO(files["summary.csv"].decode()))}
    requests = [r for r in records if r["source"] == "admission" and "event" not in r["context"]]
    assert int(summary["denied_requests"]["value"]) == sum(r["decision"] == "deny" for r in requests) >= 3
    assert int(summary["records"]["value"]) == len(records)
    # The records in the package are the ledger's: verify-export re-checks them against it.
    (tmp_path / "records.jsonl").write_bytes(files["records.jsonl"])
    _run("evidence", "verify-export", str(tmp_path / "records.jsonl"), store.url, "--public-key",
         str(scene.public_key), "--expect-head", anchor)

    def rezip(target: Path, changes: dict[str, bytes]) -> None:
        with zipfile.ZipFile(target, "w") as zf:
            for name, data in {**files, **changes}.items():
                zf.writestr(name, data)

    # One CSV row edited: verify-package names the file.
    rows = files["populations/CC6.1.csv"].decode().replace(",fail,", ",pass,", 1).encode()
    assert rows != files["populations/CC6.1.csv"]
    rezip(tmp_path / "edited.zip", {"populations/CC6.1.csv": rows})
    done = _run("evidence", "verify-package", str(tmp_path / "edited.zip"), check=1)
    assert "populations/CC6.1.csv sha256" in done.stdout
    # The manifest is not signed: an edit with the manifest's hash updated passes verify-package;
    # the records still do not match the ledger, which verify-export shows.
    forged = records[:]
    forged[-1] = dict(forged[-1], actor="someone-else")
    body = "".join(canonical_json(r) + "\n" for r in forged).encode()

    manifest_data["files"]["records.jsonl"] = {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    rezip(tmp_path / "forged.zip", {"records.jsonl": body, "manifest.json": json.dumps(manifest_data).encode()})
    _run("evidence", "verify-package", str(tmp_path / "forged.zip"))
    (tmp_path / "forged.jsonl").write_bytes(body)
    done = _run("evidence", "verify-export", str(tmp_path / "forged.jsonl"), store.url, check=1)
    assert f"seq {forged[-1]['seq']}" in done.stdout


def _sample(store: Store, scene: Scene, seed: str, *flags: str) -> list[dict[str, str]]:
    done = _run("evidence", "sample", store.url, "--criterion", "CC6.1", "-n", "25", "--seed", seed,
                "--from", scene.day, "--to", scene.day, *flags)
    assert f"with seed {seed!r}" in done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_samples_are_reproducible_and_drawn_from_the_population(scene: Scene, store: Store) -> None:
    first = _sample(store, scene, "2026-H2")
    assert len(first) == 25 and first == _sample(store, scene, "2026-H2")
    assert first != _sample(store, scene, "another seed")
    population, _ = _export(store, scene)
    allowed = {str(r["seq"]) for r in population}
    assert {row["seq"] for row in first} <= allowed  # no dry run, nothing outside the period
    lab_b = {str(r["seq"]) for r in population if r["context"].get("cluster") == "lab-b"}
    assert {row["seq"] for row in _sample(store, scene, "2026-H2", "--cluster", "lab-b")} <= lab_b


# --------------------------------------------------------------------------- the README

def readme_auditor_commands() -> list[str]:
    """The commands of the README's auditor walkthrough (package → verify → sample), in order."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"For an auditor: package → verify → sample.*?```sh\n(.*?)```", text, re.S)
    assert block, "README lost its auditor walkthrough"
    return [line.partition("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_auditor_walkthrough_runs_as_written(scene: Scene, store: Store, backend: str,
                                                    tmp_path: Path) -> None:
    """Each command runs in one bash session as written; only the site's ledger and the period
    (the first line's values) are this scene's. The anchors repository is set up the way the
    README's next paragraph tells the ledger's operator to."""
    commands = readme_auditor_commands()
    first = commands[0]
    assert first.startswith("export SOC2INFRA_LEDGER=evidence.db FROM=") and " TO=" in first
    commands[0] = f"export SOC2INFRA_LEDGER='{store.url}' FROM={scene.day} TO={scene.day}"
    assert [c.split()[2] for c in commands[1:] if c.startswith("soc2infra ")] == [
        "anchor-head", "verify", "package", "verify-package", "sample", "sample"]
    shutil.copy(scene.public_key, tmp_path / "evidence.pub")
    subprocess.run(["git", "init", "-q", str(tmp_path / "anchors")], check=True)
    head = _run("evidence", "anchor", store.url, "--git", str(tmp_path / "anchors"), "--signing-key",
                str(scene.private_key)).stdout.strip()
    script = [f"cd {tmp_path}"] + [f"{command}\necho \"@@{i} rc=$?\"" for i, command in enumerate(commands)]
    env = {"PATH": f"{Path(SOC2INFRA).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    out = done.stdout + done.stderr
    codes = dict(re.findall(r"@@(\d+) rc=(\d+)", done.stdout))
    assert [codes.get(str(i)) for i in range(len(commands))] == ["0"] * len(commands), out[-4000:]
    assert (tmp_path / "anchor.txt").read_text().strip() == head
    n = len(store.records())
    assert f"OK: {n} records verified, {n} signatures valid; head {head}; anchored through seq {n}" in out
    assert "OK: every file of soc2.zip matches its manifest" in out
    assert "OK: records.jsonl:" in out and "match the ledger" in out
    sample = (tmp_path / "sample.csv").read_text().splitlines()
    assert len(sample) == 26 and sample[0].startswith("seq,")


# --------------------------------------------------------------------------- registers and headline

def test_register_rows_and_headline_on_the_admission_ledger(scene: Scene, store: Store, tmp_path: Path) -> None:
    """Over both clusters: the waiver register keeps the waiver's own rule (a pattern) and who
    created it, the waived deviation names the waiver and owner, a denied dry run opens nothing,
    and the report's headline counts the denied requests the records hold (each request once)
    and the deviation register's rows."""
    a = scene.namespaces["lab-a"]
    period = ("--from", scene.day, "--to", scene.day, "--format", "json")
    waivers = {w["waiver_id"]: w for w in json.loads(
        _run("evidence", "register", store.url, "--kind", "waivers", *period).stdout)}
    vendor = waivers[f"SOC2Waiver {a}/vendor"]
    assert (vendor["kind"], vendor["rule"], vendor["reason"]) == (
        "SOC2Waiver", "SOC2-K8S-POD-00?", "vendor image needs it until v5")
    assert vendor["created_by"] and vendor["created_at"].startswith(scene.day[:4])
    rows = json.loads(_run("evidence", "register", store.url, "--kind", "deviations", *period).stdout)
    waived = [r for r in rows if r["resource"] == f"apps/v1/Deployment/{a}/waived"]
    assert waived and {(r["waiver_id"], r["waiver_owner"], r["sources"][0]) for r in waived} == {
        (f"SOC2Waiver {a}/vendor", "payments@example.com", "admission")}
    assert vendor["evaluations"] == len(waived)
    assert not [r for r in rows if r["resource"].endswith(f"/{a}/dry-bad")]
    _run("evidence", "report", store.url, "--from", scene.day, "--to", scene.day, "-o", str(tmp_path / "r.html"),
         "--json-output", str(tmp_path / "r.json"))
    head = json.loads((tmp_path / "r.json").read_text())["headline"]
    exported, _ = _export(store, scene)
    denied = sum(r["source"] == "admission" and r["decision"] == "deny" for r in exported)
    assert head["denied_requests"] == denied >= 3  # priv, leaky, priv-b; the denied dry run is left out
    assert head["deviations"] == len(rows) and head["waivers_active"] >= 1
