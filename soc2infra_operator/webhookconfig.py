"""The ValidatingWebhookConfiguration that sends admission requests to the operator.

:func:`webhook_configuration` builds it as a pure function of the settings, the handlers
(one webhook per kind, each with its own name and URL path, which is what makes Kopf route a
request to exactly one handler) and the client config (URL + CA bundle). The Helm chart renders
the same shape from its values; ``tests/operator/test_chart.py`` compares the two.

Why not Kopf's managed mode by default: it writes no ``namespaceSelector`` (excluded namespaces
would still be called, so with ``failurePolicy: Fail`` a stopped operator would block kube-system)
and always sets ``timeoutSeconds: 30``. ``webhook.registration: kopf`` is still available.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import kopf

from soc2infra_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

OPERATIONS = ("CREATE", "UPDATE")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One webhook: a handler id and the API resources it covers."""

    handler_id: str
    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    namespaced: bool


def handler_id(kind: str) -> str:
    """The Kopf handler id (and URL path, and webhook name prefix) for a kind."""
    return f"validate-{kind.lower()}"


def namespace_selector(excluded: Sequence[str]) -> dict[str, Any]:
    """Every namespace except *excluded*, by the immutable ``kubernetes.io/metadata.name`` label
    (set by the API server on every namespace, so it cannot be forged to escape the webhook)."""
    if not excluded:
        return {}
    return {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                  "values": sorted(set(excluded))}]}


def webhook_configuration(settings: OperatorSettings, targets: Sequence[WebhookTarget],
                          client_config: dict[str, Any]) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration object. Pure.

    ``client_config`` is ``{"url": …, "caBundle": …}`` (out of cluster) or ``{"service": …,
    "caBundle": …}``; each webhook gets its handler id appended to the URL or service path.
    """
    w = settings.webhook
    hooks = []
    for t in sorted(targets, key=lambda t: t.handler_id):
        cc = dict(client_config)
        if "url" in cc:
            cc["url"] = f"{cc['url'].rstrip('/')}/{quote(t.handler_id)}"
        if "service" in cc:
            svc = dict(cc["service"])
            svc["path"] = f"{svc.get('path', '').rstrip('/')}/{quote(t.handler_id)}"
            cc["service"] = svc
        hooks.append({
            "name": f"{t.handler_id}.{w.configuration_name}",
            "admissionReviewVersions": ["v1"],
            "clientConfig": cc,
            "failurePolicy": w.failure_policy,
            "matchPolicy": "Equivalent",
            # Records of dry-run decisions go to the ledger only (no cluster state changes).
            "sideEffects": "None",
            "timeoutSeconds": w.timeout_seconds,
            "namespaceSelector": namespace_selector(settings.scope.all_excluded_namespaces),
            "rules": [{"apiGroups": [t.group], "apiVersions": list(t.versions),
                       "operations": list(OPERATIONS), "resources": [t.plural], "scope": "*"}],
        })
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": w.configuration_name, "labels": {"app.kubernetes.io/managed-by": "soc2infra"}},
        "webhooks": hooks,
    }


class RegisteringWebhookServer(kopf.WebhookServer):
    """Kopf's HTTPS webhook server that also (re)writes our ValidatingWebhookConfiguration each
    time it starts listening or its certificate files change (the CA bundle may have rotated)."""

    def __init__(self, *, on_client_config: Callable[[dict[str, Any]], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_client_config = on_client_config

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        async for client_config in super().__call__(fn):
            # The server is listening now: point the API server at it (blocking client → thread).
            await asyncio.to_thread(self._on_client_config, dict(client_config))
            yield client_config
