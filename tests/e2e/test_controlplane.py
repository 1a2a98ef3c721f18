"""The control-plane harness itself: real etcd + kube-apiserver, kubectl, python client, lab up/down."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from soc2infra.lab import ControlPlane, LabInfo, ProcessSpec, lab_down, lab_status, lab_up, write_webhook_pki
from soc2infra.lab.controlplane import ProcessRecord, is_running, read_state

K8S_VERSION = "v1.34.3"


def _name(prefix: str) -> str:
    # The session control plane is shared and namespaces never finish deleting (no namespace
    # controller), so every test object gets a unique name.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_version_endpoint_reports_pinned_release(control_plane: ControlPlane) -> None:
    status, body = control_plane.request("/version")
    assert status == 200
    info = json.loads(body)
    assert info["gitVersion"] == K8S_VERSION
    assert (info["major"], info["minor"]) == ("1", "34")


def test_kubectl_creates_and_reads_namespace_and_configmap(control_plane: ControlPlane, kubectl) -> None:
    ns, cm = _name("e2e-kubectl"), _name("settings")
    kubectl("create", "namespace", ns)
    kubectl("-n", ns, "create", "configmap", cm, "--from-literal=retention=90d")

    got = json.loads(kubectl("-n", ns, "get", "configmap", cm, "-o", "json").stdout)
    assert got["data"] == {"retention": "90d"}
    assert json.loads(kubectl("get", "namespace", ns, "-o", "json").stdout)["status"]["phase"] == "Active"
    # The client talks to the server named in the kubeconfig, i.e. this control plane.
    assert control_plane.server in kubectl("config", "view", "--minify", "-o", "json").stdout


def test_python_client_creates_and_reads_configmap(control_plane: ControlPlane, kubectl) -> None:
    from kubernetes import client

    ns, cm = _name("e2e-python"), _name("settings")
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=cm), data={"mfa": "required"})
        )
        assert core.read_namespaced_config_map(cm, ns).data == {"mfa": "required"}
        assert ns in {item.metadata.name for item in core.list_namespace().items}

    # Written by the python client, visible to kubectl: both hit the same apiserver and etcd.
    got = json.loads(kubectl("-n", ns, "get", "configmap", cm, "-o", "json").stdout)
    assert got["data"] == {"mfa": "required"}


def test_server_side_dry_run_persists_nothing(control_plane: ControlPlane, kubectl) -> None:
    # The admission tests rely on --dry-run=server running the full admission chain without
    # writing; make sure this control plane honours it.
    cm = _name("dry")
    out = kubectl("create", "configmap", cm, "--from-literal=a=b", "--dry-run=server", "-o", "name").stdout
    assert out.strip() == f"configmap/{cm}"
    missing = kubectl("get", "configmap", cm, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_kubeconfig_is_private_and_self_contained(control_plane: ControlPlane) -> None:
    assert control_plane.kubeconfig.stat().st_mode & 0o077 == 0
    text = control_plane.kubeconfig.read_text()
    assert "client-key-data" in text and "certificate-authority-data" in text
    assert control_plane.ca_file.is_file()
    assert control_plane.server.startswith("https://127.0.0.1:")


def _run_py(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (from the repo root, so ``soc2infra`` imports)."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )


def test_lab_up_detaches_and_lab_down_stops_everything(bin_dir: Path, tmp_path: Path, kubectl) -> None:
    workdir = tmp_path / "lab"
    env = {**os.environ, "SOC2INFRA_BIN_DIR": str(bin_dir)}
    # Start the lab from a separate interpreter that then exits: detached processes must outlive it.
    # The extra-process hook starts a stand-in for the operator so lab_down is seen to stop it too.
    up = _run_py(
        f"""
        import json, sys
        from pathlib import Path
        from soc2infra.lab import ProcessSpec, lab_up

        def extras(info):
            assert info.kubeconfig.is_file() and info.webhook.certfile.is_file()
            return [ProcessSpec("operator", [sys.executable, "-c", "import time; time.sleep(600)"])]

        info = lab_up(Path({str(workdir)!r}), build=False, extra_processes=extras)
        print(json.dumps(info.to_dict()))
        """,
        env,
    )
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout.strip().splitlines()[-1])
    assert set(info["pids"]) == {"etcd", "kube-apiserver", "operator"}

    state = read_state(workdir)
    assert state is not None
    records = [ProcessRecord.from_dict(p) for p in state["processes"]]
    ports = state["ports"]
    try:
        assert all(is_running(r) for r in records), "lab processes died with the process that started them"
        # Still serving after its parent exited, reachable through the kubeconfig it wrote.
        out = kubectl("get", "namespace", "default", "-o", "name", kubeconfig=Path(info["kubeconfig"]))
        assert out.stdout.strip() == "namespace/default"
        assert Path(info["webhook"]["cafile"]).is_file()

        # A second lab_up finds it running and returns it unchanged.
        again = lab_up(workdir, build=False)
        assert again.reused and again.pids == info["pids"]
        assert isinstance(lab_status(workdir), LabInfo)
    finally:
        down = _run_py(f"from pathlib import Path; from soc2infra.lab import lab_down; lab_down(Path({str(workdir)!r}))",
                       env)
    assert down.returncode == 0, down.stderr

    assert _wait_until(lambda: not any(is_running(r) for r in records)), "processes survived lab_down"
    for name, port in ports.items():
        assert _wait_until(lambda port=port: _port_free(port)), f"{name} port {port} still bound"
    assert read_state(workdir) is None and lab_status(workdir) is None
    lab_down(workdir)  # idempotent


def test_lab_up_failure_in_extra_process_cleans_up(bin_dir: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "lab-fail"
    with pytest.raises(RuntimeError, match="did not become ready"):
        lab_up(
            workdir, bin_dir=bin_dir,
            extra_processes=lambda info: [
                ProcessSpec("broken", [sys.executable, "-c", "raise SystemExit(3)"], ready=lambda: False,
                            ready_timeout=5)
            ],
        )
    assert lab_status(workdir) is None and read_state(workdir) is None


def test_control_plane_context_manager_stops_processes(bin_dir: Path) -> None:
    with ControlPlane(bin_dir=bin_dir) as cp:
        assert cp.request("/readyz")[0] == 200
        workdir, records = cp.dir, list(cp.processes)
        port = cp.apiserver_port
    assert not any(is_running(r) for r in records)
    assert not workdir.exists(), "temporary workdir not removed"
    assert _wait_until(lambda: _port_free(port))


class _DenyHandler(http.server.BaseHTTPRequestHandler):
    """Minimal admission webhook: denies every AdmissionReview with a fixed message."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": False,
                         "status": {"code": 403, "message": "denied by e2e webhook"}},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_pki_is_trusted_by_apiserver(control_plane: ControlPlane, kubectl, tmp_path: Path) -> None:
    # The operator serves admission with these files (kopf.WebhookServer certfile/pkeyfile/cafile);
    # prove kube-apiserver accepts the chain by calling a plain HTTPS webhook that denies everything.
    pki = write_webhook_pki(tmp_path / "webhook")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DenyHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.certfile), str(pki.pkeyfile))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    label = _name("e2e-webhook")
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": label},
        "webhooks": [{
            "name": f"{label}.soc2infra.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 5,
            # Only objects carrying this test's label: the control plane is shared with other tests.
            "objectSelector": {"matchLabels": {"soc2infra-e2e": label}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}],
            "clientConfig": {"url": f"https://127.0.0.1:{server.server_address[1]}/validate",
                             "caBundle": base64.b64encode(pki.cafile.read_bytes()).decode()},
        }],
    }
    try:
        kubectl("apply", "-f", "-", input=json.dumps(config))
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": label, "namespace": "default", "labels": {"soc2infra-e2e": label}}}
        # The configuration takes effect asynchronously; retry until the webhook is consulted.
        denied = None
        for _ in range(50):
            denied = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(cm), check=False)
            if denied.returncode != 0:
                break
            time.sleep(0.1)
        assert denied is not None and denied.returncode != 0
        assert "denied by e2e webhook" in denied.stderr, denied.stderr
        # Unlabelled objects are untouched.
        kubectl("create", "configmap", _name("free"), "--dry-run=server")
    finally:
        kubectl("delete", "validatingwebhookconfiguration", label, "--ignore-not-found", check=False)
        server.shutdown()
