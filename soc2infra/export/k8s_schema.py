"""Static types of Kubernetes API objects, for compiling rule paths to CEL.

The condition language walks lists implicitly (``ports.hostPort`` reaches every port's
``hostPort``); CEL does not, so the compiler must know, at each step of a path, whether it
stands on an object, a map or a list. The Kubernetes Python client already ships the
OpenAPI types of every built-in kind (``V1Container.openapi_types``); this module reads them
rather than keeping a hand-written schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import kubernetes.client as k8s


@dataclass(frozen=True, slots=True)
class Ty:
    """A static type: ``obj`` (a model such as V1PodSpec), ``list``/``map`` of ``item``,
    a scalar (``str``, ``int``, ``bool``, ``float``), ``any`` (int-or-string, free-form
    objects) or ``kv`` (an element of the ConfigMap ``_data`` view: ``{name, value}``)."""

    kind: str
    model: str = ""
    item: Ty | None = None

    @property
    def is_list(self) -> bool:
        """Whether values of this type are lists."""
        return self.kind == "list"


STR, INT, BOOL, FLOAT, ANY = Ty("str"), Ty("int"), Ty("bool"), Ty("float"), Ty("any")
_SCALARS = {"str": STR, "int": INT, "bool": BOOL, "float": FLOAT, "object": ANY, "datetime": STR,
            "date": STR}


@dataclass(frozen=True, slots=True)
class KindInfo:
    """Where a built-in kind is served and which client model describes it."""

    kind: str
    group: str
    version: str
    plural: str
    model: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``apps/v1`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version


_KINDS = (
    KindInfo("Pod", "", "v1", "pods", "V1Pod"),
    KindInfo("Service", "", "v1", "services", "V1Service"),
    KindInfo("ConfigMap", "", "v1", "configmaps", "V1ConfigMap"),
    KindInfo("Secret", "", "v1", "secrets", "V1Secret"),
    KindInfo("ServiceAccount", "", "v1", "serviceaccounts", "V1ServiceAccount"),
    KindInfo("Namespace", "", "v1", "namespaces", "V1Namespace", namespaced=False),
    KindInfo("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", "V1PersistentVolumeClaim"),
    KindInfo("ReplicationController", "", "v1", "replicationcontrollers", "V1ReplicationController"),
    KindInfo("Deployment", "apps", "v1", "deployments", "V1Deployment"),
    KindInfo("StatefulSet", "apps", "v1", "statefulsets", "V1StatefulSet"),
    KindInfo("DaemonSet", "apps", "v1", "daemonsets", "V1DaemonSet"),
    KindInfo("ReplicaSet", "apps", "v1", "replicasets", "V1ReplicaSet"),
    KindInfo("Job", "batch", "v1", "jobs", "V1Job"),
    KindInfo("CronJob", "batch", "v1", "cronjobs", "V1CronJob"),
    KindInfo("Ingress", "networking.k8s.io", "v1", "ingresses", "V1Ingress"),
    KindInfo("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", "V1NetworkPolicy"),
    KindInfo("Role", "rbac.authorization.k8s.io", "v1", "roles", "V1Role"),
    KindInfo("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", "V1ClusterRole", False),
    KindInfo("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", "V1RoleBinding"),
    KindInfo("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings",
             "V1ClusterRoleBinding", False),
    KindInfo("StorageClass", "storage.k8s.io", "v1", "storageclasses", "V1StorageClass", False),
    KindInfo("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", "V1PodDisruptionBudget"),
    KindInfo("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers",
             "V2HorizontalPodAutoscaler"),
)
KINDS: dict[str, KindInfo] = {k.kind: k for k in _KINDS}

_GENERIC = re.compile(r"^(List|Dict)\[(.*)\]$")


def parse_type(text: str) -> Ty:
    """``List[V1Container]`` → ``Ty('list', item=Ty('obj', 'V1Container'))``."""
    text = text.strip()
    m = _GENERIC.match(text)
    if m:
        inner = m.group(2)
        if m.group(1) == "List":
            return Ty("list", item=parse_type(inner))
        return Ty("map", item=parse_type(inner.split(",", 1)[1]))
    if text in _SCALARS:
        return _SCALARS[text]
    return Ty("obj", model=text)


@cache
def _fields(model: str) -> dict[str, Ty]:
    cls: Any = getattr(k8s, model, None)
    if cls is None:
        return {}
    return {cls.attribute_map[py]: parse_type(tp) for py, tp in cls.openapi_types.items()}


def field_type(ty: Ty, name: str) -> Ty | None:
    """The type of field *name* of an object type (None: no such field)."""
    if ty.kind != "obj":
        return None
    return _fields(ty.model).get(name)


def kind_type(kind: str) -> Ty | None:
    """The object type of a built-in kind (None when the kind is not served by the API server)."""
    info = KINDS.get(kind)
    return Ty("obj", model=info.model) if info else None


POD_SPEC = Ty("obj", model="V1PodSpec")
OBJECT_META = Ty("obj", model="V1ObjectMeta")
CONTAINERS = Ty("list", item=Ty("obj", model="V1Container"))
