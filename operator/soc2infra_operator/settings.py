"""Operator settings: frozen dataclasses grouped by area, nested under one :class:`OperatorSettings`.

Every field has a default, so ``OperatorSettings()`` is a working out-of-cluster configuration.
Values are resolved with the precedence *command line > environment > YAML file > defaults*:

- a YAML file (``--config`` or ``$SOC2INFRA_OPERATOR_CONFIG``) with the same nesting as the
  dataclasses (``webhook: {port: 9443}``; ``-`` and ``_`` are interchangeable in keys);
- environment variables ``SOC2INFRA_<SECTION>_<FIELD>`` (``SOC2INFRA_WEBHOOK_PORT=9443``,
  ``SOC2INFRA_SCOPE_EXCLUDED_NAMESPACES=a,b``; top-level fields as ``SOC2INFRA_<FIELD>``);
- command-line options, which :mod:`soc2infra_operator.main` turns into dotted overrides
  (``webhook.port=9443``).

A bad value raises :class:`SettingsError` naming where it came from and the key, so a typo in a
Helm value fails the pod at start instead of silently weakening the control.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from soc2infra import ACTION_STRENGTH, ACTIONS

# One copy of the webhook's scope defaults, shared with the ValidatingAdmissionPolicy export so the
# two enforcement paths can never exempt different requests. Trusted controllers create pods,
# replica sets and jobs for an owner already checked at its own admission.
from soc2infra.export.vap import (
    DEFAULT_EXCLUDED_NAMESPACES,
    DEFAULT_EXCLUDED_USERNAMES,
    DEFAULT_TRUSTED_CONTROLLERS,
)

__all__ = ["ACTIONS", "ACTION_STRENGTH", "OperatorSettings", "SettingsError", "load_settings"]

Action = Literal["deny", "warn", "audit"]

OPT_OUT_KEY = "soc2infra.io/exempt"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ENV_PREFIX = "SOC2INFRA_"
CONFIG_ENV = "SOC2INFRA_OPERATOR_CONFIG"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names its origin and key."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where the HTTPS admission endpoint listens and how the API server is told to call it."""

    addr: str = "127.0.0.1"  # listening address ("0.0.0.0" in a pod)
    port: int = 9443
    host: str | None = None  # host name in the URL handed to the API server (default: addr)
    certfile: str | None = None  # serving certificate (PEM); Kopf's self-signed mode is never used
    pkeyfile: str | None = None
    cafile: str | None = None  # CA bundle the API server must trust for the endpoint
    failure_policy: Literal["Fail", "Ignore"] = "Fail"
    timeout_seconds: int = 10  # the API server allows 1..30
    # Who writes the ValidatingWebhookConfiguration: "self" (this process, with namespaceSelector,
    # timeout and failurePolicy from these settings), "kopf" (Kopf's managed mode: no
    # namespaceSelector, fixed 30 s timeout), or "none" (the Helm chart owns it).
    registration: Literal["self", "kopf", "none"] = "self"
    configuration_name: str = "soc2infra.io"
    # Remove a self-registered configuration on a clean exit, so a stopped out-of-cluster operator
    # does not leave a failurePolicy=Fail webhook blocking the cluster.
    remove_on_exit: bool = True


@dataclass(frozen=True, slots=True)
class ScopeSettings:
    """Which requests are checked at all."""

    # Never checked at admission (still audited into PolicyReports and evidence: an exclusion is
    # from enforcement, not from evidence). Setting this list replaces the defaults;
    # extra_excluded_namespaces (--exclude-namespace) adds to them.
    excluded_namespaces: tuple[str, ...] = DEFAULT_EXCLUDED_NAMESPACES
    extra_excluded_namespaces: tuple[str, ...] = ()
    # The operator's own namespace is always excluded as well (it must be able to restart itself).
    own_namespace: str | None = None
    # Requests by these users (globs) are not checked: the API server's own loopback client
    # reconciles bootstrap RBAC (cluster-admin has wildcard verbs) at every start.
    excluded_usernames: tuple[str, ...] = DEFAULT_EXCLUDED_USERNAMES
    trusted_controllers: tuple[str, ...] = DEFAULT_TRUSTED_CONTROLLERS
    # Label/annotation opting an object out; honoured only where a SOC2Waiver with optOut grants it.
    opt_out_key: str = OPT_OUT_KEY

    @property
    def all_excluded_namespaces(self) -> tuple[str, ...]:
        """The configured exclusions, the added ones and the operator's own namespace."""
        own = (self.own_namespace,) if self.own_namespace else ()
        return tuple(dict.fromkeys((*self.excluded_namespaces, *self.extra_excluded_namespaces, *own)))


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """How rule results become admission decisions."""

    # Rule id or glob → action, overriding the rule's own action (from its enforcement level).
    # The most specific pattern wins (exact id, then the longest glob), never the first listed.
    actions: tuple[tuple[str, str], ...] = ()
    # Rollout dial, as Pod Security is rolled out: "enforce" keeps every action, "warn" turns
    # denials into warnings, "audit" only records. In warn and audit modes the decision that would
    # have been made is recorded (evidence, PolicyReports) so enforcing breaks nothing unseen.
    mode: Literal["enforce", "warn", "audit"] = "enforce"
    # A rule that cannot be decided on the object (status "unknown") never denies by default,
    # matching `soc2infra scan` (fail_on_unknown is off there too).
    unknown_action: Action = "warn"
    # Rules whose verdict depends on other objects (a NetworkPolicy in the namespace, a PDB
    # selecting the pods) are capped at this action: objects arrive in any order within one
    # `kubectl apply`, so a Namespace could never be created before its NetworkPolicy.
    cross_object_action: Action = "warn"
    # Only these kinds get webhooks (empty: every Kubernetes kind the pack targets).
    kinds: tuple[str, ...] = ()
    # Days before a waiver's expiry when admissions it covers start carrying a warning.
    waiver_warning_days: int = 14


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The background audit: PolicyReports and audit snapshots."""

    enabled: bool = True
    interval_seconds: float = 300.0
    initial_delay_seconds: float = 5.0
    report_name: str = "soc2infra"
    # Kinds never listed by the audit. Listing Secrets needs RBAC to read every Secret in the
    # cluster, which the project's own SOC2-K8S-RBAC-003 forbids; Secrets are still checked at
    # admission, where the API server hands them over.
    skip_kinds: tuple[str, ...] = ("Secret",)
    # Bound on results per report (etcd objects must stay small); the summary stays exact.
    max_results_per_report: int = 1000
    # Several replicas elect one auditor through a coordination.k8s.io Lease in the own
    # namespace; without an own namespace (out-of-cluster) the single process audits.
    lease_name: str = "soc2infra-audit"
    lease_seconds: int = 60


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    """Where admission decisions and audit snapshots are recorded."""

    ledger: str | None = None  # ledger URL or SQLite path; None: no evidence is recorded
    signing_key: str | None = None  # Ed25519 private key file: every record is signed
    # What happens to an admission when its record cannot be committed in time: True rejects it
    # ("no evidence, no admission"), False admits it with a warning; None follows the webhook's
    # failurePolicy (Fail → reject), so there is one knob for "the control could not operate".
    fail_closed: bool | None = None
    timeout_seconds: float = 5.0
    record_dry_run: bool = True  # dry-run decisions are recorded, flagged context.dry_run
    # A stable id for this cluster in every record (reports filter on it). None: the uid of the
    # kube-system namespace, which lives as long as the cluster and differs between clusters.
    cluster_id: str | None = None
    # Skipped requests (excluded namespaces and users, trusted controllers …) are counted per
    # namespace and recorded every this many seconds (one record per replica, none when idle).
    skipped_interval_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class WaiverSettings:
    """Governance of SOC2Waivers (who may approve them, how long they may run); see approval.py."""

    # Reject self-approval at admission (spec.approvedBy set by the user who created the waiver or
    # wrote its current terms), and apply only waivers approved by another user.
    require_independent_approval: bool = False
    # Reject waivers whose expiry is more than this many days ahead (0: no maximum).
    max_days: int = 0


@dataclass(frozen=True, slots=True)
class AnchorSettings:
    """Scheduled anchoring: a signed ``SEQ:HASH`` checkpoint of the ledger's head, written every
    ``interval_seconds`` where the ledger's writer cannot rewrite it (soc2infra.evidence.anchor_s3)."""

    # s3://BUCKET/PREFIX (an Object Lock bucket) or the path of a git work tree; None: off.
    target: str | None = None
    interval_seconds: float = 3600.0
    initial_delay_seconds: float = 30.0
    name: str = "ledger"  # one series of checkpoints per ledger
    s3_endpoint: str | None = None  # a non-AWS store (MinIO …); None: AWS_ENDPOINT_URL or AWS
    retention_days: int = 400  # longer than a 12-month Type II period and its report
    lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Everything the operator needs, fully resolved."""

    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    waivers: WaiverSettings = field(default_factory=WaiverSettings)
    anchor: AnchorSettings = field(default_factory=AnchorSettings)
    policy_dirs: tuple[str, ...] = ()
    builtin_policies: bool = True
    kubeconfig: str | None = None  # None: in-cluster config, else $KUBECONFIG / ~/.kube/config
    context: str | None = None
    install_crds: bool = False  # apply the CRDs in soc2infra_operator/crds before starting
    liveness: str | None = None  # e.g. "http://0.0.0.0:8080/healthz" (Kopf's probe endpoint)
    metrics_port: int | None = None  # serve Prometheus /metrics on this port (None: off)
    metrics_addr: str = "0.0.0.0"
    # Kopf peering name, or "standalone". Peering is not leader election: it pauses watchers of a
    # lower-priority operator, which would freeze this replica's view of the waivers.
    peering: str = "standalone"
    log_level: str = "INFO"
    # Where rules are enforced at admission: "webhook" (every rule), "vap" (rules with a CEL form
    # as ValidatingAdmissionPolicies the operator installs; no webhook), "hybrid" (CEL rules as
    # policies, the others in the webhook, which registers only for the kinds they need).
    # See docs/vap.md.
    enforcement: Literal["webhook", "vap", "hybrid"] = "webhook"

    @property
    def evidence_fail_closed(self) -> bool:
        """Whether an uncommitted record rejects the admission (see EvidenceSettings.fail_closed)."""
        if self.evidence.fail_closed is not None:
            return self.evidence.fail_closed
        return self.webhook.failure_policy == "Fail"

    def validate(self) -> OperatorSettings:
        """Check cross-field constraints; returns self so calls chain."""
        w = self.webhook
        if not 1 <= w.timeout_seconds <= 30:
            raise SettingsError(f"webhook.timeout_seconds must be 1..30 (got {w.timeout_seconds})")
        if not 0 < w.port < 65536:
            raise SettingsError(f"webhook.port must be a TCP port (got {w.port})")
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise SettingsError(f"metrics_port must be a TCP port (got {self.metrics_port})")
        if w.failure_policy not in ("Fail", "Ignore"):
            raise SettingsError(f"webhook.failure_policy must be Fail or Ignore (got {w.failure_policy!r})")
        if w.registration not in ("self", "kopf", "none"):
            raise SettingsError(f"webhook.registration must be self, kopf or none (got {w.registration!r})")
        if bool(w.certfile) != bool(w.pkeyfile):
            raise SettingsError("webhook.certfile and webhook.pkeyfile go together")
        a = self.admission
        for pattern, action in a.actions:
            if action not in ACTIONS:
                raise SettingsError(f"admission.actions[{pattern}] must be deny, warn or audit "
                                    f"(got {action!r})")
        for name, value in (("mode", a.mode), ("unknown_action", a.unknown_action),
                            ("cross_object_action", a.cross_object_action)):
            allowed = ("enforce", "warn", "audit") if name == "mode" else ACTIONS
            if value not in allowed:
                raise SettingsError(f"admission.{name} must be one of {', '.join(allowed)} (got {value!r})")
        if self.audit.interval_seconds <= 0:
            raise SettingsError("audit.interval_seconds must be positive")
        if self.evidence.timeout_seconds <= 0:
            raise SettingsError("evidence.timeout_seconds must be positive")
        if self.evidence.skipped_interval_seconds <= 0:
            raise SettingsError("evidence.skipped_interval_seconds must be positive")
        if self.waivers.max_days < 0:
            raise SettingsError("waivers.max_days must be 0 (no maximum) or positive "
                                f"(got {self.waivers.max_days})")
        an = self.anchor
        if an.target is not None:
            if an.interval_seconds <= 0 or an.retention_days < 1:
                raise SettingsError("anchor.interval_seconds must be positive and anchor.retention_days >= 1")
            if not self.evidence.ledger:
                raise SettingsError("anchor.target is set but there is no evidence.ledger to anchor")
        return self


# --------------------------------------------------------------------------- loading

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML/env/CLI value into the field's declared type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        empty = value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))
        if empty and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is Literal:
        if value not in args:
            raise SettingsError(f"{where}: must be one of {', '.join(map(str, args))} (got {value!r})")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{where}: expected a boolean (got {value!r})")
    if tp is int or tp is float:
        if isinstance(value, bool):
            raise SettingsError(f"{where}: expected a number (got {value!r})")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected a number (got {value!r})") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise SettingsError(f"{where}: expected a string (got {type(value).__name__})")
        return str(value)
    if origin is tuple:
        if args and typing.get_origin(args[0]) is tuple:  # tuple[tuple[str, str], ...]: a mapping
            return _pairs(value, where)
        if isinstance(value, str):
            items: Iterable[Any] = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            raise SettingsError(f"{where}: expected a list (got {value!r})")
        return tuple(str(v) for v in items)
    raise SettingsError(f"{where}: unsupported setting type {tp!r}")  # pragma: no cover - a bug


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``{a: b}``, ``[[a, b]]`` or ``"a=b,c=d"`` → ``(("a", "b"), ("c", "d"))``."""
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    if isinstance(value, str):
        out = []
        for item in value.split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise SettingsError(f"{where}: expected KEY=VALUE pairs (got {item!r})")
            k, v = item.split("=", 1)
            out.append((k.strip(), v.strip()))
        return tuple(out)
    if isinstance(value, (list, tuple)):
        try:
            return tuple((str(k), str(v)) for k, v in value)
        except (TypeError, ValueError):
            pass
    raise SettingsError(f"{where}: expected a mapping (got {value!r})")


def _norm(key: Any) -> str:
    return str(key).strip().replace("-", "_")


def merge(settings: OperatorSettings, data: Mapping[str, Any], origin: str) -> OperatorSettings:
    """*settings* with the values of a nested mapping (YAML file layout) applied."""
    merged: OperatorSettings = _merge(settings, data, origin, "")
    return merged


def _merge(obj: Any, data: Mapping[str, Any], origin: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise SettingsError(f"{origin}: {prefix.rstrip('.') or 'settings'} must be a mapping")
    hints = _hints(type(obj))
    changes: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = _norm(raw_key)
        if key not in hints:
            allowed = ", ".join(sorted(hints))
            raise SettingsError(f"{origin}: unknown key {prefix}{raw_key!s} (allowed: {allowed})")
        tp = hints[key]
        if _is_section(tp):
            changes[key] = _merge(getattr(obj, key), value or {}, origin, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(tp, value, f"{origin}: {prefix}{key}")
    return dataclasses.replace(obj, **changes)


def apply_overrides(settings: OperatorSettings, overrides: Iterable[tuple[str, Any]],
                    origin: str) -> OperatorSettings:
    """Apply dotted ``("webhook.port", "9443")`` overrides (command line, environment)."""
    for dotted, value in overrides:
        parts = [_norm(p) for p in dotted.split(".") if p]
        nested: Any = value
        for part in reversed(parts[1:]):
            nested = {part: nested}
        settings = merge(settings, {parts[0]: nested}, origin)
    return settings


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``SOC2INFRA_<SECTION>_<FIELD>`` variables as dotted overrides (unknown names are ignored:
    the prefix is shared with the CLI's own variables)."""
    out: list[tuple[str, str]] = []
    top = _hints(OperatorSettings)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        for section, tp in top.items():
            if _is_section(tp) and rest.startswith(section + "_"):
                fld = rest[len(section) + 1:]
                if fld in _hints(tp):
                    out.append((f"{section}.{fld}", value))
                break
        else:
            if rest in top and not _is_section(top[rest]):
                out.append((rest, value))
    return sorted(out)


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML settings file (``{}`` for an empty file)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a settings file is a mapping")
    return data


def detect_own_namespace(environ: Mapping[str, str]) -> str | None:
    """``$POD_NAMESPACE`` (downward API) or the service-account namespace file in a pod."""
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return SA_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def load_settings(config_file: Path | None = None, overrides: Iterable[tuple[str, Any]] = (),
                  environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Resolve settings: defaults < YAML file < environment < *overrides* (command line)."""
    env = os.environ if environ is None else environ
    settings = OperatorSettings()
    path = config_file or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    if path is not None:
        settings = merge(settings, read_config_file(path), str(path))
    settings = apply_overrides(settings, env_overrides(env), "environment")
    settings = apply_overrides(settings, overrides, "command line")
    if settings.scope.own_namespace is None:
        own = detect_own_namespace(env)
        if own:
            scope = dataclasses.replace(settings.scope, own_namespace=own)
            settings = dataclasses.replace(settings, scope=scope)
    return settings.validate()
