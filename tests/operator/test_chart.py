"""The Helm chart (charts/soc2infra): rendered with the real helm, scanned with the project's own policies.

The chart must pass the pack it enforces: every finding on its rendered output is either absent or
suppressed by a documented ``soc2infra.io/ignore`` annotation with a reason. Besides that, the
rendered objects are checked against the operator's own expectations (settings file it can load,
webhook names and paths its handlers serve, CRDs identical to the operator's).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from soc2infra._core.pack import load_pack
from soc2infra._core.scan import ScanOptions, scan
from soc2infra_operator.install import CRD_DIR
from soc2infra_operator.settings import OperatorSettings, apply_overrides, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "soc2infra"
DOCS = ROOT / "docs" / "operator.md"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def helm(require_binary: Callable[[str], str]) -> str:
    return require_binary("helm")


# What production needs (the chart refuses to render without both unless explicitly disabled):
# a signing key and an anchor target. Every render starts from them unless base=False.
PRODUCTION = ("evidence.signingKey.existingSecret=ledger-signing", "evidence.anchor.target=s3://evidence-anchors/prod")
PRODUCTION_VALUES = "evidence:\n  signingKey: {existingSecret: ledger-signing}\n  anchor: {target: s3://evidence-anchors/prod}\n"


def render(helm: str, *sets: str, namespace: str = "soc2infra", release: str = "soc2infra",
           check: bool = True, base: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [helm, "template", release, str(CHART), "--namespace", namespace, "--kube-version", "1.34.0"]
    for s in (*PRODUCTION, *sets) if base else sets:
        argv += ["--set", s]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm template failed: {result.stderr}")
    return result


def objects(helm: str, *sets: str, **kw: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(helm, *sets, **kw).stdout) if isinstance(d, dict)]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    # The waiver governance webhooks (<release>-waivers) are checked on their own.
    found = [d for d in docs if d["kind"] == kind and not d["metadata"]["name"].endswith("-waivers")]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


VARIANTS = {
    "defaults": "",
    "released": f"image:\n  digest: \"{DIGEST}\"\nreplicaCount: 3\n",
    "cert-manager-persistent": "webhook:\n  certificates: {mode: certManager}\nevidence:\n  persistence: {enabled: true}\n",
    "existing-secret-postgres": ("webhook:\n  failurePolicy: Ignore\n  certificates: {mode: existingSecret, "
                                 "existingSecret: my-tls, caBundle: Q0E=}\nevidence: {existingSecret: ledger-url}\n"
                                 "crds: {policyReports: false, kopfPeering: true}\nadmission: {mode: warn}\n"),
    "signed-monitored": ("evidence:\n  signingKey: {existingSecret: ledger-signing}\n"
                         "metrics:\n  serviceMonitor: {enabled: true, labels: {release: prom}}\n"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_chart_passes_the_projects_own_policies(helm, variant, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SOC2INFRA_HELM", helm)  # scan renders through the same helm
    values = tmp_path / "values.yaml"
    values.write_text(VARIANTS[variant] or "{}\n", encoding="utf-8")
    production = tmp_path / "production.yaml"
    production.write_text(PRODUCTION_VALUES, encoding="utf-8")
    result = scan([str(CHART)], load_pack(), ScanOptions(helm_values=(production, values), base_dir=ROOT))
    assert result.errors == []
    kinds = {r.type for r in result.resources}
    assert {"Deployment", "ClusterRole", "ValidatingWebhookConfiguration", "PodDisruptionBudget"} <= kinds
    unsuppressed = [f"{f.rule_id} {f.resource.address}: {f.message}" for f in result.findings if not f.suppressed]
    assert unsuppressed == []
    documented = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    for f in result.findings:  # every exception carries a reason and is documented
        assert f.waiver is not None and f.waiver.reason.strip(), f.rule_id
        assert f.rule_id in documented, f"{f.rule_id} is waived in the chart but not documented in {DOCS}"
    suppressed = {f.rule_id for f in result.findings}
    # The only exception: no digest before a release; it disappears once image.digest is set.
    assert suppressed == (set() if "digest" in VARIANTS[variant] else {"SOC2-K8S-IMAGE-002"})


def test_helm_lint_and_schema_rejects_bad_values(helm):
    lint = subprocess.run([helm, "lint", str(CHART), "--kube-version", "1.34.0"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for bad, needle in [("webhook.timeoutSeconds=31", "timeoutSeconds"), ("image.tag=latest", "tag"),
                        ("webhook.failurePolicy=Maybe", "failurePolicy"), ("admission.mode=block", "mode"),
                        ("admission.kinds={Gadget}", "kinds"), ("unknownKey=1", "unknownKey"),
                        ("image.digest=sha256:short", "digest"), ("metrics.port=8080", "port"),
                        ("metrics.port=80", "port"), ("evidence.signingKey.key=../etc/x", "key"),
                        ("metrics.serviceMonitor.interval=often", "interval")]:
        result = render(helm, bad, check=False)
        assert result.returncode != 0 and needle in result.stderr, (bad, result.stderr)


def test_deployment_is_hardened_and_available(helm):
    docs = objects(helm)
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] >= 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]
    # The API token comes from an explicit, expiring projected volume.
    token = next(v for v in pod["volumes"] if v["name"] == "api-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] <= 3607
    sa = one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert one(docs, "Service")["spec"]["type"] == "ClusterIP"


def test_rbac_is_least_privilege(helm):
    docs = objects(helm)
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert "secrets" not in rule["resources"]
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            if rule["apiGroups"] not in (["wgpolicyk8s.io"], ["coordination.k8s.io"]):
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert all(b["roleRef"]["name"] != "cluster-admin" for b in bindings)
    assert all(s["name"] != "default" for b in bindings for s in b["subjects"])


def test_webhook_configuration_follows_values_and_matches_the_operator(helm):
    from soc2infra_operator.runtime import Runtime
    from soc2infra_operator.webhookconfig import WebhookTarget, handler_id, webhook_configuration

    docs = objects(helm, "webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=7",
                   "admission.excludedNamespaces={kube-system,sandbox}", namespace="compliance", release="r")
    vwc = one(docs, "ValidatingWebhookConfiguration")
    hooks = vwc["webhooks"]
    names = [h["name"] for h in hooks]
    assert len(names) == len(set(names))
    assert all(n.count(".") >= 2 for n in names), names  # the API server wants three DNS labels
    assert {h["failurePolicy"] for h in hooks} == {"Ignore"} and {h["timeoutSeconds"] for h in hooks} == {7}
    for h in hooks:
        expr = h["namespaceSelector"]["matchExpressions"][0]
        assert (expr["key"], expr["operator"]) == ("kubernetes.io/metadata.name", "NotIn")
        assert expr["values"] == ["compliance", "kube-system", "sandbox"]  # the release namespace added
        svc = h["clientConfig"]["service"]
        assert (svc["name"], svc["namespace"], svc["port"]) == ("r-soc2infra", "compliance", 443)
        assert base64_pem(h["clientConfig"]["caBundle"]).startswith("-----BEGIN CERTIFICATE-----")
    # The chart's default kinds are exactly what the operator registers handlers for, and each
    # webhook's path is that handler's id.
    runtime = Runtime.build(OperatorSettings())
    assert [h["clientConfig"]["service"]["path"] for h in hooks] == [f"/{handler_id(k)}"
                                                                     for k in sorted(runtime.kinds)]
    # Same names, rules and selectors as the operator's own builder for the same settings.
    settings = apply_overrides(OperatorSettings(), [
        ("webhook.failure_policy", "Ignore"), ("webhook.timeout_seconds", "7"),
        ("webhook.configuration_name", "r-soc2infra"), ("scope.excluded_namespaces", "kube-system,sandbox"),
        ("scope.own_namespace", "compliance")], "test")
    targets = []
    for h in hooks:
        rule = h["rules"][0]
        kind = h["name"].split(".", 1)[0].removeprefix("validate-")
        targets.append(WebhookTarget(f"validate-{kind}", kind, rule["apiGroups"][0], tuple(rule["apiVersions"]),
                                     rule["resources"][0], True))
    ours = webhook_configuration(settings, targets, {"service": {"name": "r-soc2infra", "namespace": "compliance",
                                                                 "port": 443}})
    strip = ("clientConfig",)
    assert [{k: v for k, v in h.items() if k not in strip} for h in hooks] == \
        [{k: v for k, v in h.items() if k not in strip} for h in ours["webhooks"]]


def test_waiver_webhooks_match_the_operator_and_fail_closed(helm):
    from soc2infra_operator.webhookconfig import waiver_configurations

    docs = objects(helm, "webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=7", namespace="compliance",
                   release="r")
    chart = {d["kind"]: d for d in docs if d["metadata"]["name"] == "r-soc2infra-waivers"}
    assert set(chart) == {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    settings = apply_overrides(OperatorSettings(), [("webhook.timeout_seconds", "7"),
                                                    ("webhook.configuration_name", "r-soc2infra")], "test")
    service = {"service": {"name": "r-soc2infra", "namespace": "compliance", "port": 443}}
    for ours in waiver_configurations(settings, service):
        theirs = chart[ours["kind"]]
        assert [h["clientConfig"]["service"]["path"] for h in theirs["webhooks"]] == \
            [h["clientConfig"]["service"]["path"] for h in ours["webhooks"]]
        strip = ("clientConfig",)
        assert [{k: v for k, v in h.items() if k not in strip} for h in theirs["webhooks"]] == \
            [{k: v for k, v in h.items() if k not in strip} for h in ours["webhooks"]]
        # Waiver governance fails closed whatever webhook.failurePolicy says, in every namespace.
        assert {h["failurePolicy"] for h in theirs["webhooks"]} == {"Fail"}
        assert all("namespaceSelector" not in h for h in theirs["webhooks"])
    config = one(objects(helm, "waivers.requireIndependentApproval=true", "waivers.maxWaiverDays=90"),
                 "ConfigMap")["data"]["operator.yaml"]
    import yaml

    assert yaml.safe_load(config)["waivers"] == {"require_independent_approval": True, "max_days": 90}


def base64_pem(value: str) -> str:
    import base64

    return base64.b64decode(value).decode("ascii")


def test_generated_certificate_serves_the_service_name(helm):
    from cryptography import x509

    docs = objects(helm, namespace="compliance", release="r")
    secret = next(d for d in docs if d["kind"] == "Secret")
    cert = x509.load_pem_x509_certificate(base64_pem(secret["data"]["tls.crt"]).encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert "r-soc2infra.compliance.svc" in names
    ca = x509.load_pem_x509_certificate(base64_pem(secret["data"]["ca.crt"]).encode())
    assert cert.issuer == ca.subject
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert vwc["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


def test_operator_settings_in_the_chart_load(helm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    docs = objects(helm, "admission.actions.SOC2-K8S-POD-005=deny", "evidence.failClosed=false",
                   "audit.intervalSeconds=120")
    config = one(docs, "ConfigMap")["data"]["operator.yaml"]
    path = tmp_path / "operator.yaml"
    path.write_text(config, encoding="utf-8")
    s = load_settings(path, environ={"POD_NAMESPACE": "soc2infra"})  # raises on any unknown key
    assert s.webhook.registration == "none" and s.webhook.addr == "0.0.0.0"
    assert s.admission.actions == (("SOC2-K8S-POD-005", "deny"),)
    assert s.evidence.fail_closed is False and s.audit.interval_seconds == 120
    assert s.scope.all_excluded_namespaces[-1] == "soc2infra"
    assert s.liveness and s.liveness.endswith("/healthz")
    defaults = load_settings(_config_file(objects(helm), tmp_path), environ={})
    assert defaults.evidence.fail_closed is None and defaults.evidence.ledger == "/var/lib/soc2infra/ledger.db"
    # Staged rollout: a first install warns (and records what it would deny); enforce is an upgrade.
    assert defaults.admission.mode == "warn"
    enforcing = load_settings(_config_file(objects(helm, "admission.mode=enforce"), tmp_path), environ={})
    assert enforcing.admission.mode == "enforce"


def _config_file(docs: list[dict[str, Any]], tmp_path: Path) -> Path:
    path = tmp_path / "defaults.yaml"
    path.write_text(one(docs, "ConfigMap")["data"]["operator.yaml"], encoding="utf-8")
    return path


def test_chart_crds_are_the_operators():
    for name in ("soc2waivers.yaml", "soc2clusterwaivers.yaml"):
        assert (CHART / "crds" / name).read_bytes() == (CRD_DIR / name).read_bytes(), name
    for name in ("policyreports.yaml", "kopf-peering.yaml"):
        assert (CHART / "files" / name).read_bytes() == (CRD_DIR / name).read_bytes(), name


def test_values_file_matches_its_schema():
    import jsonschema  # a test dependency: missing it is an error, never a skip
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(values, schema)
    from soc2infra_operator.runtime import Runtime

    assert values["admission"]["kinds"] == sorted(Runtime.build(OperatorSettings()).kinds)


def test_metrics_are_exposed_and_scrapable(helm, tmp_path: Path):
    docs = objects(helm, "metrics.serviceMonitor.enabled=true")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    service_ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
    assert service_ports["metrics"]["targetPort"] == "metrics" and service_ports["metrics"]["port"] == 9090
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    ingress_ports = {p["port"] for rule in one(docs, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]}
    assert 9090 in ingress_ports
    settings = load_settings(_config_file(docs, tmp_path), environ={})
    assert settings.metrics_port == 9090  # the operator serves what the chart exposes
    off = objects(helm, "metrics.enabled=false", "metrics.serviceMonitor.enabled=true")
    assert not [d for d in off if d["kind"] == "ServiceMonitor"]
    assert load_settings(_config_file(off, tmp_path), environ={}).metrics_port is None
    assert "ServiceMonitor" not in {d["kind"] for d in objects(helm)}  # needs its CRD: opt-in


def test_signing_key_comes_from_a_secret(helm, tmp_path: Path):
    docs = objects(helm, "evidence.signingKey.existingSecret=ledger-signing", "evidence.signingKey.key=k.pem")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "signing-key"]
    assert volume["secret"]["secretName"] == "ledger-signing"
    assert volume["secret"]["items"] == [{"key": "k.pem", "path": "k.pem"}]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "signing-key"]
    assert mount["readOnly"] is True
    settings = load_settings(_config_file(docs, tmp_path), environ={})
    assert settings.evidence.signing_key == f"{mount['mountPath']}/k.pem"
    assert "BEGIN" not in render(helm, "evidence.signingKey.existingSecret=ledger-signing").stdout
    unsigned = objects(helm, "evidence.signingKey.existingSecret=", "evidence.signingKey.required=false")
    assert load_settings(_config_file(unsigned, tmp_path), environ={}).evidence.signing_key is None


def test_chart_requires_a_signing_key_and_an_anchor_unless_disabled(helm, tmp_path: Path):
    """Production evidence by default: helm template fails, naming what is missing and how to opt out."""
    bare = render(helm, base=False, check=False)
    assert bare.returncode != 0
    assert "evidence.signingKey.existingSecret" in bare.stderr and "evidence.signingKey.required=false" in bare.stderr
    assert "evidence.anchor.target=s3://BUCKET/PREFIX" in bare.stderr and "evidence.anchor.enabled=false" in bare.stderr
    key_only = render(helm, "evidence.signingKey.existingSecret=k", base=False, check=False)
    assert key_only.returncode != 0 and "signingKey" not in key_only.stderr and "anchor.target" in key_only.stderr
    anchor_only = render(helm, "evidence.anchor.target=s3://b-1/p", base=False, check=False)
    assert anchor_only.returncode != 0 and "anchor.target" not in anchor_only.stderr
    # Explicitly disabled: renders, with neither a key nor an anchor in the operator's settings.
    off = objects(helm, "evidence.signingKey.required=false", "evidence.anchor.enabled=false", base=False)
    settings = load_settings(_config_file(off, tmp_path), environ={})
    assert settings.evidence.signing_key is None and settings.anchor.target is None
    # The anchor's values reach the operator's settings and the credentials come from a Secret.
    docs = objects(helm, "evidence.anchor.intervalSeconds=600", "evidence.anchor.lockMode=GOVERNANCE",
                   "evidence.anchor.s3Endpoint=http://minio.storage:9000", "evidence.anchor.credentialsSecret=aws",
                   "evidence.anchor.retentionDays=30")
    s = load_settings(_config_file(docs, tmp_path), environ={})
    assert (s.anchor.target, s.anchor.interval_seconds, s.anchor.lock_mode, s.anchor.retention_days) == \
        ("s3://evidence-anchors/prod", 600.0, "GOVERNANCE", 30)
    assert s.anchor.s3_endpoint == "http://minio.storage:9000" and s.anchor.name == "soc2infra"
    assert s.evidence.signing_key and s.evidence.ledger  # anchored checkpoints are signed
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "aws"}}]
    assert "envFrom" not in one(objects(helm), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for bad, needle in [("evidence.anchor.target=http://bucket/x", "target"),
                        ("evidence.anchor.lockMode=LEGAL", "lockMode"),
                        ("evidence.anchor.intervalSeconds=0", "intervalSeconds"),
                        ("evidence.signingKey.required=maybe", "required")]:
        result = render(helm, bad, check=False)
        assert result.returncode != 0 and needle in result.stderr, (bad, result.stderr)


def test_cluster_id_reaches_the_operator_settings(helm, tmp_path: Path):
    """evidence.clusterId → evidence.cluster_id (records filterable per cluster); empty: resolved at start."""
    named = load_settings(_config_file(objects(helm, "evidence.clusterId=prod-eu-1"), tmp_path), environ={})
    assert named.evidence.cluster_id == "prod-eu-1"
    assert load_settings(_config_file(objects(helm), tmp_path), environ={}).evidence.cluster_id is None
