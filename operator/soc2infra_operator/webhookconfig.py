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
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp.web
import kopf

from soc2infra_operator.admission import (
    CURRENT_REVIEW_UID,
    AdmissionResponse,
    AdmissionReview,
    ReviewRequest,
    build_response,
    failure_decision,
    request_from_review,
    review_response,
    unreadable_review,
)
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


def waiver_configurations(settings: OperatorSettings, client_config: dict[str, Any],
                          versions: Sequence[str] = ("v1alpha1",)) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Validating- and MutatingWebhookConfiguration for SOC2Waivers and SOC2ClusterWaivers
    (named ``<configuration>-waivers``). Pure.

    The mutating webhook stamps who created, wrote and approved a waiver (approval.py); the
    validating one enforces the approval rule and rejects forged stamps. Unlike the workload
    webhooks they cover every namespace (cluster-scoped objects are waived from the operator's own
    namespace) and always fail closed: a waiver change waits for the operator rather than going
    unchecked, and nothing the cluster needs to run depends on changing a waiver.
    """
    from soc2infra_operator import waivers as cw

    w = settings.webhook
    name = f"{w.configuration_name}-waivers"
    resources = [cw.PLURAL, cw.CLUSTER_PLURAL]
    out: list[dict[str, Any]] = []
    kinds = (("ValidatingWebhookConfiguration", "validate"), ("MutatingWebhookConfiguration", "mutate"))
    for kind, prefix in kinds:
        hooks = []
        # DELETE too (validating only): who deleted a waiver is evidence as well.
        operations = [*OPERATIONS, "DELETE"] if prefix == "validate" else list(OPERATIONS)
        for plural in resources:
            hid = waiver_handler_id(prefix, plural)
            cc = dict(client_config)
            if "url" in cc:
                cc["url"] = f"{cc['url'].rstrip('/')}/{quote(hid)}"
            if "service" in cc:
                svc = dict(cc["service"])
                svc["path"] = f"{svc.get('path', '').rstrip('/')}/{quote(hid)}"
                cc["service"] = svc
            hook: dict[str, Any] = {
                "name": webhook_name(hid, w.configuration_name), "admissionReviewVersions": ["v1"],
                "clientConfig": cc, "failurePolicy": "Fail", "matchPolicy": "Equivalent",
                "sideEffects": "None", "timeoutSeconds": w.timeout_seconds,
                "rules": [{"apiGroups": [cw.GROUP], "apiVersions": list(versions),
                           "operations": operations, "resources": [plural], "scope": "*"}],
            }
            if prefix == "mutate":
                hook["reinvocationPolicy"] = "IfNeeded"  # another mutating webhook must not drop the stamps
            hooks.append(hook)
        out.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "soc2infra"}},
                    "webhooks": hooks})
    return out[0], out[1]


def waiver_handler_id(prefix: str, plural: str) -> str:
    """``validate-soc2waiver`` / ``mutate-soc2clusterwaiver``: handler id and URL path."""
    return f"{prefix}-{plural.removesuffix('s')}"


# What a validate handler id routes: the (API group or None for any, kind) its handler is for.
Route = tuple[str | None, str]
# The fast path's decision function: the runtime's admit (decision, durable evidence, answer).
Admit = Callable[[ReviewRequest], Awaitable[AdmissionResponse]]
# The answer to a review that could not be read (too deep to parse): decided and recorded.
Refuse = Callable[[ReviewRequest, str], Awaitable[AdmissionResponse]]


class SOC2WebhookServer(kopf.WebhookServer):
    """Kopf's HTTPS webhook server (TLS, certificate reloads, the client config), with additions.

    - With *on_client_config*, it (re)writes our ValidatingWebhookConfiguration each time it starts
      listening or its certificate files change (the CA bundle may have rotated).
    - With *routes* and *admit*, a review for one of our validate handlers whose object is of that
      handler's kind goes straight to *admit* — the same decision, evidence and answer as the
      Kopf handler gives, without Kopf's per-request machinery (memos, diff, patch, cause, handler
      selection), which cost about as much as the decision itself (bench/README.md, profile).
      Anything else (another path, a kind the handler is not for, a review without userInfo or
      object) goes through Kopf as before, with its own errors (404, 400).
    - The body is parsed here: JSON nested too deep for ``json.loads`` (Kopf answered HTTP 500
      before any handler ran) is cut at the nesting limit to read the request, and *refuse*
      answers it by the failure policy and records it.
    - Every request goes through a guard: a review Kopf itself cannot read (an object whose
      ``metadata`` is not a mapping makes Kopf fail with HTTP 500 before any handler runs), or an
      unexpected failure inside Kopf, still gets a proper AdmissionReview answer, decided by the
      failure policy, instead of a server error.
    """

    def __init__(self, *, on_client_config: Callable[[dict[str, Any]], object] | None = None,
                 fail_closed: bool = True, routes: Mapping[str, Route] | None = None,
                 admit: Admit | None = None, refuse: Refuse | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_client_config = on_client_config
        self._fail_closed = fail_closed
        self._routes = dict(routes or {})
        self._admit = admit
        self._refuse = refuse

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

    async def _serve(self, fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:  # type: ignore[override]
        """One HTTP request (Kopf calls ``self._serve(fn, request)`` from its route)."""
        webhook = request.match_info.get("id")
        raw = await request.read()
        try:
            review = json.loads(raw)
        except RecursionError:
            return aiohttp.web.json_response(await self._too_deep(raw))
        except ValueError:
            return await kopf.WebhookServer._serve(fn, request)  # Kopf's 400 for JSON it cannot read
        route = self._routes.get(webhook or "")
        if route is None or self._admit is None or not _routed(review, route) \
                or unreadable_review(review) is not None:
            return await kopf.WebhookServer._serve(fn, request)  # Kopf's way, guarded (body is cached)
        req = request_from_review(review)
        try:
            response = await self._admit(req)
        except Exception as exc:  # noqa: BLE001 - a bug answers by the failure policy, not HTTP 500
            logger.exception("admission request failed")
            response = build_response(failure_decision(req, f"internal error ({type(exc).__name__})",
                                                       self._fail_closed))
        return aiohttp.web.json_response(review_response(review, response))

    async def _too_deep(self, raw: bytes) -> AdmissionReview:
        """The answer to a review nested too deep to parse: read it cut at the nesting limit."""
        cut = shallow_json(raw, DEPTH_CUT)
        review: Any = None
        if cut is not None:
            with contextlib.suppress(ValueError, RecursionError):
                review = json.loads(cut)
        reason = f"the admission review is nested more than {DEPTH_CUT} levels deep"
        logger.warning("refused an admission review: %s", reason)
        req = request_from_review(review)
        if self._refuse is not None:
            return review_response(review, await self._refuse(req, reason))
        return review_response(review, build_response(failure_decision(req, reason, self._fail_closed)))


# Where a review too deep to parse is cut to read its request (the object's own limit, limits.depth,
# is 128 by default; the review wraps the object in three more levels).
DEPTH_CUT = 160
MAX_REVIEW_BYTES = 16 * 1024 * 1024
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def shallow_json(raw: bytes, max_depth: int) -> bytes | None:
    """*raw* JSON with every value nested deeper than *max_depth* replaced by ``null`` (strings
    skipped), so the shallow part — the review's uid, user, kind and names — can be parsed. None
    when the brackets do not balance. Linear; only used on a body ``json.loads`` could not hold."""
    out: list[bytes] = []
    depth, kept_from = 0, 0
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if token[:1] == b'"':
            continue
        if token in (b"[", b"{"):
            depth += 1
            if depth == max_depth + 1:
                out.append(raw[kept_from:match.start()])
        else:
            if depth == max_depth + 1:
                out.append(b"null")
                kept_from = match.end()
            depth -= 1
            if depth < 0:
                return None
    if depth != 0:
        return None
    out.append(raw[kept_from:])
    return b"".join(out)


def _routed(review: Any, route: Route) -> bool:
    """Whether *review* is for the handler of *route*: of its kind (and group), with the user and
    an object Kopf requires (a review without them keeps Kopf's 400)."""
    req = review.get("request") if isinstance(review, dict) else None
    if not isinstance(req, dict) or not isinstance(req.get("userInfo"), dict):
        return False
    obj = req.get("object") if req.get("object") is not None else req.get("oldObject")
    if not isinstance(obj, dict):
        return False
    gvk = req.get("kind")
    if isinstance(gvk, dict) and isinstance(gvk.get("kind"), str):
        kind, group = gvk.get("kind"), gvk.get("group")
    else:
        res = req.get("resource")
        kind, group = obj.get("kind"), res.get("group") if isinstance(res, dict) else None
    want_group, want_kind = route
    return kind == want_kind and (want_group is None or group == want_group)



async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


def guard_webhook_fn(fn: Any, fail_closed: bool) -> Any:
    """Wrap Kopf's webhook function (see :class:`SOC2WebhookServer`)."""

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
