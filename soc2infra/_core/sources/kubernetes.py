"""Kubernetes source: manifests (multi-document YAML, ``List`` kinds, JSON), Helm charts and
Kustomize directories, turned into :class:`~soc2infra._cogs.model.Resource` objects.

Every pod-bearing kind exposes the same normalized view of its pod (``_pod``,
``_pod_metadata``, ``_containers``, ``_all_containers``) so a workload rule is written once
and holds for a Pod, a Deployment or a CronJob alike. The keys are documented in
``docs/kubernetes.md``.

:func:`object_to_resource` is shared with the admission webhook, which hands it whatever
the API server sent: it never raises, whatever the shape of the object.

Why one module of about 850 lines: manifests, Helm and Kustomize all end in the same
normalisation of objects (pod views, namespaces, line numbers), which is most of the file.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from soc2infra import binaries
from soc2infra._cogs.limits import LimitExceeded, check_depth, check_yaml_node, too_deep
from soc2infra._cogs.model import Error, Resource

# ----------------------------------------------------------------------------- kinds

# Where each pod-bearing kind keeps its pod template; the pod spec is ``<prefix>.spec``
# and its metadata ``<prefix>.metadata``. A Pod is its own template.
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
WORKLOAD_KINDS = frozenset(POD_TEMPLATE_PATHS)

# Built-in (and widespread add-on) kinds that live outside any namespace. A CRD declared in
# the same input with ``scope: Cluster`` is added to this set for that input.
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "VolumeAttachment", "CSIDriver", "CSINode",
    "VolumeAttributesClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "PriorityClass", "RuntimeClass", "IngressClass", "PodSecurityPolicy",
    "CertificateSigningRequest", "ClusterTrustBundle", "FlowSchema", "PriorityLevelConfiguration",
    "ComponentStatus", "IPAddress", "ServiceCIDR", "StorageVersionMigration", "DeviceClass",
    "ResourceSlice", "TokenReview", "SubjectAccessReview", "SelfSubjectAccessReview",
    "SelfSubjectRulesReview", "SelfSubjectReview", "VolumeSnapshotClass", "VolumeSnapshotContent",
    "GatewayClass", "ConstraintTemplate", "GlobalNetworkPolicy", "GlobalNetworkSet", "HostEndpoint",
})
# Add-ons name their cluster-wide kinds this way (ClusterIssuer, ClusterPolicy,
# ClusterSecretStore, CiliumClusterwideNetworkPolicy …).
_CLUSTER_KIND_PATTERN = re.compile(r"^Cluster[A-Z]|Clusterwide")
# Gatekeeper constraints are cluster scoped whatever their kind; control-plane configuration
# files (EncryptionConfiguration, audit Policy) belong to no namespace either.
_CLUSTER_SCOPED_GROUPS = ("constraints.gatekeeper.sh/", "apiserver.config.k8s.io/", "audit.k8s.io/")

# apiVersion to assume when an object (a List item, an admission fragment) omits it.
DEFAULT_API_VERSIONS: dict[str, str] = {
    "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
    "Job": "batch/v1", "CronJob": "batch/v1", "Ingress": "networking.k8s.io/v1",
    "NetworkPolicy": "networking.k8s.io/v1", "IngressClass": "networking.k8s.io/v1",
    "Role": "rbac.authorization.k8s.io/v1", "ClusterRole": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "PodDisruptionBudget": "policy/v1", "StorageClass": "storage.k8s.io/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2", "CustomResourceDefinition": "apiextensions.k8s.io/v1",
}

# Client-side configuration that carries apiVersion+kind but is never sent to a cluster.
_CLIENT_CONFIG_GROUPS = ("kustomize.config.k8s.io/", "skaffold/", "kind.x-k8s.io/", "kubeadm.k8s.io/",
                         "kubeconfig/")
_CLIENT_CONFIG_KINDS = frozenset({("v1", "Config")})  # a kubeconfig file

WAIVER_ANNOTATION = "soc2infra.io/ignore"
_IGNORE_COMMENT = re.compile(r"#\s*soc2infra:ignore\s+([A-Za-z0-9_.*-]+)[ \t]*([^\n]*)$")

Waiver = tuple[str, str, int]


# ----------------------------------------------------------------------------- objects

def object_to_resource(obj: dict[str, Any], file: str = "", line: int = 0,
                       meta: dict[str, Any] | None = None, *,
                       cluster_kinds: frozenset[str] = frozenset()) -> Resource:
    """Turn one Kubernetes object into a :class:`Resource`; never raises.

    The address is ``<apiVersion>/<kind>/<namespace>/<name>`` for namespaced kinds and
    ``<apiVersion>/<kind>/<name>`` for cluster-scoped ones (*cluster_kinds* adds kinds known
    to be cluster scoped, from CRDs in the same input). A namespaced object without a
    namespace lands in ``default``, as the API server would place it. ``attributes`` is the
    object plus the normalized keys described in ``docs/kubernetes.md``; the annotation
    ``soc2infra.io/ignore`` becomes inline waivers (line 0: not a comment).
    """
    data = obj if isinstance(obj, dict) else {}
    kind = as_text(data.get("kind"))
    api_version = as_text(data.get("apiVersion")) or DEFAULT_API_VERSIONS.get(kind, "v1")
    metadata = as_mapping(data.get("metadata"))
    name = _object_name(metadata)
    explicit_namespace = as_text(metadata.get("namespace"))
    cluster_scoped = is_cluster_scoped(kind, api_version, cluster_kinds)
    attributes = dict(data)
    if cluster_scoped:
        namespace = name if kind == "Namespace" else None
        address = f"{api_version}/{kind}/{name}"
    else:
        namespace = explicit_namespace or "default"
        address = f"{api_version}/{kind}/{namespace}/{name}"
        attributes["_namespace"] = namespace
    if kind in WORKLOAD_KINDS:
        attributes.update(pod_view(kind, data))
        attributes["_service_account"] = _service_account_ref(attributes["_pod"], namespace or "default")
    attributes.update(_reference_keys(kind, data, namespace or "default"))
    scope = f"{namespace}/{name}" if namespace and kind != "Namespace" else name
    return Resource(
        kind="kubernetes", type=kind, address=address, attributes=attributes, file=file, line=line,
        # How other objects name this one: "ns/name", and "Kind/ns/name" for kind-qualified
        # references such as `_service_account` or `_scale_target`.
        identities=frozenset({scope, f"{kind}/{scope}"}),
        namespace=namespace, inline_waivers=tuple(annotation_waivers(data)), meta=dict(meta or {}),
    )


def _service_account_ref(pod: dict[str, Any], namespace: str) -> str:
    """``ServiceAccount/<ns>/<name>`` the pod runs as (``default`` when unset), so a rule can
    follow it with ``related: {link: references, via: _service_account}``."""
    name = as_text(pod.get("serviceAccountName")) or as_text(pod.get("serviceAccount")) or "default"
    return f"ServiceAccount/{namespace}/{name}"


def _reference_keys(kind: str, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Normalized keys of non-workload kinds: ``_scale_target`` (HorizontalPodAutoscaler:
    ``Kind/ns/name`` of the workload it scales) and ``_data`` (ConfigMap: its ``data`` as a
    list of ``{name, value}``, the shape of a container's ``env``)."""
    spec = as_mapping(obj.get("spec"))
    if kind == "HorizontalPodAutoscaler":
        target = as_mapping(spec.get("scaleTargetRef"))
        target_kind, target_name = as_text(target.get("kind")), as_text(target.get("name"))
        if target_kind and target_name:
            return {"_scale_target": f"{target_kind}/{namespace}/{target_name}"}
    if kind == "ConfigMap":
        data = as_mapping(obj.get("data"))
        return {"_data": [{"name": str(k), "value": v} for k, v in data.items()]}
    return {}


def is_cluster_scoped(kind: str, api_version: str = "", cluster_kinds: Iterable[str] = ()) -> bool:
    """Whether objects of *kind* live outside namespaces (built-in list, naming convention,
    Gatekeeper constraints, or a CRD declared with ``scope: Cluster``)."""
    return (kind in CLUSTER_SCOPED_KINDS or kind in cluster_kinds
            or bool(_CLUSTER_KIND_PATTERN.search(kind)) or api_version.startswith(_CLUSTER_SCOPED_GROUPS))


def pod_view(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The normalized pod keys of a pod-bearing object.

    ``_pod`` is the pod spec, ``_pod_metadata`` the pod (template) metadata, ``_containers``
    the regular containers, and ``_all_containers`` those plus init and ephemeral
    containers. Missing or malformed parts become empty values, never errors.
    """
    template: Any = obj
    for key in POD_TEMPLATE_PATHS.get(kind, ()):
        template = as_mapping(template).get(key)
    template = as_mapping(template)
    spec = as_mapping(template.get("spec"))
    containers = _dicts(spec.get("containers"))
    others = _dicts(spec.get("initContainers")) + _dicts(spec.get("ephemeralContainers"))
    return {
        "_pod": spec,
        "_pod_metadata": as_mapping(template.get("metadata")),
        "_containers": containers,
        "_all_containers": containers + others,
    }


def annotation_waivers(obj: dict[str, Any]) -> list[Waiver]:
    """Waivers written in the ``soc2infra.io/ignore`` annotation of the object or of its pod
    template: ``"RULE-ID reason; RULE-2 other reason"``."""
    data = obj if isinstance(obj, dict) else {}
    sources = [as_mapping(data.get("metadata"))]
    kind = as_text(data.get("kind"))
    if kind in WORKLOAD_KINDS and kind != "Pod":
        sources.append(as_mapping(pod_view(kind, data)["_pod_metadata"]))
    out: list[Waiver] = []
    for metadata in sources:
        value = as_mapping(metadata.get("annotations")).get(WAIVER_ANNOTATION)
        if isinstance(value, str):
            out.extend(parse_waiver_annotation(value))
    return list(dict.fromkeys(out))


def parse_waiver_annotation(value: str) -> list[Waiver]:
    """``"RULE-ID reason; RULE-2 reason"`` → [(rule id, reason, 0)]; entries may also be
    separated by new lines. A missing reason stays empty (the waiver layer rejects it)."""
    out: list[Waiver] = []
    for entry in re.split(r"[;\n]", value):
        parts = entry.strip().split(None, 1)
        if parts:
            out.append((parts[0], parts[1].strip() if len(parts) > 1 else "", 0))
    return out


def _object_name(metadata: dict[str, Any]) -> str:
    name = as_text(metadata.get("name"))
    if name:
        return name
    generate = as_text(metadata.get("generateName"))
    return f"{generate}*" if generate else "<unnamed>"


def as_text(value: Any) -> str:
    """A name-like field as a string ("" when absent or not scalar). Also used by the operator.

    Names and kinds are strings, but YAML happily reads `name: 123` as a number."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def as_mapping(value: Any) -> dict[str, Any]:
    """*value* when it is a mapping, else an empty one: objects from a cluster can be anything."""
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def is_kubernetes_object(doc: Any) -> bool:
    """A mapping with string ``apiVersion`` and ``kind`` that is not client-side config
    (kustomization, skaffold, kind cluster config, kubeconfig)."""
    if not isinstance(doc, dict):
        return False
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return False
    return not (api_version.startswith(_CLIENT_CONFIG_GROUPS) or (api_version, kind) in _CLIENT_CONFIG_KINDS)


def _is_list(doc: dict[str, Any]) -> bool:
    # `kind: List` (kubectl get -o yaml) or a typed list (DeploymentList); a custom kind
    # that merely ends in "List" has a spec, not items.
    kind = str(doc.get("kind"))
    return (kind == "List" or kind.endswith("List")) and isinstance(doc.get("items"), list) \
        and "spec" not in doc


# ----------------------------------------------------------------------------- YAML streams

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader (libyaml when available) that keeps timestamps as text, as the API
    server does, so attributes stay JSON-ready."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)

_SEPARATOR = re.compile(r"^---(?:[ \t].*)?$")


@dataclass(slots=True)
class _Chunk:
    """One document's text and the line its first line has in the file."""

    lines: list[str]
    first_line: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def last_line(self) -> int:
        return self.first_line + len(self.lines) - 1

    def content_line(self) -> int:
        """Line of the first thing that is not blank, a comment or the separator."""
        for offset, line in enumerate(self.lines):
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and not _SEPARATOR.match(stripped):
                return self.first_line + offset
        return self.first_line

    def is_blank(self) -> bool:
        return all(not s or s.startswith("#") or _SEPARATOR.match(s) or s == "..."
                   for s in (line.strip() for line in self.lines))


def split_documents(text: str) -> list[_Chunk]:
    """Split a YAML stream on ``---`` lines, keeping each document's first line number.

    Parsing documents one by one means one malformed document does not lose the others.
    Column-0 comments right above a separator describe the next document (that is where
    people write ``# soc2infra:ignore``), so they travel with it.
    """
    lines = text.split("\n")
    starts = [0]
    for i, line in enumerate(lines):
        if i and _SEPARATOR.match(line):
            starts.append(_comment_block_start(lines, i, starts[-1]))
    starts.append(len(lines))
    return [_Chunk(lines[a:b], a + 1) for a, b in zip(starts, starts[1:], strict=False) if b > a]


def _comment_block_start(lines: list[str], separator: int, floor: int) -> int:
    start = separator
    while start > floor and (lines[start - 1].startswith("#") or not lines[start - 1].strip()):
        start -= 1
    while start < separator and not lines[start].strip():
        start += 1
    return start


@dataclass(slots=True)
class _Parsed:
    """A Kubernetes object found in a stream, with where it is and the comment waivers
    written around it."""

    obj: dict[str, Any]
    line: int
    end_line: int
    waivers: list[Waiver] = field(default_factory=list)


def parse_stream(text: str, file: str) -> tuple[list[_Parsed], list[Error]]:
    """Every Kubernetes object in a YAML or JSON text (``List`` kinds expanded), located."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        parsed = _parse_json(text)
        if parsed is not None:
            return parsed, []
    found: list[_Parsed] = []
    errors: list[Error] = []
    for chunk in split_documents(text):
        if chunk.is_blank():
            continue
        docs, error = _load_chunk(chunk, file)
        if error is not None:
            errors.append(error)
        for doc in docs:
            found.extend(_objects_in(doc, chunk))
    return found, errors


def _parse_json(text: str) -> list[_Parsed] | None:
    # JSON is (almost) YAML, but JSON files may indent with tabs, which YAML forbids.
    try:
        doc = json.loads(text)
        check_depth(doc)
    except (json.JSONDecodeError, RecursionError, LimitExceeded):
        return None  # parsed again as YAML, which locates the problem
    chunk = _Chunk(text.split("\n"), 1)
    docs = doc if isinstance(doc, list) else [doc]
    return [p for d in docs for p in _objects_in(d, chunk)]


def _load_chunk(chunk: _Chunk, file: str) -> tuple[list[Any], Error | None]:
    docs: list[Any] = []
    loader = _Loader(chunk.text)
    try:
        # A chunk may still hold several documents separated by `...`. Each is composed (aliases
        # stay shared nodes), checked against the limits, and only then constructed.
        while loader.check_node():
            node = loader.get_node()
            check_yaml_node(node)
            docs.append(loader.construct_document(node))
    except yaml.YAMLError as exc:
        return docs, _yaml_error(exc, chunk, file)
    except LimitExceeded as exc:
        return docs, _limit_error(exc, chunk, file)
    except RecursionError:
        return docs, _limit_error(too_deep(chunk.text, "YAML document"), chunk, file)
    finally:
        loader.dispose()
    return docs, None


def _limit_error(exc: LimitExceeded, chunk: _Chunk, file: str) -> Error:
    line = chunk.first_line + exc.line - 1 if exc.line else chunk.content_line()
    return Error(file, line, str(exc))


def _yaml_error(exc: yaml.YAMLError, chunk: _Chunk, file: str) -> Error:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = chunk.first_line + mark.line if mark is not None else chunk.content_line()
    problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
    context = getattr(exc, "context", None)
    detail = f"{context}: {problem}" if context else problem
    return Error(file, line, f"invalid YAML: {detail}")


def _objects_in(doc: Any, chunk: _Chunk) -> Iterator[_Parsed]:
    if not isinstance(doc, dict):
        return
    waivers = _comment_waivers(chunk)
    if _is_list(doc):
        yield from _list_items(doc, chunk, waivers)
    elif is_kubernetes_object(doc):
        yield _Parsed(doc, chunk.content_line(), chunk.last_line, waivers)


def _list_items(doc: dict[str, Any], chunk: _Chunk, waivers: list[Waiver]) -> Iterator[_Parsed]:
    """Items of a List; typed lists (DeploymentList) omit each item's kind and apiVersion."""
    item_kind = str(doc["kind"])[: -len("List")] if doc["kind"] != "List" else ""
    spans = _item_spans(chunk)
    header_end = spans[0][0] if spans else chunk.last_line + 1
    for i, item in enumerate(doc["items"]):
        if not isinstance(item, dict):
            continue
        if item_kind and "kind" not in item:
            item = {"apiVersion": doc.get("apiVersion"), "kind": item_kind, **item}
        if not is_kubernetes_object(item):
            continue
        if i < len(spans):
            start, line = spans[i]
            end = spans[i + 1][0] - 1 if i + 1 < len(spans) else chunk.last_line
        else:
            start = line = chunk.content_line()
            end = chunk.last_line
        # Comments above the first item (the List header) apply to every item.
        mine = [w for w in waivers if start <= w[2] <= end or w[2] < header_end]
        yield _Parsed(item, line, end, mine)


def _item_spans(chunk: _Chunk) -> list[tuple[int, int]]:
    """(first line including the comments right above it, line of the item) for each
    element of a List's ``items`` (libyaml compose is cheap)."""
    try:
        node = yaml.compose(chunk.text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, RecursionError):
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
            return [(chunk.first_line + _with_comments_above(chunk, item.start_mark.line),
                     chunk.first_line + item.start_mark.line) for item in value.value]
    return []


def _with_comments_above(chunk: _Chunk, offset: int) -> int:
    # Comment lines right above a list item belong to that item (`# soc2infra:ignore`).
    while offset > 0 and chunk.lines[offset - 1].strip().startswith("#"):
        offset -= 1
    return offset


def _comment_waivers(chunk: _Chunk) -> list[Waiver]:
    if "soc2infra:ignore" not in chunk.text:
        return []
    out: list[Waiver] = []
    for offset, line in enumerate(chunk.lines):
        match = _IGNORE_COMMENT.search(line)
        if match:
            out.append((match.group(1), match.group(2).strip(), chunk.first_line + offset))
    return out


def _crd_cluster_kinds(objects: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Kinds that CRDs in the same input declare cluster scoped."""
    kinds: set[str] = set()
    for obj in objects:
        if obj.get("kind") == "CustomResourceDefinition":
            spec = as_mapping(obj.get("spec"))
            kind = as_text(as_mapping(spec.get("names")).get("kind"))
            if kind and spec.get("scope") == "Cluster":
                kinds.add(kind)
    return frozenset(kinds)


def load_manifest_text(text: str, file: str) -> tuple[list[Resource], list[Error]]:
    """Load every Kubernetes object in a manifest file's text.

    Handles multi-document YAML, ``List`` kinds, JSON, comments and anchors. Documents that
    are not Kubernetes objects (CI configs, Helm values, docker-compose …) are skipped
    silently; a malformed document becomes an :class:`Error` at the line of the problem and
    the other documents are still loaded. Comment waivers (``# soc2infra:ignore RULE
    reason``) inside a document or just above it apply to that document.
    """
    parsed, errors = parse_stream(text, file)
    cluster_kinds = _crd_cluster_kinds(p.obj for p in parsed)
    resources: list[Resource] = []
    for p in parsed:
        res = object_to_resource(p.obj, file, p.line, cluster_kinds=cluster_kinds)
        res.end_line = p.end_line
        res.inline_waivers += tuple(w for w in p.waivers if w not in res.inline_waivers)
        resources.append(res)
    return resources, errors


# A key at the start of a line (YAML, indented JSON) or after `{`/`,` (flow YAML, minified JSON).
_API_VERSION_LINE = re.compile(r"""(?:^|[{,])\s*["']?apiVersion["']?\s*:""", re.MULTILINE)
_KIND_LINE = re.compile(r"""(?:^|[{,])\s*["']?kind["']?\s*:""", re.MULTILINE)
_GO_TEMPLATE = re.compile(r"\{\{-?\s*[.$\w(/]")


def looks_like_kubernetes(path: Path | str, text: str) -> bool:
    """Cheap sniffing: a YAML/JSON text with ``apiVersion`` and ``kind`` keys and no Go
    template actions (an unrendered Helm template is not a manifest)."""
    name = str(path)
    if name.endswith(("Chart.yaml", "values.yaml", "values.yml")) and not _KIND_LINE.search(text):
        return False
    if not _API_VERSION_LINE.search(text) or not _KIND_LINE.search(text):
        return False
    return not _GO_TEMPLATE.search(text)


def not_a_manifest_reason(text: str) -> str:
    """Why :func:`looks_like_kubernetes` passed over a YAML/JSON file (for the coverage section)."""
    if _API_VERSION_LINE.search(text) and _KIND_LINE.search(text) and _GO_TEMPLATE.search(text):
        return "unrendered template (Go template actions outside a Helm chart)"
    return "not a Kubernetes manifest (no apiVersion and kind)"


# ----------------------------------------------------------------------------- namespaces

def namespace_resources(resources: list[Resource]) -> list[Resource]:
    """One synthetic ``Namespace`` per namespace that workloads use but no Namespace object
    in *resources* declares, so per-namespace rules (a NetworkPolicy in every namespace)
    see it. Workloads whose namespace is chosen at install time (Helm objects without one)
    are not counted. Located at the first workload using it; ``meta["synthetic"]`` is set and the
    attributes carry ``_synthetic: true`` so rules about a Namespace object's own settings
    can skip it."""
    declared = {r.namespace for r in resources if r.kind == "kubernetes" and r.type == "Namespace"}
    first_user: dict[str, Resource] = {}
    for res in resources:
        # A chart object without a namespace lands where `helm install -n` puts it: unknown here.
        known = res.attributes.get("_namespace")
        if res.kind == "kubernetes" and res.type in WORKLOAD_KINDS and isinstance(known, str) \
                and known not in declared:
            first_user.setdefault(known, res)
    return [_synthetic_namespace(ns, user) for ns, user in first_user.items()]


def _synthetic_namespace(name: str, user: Resource) -> Resource:
    return Resource(
        kind="kubernetes", type="Namespace", address=f"v1/Namespace/{name}",
        attributes={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "_synthetic": True},
        file=user.file, line=user.line, identities=frozenset({name}), namespace=name,
        meta={"synthetic": True, "used_by": user.address},
    )


# ----------------------------------------------------------------------------- tools

HELM_TIMEOUT_SECONDS = 180
KUSTOMIZE_TIMEOUT_SECONDS = 180


def is_helm_chart(directory: Path) -> bool:
    """A directory holding a ``Chart.yaml``."""
    return (Path(directory) / "Chart.yaml").is_file()


KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def is_kustomization(directory: Path) -> bool:
    """A directory holding a kustomization file."""
    return any((Path(directory) / n).is_file() for n in KUSTOMIZATION_NAMES)


def find_helm(helm: str | None = None) -> str | None:
    """The helm binary: *helm*, ``$SOC2INFRA_HELM``, ``helm`` on PATH, then the build cache
    (see :mod:`soc2infra.binaries`)."""
    found = binaries.find("helm", helm)
    return str(found) if found is not None else None


def find_kubectl(kubectl: str | None = None) -> str | None:
    """The kubectl binary: *kubectl*, ``$SOC2INFRA_KUBECTL``, ``kubectl`` on PATH, then the build cache."""
    found = binaries.find("kubectl", kubectl)
    return str(found) if found is not None else None


def _run(command: list[str], timeout: int) -> tuple[str, str | None]:
    """(stdout, error text or None) of a rendering tool; never raises."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return "", f"{command[0]} not found"
    except PermissionError:
        return "", f"{command[0]} is not executable"
    except subprocess.TimeoutExpired:
        return "", f"{' '.join(command[:2])} timed out after {timeout}s"
    except OSError as exc:
        return "", f"cannot run {command[0]}: {exc}"
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        return "", message
    return done.stdout, None


# ----------------------------------------------------------------------------- Helm

_HELM_SOURCE = re.compile(r"^# Source: (\S+)\s*$")
# "…/templates/deployment.yaml:12" or "(chart/templates/x.yaml:7)" in helm's error text.
_HELM_ERROR_LOCATION = re.compile(
    r"([\w.-]+/(?:charts/[\w.-]+/)*templates/[\w./-]+?\.(?:ya?ml|tpl|txt))(?::(\d+))?")


def render_helm_chart(chart_dir: Path, values_files: list[Path], kube_version: str = "1.34.0",
                      helm: str | None = None) -> tuple[list[Resource], list[Error]]:
    """Render a chart with ``helm template`` and load the objects it produces.

    Each object points at the template file it came from (helm's ``# Source:`` comments),
    with ``meta["helm_chart"]`` set to *chart_dir*. A missing helm binary or a failed
    render becomes an :class:`Error`, never an exception. Objects the chart leaves without
    a namespace are placed in ``default`` (what ``helm template`` assumes) but carry no
    ``_namespace`` key: the namespace is chosen at install time, not in the chart.
    """
    chart_dir = Path(chart_dir)
    chart_file = str(chart_dir / "Chart.yaml")
    binary = find_helm(helm)
    if binary is None:
        return [], [Error(chart_file, None, "helm is needed to render this chart: install helm, set "
                                            "SOC2INFRA_HELM to its path, or build it once with "
                                            "`python -m soc2infra.binaries build --helm-only`")]
    command = [binary, "template", str(chart_dir), "--kube-version", kube_version]
    for values in values_files:
        command += ["--values", str(values)]
    output, failure = _run(command, HELM_TIMEOUT_SECONDS)
    if failure is not None:
        return [], [_helm_error(chart_dir, failure)]
    resources, errors = load_manifest_text(output, chart_file)
    sources = _helm_sources(output)
    templates = _TemplateFiles(chart_dir)
    for res in resources:
        _locate_helm_object(res, sources, templates, chart_dir)
    return resources, [_relocate_helm_error(e, sources, chart_dir) for e in errors]


def _helm_error(chart_dir: Path, message: str) -> Error:
    text = message.removeprefix("Error: ").strip()
    match = _HELM_ERROR_LOCATION.search(text)
    if match:
        file = chart_dir / _strip_chart_name(match.group(1))
        return Error(str(file), int(match.group(2)) if match.group(2) else None,
                     f"helm template failed: {text}")
    return Error(str(chart_dir / "Chart.yaml"), None, f"helm template failed: {text}")


def _helm_sources(output: str) -> list[tuple[int, str]]:
    """(output line, template path inside the chart) of every ``# Source:`` comment."""
    out = []
    for no, line in enumerate(output.split("\n"), 1):
        match = _HELM_SOURCE.match(line)
        if match:
            out.append((no, _strip_chart_name(match.group(1))))
    return out


def _strip_chart_name(path: str) -> str:
    # helm names templates "<chart name>/templates/x.yaml"; the chart name is the one in
    # Chart.yaml, not necessarily the directory's, so drop the first segment.
    return path.split("/", 1)[1] if "/" in path else path


def _source_at(sources: list[tuple[int, str]], line: int) -> str | None:
    found = None
    for source_line, template in sources:
        if source_line > line:
            break
        found = template
    return found


class _TemplateFiles:
    """Template texts of one chart, read once, to find where an object is written."""

    def __init__(self, chart_dir: Path) -> None:
        self.chart_dir = chart_dir
        self._lines: dict[str, list[str]] = {}

    def lines(self, template: str) -> list[str]:
        if template not in self._lines:
            try:
                text = (self.chart_dir / template).read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError):
                text = ""
            self._lines[template] = text.split("\n")
        return self._lines[template]

    def line_of(self, template: str, pattern: re.Pattern[str]) -> int:
        for no, line in enumerate(self.lines(template), 1):
            if pattern.search(line):
                return no
        return 0


def _locate_helm_object(res: Resource, sources: list[tuple[int, str]], templates: _TemplateFiles,
                        chart_dir: Path) -> None:
    rendered_line = res.line
    res.meta["helm_chart"] = str(chart_dir)
    res.meta["rendered_line"] = rendered_line
    template = _source_at(sources, rendered_line)
    if template is None:
        return
    res.meta["helm_template"] = template
    res.file = str(chart_dir / template)
    kind_line = re.compile(rf"^\s*kind:\s*[\"']?{re.escape(res.type)}[\"']?\s*(#.*)?$")
    res.line = templates.line_of(template, kind_line) or 1
    res.end_line = res.line
    res.inline_waivers = tuple(_template_waiver(w, template, templates, res.line) for w in res.inline_waivers)
    # `helm template` renders .Release.Namespace as "default"; an object without a namespace
    # (or with the release's) goes wherever `helm install -n` puts it.
    if as_mapping(res.attributes.get("metadata")).get("namespace") in (None, "", "default"):
        res.attributes.pop("_namespace", None)


def _template_waiver(waiver: Waiver, template: str, templates: _TemplateFiles, fallback: int) -> Waiver:
    """A comment waiver found in helm's output, moved to its line in the template file."""
    rule, reason, line = waiver
    if not line:
        return waiver  # an annotation, not a comment
    written = templates.line_of(template, re.compile(rf"soc2infra:ignore\s+{re.escape(rule)}(\s|$)"))
    return (rule, reason, written or fallback)


def _relocate_helm_error(error: Error, sources: list[tuple[int, str]], chart_dir: Path) -> Error:
    template = _source_at(sources, error.line or 0)
    if template is None:
        return error
    return Error(str(chart_dir / template), None,
                 f"{error.message} (in the rendered output of this template)")


# ----------------------------------------------------------------------------- Kustomize

_ORIGIN_ANNOTATION = "config.kubernetes.io/origin"


def render_kustomize(dir: Path, kubectl: str | None = None) -> tuple[list[Resource], list[Error]]:
    """Render a Kustomize directory with ``kubectl kustomize DIR`` and load its objects.

    Each object points at the manifest it was built from when that can be traced (the
    ``config.kubernetes.io/origin`` annotation when the kustomization asks for it, else
    the resource file declaring the same kind and name, prefixes and suffixes allowed);
    otherwise at the kustomization directory. ``meta["kustomization"]`` is set.
    """
    directory = Path(dir)
    binary = find_kubectl(kubectl)
    if binary is None:
        return [], [Error(str(directory), None, "kubectl is needed to render this kustomization: install "
                                                "kubectl or set SOC2INFRA_KUBECTL to its path")]
    output, failure = _run([binary, "kustomize", str(directory)], KUSTOMIZE_TIMEOUT_SECONDS)
    if failure is not None:
        return [], [kustomize_error(directory, failure)]
    resources, errors = load_manifest_text(output, str(directory))
    origins = _KustomizeOrigins(directory)
    for res in resources:
        res.meta["kustomization"] = str(directory)
        res.meta["rendered_line"] = res.line
        source = origins.locate(res)
        if source is None:
            res.file, res.line = str(directory), 0
        else:
            # kustomize drops comments: the comment waivers are those of the source object.
            res.file, res.line = source.file, source.line
            comments = (w for w in source.inline_waivers if w[2])
            res.inline_waivers += tuple(w for w in comments if w not in res.inline_waivers)
        res.end_line = res.line
    return resources, [Error(str(directory), None, e.message) for e in errors]


_KUSTOMIZE_YAML_LINE = re.compile(r"""yaml: line (\d+): (.*?)(?: in File: ([^\s'"]+))?['"]?\s*$""")


def kustomize_error(directory: Path, failure: str) -> Error:
    """``kubectl kustomize``'s failure as an error at the file and line it names, when it names
    them (``MalformedYAMLError: yaml: line 4: … in File: deploy.yaml``, ``invalid Kustomization:
    yaml: line 3: …``); otherwise at the directory. Only kubectl's last error line is kept."""
    lines = [ln.strip() for ln in failure.strip().splitlines() if ln.strip()]
    message = (lines[-1] if lines else failure).removeprefix("error: ").removeprefix("Error: ")
    found = _KUSTOMIZE_YAML_LINE.search(message)
    if found is not None:
        line, problem, name = int(found.group(1)), found.group(2), found.group(3)
        if name:
            return Error(str(directory / name), line, f"kubectl kustomize: invalid YAML: {problem}")
        if "invalid Kustomization" in message:
            target = next((directory / k for k in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                           if (directory / k).is_file()), directory)
            return Error(str(target), line, f"kubectl kustomize: invalid kustomization: {problem}")
    return Error(str(directory), None, f"kubectl kustomize failed: {message}")


class _KustomizeOrigins:
    """Trace rendered objects back to the manifest files a kustomization builds from."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._declared: list[Resource] | None = None

    def locate(self, res: Resource) -> Resource | None:
        """The source object *res* was built from (same kind; its name, or the name with a
        prefix/suffix added), or None for generated objects."""
        origin = _origin_path(res.attributes)
        candidates = self.declared()
        if origin:
            origin_file = (self.directory / origin).resolve()
            candidates = [d for d in candidates if Path(d.file).resolve() == origin_file]
        best: Resource | None = None
        for src in candidates:
            if src.type != res.type or src.name not in res.name:
                continue
            if best is None or len(src.name) > len(best.name):
                best = src
        if best is None and origin:
            return Resource("kubernetes", res.type, res.address, {}, file=str(self.directory / origin))
        return best

    def declared(self) -> list[Resource]:
        if self._declared is None:
            self._declared = []
            for file in _kustomization_files(self.directory, set()):
                try:
                    text = file.read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError):
                    continue
                self._declared.extend(load_manifest_text(text, str(file))[0])
        return self._declared


def _origin_path(attributes: dict[str, Any]) -> str | None:
    annotations = as_mapping(as_mapping(attributes.get("metadata")).get("annotations"))
    origin = annotations.get(_ORIGIN_ANNOTATION)
    if isinstance(origin, str):
        match = re.search(r"^path:\s*(\S+)", origin, re.MULTILINE)
        if match:
            return match.group(1)
    return None


def kustomize_bases(directory: Path) -> set[Path]:
    """Local kustomization directories that *directory* builds on, directly or through other
    bases (resolved paths). Their objects are already in the overlay's output, so a scan
    that renders the overlay need not render them on their own."""
    bases: set[Path] = set()
    pending = [Path(directory).resolve()]
    while pending:
        current = pending.pop()
        for entry in _kustomization_entries(current):
            target = (current / entry).resolve()
            if target not in bases and target.is_dir() and is_kustomization(target):
                bases.add(target)
                pending.append(target)
    return bases


def _kustomization_entries(directory: Path) -> list[str]:
    """Local entries of a kustomization's ``resources`` (and legacy ``bases``)."""
    kustomization = next((directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()), None)
    if kustomization is None:
        return []
    try:
        data = yaml.load(kustomization.read_text(encoding="utf-8-sig"), Loader=_Loader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    data = as_mapping(data)
    entries = [e for key in ("resources", "bases") if isinstance(data.get(key), list) for e in data[key]]
    return [e for e in entries if isinstance(e, str) and "://" not in e
            and not e.startswith(("github.com/", "git@"))]


def _kustomization_files(directory: Path, seen: set[Path]) -> Iterator[Path]:
    """Manifest files a kustomization lists in ``resources`` (and legacy ``bases``),
    following local directories; remote resources are skipped."""
    directory = directory.resolve()
    if directory in seen:
        return
    seen.add(directory)
    for entry in _kustomization_entries(directory):
        target = directory / entry
        if target.is_dir():
            yield from _kustomization_files(target, seen)
        elif target.is_file():
            yield target
