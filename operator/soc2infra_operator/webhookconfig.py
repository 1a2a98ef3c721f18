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
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp.web
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


def webhook_name(handler_id: str, configuration_name: str) -> str:
    """``<handler>.<configuration>``, made a name the API server accepts: a webhook name must be a
    domain of at least three labels, so a dot-less configuration name gets ``.soc2infra.io``."""
    name = f"{handler_id}.{configuration_name}"
    return name if name.count(".") >= 2 else f"{name}.soc2infra.io"


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
            "name": webhook_name(t.handler_id, w.configuration_name),
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


class SOC2WebhookServer(kopf.WebhookServer):
    """Kopf's HTTPS webhook server, with two additions.

    - With *on_client_config*, it (re)writes our ValidatingWebhookConfiguration each time it starts
      listening or its certificate files change (the CA bundle may have rotated).
    - Every request goes through a guard: a review Kopf itself cannot read (an object whose
      ``metadata`` is not a mapping makes Kopf fail with HTTP 500 before any handler runs), or an
      unexpected failure inside Kopf, still gets a proper AdmissionReview answer, decided by the
      failure policy, instead of a server error.
    """

    def __init__(self, *, on_client_config: Callable[[dict[str, Any]], object] | None = None,
                 fail_closed: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_client_config = on_client_config
        self._fail_closed = fail_closed

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        guarded = guard_webhook_fn(fn, self._fail_closed)
        served = super().__call__(guarded)
        # Kopf builds its aiohttp application with the default 1 MiB body limit, but the API server
        # admits objects up to 3 MiB and an UPDATE review carries two of them: a larger limit,
        # applied only while Kopf builds the application (aiohttp forbids subclassing it).
        original = aiohttp.web.Application
        aiohttp.web.Application = functools.partial(  # type: ignore[misc,assignment]
            original, client_max_size=MAX_REVIEW_BYTES)
        try:
            first = await served.__anext__()
        finally:
            aiohttp.web.Application = original  # type: ignore[misc]
        async for client_config in _chain(first, served):
            if self._on_client_config is not None:
                # The server is listening now: point the API server at it (blocking client → thread).
                await asyncio.to_thread(self._on_client_config, dict(client_config))
            yield client_config


MAX_REVIEW_BYTES = 16 * 1024 * 1024


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


def guard_webhook_fn(fn: Any, fail_closed: bool) -> Any:
    """Wrap Kopf's webhook function (see :class:`SOC2WebhookServer`)."""
    from soc2infra_operator.admission import (
        CURRENT_REVIEW_UID,
        AdmissionReview,
        build_response,
        failure_decision,
        request_from_review,
        review_response,
        unreadable_review,
    )

    def answer(review: Any, reason: str) -> AdmissionReview:
        decision = failure_decision(request_from_review(review), reason, fail_closed)
        return review_response(review, build_response(decision))

    async def guarded(review: Any, **kwargs: Any) -> Any:
        problem = unreadable_review(review)
        if problem is not None:
            logger.warning("unreadable admission review: %s", problem)
            return answer(review, problem)
        token = CURRENT_REVIEW_UID.set(request_from_review(review).uid)
        try:
            return await fn(review, **kwargs)
        except Exception as exc:
            # Kopf's own "bad webhook request" errors (unknown resource → 404 …) keep their meaning.
            if any(c.__name__ == "WebhookError" for c in type(exc).__mro__):
                raise
            logger.exception("admission request failed inside Kopf")
            return answer(review, f"internal error ({type(exc).__name__})")
        finally:
            CURRENT_REVIEW_UID.reset(token)

    return guarded
