"""Where an admitted object came from, for change linkage (CC8.1): its container images (with
the digest when the spec pins one) and the GitOps tool's tracking labels and annotations.

Only identifiers enter evidence: image references and a fixed set of GitOps keys, never other
labels, annotations or any other part of the object. Pure; never raises on a strange object.

GitOps keys (as the tools document them): Argo CD tracks resources by the
``argocd.argoproj.io/tracking-id`` annotation (``app:group/Kind:namespace/name``; label tracking
uses ``app.kubernetes.io/instance`` or a custom label such as ``argocd.argoproj.io/instance``);
Flux's kustomize-controller labels what it applies ``kustomize.toolkit.fluxcd.io/name`` and
``…/namespace`` (older releases also ``…/revision`` and a ``…/checksum`` annotation), its
helm-controller ``helm.toolkit.fluxcd.io/name`` and ``…/namespace``. Neither tool stamps the Git
commit on every object, so the record keeps what identifies the Application/Kustomization/
HelmRelease (whose status holds the revision) and any revision key that is present.
"""

from __future__ import annotations

import re
from typing import Any

GITOPS_PREFIXES = ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")
GITOPS_KEYS = frozenset({
    "argocd.argoproj.io/tracking-id", "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace",
    "kustomize.toolkit.fluxcd.io/revision", "kustomize.toolkit.fluxcd.io/checksum",
    "helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace",
})
MAX_VALUE = 253  # label/annotation values that identify something are short; cut the rest
MAX_IMAGES = 64
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def pod_spec(obj: Any) -> dict[str, Any]:
    """The pod spec of a pod-bearing object (Pod, workload template, CronJob job template); {}."""
    data = _mapping(obj)
    spec = _mapping(data.get("spec"))
    kind = data.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = _mapping(_mapping(spec.get("jobTemplate")).get("spec"))
    return _mapping(_mapping(spec.get("template")).get("spec"))


def images(obj: Any) -> list[dict[str, str]]:
    """Every container's image as written, with its ``sha256:`` digest when the reference pins
    one (``name@sha256:…``): ``[{"container", "image", "digest"?}]``."""
    out: list[dict[str, str]] = []
    spec = pod_spec(obj)
    for key in _CONTAINER_LISTS:
        items = spec.get(key)
        for c in items if isinstance(items, list) else ():
            image = _mapping(c).get("image")
            if not isinstance(image, str) or not image:
                continue
            item = {"container": str(_mapping(c).get("name") or ""), "image": image[:512]}
            found = _DIGEST.search(image) if "@" in image else None  # most images are not pinned
            if found:
                item["digest"] = found.group(1)
            out.append(item)
            if len(out) >= MAX_IMAGES:
                return out
    return out


def gitops(obj: Any) -> dict[str, str]:
    """The GitOps tracking labels and annotations present on the object (see module docstring)."""
    meta = _mapping(_mapping(obj).get("metadata"))
    out: dict[str, str] = {}
    for source in (_mapping(meta.get("labels")), _mapping(meta.get("annotations"))):
        for key, value in source.items():
            if not isinstance(key, str) or not isinstance(value, str):
                continue
            known = key in GITOPS_KEYS or (key.startswith(GITOPS_PREFIXES) and "revision" in key)
            if known:
                out[key] = value[:MAX_VALUE]
    return out
