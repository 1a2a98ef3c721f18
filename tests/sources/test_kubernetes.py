"""The Kubernetes source: manifests, the normalized pod view, waivers, Helm and Kustomize
(with the real helm and kubectl binaries), and the demo tree under examples/kubernetes."""

from __future__ import annotations

import copy
import json
import random
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soc2infra._cogs.model import Resource
from soc2infra._core.engine.core import ResourceIndex
from soc2infra._core.engine.evaluate import evaluate
from soc2infra._core.engine.policy import TARGET_GROUPS, PolicyPack
from soc2infra._core.pack import load_pack
from soc2infra._core.sources.kubernetes import (
    WORKLOAD_KINDS,
    is_helm_chart,
    is_kustomization,
    kustomize_bases,
    load_manifest_text,
    looks_like_kubernetes,
    namespace_resources,
    object_to_resource,
    render_helm_chart,
    render_kustomize,
)

REPO = Path(__file__).resolve().parents[2]
PACK = load_pack()


def load(text: str, file: str = "m.yaml") -> tuple[dict[str, Resource], list]:
    resources, errors = load_manifest_text(textwrap.dedent(text), file)
    return {r.address: r for r in resources}, errors


def failing_rules(resources: list[Resource], rule_prefix: str = "SOC2-K8S-") -> dict[str, set[str]]:
    """address → ids of the Kubernetes rules that fail on it (waivers not applied)."""
    pack = PolicyPack([r for r in PACK.rules if r.id.startswith(rule_prefix)], PACK.controls, "")
    findings, _passes = evaluate(resources, pack, ResourceIndex(resources))
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.status == "fail":
            out.setdefault(f.resource.address, set()).add(f.rule_id)
    return out


# --------------------------------------------------------------------------- manifests

def test_multi_document_stream_addresses_lines_and_namespaces():
    res, errors = load("""\
        # payments
        apiVersion: v1
        kind: Namespace
        metadata: {name: payments}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api, namespace: payments}
        spec: {}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata: {name: ops, namespace: ignored}
        ---
        apiVersion: storage.k8s.io/v1
        kind: StorageClass
        metadata: {name: gp3}
        provisioner: ebs.csi.aws.com
        """)
    assert errors == []
    assert list(res) == [
        "v1/Namespace/payments",
        "apps/v1/Deployment/payments/api",
        "v1/Service/default/web",  # namespaced kind without a namespace: default, as the API server does
        "rbac.authorization.k8s.io/v1/ClusterRole/ops",
        "storage.k8s.io/v1/StorageClass/gp3",
    ]
    assert [r.line for r in res.values()] == [2, 6, 11, 15, 19]
    assert res["v1/Namespace/payments"].namespace == "payments"  # so link: namespace works from it
    assert res["apps/v1/Deployment/payments/api"].namespace == "payments"
    assert res["v1/Service/default/web"].namespace == "default"
    assert res["rbac.authorization.k8s.io/v1/ClusterRole/ops"].namespace is None
    assert "_namespace" not in res["storage.k8s.io/v1/StorageClass/gp3"].attributes
    dep = res["apps/v1/Deployment/payments/api"]
    assert dep.kind == "kubernetes" and dep.type == "Deployment" and dep.name == "api"
    assert dep.file == "m.yaml"
    assert {"payments/api", "Deployment/payments/api"} <= dep.identities


def test_crd_declared_cluster_scope_and_custom_resources():
    res, _ = load("""\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: tenants.acme.io}
        spec:
          group: acme.io
          scope: Cluster
          names: {kind: Tenant, plural: tenants}
        ---
        apiVersion: acme.io/v1
        kind: Tenant
        metadata: {name: blue}
        ---
        apiVersion: cert-manager.io/v1
        kind: ClusterIssuer
        metadata: {name: letsencrypt}
        ---
        apiVersion: velero.io/v1
        kind: Schedule
        metadata: {name: nightly, namespace: velero}
        """)
    assert set(res) == {
        "apiextensions.k8s.io/v1/CustomResourceDefinition/tenants.acme.io",
        "acme.io/v1/Tenant/blue",
        "cert-manager.io/v1/ClusterIssuer/letsencrypt",
        "velero.io/v1/Schedule/velero/nightly",
    }


def test_list_kinds_expand_with_item_lines_and_typed_lists_fill_the_kind():
    res, errors = load("""\
        apiVersion: v1
        kind: List
        items:
          - apiVersion: v1
            kind: ConfigMap
            metadata: {name: a, namespace: x}
          - apiVersion: v1
            kind: Secret
            metadata: {name: b, namespace: x}
        ---
        apiVersion: apps/v1
        kind: DeploymentList
        items:
          - metadata: {name: api, namespace: shop}
            spec: {template: {spec: {containers: [{name: c, image: "nginx:1.27"}]}}}
        """)
    assert errors == []
    assert res["v1/ConfigMap/x/a"].line == 4
    assert res["v1/Secret/x/b"].line == 7
    dep = res["apps/v1/Deployment/shop/api"]
    assert dep.type == "Deployment" and dep.attributes["kind"] == "Deployment"
    assert dep.attributes["_containers"][0]["image"] == "nginx:1.27"
    assert dep.line == 14
    assert "v1/List/default/<unnamed>" not in res


def test_json_manifests_with_tabs_and_json_lists():
    single = '{\n\t"apiVersion": "v1",\n\t"kind": "Pod",\n\t"metadata": {"name": "p", "namespace": "n"},\n' \
             '\t"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}\n}\n'
    res, errors = load(single, "pod.json")
    assert errors == [] and list(res) == ["v1/Pod/n/p"]
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    ]}, indent=2)
    res, errors = load(listed, "list.json")
    assert errors == [] and set(res) == {"v1/Service/default/s", "v1/ConfigMap/default/c"}


def test_anchors_and_aliases_are_resolved_inside_a_document():
    res, errors = load("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: api
          namespace: shop
          labels: &labels {app: api, tier: web}
        spec:
          selector: {matchLabels: *labels}
          template:
            metadata: {labels: *labels}
            spec:
              containers:
                - &main {name: api, image: "ghcr.io/acme/api:1.0.0", securityContext: {privileged: true}}
                - <<: *main
                  name: copy
        """)
    assert errors == []
    dep = res["apps/v1/Deployment/shop/api"]
    assert dep.attributes["_pod_metadata"]["labels"] == {"app": "api", "tier": "web"}
    assert [c["name"] for c in dep.attributes["_containers"]] == ["api", "copy"]
    assert dep.attributes["_containers"][1]["securityContext"] == {"privileged": True}


def test_timestamps_stay_text_so_attributes_are_json_ready():
    res, _ = load("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c, namespace: x, creationTimestamp: 2024-05-01T10:00:00Z}
        data: {since: 2024-05-01}
        """)
    json.dumps(res["v1/ConfigMap/x/c"].attributes)  # raises on datetime objects


@pytest.mark.parametrize("text", [
    "stages: [build, test]\nbuild:\n  script: [make]\n",                                  # GitLab CI
    "replicaCount: 2\nimage:\n  repository: nginx\n  tag: '1.27'\n",                       # Helm values
    "services:\n  web:\n    image: nginx\n    ports: ['80:80']\n",                           # docker-compose
    "apiVersion: v2\nname: chart\nversion: 1.0.0\n",                                       # Chart.yaml
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
    "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",               # kubeconfig
    "- just\n- a\n- list\n",
    "plain scalar\n",
    "",
    "# only a comment\n---\n---\n",
    "[]",
])
def test_non_kubernetes_yaml_is_skipped_without_errors(text):
    resources, errors = load_manifest_text(text, "x.yaml")
    assert resources == [] and errors == []


def test_a_malformed_document_is_an_error_at_its_line_and_the_others_still_load():
    res, errors = load("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: before, namespace: x}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: broken
            namespace: x
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: after, namespace: x}
        """, "cm.yaml")
    assert set(res) == {"v1/ConfigMap/x/before", "v1/ConfigMap/x/after"}
    assert len(errors) == 1
    assert errors[0].file == "cm.yaml"
    assert errors[0].line == 9  # the over-indented key
    assert "invalid YAML" in errors[0].message
    assert res["v1/ConfigMap/x/after"].line == 11


def test_looks_like_kubernetes():
    assert looks_like_kubernetes("a.yaml", "apiVersion: v1\nkind: Pod\n")
    assert looks_like_kubernetes("a.json", '{"apiVersion": "v1", "kind": "Pod"}')
    assert not looks_like_kubernetes(".gitlab-ci.yml", "stages: [a]\n")
    assert not looks_like_kubernetes("values.yaml", "apiVersion: v1\nimage: x\n")
    assert not looks_like_kubernetes(
        "templates/d.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n")


# --------------------------------------------------------------------------- normalized pod view

BAD_POD_SPEC: dict[str, Any] = {
    "hostNetwork": True,
    "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]},
    "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
    "initContainers": [{"name": "init", "image": "busybox", "securityContext": {"privileged": True}}],
    "containers": [{
        "name": "app", "image": "ghcr.io/acme/app:latest",
        "ports": [{"containerPort": 80, "hostPort": 80}],
        "env": [{"name": "DB_PASSWORD", "value": "hunter2"}],
        "securityContext": {"runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}, "procMount": "Unmasked"},
    }],
}
POD_LABELS = {"app": "demo"}


def wrap_pod_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The same pod spec as each pod-bearing kind would carry it."""
    spec = copy.deepcopy(spec)
    template = {"metadata": {"labels": POD_LABELS}, "spec": spec}
    api = {"Pod": "v1", "ReplicationController": "v1", "Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    obj: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": {"name": "demo", "namespace": "shop"}}
    if kind == "Pod":
        obj["metadata"]["labels"] = POD_LABELS
        obj["spec"] = spec
    elif kind == "CronJob":
        obj["spec"] = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    else:
        obj["spec"] = {"selector": {"matchLabels": POD_LABELS}, "template": template}
    return obj


def test_every_pod_bearing_kind_is_a_workload_target():
    assert set(TARGET_GROUPS["@workload"]) == set(WORKLOAD_KINDS)


@pytest.mark.parametrize("kind", sorted(WORKLOAD_KINDS))
def test_pod_view_is_the_same_for_every_pod_bearing_kind(kind):
    res = object_to_resource(wrap_pod_spec(kind, BAD_POD_SPEC), "w.yaml", 1)
    attrs = res.attributes
    assert attrs["_pod"]["hostNetwork"] is True
    assert attrs["_pod_metadata"]["labels"] == POD_LABELS
    assert [c["name"] for c in attrs["_containers"]] == ["app"]          # probes: regular containers only
    assert [c["name"] for c in attrs["_all_containers"]] == ["app", "init"]
    assert attrs["_service_account"] == "ServiceAccount/shop/default"


def test_ephemeral_containers_are_in_all_containers():
    pod = wrap_pod_spec("Pod", {"containers": [{"name": "a", "image": "x:1"}],
                                "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}]})
    attrs = object_to_resource(pod).attributes
    assert [c["name"] for c in attrs["_all_containers"]] == ["a", "debug"]
    assert [c["name"] for c in attrs["_containers"]] == ["a"]


def workload_rules() -> set[str]:
    """Kubernetes rules written against "@workload" (every pod-bearing kind), enabled by default."""
    return {r.id for r in PACK.rules
            if r.enabled and r.id.startswith("SOC2-K8S-") and set(r.targets) >= WORKLOAD_KINDS}


EXPECTED_ON_BAD_POD = {
    "SOC2-K8S-POD-001", "SOC2-K8S-POD-002", "SOC2-K8S-POD-003", "SOC2-K8S-POD-004", "SOC2-K8S-POD-005",
    "SOC2-K8S-POD-006", "SOC2-K8S-POD-007", "SOC2-K8S-POD-008", "SOC2-K8S-POD-009", "SOC2-K8S-POD-010",
    "SOC2-K8S-POD-011", "SOC2-K8S-POD-012", "SOC2-K8S-POD-013", "SOC2-K8S-POD-014", "SOC2-K8S-POD-015",
    "SOC2-K8S-POD-016", "SOC2-K8S-AVAIL-001",
    "SOC2-K8S-AVAIL-002", "SOC2-K8S-IMAGE-001", "SOC2-K8S-IMAGE-002", "SOC2-K8S-SECRET-001",
    "SOC2-K8S-BACKUP-001",
}


@pytest.mark.parametrize("kind", sorted(WORKLOAD_KINDS))
def test_every_workload_rule_fires_for_every_pod_bearing_kind(kind):
    res = object_to_resource(wrap_pod_spec(kind, BAD_POD_SPEC), "w.yaml", 1)
    failed = failing_rules([res]).get(res.address, set())
    # Every rule written against "@workload" finds the problem whatever the kind.
    assert workload_rules() - {"SOC2-K8S-NS-001"} == EXPECTED_ON_BAD_POD
    assert failed >= EXPECTED_ON_BAD_POD
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"):
        assert {"SOC2-K8S-AVAIL-003", "SOC2-K8S-AVAIL-004"} <= failed
    else:
        assert not failed & {"SOC2-K8S-AVAIL-003", "SOC2-K8S-AVAIL-004"}


@pytest.mark.parametrize("kind", sorted(WORKLOAD_KINDS))
def test_a_privileged_init_container_is_found_in_every_kind(kind):
    spec = {"initContainers": [{"name": "i", "image": "busybox:1.36", "securityContext": {"privileged": True}}],
            "containers": [{"name": "a", "image": "ghcr.io/acme/a:1.0.0"}]}
    res = object_to_resource(wrap_pod_spec(kind, spec))
    assert "SOC2-K8S-POD-001" in failing_rules([res]).get(res.address, set())
    spec["initContainers"][0]["securityContext"]["privileged"] = False
    res = object_to_resource(wrap_pod_spec(kind, spec))
    assert "SOC2-K8S-POD-001" not in failing_rules([res]).get(res.address, set())


def test_probe_rules_ignore_init_containers():
    spec = {"initContainers": [{"name": "i", "image": "busybox:1.36"}],
            "containers": [{"name": "a", "image": "a:1", "livenessProbe": {"exec": {"command": ["true"]}},
                            "readinessProbe": {"exec": {"command": ["true"]}}}]}
    res = object_to_resource(wrap_pod_spec("Deployment", spec))
    assert not failing_rules([res]).get(res.address, set()) & {"SOC2-K8S-AVAIL-003", "SOC2-K8S-AVAIL-004"}


GARBAGE: list[Any] = [
    None, [], "text", 42, {}, {"kind": None}, {"kind": ["Pod"]}, {"apiVersion": 1, "kind": 2},
    {"kind": "Pod", "metadata": None, "spec": None},
    {"kind": "Pod", "metadata": [], "spec": []},
    {"kind": "Pod", "metadata": {"name": None, "namespace": 5, "annotations": []}},
    {"kind": "Pod", "metadata": {"annotations": {"soc2infra.io/ignore": None}}},
    {"kind": "Pod", "spec": {"containers": None, "initContainers": [None, 1, "x", {"name": "ok"}]}},
    {"kind": "Pod", "spec": {"containers": {"name": "not-a-list"}, "volumes": "x"}},
    {"kind": "Deployment", "spec": {"template": []}},
    {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"securityContext": []}]}}}},
    {"kind": "CronJob", "spec": {"jobTemplate": {"spec": None}}},
    {"kind": "CronJob", "spec": "x"},
    {"kind": "HorizontalPodAutoscaler", "spec": {"scaleTargetRef": ["x"]}},
    {"kind": "ConfigMap", "data": ["x"]},
    {"kind": "Namespace", "metadata": {"name": 7}},
    {"kind": "Role", "rules": None},
    {"kind": "Role", "rules": [None, {"verbs": None}]},
    {"kind": "Service", "spec": {"type": None, "loadBalancerSourceRanges": "0.0.0.0/0"}},
]


@pytest.mark.parametrize("obj", GARBAGE, ids=[str(i) for i in range(len(GARBAGE))])
def test_object_to_resource_never_raises_on_garbage(obj):
    res = object_to_resource(obj)
    assert res.kind == "kubernetes" and isinstance(res.address, str)
    failing_rules([res])  # and the rule set copes with whatever came out


def _mangle(value: Any, rng: random.Random) -> Any:
    if rng.random() < 0.15:
        return rng.choice([None, [], {}, "x", 0, True, [None], {"a": None}])
    if isinstance(value, dict):
        return {k: _mangle(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [_mangle(v, rng) for v in value]
    return value


def test_object_to_resource_survives_randomly_mangled_workloads():
    rng = random.Random(20240501)
    for _ in range(300):
        kind = rng.choice(sorted(WORKLOAD_KINDS))
        obj = _mangle(wrap_pod_spec(kind, BAD_POD_SPEC), rng)
        res = object_to_resource(obj)
        failing_rules([res])


# --------------------------------------------------------------------------- waivers

def test_waivers_from_annotations_and_comments():
    res, _ = load("""\
        # soc2infra:ignore SOC2-K8S-POD-008 node metrics need the host network
        apiVersion: apps/v1
        kind: DaemonSet
        metadata:
          name: exporter
          namespace: monitoring
          annotations:
            soc2infra.io/ignore: "SOC2-K8S-POD-009 reads /proc; SOC2-K8S-POD-004"
        spec:
          template:
            metadata:
              annotations: {soc2infra.io/ignore: "SOC2-K8S-IMAGE-002 vendor image"}
            spec:
              containers:
                - name: e  # soc2infra:ignore SOC2-K8S-POD-005 writes its textfile collector
                  image: quay.io/prometheus/node-exporter:v1.8.2
        # soc2infra:ignore SOC2-K8S-NET-002 legacy VIP, removal tracked in NET-77
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: legacy, namespace: monitoring}
        """)
    ds = res["apps/v1/DaemonSet/monitoring/exporter"]
    assert set(ds.inline_waivers) == {
        ("SOC2-K8S-POD-009", "reads /proc", 0),
        ("SOC2-K8S-POD-004", "", 0),            # no reason: kept, the waiver layer rejects it
        ("SOC2-K8S-IMAGE-002", "vendor image", 0),
        ("SOC2-K8S-POD-008", "node metrics need the host network", 1),
        ("SOC2-K8S-POD-005", "writes its textfile collector", 15),
    }
    # A column-0 comment right above `---` belongs to the next document.
    assert res["v1/Service/monitoring/legacy"].inline_waivers == (
        ("SOC2-K8S-NET-002", "legacy VIP, removal tracked in NET-77", 17),)


def test_comment_waivers_inside_a_list_go_to_their_item():
    res, _ = load("""\
        apiVersion: v1
        kind: List
        items:
          - apiVersion: v1
            kind: Service
            metadata: {name: a, namespace: x}
          # soc2infra:ignore SOC2-K8S-NET-001 partner endpoint
          - apiVersion: v1
            kind: Service
            metadata: {name: b, namespace: x}
        """)
    assert res["v1/Service/x/a"].inline_waivers == ()
    assert res["v1/Service/x/b"].inline_waivers == (("SOC2-K8S-NET-001", "partner endpoint", 7),)


# --------------------------------------------------------------------------- synthetic namespaces

def test_namespace_resources_add_undeclared_namespaces_once():
    resources, _ = load_manifest_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Namespace
        metadata: {name: declared}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: a, namespace: declared}
        spec: {containers: [{name: a, image: "a:1"}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: b, namespace: used}
        spec: {containers: [{name: b, image: "b:1"}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: c, namespace: used}
        spec: {containers: [{name: c, image: "c:1"}]}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: only-config, namespace: config-only}
        """), "ns.yaml")
    extra = namespace_resources(resources)
    assert [r.address for r in extra] == ["v1/Namespace/used"]
    used = extra[0]
    assert used.type == "Namespace" and used.namespace == "used"
    assert used.meta["synthetic"] is True and used.attributes["_synthetic"] is True
    assert (used.file, used.line) == ("ns.yaml", 10)
    assert namespace_resources(resources + extra) == []


def test_network_policy_rule_sees_synthetic_namespaces():
    resources, _ = load_manifest_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a, namespace: open}
        spec: {containers: [{name: a, image: "a:1"}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: b, namespace: segmented}
        spec: {containers: [{name: b, image: "b:1"}]}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: segmented}
        spec: {podSelector: {}}
        """), "np.yaml")
    resources += namespace_resources(resources)
    failed = failing_rules(resources)
    assert "SOC2-K8S-NET-004" in failed["v1/Namespace/open"]
    assert "SOC2-K8S-NET-004" not in failed.get("v1/Namespace/segmented", set())
    # A synthetic namespace is not blamed for missing Pod Security labels it cannot carry.
    assert "SOC2-K8S-NS-002" not in failed["v1/Namespace/open"]


# --------------------------------------------------------------------------- Helm

@pytest.fixture(scope="module")
def helm(require_binary: Callable[[str], str]) -> str:
    return require_binary("helm")


@pytest.fixture(scope="module")
def kubectl(require_binary: Callable[[str], str]) -> str:
    return require_binary("kubectl")


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: shopfront\nversion: 0.1.0\n",
    "values.yaml": "replicas: 1\nimage: ghcr.io/acme/shop:1.0.0\n",
    "templates/deployment.yaml": """\
# The shop frontend.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  annotations:
    kube-version: "{{ .Capabilities.KubeVersion.Version }}"
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: {{ .Values.image | quote }}
""",
    "templates/service.yaml": """\
# soc2infra:ignore SOC2-K8S-NET-001 the public entry point, reviewed in SEC-12
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
  namespace: {{ .Release.Namespace }}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80}]
""",
}


def test_helm_chart_objects_point_at_their_templates(write_tree, helm):
    root = write_tree({f"shop/{k}": v for k, v in CHART.items()})
    chart = root / "shop"
    assert is_helm_chart(chart) and not is_helm_chart(root)
    resources, errors = render_helm_chart(chart, [], kube_version="1.33.2", helm=helm)
    assert errors == []
    by = {r.address: r for r in resources}
    assert set(by) == {"apps/v1/Deployment/default/release-name-web", "v1/Service/default/release-name-web"}
    dep = by["apps/v1/Deployment/default/release-name-web"]
    assert dep.file == str(chart / "templates" / "deployment.yaml")
    assert dep.line == 3  # the `kind:` line in the template, not in helm's output
    assert dep.meta["helm_chart"] == str(chart) and dep.meta["helm_template"] == "templates/deployment.yaml"
    assert dep.attributes["metadata"]["annotations"]["kube-version"] == "v1.33.2"
    # The chart leaves the namespace to `helm install -n`: no _namespace, no default-namespace finding.
    assert "_namespace" not in dep.attributes
    assert namespace_resources(resources) == []
    svc = by["v1/Service/default/release-name-web"]
    assert svc.inline_waivers == (("SOC2-K8S-NET-001", "the public entry point, reviewed in SEC-12", 1),)
    failed = failing_rules(resources)
    assert "SOC2-K8S-AVAIL-005" in failed[dep.address]
    assert "SOC2-K8S-NS-001" not in failed[dep.address] | failed.get(svc.address, set())


def test_helm_values_files_are_applied(write_tree, helm):
    root = write_tree({**{f"shop/{k}": v for k, v in CHART.items()}, "prod-values.yaml": "replicas: 3\n"})
    resources, errors = render_helm_chart(root / "shop", [root / "prod-values.yaml"], helm=helm)
    assert errors == []
    dep = next(r for r in resources if r.type == "Deployment")
    assert dep.attributes["spec"]["replicas"] == 3
    assert "SOC2-K8S-AVAIL-005" not in failing_rules(resources).get(dep.address, set())


def test_helm_render_failure_is_an_error_at_the_template(write_tree, helm):
    broken = dict(CHART)
    broken["templates/service.yaml"] = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name\n"
    root = write_tree({f"shop/{k}": v for k, v in broken.items()})
    resources, errors = render_helm_chart(root / "shop", [], helm=helm)
    assert resources == []
    assert len(errors) == 1
    assert errors[0].file == str(root / "shop" / "templates" / "service.yaml")
    assert "helm template failed" in errors[0].message


def test_missing_helm_is_a_clear_error(write_tree):
    root = write_tree({f"shop/{k}": v for k, v in CHART.items()})
    resources, errors = render_helm_chart(root / "shop", [], helm=str(root / "no-such-helm"))
    assert resources == [] and len(errors) == 1
    assert errors[0].file == str(root / "shop" / "Chart.yaml")
    assert "not found" in errors[0].message


# --------------------------------------------------------------------------- Kustomize

KUSTOMIZE_TREE = {
    "base/kustomization.yaml": "resources: [deployment.yaml]\n",
    "base/deployment.yaml": """\
# soc2infra:ignore SOC2-K8S-IMAGE-002 digests are pinned by the release job
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      containers: [{name: c, image: "ghcr.io/acme/checkout:1.0.0"}]
""",
    "prod/kustomization.yaml": """\
namespace: checkout-prod
namePrefix: prod-
resources: [../base, namespace.yaml]
configMapGenerator:
  - name: settings
    literals: [LOG_LEVEL=info]
""",
    "prod/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: checkout-prod\n",
}


def test_kustomize_objects_are_traced_to_their_source_files(write_tree, kubectl):
    root = write_tree(KUSTOMIZE_TREE)
    assert is_kustomization(root / "prod") and not is_kustomization(root)
    resources, errors = render_kustomize(root / "prod", kubectl=kubectl)
    assert errors == []
    by = {r.address: r for r in resources}
    dep = by["apps/v1/Deployment/checkout-prod/prod-checkout"]
    assert Path(dep.file).resolve() == (root / "base" / "deployment.yaml").resolve()
    assert dep.line == 2
    assert dep.meta["kustomization"] == str(root / "prod")
    assert ("SOC2-K8S-IMAGE-002", "digests are pinned by the release job", 1) in dep.inline_waivers
    assert Path(by["v1/Namespace/checkout-prod"].file).name == "namespace.yaml"
    generated = next(r for r in resources if r.type == "ConfigMap")
    assert generated.file == str(root / "prod")  # generated: no source file to point at
    assert kustomize_bases(root / "prod") == {(root / "base").resolve()}
    assert kustomize_bases(root / "base") == set()


def test_origin_annotations_are_used_when_the_kustomization_asks_for_them(write_tree, kubectl):
    tree = dict(KUSTOMIZE_TREE)
    tree["prod/kustomization.yaml"] += "buildMetadata: [originAnnotations]\n"
    root = write_tree(tree)
    resources, errors = render_kustomize(root / "prod", kubectl=kubectl)
    assert errors == []
    dep = next(r for r in resources if r.type == "Deployment")
    assert Path(dep.file).resolve() == (root / "base" / "deployment.yaml").resolve()


def test_kustomize_failure_and_missing_kubectl_are_errors(write_tree, kubectl):
    root = write_tree({"bad/kustomization.yaml": "resources: [missing.yaml]\n"})
    resources, errors = render_kustomize(root / "bad", kubectl=kubectl)
    assert resources == [] and len(errors) == 1
    assert errors[0].file == str(root / "bad") and "kubectl kustomize failed" in errors[0].message
    resources, errors = render_kustomize(root / "bad", kubectl=str(root / "no-kubectl"))
    assert resources == [] and "not found" in errors[0].message


# --------------------------------------------------------------------------- the demo tree

def test_demo_tree_shows_findings_and_skips_the_ci_file(helm, kubectl, monkeypatch):
    from soc2infra._core.scan import ScanOptions, scan

    monkeypatch.setenv("SOC2INFRA_HELM", helm)
    monkeypatch.setenv("SOC2INFRA_KUBECTL", kubectl)
    result = scan([str(REPO / "examples" / "kubernetes")], PACK, ScanOptions(jobs=1, base_dir=REPO))
    assert result.errors == []
    assert not any(r.file.endswith("ci-pipeline.yaml") for r in result.resources)
    failed: dict[str, set[str]] = {}
    for f in result.findings:
        if f.status == "fail" and not f.suppressed:
            failed.setdefault(f.resource.address, set()).add(f.rule_id)
    api = failed["apps/v1/Deployment/payments/payments-api"]
    assert {"SOC2-K8S-POD-001", "SOC2-K8S-SECRET-001", "SOC2-K8S-IMAGE-001", "SOC2-K8S-AVAIL-005"} <= api
    assert "apps/v1/StatefulSet/payments/ledger" not in failed  # the compliant example stays clean
    assert "SOC2-K8S-RBAC-002" in failed["rbac.authorization.k8s.io/v1/ClusterRoleBinding/ci-cluster-admin"]
    waived = [f for f in result.findings if f.suppressed]
    assert [(f.rule_id, f.resource.name) for f in waived] == [("SOC2-K8S-RBAC-003", "cert-sync")]
    chart = [r for r in result.resources if r.meta.get("helm_chart")]
    assert chart and all(r.file.startswith("examples/kubernetes/chart/templates/") for r in chart)
    overlay = [r for r in result.resources if r.meta.get("kustomization", "").endswith("prod")]
    assert {r.address for r in overlay} >= {"apps/v1/Deployment/checkout-prod/prod-checkout"}
