"""Evidence records: their shape, redaction, canonical form, hash and signature.

A record is one decision the system made, small and self-describing::

    {"v": 1, "seq": 42, "time": "2025-03-01T12:00:00.123456Z", "source": "admission",
     "actor": "system:serviceaccount:ci:deployer", "subject": "apps/v1/Deployment/payments/api",
     "pack_digest": "sha256:…", "decision": "deny",
     "results": [{"rule_id": "SOC2-K8S-POD-001", "status": "fail", "severity": "high",
                  "controls": ["CC6.1"], "address": "apps/v1/Deployment/payments/api"}],
     "context": {"namespace": "payments", "operation": "CREATE", "dry_run": false},
     "prev_hash": "…", "hash": "…", "key_id": "ed25519:…", "signature": "…"}

``hash`` is SHA-256 (hex) over the canonical JSON of the record without ``hash`` and
``signature``: keys sorted, separators ``(",", ":")``, non-ASCII kept as UTF-8. ``prev_hash`` is
the previous record's hash (64 zeros for the first), so the records form a chain. ``signature``
(optional) is Ed25519 over the 32 raw digest bytes, hex encoded; ``key_id`` names the key and is
itself covered by the hash.

Everything a caller hands in goes through :func:`redact` before it can reach a record, and the
entry shape is closed: unknown keys are refused, so raw object bodies cannot ride along.

Why one module of about 700 lines: the record's shape, its redaction, its canonical form and
its hash must agree byte for byte, so they are kept where one reading checks all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from soc2infra._cogs.errors import UserError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from soc2infra._cogs.model import ScanResult

SCHEMA_VERSION = 1
GENESIS_HASH = "0" * 64
SOURCES: tuple[str, ...] = ("ci", "pre-commit", "cli", "admission", "audit", "waiver")
SCAN_SOURCES: tuple[str, ...] = ("ci", "pre-commit", "cli")
STATUSES: tuple[str, ...] = ("pass", "fail", "unknown", "waived")
ADMISSION_DECISIONS: tuple[str, ...] = ("allow", "deny", "warn")
SCAN_DECISIONS: tuple[str, ...] = ("pass", "fail", "error")
REDACTED = "[REDACTED]"


def _tool_version() -> str:
    # The installed distribution's version (importing the soc2infra package would pull in the
    # scanner: the evidence layer sits below it).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("soc2infra")
    except PackageNotFoundError:
        return "unknown"


TOOL_VERSION = _tool_version()

ENTRY_KEYS = frozenset({"source", "actor", "subject", "pack_digest", "results", "decision", "context",
                        "time"})
RESULT_KEYS = frozenset({"rule_id", "status", "severity", "controls", "address", "waiver"})
WAIVER_KEYS = frozenset({"source", "owner", "expires", "reason", "ticket", "location", "approved_by"})
# Fields of a stored record that are not covered by its hash.
UNHASHED = frozenset({"hash", "signature"})


class EvidenceError(UserError):
    """An entry that cannot become a record, or a ledger that cannot be used as asked."""


class StorageError(EvidenceError):
    """The database failed (locked too long, connection lost, disk full …). Whether a COMMIT that
    failed this way reached the database is unknown: ``verify`` and ``get`` tell."""


class ResultItem(TypedDict, total=False):
    """One rule evaluated on one address (the unit an auditor samples)."""

    rule_id: str
    status: str  # pass | fail | unknown | waived
    severity: str | None
    controls: list[str]
    address: str
    waiver: dict[str, Any]  # for status "waived": owner, expires, reason, ticket, source


class EvidenceEntry(TypedDict, total=False):
    """What a caller appends; the ledger adds seq, time (unless given), hashes and signature."""

    source: str
    actor: str
    subject: str
    pack_digest: str
    results: list[ResultItem]
    decision: str | None
    context: dict[str, Any]
    time: str | datetime


# --------------------------------------------------------------------------------------------
# Canonical form and time


# One encoder for every record: json.dumps with options builds a new JSONEncoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """The one serialisation hashes are computed over (sorted keys, no spaces, UTF-8 text)."""
    return _CANONICAL.encode(obj)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of *record* without ``hash`` and ``signature``."""
    body = {k: v for k, v in record.items() if k not in UNHASHED}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and ``Z``; fixed width, so strings sort like times."""
    if moment.tzinfo is None:
        raise EvidenceError(f"naive datetime {moment.isoformat()} (evidence times must carry a zone)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time with a zone (``Z`` or an offset) into an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise EvidenceError(f"not an ISO-8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise EvidenceError(f"time {text!r} has no zone (use Z for UTC)")
    return moment.astimezone(UTC)


def now() -> str:
    """The current time in record format."""
    return format_time(datetime.now(UTC))


# --------------------------------------------------------------------------------------------
# Redaction

# Substrings that make a key sensitive wherever they appear ("dbPassword", "X-Api-Token") ...
_SENSITIVE_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey",
                    "privatekey", "accesskey", "clientkey", "signingkey")
# ... and words that do only as a whole word ("key", "api_key", "private" but not "monkey").
_SENSITIVE_WORDS = frozenset({"key", "keys", "pwd", "private", "creds", "auth", "authorization", "cookie"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_SECRET_TF_TYPES = frozenset({"kubernetes_secret", "kubernetes_secret_v1"})
_SECRET_DATA_KEYS = frozenset({"data", "stringData", "binaryData", "binary_data"})
_SECRET_BODY_KEYS = frozenset({"attributes", "values", "after", "before"})
_ENV_LIST_KEYS = frozenset({"env", "environment"})
# A policy rule id (SOC2-K8S-SECRET-001, SECRET-003): a name of a check, never a secret, even when
# it contains SECRET or TOKEN; its value (an action, a count) must survive redaction.
_RULE_ID = re.compile(r"[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)*[-_][0-9]{3,}")


@lru_cache(maxsize=8192)
def is_sensitive_key(key: str) -> bool:
    """True when a mapping key names something secret (password, token, private key …)."""
    squashed = key.lower().replace("-", "").replace("_", "")
    if any(part in squashed for part in _SENSITIVE_PARTS):
        return True
    return any(w.lower() in _SENSITIVE_WORDS for w in _WORD_SPLIT.split(key) if w)


def _mask_all(value: Any) -> Any:
    """Mask every scalar under a sensitive key, keeping the structure (and booleans/None)."""
    if isinstance(value, Mapping):
        return {str(k): _mask_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_all(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return REDACTED


def _redact_str(text: str) -> str:
    if "PRIVATE KEY" in text and _PEM_PRIVATE.search(text):
        return REDACTED
    if "://" in text and "@" in text:
        return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + "@", text)
    return text


def redact(obj: Any) -> Any:
    """A copy of *obj* with secret values replaced by ``"[REDACTED]"``.

    - Kubernetes ``Secret`` objects (and Terraform ``kubernetes_secret`` resources, their
      ``attributes`` / plan ``values``): every value of ``data`` / ``stringData`` /
      ``binaryData`` (the keys stay, so evidence shows which ones existed);
    - container ``env`` (and ECS-style ``environment``) items: the literal ``value``
      (``valueFrom`` references are kept); Lambda-style ``environment.variables``: every value;
    - any key that looks sensitive (password, secret, token, key, credential, private …):
      every scalar below it (booleans and null are kept: they are switches, not secrets);
    - the ``kubectl.kubernetes.io/last-applied-configuration`` annotation (a full copy of the
      object, Secret data included);
    - strings holding a PEM private key, and the password part of ``scheme://user:pass@host``.

    Policy rule ids used as keys (``SOC2-K8S-SECRET-001``) are names of checks, not secrets: their
    values are kept. Mapping keys are never changed (but become strings). Tuples become lists; the
    input is not modified; values of other types are returned as they are.
    """
    return _redact(obj, False, False)


_PLAIN, _SECRET_DATA, _SECRET_BODY, _LAST_APPLIED, _SENSITIVE, _ENV = range(6)


@lru_cache(maxsize=8192)
def _key_kind(key: str) -> int:
    """How a mapping key is treated (one cached lookup per key instead of several tests)."""
    if key in _SECRET_DATA_KEYS:
        return _SECRET_DATA  # plain outside a Secret ("data" of a ConfigMap): handled by the caller
    if key in _SECRET_BODY_KEYS:
        return _SECRET_BODY
    if key.endswith("last-applied-configuration"):
        return _LAST_APPLIED
    if _RULE_ID.fullmatch(key):
        return _PLAIN
    if is_sensitive_key(key):
        return _SENSITIVE
    if key in _ENV_LIST_KEYS:
        return _ENV
    return _PLAIN


def _is_secret_object(obj: Mapping[str, Any]) -> bool:
    kind, type_ = obj.get("kind"), obj.get("type")
    return kind == "Secret" or (isinstance(type_, str) and type_ in _SECRET_TF_TYPES)


def _redact(obj: Any, secret: bool, strict: bool) -> Any:
    """Redact *obj*; with *strict* also turn it into plain JSON data (or raise EvidenceError)."""
    t = type(obj)
    if t is str:
        return _redact_str(obj)
    if t is dict or isinstance(obj, Mapping):
        secret = secret or _is_secret_object(obj)
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = k if type(k) is str else str(k)
            kind = _key_kind(key)
            if kind == _PLAIN:
                tv = type(v)
                # Scalars inline: a record's results are mostly strings (one call each otherwise).
                if tv is str:
                    out[key] = _redact_str(v)
                elif v is None or tv is bool or tv is int:
                    out[key] = v
                else:
                    out[key] = _redact(v, False, strict)
            elif kind == _SECRET_DATA and secret:
                out[key] = _mask_all(v)
            elif kind == _SECRET_BODY and secret:
                out[key] = _redact(v, True, strict)  # the attribute tree of a Terraform Secret resource
            elif kind == _LAST_APPLIED:
                out[key] = REDACTED
            elif kind == _SENSITIVE:
                out[key] = _mask_all(v)
            elif kind == _ENV and isinstance(v, list | tuple):
                out[key] = [_redact_env_item(item, strict) for item in v]
            elif kind == _ENV and isinstance(v, Mapping):
                out[key] = _redact_env_item(v, strict)
            else:
                out[key] = _redact(v, False, strict)
        return out
    if t is list or t is tuple or isinstance(obj, list | tuple):
        return [_redact_str(v) if type(v) is str else _redact(v, secret, strict) for v in obj]
    if obj is None or t is bool or t is int:
        return obj
    if t is float:
        if strict and (obj != obj or obj in (float("inf"), float("-inf"))):
            raise EvidenceError(f"{obj!r} is not representable in JSON")
        return obj
    if isinstance(obj, str):
        return _redact_str(str(obj))
    if not strict:
        return obj
    if isinstance(obj, int):  # bool and int subclasses (IntEnum …): their plain value
        return bool(obj) if isinstance(obj, bool) else int(obj)
    if isinstance(obj, float):
        return _redact(float(obj), secret, strict)
    if isinstance(obj, set | frozenset):
        return sorted((_redact(v, secret, strict) for v in obj), key=canonical_json)
    if isinstance(obj, datetime):
        return format_time(obj) if obj.tzinfo else obj.isoformat()
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return _redact_str(str(obj))
    raise EvidenceError(f"a {t.__name__} cannot go into evidence (plain JSON data only)")


def _redact_env_item(item: Any, strict: bool) -> Any:
    out = _redact(item, False, strict)
    if isinstance(out, dict):
        for key in ("value", "variables"):
            if key in out:
                out[key] = _mask_all(out[key])
    return out


# --------------------------------------------------------------------------------------------
# Entries → records


def _jsonable(obj: Any, where: str) -> Any:
    """Plain JSON data: tuples/sets become lists, dates and paths strings; anything else refused."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise EvidenceError(f"{where}: {obj!r} is not representable in JSON")
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return sorted((_jsonable(v, where) for v in obj), key=repr)
    if isinstance(obj, datetime):
        return format_time(obj) if obj.tzinfo else obj.isoformat()
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise EvidenceError(f"{where}: a {type(obj).__name__} cannot go into evidence (plain JSON data only)")


def _require_str(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise EvidenceError(f"{where} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def normalize_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Check an entry's shape, redact it and return the normalised fields of a record.

    Raises :class:`EvidenceError` naming the offending field. The result has every record
    field except ``v``, ``seq``, ``prev_hash``, ``hash``, ``key_id`` and ``signature``;
    ``time`` is present only when the caller fixed it.
    """
    return _normalize(entry)[0]


def _normalize(entry: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """:func:`normalize_entry`, plus the canonical JSON of the results when they all took the
    plain path (None otherwise)."""
    if not isinstance(entry, Mapping):
        raise EvidenceError(f"an evidence entry must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise EvidenceError(f"unknown entry field(s) {', '.join(map(str, unknown))}; "
                            f"allowed: {', '.join(sorted(ENTRY_KEYS))} (put extra facts in context)")
    raw = {k: v for k, v in entry.items() if k not in ("time", "results")}
    results = entry.get("results", [])
    try:
        data = _redact(raw, False, True)
        # Results of the usual shape are redacted, checked and serialised in one pass (an
        # admission record holds one per rule evaluated); any other shape takes the general
        # path, which names the offending field.
        plain = _plain_results(results)
        checked = plain is not None
        data["results"] = plain[0] if plain is not None else _redact(results, False, True)
    except EvidenceError:
        _jsonable({**raw, "results": results}, "entry")  # raises again, naming where the value sits
        raise
    source = data.get("source")
    if source not in SOURCES:
        raise EvidenceError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    out: dict[str, Any] = {
        "source": source,
        "actor": _require_str(data.get("actor"), "actor"),
        "subject": _require_str(data.get("subject"), "subject"),
        "pack_digest": _require_str(data.get("pack_digest", ""), "pack_digest", empty=True),
    }
    decision = data.get("decision")
    allowed = (ADMISSION_DECISIONS if source == "admission" else SCAN_DECISIONS if source in SCAN_SOURCES
               else ADMISSION_DECISIONS + SCAN_DECISIONS)
    if decision is not None and decision not in allowed:
        raise EvidenceError(f"decision for source {source!r} must be one of {', '.join(allowed)}, "
                            f"got {decision!r}")
    out["decision"] = decision
    results = data.get("results", [])
    if not isinstance(results, list):
        raise EvidenceError("results must be a list")
    out["results"] = results if checked else [_normalize_result(r, i) for i, r in enumerate(results)]
    context = data.get("context", {})
    if not isinstance(context, dict):
        raise EvidenceError("context must be a mapping")
    out["context"] = context
    if entry.get("time") is not None:
        moment = entry["time"]
        if isinstance(moment, datetime):
            out["time"] = format_time(moment)
        else:
            out["time"] = format_time(parse_time(_require_str(moment, "time")))
    return out, plain[1] if plain is not None else None


def _plain_result(item: Any) -> dict[str, Any] | None:
    """*item* redacted and normalised when it is a plain result (a dict of known keys with values
    of exactly the right types, no waiver), else None: what ``_normalize_result(_redact(item))``
    returns for it, in one pass."""
    if type(item) is not dict or not item.keys() <= _PLAIN_RESULT_KEYS:
        return None
    rule_id, status, severity = item.get("rule_id"), item.get("status"), item.get("severity")
    controls, address = item.get("controls", []), item.get("address", "")
    if type(rule_id) is not str or not rule_id or status not in STATUSES or type(address) is not str \
            or not (severity is None or type(severity) is str) or type(controls) is not list \
            or not all(type(c) is str for c in controls):
        return None
    return {"rule_id": _redact_str(rule_id), "status": status,
            "severity": severity if severity is None else _redact_str(severity),
            "controls": [_redact_str(c) for c in controls], "address": _redact_str(address)}


_PLAIN_RESULT_KEYS = RESULT_KEYS - {"waiver"}

# Results repeat: an admission record holds one per rule evaluated, and two records' results
# differ mostly in the address, which is the first key in canonical order. The rest of each
# result's canonical JSON is kept per (rule id, status, severity, controls): bounded by the
# pack's rules times the statuses, and capped in case results come from elsewhere.
_RESULT_TAILS: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
_RESULT_TAILS_MAX = 8192
_EMPTY_ADDRESS = '{"address":"",'


def _plain_results(results: Any) -> tuple[list[dict[str, Any]], str] | None:
    """The normalised results and their canonical JSON when every item is a plain result (what
    :func:`_plain_result` accepts), else None."""
    if type(results) is not list:
        return None
    out: list[dict[str, Any]] = []
    parts: list[str] = []
    last: Any = None
    address, head = "", _EMPTY_ADDRESS
    for item in results:
        if type(item) is not dict or not item.keys() <= _PLAIN_RESULT_KEYS:
            return None
        raw_address = item.get("address", "")
        if raw_address is not last:  # usually one object: every result names the same address
            if type(raw_address) is not str:
                return None
            last, address = raw_address, _redact_str(raw_address)
            head = '{"address":' + canonical_json(address) + ","
        controls = item.get("controls", [])
        if type(controls) is not list:
            return None
        try:
            key = (item.get("rule_id"), item.get("status"), item.get("severity"), tuple(controls))
            tail = _RESULT_TAILS.get(key)
        except TypeError:  # an unhashable value: not a plain result
            return None
        if tail is None:
            normal = _plain_result({**item, "address": ""})
            if normal is None:
                return None
            del normal["address"]
            tail = (normal, canonical_json({"address": "", **normal})[len(_EMPTY_ADDRESS):])
            if len(_RESULT_TAILS) < _RESULT_TAILS_MAX:
                _RESULT_TAILS[key] = tail
        out.append({**tail[0], "address": address})
        parts.append(head + tail[1])
    return out, "[" + ",".join(parts) + "]"


def _normalize_result(item: Any, index: int) -> dict[str, Any]:
    where = f"results[{index}]"
    if not isinstance(item, dict):
        raise EvidenceError(f"{where} must be a mapping")
    unknown = sorted(set(item) - RESULT_KEYS)
    if unknown:
        raise EvidenceError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(RESULT_KEYS))}")
    status = item.get("status")
    if status not in STATUSES:
        raise EvidenceError(f"{where}.status must be one of {', '.join(STATUSES)}, got {status!r}")
    controls = item.get("controls", [])
    if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
        raise EvidenceError(f"{where}.controls must be a list of strings")
    severity = item.get("severity")
    if severity is not None and not isinstance(severity, str):
        raise EvidenceError(f"{where}.severity must be a string")
    out: dict[str, Any] = {
        "rule_id": _require_str(item.get("rule_id"), f"{where}.rule_id"),
        "status": status,
        "severity": severity,
        "controls": controls,
        "address": _require_str(item.get("address", ""), f"{where}.address", empty=True),
    }
    waiver = item.get("waiver")
    if waiver is not None:
        if not isinstance(waiver, dict) or set(waiver) - WAIVER_KEYS:
            raise EvidenceError(f"{where}.waiver must be a mapping with keys among "
                                f"{', '.join(sorted(WAIVER_KEYS))}")
        out["waiver"] = waiver
    return out


def build_record(fields: Mapping[str, Any], seq: int, prev_hash: str, time: str,
                 signer: Signer | None = None) -> dict[str, Any]:
    """The stored record for normalised *fields* at position *seq* after *prev_hash*."""
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "seq": seq,
        "time": time,
        "source": fields["source"],
        "actor": fields["actor"],
        "subject": fields["subject"],
        "pack_digest": fields["pack_digest"],
        "results": fields["results"],
        "decision": fields["decision"],
        "context": fields["context"],
        "prev_hash": prev_hash,
    }
    if signer is not None:
        record["key_id"] = signer.key_id
    record["hash"] = record_hash(record)
    if signer is not None:
        record["signature"] = signer.sign(record["hash"])
    return record


@dataclass(frozen=True, slots=True)
class PreparedEntry:
    """An entry checked, redacted and serialised ahead of time, outside any lock.

    Only seq, prev_hash and time are known once the writer holds the ledger's lock; everything
    else of the canonical JSON is ready here, so the critical section just splices three values
    in and hashes (:func:`seal`). The splice follows the sorted key order of the record, so the
    result is byte for byte ``canonical_json(build_record(...))`` (tested).
    """

    fields: dict[str, Any]
    time: str | None  # fixed by the caller, else stamped under the lock
    _head: str  # '{"actor":…,"context":…,"decision":…,'
    _pack: str  # '"pack_digest":…,'
    _results: str  # '"results":…,'
    _tail: str  # '"source":…,"subject":…,'


def prepare_entry(entry: Mapping[str, Any]) -> PreparedEntry:
    """Normalise (:func:`normalize_entry`) and pre-serialise *entry*."""
    fields, results_json = _normalize(entry)
    dump = canonical_json
    return PreparedEntry(
        fields, fields.get("time"),
        f'{{"actor":{dump(fields["actor"])},"context":{dump(fields["context"])},'
        f'"decision":{dump(fields["decision"])},',
        f'"pack_digest":{dump(fields["pack_digest"])},',
        f'"results":{results_json if results_json is not None else dump(fields["results"])},',
        f'"source":{dump(fields["source"])},"subject":{dump(fields["subject"])},',
    )


def seal(entry: PreparedEntry, seq: int, prev_hash: str, time: str,
         signer: Signer | None = None) -> tuple[str, str]:
    """The stored canonical body and hash of *entry* at *seq* after *prev_hash*."""
    key = f'"key_id":"{signer.key_id}",' if signer is not None else ""
    middle = f'{entry._pack}"prev_hash":"{prev_hash}",{entry._results}"seq":{seq},'
    end = f'{entry._tail}"time":"{time}","v":{SCHEMA_VERSION}}}'
    digest = hashlib.sha256((entry._head + key + middle + end).encode("utf-8")).hexdigest()
    signature = f'"signature":"{signer.sign(digest)}",' if signer is not None else ""
    return f'{entry._head}"hash":"{digest}",{key}{middle}{signature}{end}', digest


# --------------------------------------------------------------------------------------------
# Signatures


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """``ed25519:`` plus the first 16 hex digits of SHA-256 over the raw public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs record hashes with an Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def sign(self, hash_hex: str) -> str:
        """Hex Ed25519 signature over the raw digest bytes of *hash_hex*."""
        return self._key.sign(bytes.fromhex(hash_hex)).hex()


def load_signer(path: Path) -> Signer:
    """A :class:`Signer` from a PEM (PKCS#8 or OpenSSH) Ed25519 private key, or a raw 32-byte seed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = Path(path).read_bytes()
    key: Any
    try:
        if data.startswith(b"-----BEGIN OPENSSH"):
            key = serialization.load_ssh_private_key(data, password=None)
        elif data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        elif len(data) == 32:
            key = Ed25519PrivateKey.from_private_bytes(data)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceError(f"{path}: cannot read the signing key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceError(f"{path}: the signing key must be Ed25519, got {type(key).__name__}")
    return Signer(key)


def load_public_keys(paths: Path | str | Iterable[Path | str]) -> dict[str, Ed25519PublicKey]:
    """``{key_id: public key}`` from PEM/OpenSSH/raw public keys (or private keys, whose public
    half is used); several keys verify a ledger whose signing key was rotated."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(paths, str | Path):
        paths = [paths]
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        data = Path(path).read_bytes()
        pub: Any
        try:
            if b"PRIVATE KEY" in data:
                pub = load_signer(Path(path)).public_key
            elif data.startswith(b"ssh-ed25519"):
                pub = serialization.load_ssh_public_key(data)
            elif data.startswith(b"-----BEGIN"):
                pub = serialization.load_pem_public_key(data)
            elif len(data) == 32:
                pub = Ed25519PublicKey.from_public_bytes(data)
            else:
                pub = serialization.load_der_public_key(data)
        except (ValueError, TypeError) as exc:
            raise EvidenceError(f"{path}: cannot read the public key ({exc})") from exc
        if not isinstance(pub, Ed25519PublicKey):
            raise EvidenceError(f"{path}: the public key must be Ed25519, got {type(pub).__name__}")
        keys[key_id_of(pub)] = pub
    return keys


def generate_keypair(private_path: Path, public_path: Path | None = None) -> str:
    """Write a new Ed25519 key pair as PEM (private key mode 0600) and return its key id.

    The public key goes to *public_path* (default: the private path with ``.pub`` appended).
    """
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_name(private_path.name + ".pub")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id_of(key.public_key())


def check_signature(record: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """None when *record* carries a valid signature by one of *keys*, else the reason."""
    from cryptography.exceptions import InvalidSignature

    sig, key_id = record.get("signature"), record.get("key_id")
    if not sig or not key_id:
        return "record is not signed"
    key = keys.get(key_id)
    if key is None:
        return f"signed with unknown key {key_id}"
    try:
        key.verify(bytes.fromhex(sig), bytes.fromhex(record["hash"]))
    except (InvalidSignature, ValueError):
        return f"signature does not verify with key {key_id}"
    return None


# --------------------------------------------------------------------------------------------
# From a scan


def results_from_scan(result: ScanResult,
                      rule_meta: Mapping[str, tuple[str, Sequence[str]]] | None = None) -> list[ResultItem]:
    """The evaluated population of a scan as result items: passes and findings alike.

    *rule_meta* maps rule id to ``(severity, controls)`` for the passes, which the scan records
    only as ``(rule_id, address)`` (e.g. ``{r.id: (r.severity, r.controls) for r in pack.rules}``).
    Suppressed findings become ``waived`` with their waiver's owner, expiry and source.
    """
    meta = rule_meta or {}
    items: list[ResultItem] = []
    for rule_id, address in result.passes:
        severity, controls = meta.get(rule_id, (None, ()))
        items.append({"rule_id": rule_id, "status": "pass", "severity": severity,
                      "controls": list(controls), "address": address})
    for f in result.findings:
        item: ResultItem = {"rule_id": f.rule_id, "status": "waived" if f.suppressed else f.status,
                            "severity": f.severity, "controls": list(f.controls),
                            "address": f.resource.address}
        if f.suppressed and f.waiver is not None:
            w = f.waiver
            item["waiver"] = {k: v for k, v in (("source", w.source), ("owner", w.owner),
                                                 ("expires", w.expires), ("reason", w.reason),
                                                 ("ticket", w.ticket), ("location", w.location))
                              if v is not None}
        items.append(item)
    return items
