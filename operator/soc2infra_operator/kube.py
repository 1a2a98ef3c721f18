"""A small synchronous client for the API calls the operator makes besides Kopf's own.

Discovery, paginated lists of any kind, server-side apply, deletes, and the Lease used to elect
one auditor, on top of the official ``kubernetes`` client's authentication (kubeconfig, contexts,
exec plugins, in-cluster service account). Kopf logs in with exactly the same credentials (see
:func:`connection_info`). Callers in the event loop run these in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

FIELD_MANAGER = "soc2infra-operator"


class KubeError(RuntimeError):
    """An API call that returned an error status."""

    def __init__(self, status: int, method: str, path: str, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One listable resource type, as discovered."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``apps/v1`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (optionally in one namespace) or of one object."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{quote(namespace)}" if namespace and self.namespaced else ""
        return f"{root}{ns}/{self.plural}" + (f"/{quote(name)}" if name else "")


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes.client.Configuration``: the kubeconfig file if given, else in-cluster, else
    ``$KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        return cfg
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(context=context, client_configuration=cfg)
    return cfg


class Kube:
    """Raw JSON requests against the API server with the client's authentication."""

    def __init__(self, configuration: Any) -> None:
        from kubernetes import client

        self.configuration = configuration
        self.api = client.ApiClient(configuration)

    def close(self) -> None:
        """Release the connection pool."""
        self.api.close()

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json", timeout: float = 30.0) -> tuple[int, Any]:
        """Send one request; returns (status, decoded JSON body or text). Never raises on HTTP errors."""
        from kubernetes.client.exceptions import ApiException

        params = {k: v for k, v in (query or {}).items() if v is not None}
        url_path = path + ("?" + urlencode(params) if params else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method_, url, headers_, body_, post = self.api.param_serialize(
            method, url_path, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(method_, url, header_params=headers_, body=body_, post_params=post,
                                         _request_timeout=timeout)
            response.read()
            status, raw = response.status, response.data
        except ApiException as exc:
            status, raw = exc.status or 0, exc.body or b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        try:
            return status, json.loads(text) if text else {}
        except json.JSONDecodeError:
            return status, text

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """Like :meth:`request`, raising :class:`KubeError` on an error status."""
        status, body = self.request(method, path, **kw)
        if status >= 400:
            raise KubeError(status, method, path, body)
        return body

    # ---- discovery --------------------------------------------------------------------------

    def discover(self) -> dict[str, list[ApiResource]]:
        """Kind → listable resources (preferred version of each group; no subresources)."""
        found: dict[str, list[ApiResource]] = {}
        versions = [("", "v1")]
        groups = self.call("GET", "/apis").get("groups", [])
        for g in groups:
            preferred = (g.get("preferredVersion") or {}).get("version")
            if g.get("name") and preferred:
                versions.append((g["name"], preferred))
        for group, version in versions:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            status, body = self.request("GET", path)
            if status >= 400 or not isinstance(body, dict):
                continue  # an aggregated API that is down must not stop the audit
            for r in body.get("resources", []):
                name = r.get("name", "")
                if "/" in name or "list" not in r.get("verbs", []):
                    continue
                res = ApiResource(group, version, name, r.get("kind", ""), bool(r.get("namespaced")))
                found.setdefault(res.kind, []).append(res)
        return found

    # ---- objects ----------------------------------------------------------------------------

    def list_objects(self, res: ApiResource, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every object of *res* in the cluster, with ``apiVersion`` and ``kind`` filled in
        (list items omit them)."""
        token: str | None = None
        while True:
            body = self.call("GET", res.path(), query={"limit": page_size, "continue": token})
            for item in body.get("items") or []:
                if isinstance(item, dict):
                    item.setdefault("apiVersion", res.api_version)
                    item.setdefault("kind", res.kind)
                    yield item
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return

    def apply(self, path: str, obj: Mapping[str, Any]) -> Any:
        """Server-side apply *obj* at *path* (created if absent, our fields replaced in place)."""
        return self.call("PATCH", path, query={"fieldManager": FIELD_MANAGER, "force": "true"},
                         body=dict(obj), content_type="application/apply-patch+yaml")

    def delete(self, path: str) -> bool:
        """Delete the object at *path*; False when it was already gone."""
        status, body = self.request("DELETE", path)
        if status == 404:
            return False
        if status >= 400:
            raise KubeError(status, "DELETE", path, body)
        return True


# --------------------------------------------------------------------------- leader election

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def try_acquire_lease(kube: Kube, namespace: str, name: str, identity: str, duration: int) -> bool:
    """Acquire or renew a coordination.k8s.io Lease; True when *identity* holds it afterwards.

    Optimistic concurrency (resourceVersion) makes two replicas racing for an expired lease end
    with exactly one holder; the loser sees 409 and stays a follower.
    """
    path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases/{quote(name)}"
    now = _now()
    status, lease = kube.request("GET", path)
    spec = {"holderIdentity": identity, "leaseDurationSeconds": duration, "renewTime": _micro(now)}
    if status == 404:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {**spec, "acquireTime": _micro(now)}}
        created, _ = kube.request("POST", path.rsplit("/", 1)[0], body=body)
        return created < 400
    if status >= 400 or not isinstance(lease, dict):
        return False
    current = lease.get("spec") or {}
    holder = current.get("holderIdentity")
    renewed = _parse_time(current.get("renewTime"))
    held_for = int(current.get("leaseDurationSeconds") or duration)
    expired = renewed is None or renewed + dt.timedelta(seconds=held_for) < now
    if holder not in (identity, None, "") and not expired:
        return False
    new_spec = {**current, **spec}
    if holder != identity:
        new_spec["acquireTime"] = _micro(now)
        new_spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
    lease["spec"] = new_spec
    updated, _ = kube.request("PUT", path, body=lease)
    return updated < 400


def connection_info(configuration: Any) -> dict[str, Any]:
    """The fields of ``kopf.ConnectionInfo`` for a client Configuration (same credentials for Kopf)."""
    header = configuration.get_api_key_with_prefix("BearerToken") \
        or configuration.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = ((None, None) if not parts else (None, parts[0]) if len(parts) == 1
                     else (parts[0], parts[1]))
    return {
        "server": configuration.host, "ca_path": configuration.ssl_ca_cert,
        "insecure": not configuration.verify_ssl, "username": configuration.username or None,
        "password": configuration.password or None, "scheme": scheme, "token": token,
        "certificate_path": configuration.cert_file, "private_key_path": configuration.key_file,
    }
