"""A minimal REST client for the lab's API server: create (or dry-run create) any built-in
object and read the verdict, warnings included.

The e2e parity test and bench/bench_vap.py send hundreds of dry-run creates; going through
``kubectl`` would cost a process per request and the Python client drops admission warnings.
One keep-alive HTTPS connection per thread, the admin client certificate, JSON in and out.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from soc2infra.export.k8s_schema import KINDS

_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"(.*)"\s*$', re.DOTALL)


@dataclass(frozen=True, slots=True)
class Reply:
    """One API response: status code, decoded body and admission warnings."""

    status: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())

    @property
    def message(self) -> str:
        """The Status message of a failed request."""
        return str(self.body.get("message", ""))


def object_path(obj: dict[str, Any], namespace: str = "default") -> str:
    """The collection URL of a built-in object (``/apis/apps/v1/namespaces/ns/deployments``)."""
    info = KINDS[str(obj.get("kind"))]
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if not info.namespaced:
        return f"{base}/{info.plural}"
    ns = (obj.get("metadata") or {}).get("namespace") or namespace
    return f"{base}/namespaces/{ns}/{info.plural}"


class RestClient:
    """Admin requests to one API server over a keep-alive connection per thread."""

    def __init__(self, server: str, context: ssl.SSLContext, timeout: float = 30.0) -> None:
        parts = urlsplit(server)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.context, self.timeout = context, timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                               timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        """Send one request (retrying once on a dropped keep-alive connection)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
                continue
            warnings = tuple(_warning_text(w) for w in resp.headers.get_all("Warning") or [])
            try:
                decoded = json.loads(raw) if raw else {}
            except ValueError:
                decoded = {"message": raw.decode(errors="replace")}
            return Reply(resp.status, decoded if isinstance(decoded, dict) else {}, warnings)
        raise AssertionError("unreachable")  # pragma: no cover

    def create(self, obj: dict[str, Any], *, dry_run: bool = False, namespace: str = "default") -> Reply:
        """POST the object to its collection (``?dryRun=All`` when *dry_run*)."""
        path = object_path(obj, namespace) + ("?dryRun=All" if dry_run else "")
        return self.request("POST", path, obj)


def _warning_text(header: str) -> str:
    m = _WARNING.match(header)
    text = m.group(1) if m else header
    return text.replace('\\"', '"').replace("\\\\", "\\")
