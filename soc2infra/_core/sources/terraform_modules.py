"""Non-local Terraform modules: where `terraform init` put them, or a fetch of our own.

A ``module`` block whose ``source`` is not a local path (registry, git, HTTP, S3, GCS) is
resolved in this order:

1. ``.terraform/modules/modules.json`` of the root module, written by ``terraform init``: the
   module's key (``vpc``, ``vpc.subnets``) gives the directory init fetched it into, provided the
   recorded source still matches the configuration (a stale entry is not used);
2. with ``download=True`` (``--download-external-modules``): the module registry protocol
   (service discovery, version constraint → newest matching version, ``X-Terraform-Get``), git
   sources (``?ref=``, ``//subdir``) and HTTPS archives, fetched into the user cache keyed by the
   source and the resolved version.

Every call gets a :class:`ModuleRecord` (scanned or not, and why), so nothing is skipped in
silence: the scan result lists the records in its ``coverage`` section.

Why one module of over 500 lines: the four ways of getting a module (init's record, registry,
git, HTTPS archive) share the cache, the credentials and the redaction of URLs in messages.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from soc2infra._cogs.model import ModuleRecord
from soc2infra._core.sources import reads

DEFAULT_REGISTRY = "registry.terraform.io"
MAX_ARCHIVE_BYTES = 200 * 1024 * 1024
HTTP_TIMEOUT = 20.0
_REGISTRY_RE = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9.-]+(?::\d+)?)/)?(?P<ns>[A-Za-z0-9][A-Za-z0-9_-]*)/"
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)/(?P<system>[A-Za-z0-9]+)(?://(?P<subdir>.+))?$")
_NOT_DOWNLOADABLE = "{kind} sources cannot be downloaded by soc2infra; run terraform init"
_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


class ModuleFetchError(Exception):
    """A module could not be fetched; the message is safe to print (no credentials)."""


def source_kind(source: str) -> str:
    """``local``, ``registry``, ``git``, ``http``, ``s3``, ``gcs``, ``mercurial`` or ``unknown``."""
    if source.startswith(("./", "../")):
        return "local"
    forced = source.split("::", 1)[0] if "::" in source else ""
    if forced in ("git", "hg", "s3", "gcs", "http", "https"):
        return {"hg": "mercurial", "https": "http"}.get(forced, forced)
    if source.startswith(("git@", "github.com/", "bitbucket.org/")) or source.endswith(".git"):
        return "git"
    if source.startswith(("https://", "http://")):
        return "http"
    if re.match(r"^[a-z0-9-]+\.s3[.-]", source) or source.startswith("s3-"):
        return "s3"
    if source.startswith("www.googleapis.com/storage/"):
        return "gcs"
    if _REGISTRY_RE.match(source):
        return "registry"
    return "unknown"


def normalize_source(source: str) -> str:
    """The form ``terraform init`` records in modules.json (registry sources gain their host)."""
    if source_kind(source) == "registry":
        m = _REGISTRY_RE.match(source)
        assert m is not None
        if _registry_host(m) == DEFAULT_REGISTRY and not source.startswith(DEFAULT_REGISTRY + "/"):
            return f"{DEFAULT_REGISTRY}/{source}"
    return source


def _registry_host(m: re.Match[str]) -> str:
    """The registry host of a matched registry source (a bare ``ns/name/system`` is the public one)."""
    host = m.group("host")
    return host if host and ("." in host or ":" in host or host == "localhost") else DEFAULT_REGISTRY


# ---------------------------------------------------------------- version constraints

def _parse_version(text: str) -> Version | None:
    try:
        return Version(text.strip().lstrip("v"))
    except InvalidVersion:
        return None


def _pessimistic_upper(v: str) -> Version | None:
    parts = v.strip().lstrip("v").split(".")
    if len(parts) == 1:
        return None  # "~> 1" means >= 1 with no upper bound on the major version
    head = [int(p) for p in parts[:-1] if p.isdigit()]
    if len(head) != len(parts) - 1:
        return None
    head[-1] += 1
    return Version(".".join(str(p) for p in head))


def version_matches(version: str, constraint: str | None) -> bool:
    """Whether *version* satisfies a Terraform version constraint (``~> 4.1``, ``>= 1, < 2``)."""
    v = _parse_version(version)
    if v is None:
        return False
    if not constraint or not constraint.strip():
        return not v.is_prerelease
    exact_pre = False
    for part in constraint.split(","):
        part = part.strip()
        m = re.match(r"^(~>|>=|<=|!=|=|>|<)?\s*(\S+)$", part)
        if not m:
            return False
        op, target_text = m.group(1) or "=", m.group(2)
        target = _parse_version(target_text)
        if target is None:
            return False
        if op == "=" and target.is_prerelease:
            exact_pre = True
        ok = {
            "=": v == target, "!=": v != target, ">": v > target, ">=": v >= target,
            "<": v < target, "<=": v <= target,
        }.get(op)
        if op == "~>":
            upper = _pessimistic_upper(target_text)
            ok = v >= target and (upper is None or v < upper)
        if not ok:
            return False
    # Terraform selects a pre-release only when a constraint names it exactly.
    return exact_pre or not v.is_prerelease


def newest_matching(versions: list[str], constraint: str | None) -> str | None:
    """The newest of *versions* that satisfies *constraint*."""
    good = [(pv, s) for s in versions if version_matches(s, constraint) and (pv := _parse_version(s))]
    return max(good)[1] if good else None


# ---------------------------------------------------------------- credentials

def registry_token(host: str, env: dict[str, str] | None = None) -> str | None:
    """The API token for *host*, read the way Terraform reads it.

    ``TF_TOKEN_<host>`` (dots as ``_``, hyphens as ``__``) wins over the CLI configuration:
    ``credentials "<host>" { token = … }`` in ``TF_CLI_CONFIG_FILE`` or ``~/.terraformrc``, and
    ``~/.terraform.d/credentials.tfrc.json`` (what ``terraform login`` writes).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    name = "TF_TOKEN_" + host.replace("-", "__").replace(".", "_").replace(":", "_")
    if environ.get(name):
        return environ[name]
    home = Path(environ.get("HOME", str(Path.home())))
    creds = home / ".terraform.d" / "credentials.tfrc.json"
    try:
        data = json.loads(creds.read_text(encoding="utf-8"))
        token = data.get("credentials", {}).get(host, {}).get("token")
        if isinstance(token, str) and token:
            return token
    except (OSError, ValueError, AttributeError):
        pass
    rc = Path(environ["TF_CLI_CONFIG_FILE"]) if environ.get("TF_CLI_CONFIG_FILE") else home / ".terraformrc"
    try:
        text = rc.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r'credentials\s+"' + re.escape(host) + r'"\s*\{[^}]*?token\s*=\s*"([^"]+)"', text, re.S)
    return m.group(1) if m else None


def redact_url(url: str) -> str:
    """*url* without user info or secret-looking query values, safe to print."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urllib.parse.urlencode(
        [(k, "***" if re.search(r"token|secret|sig|key|password|credential", k, re.I) else v)
         for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# ---------------------------------------------------------------- fetching

@dataclass(slots=True)
class Fetched:
    """A module tree on disk and what was fetched to get it."""

    directory: Path
    resolved_version: str | None
    location: str


def _split_subdir(address: str) -> tuple[str, str]:
    """``git::https://h/r.git//mod/x?ref=v1`` → (``git::https://h/r.git?ref=v1``, ``mod/x``)."""
    forced, sep, rest = address.partition("::")
    if not sep:
        forced, rest = "", address
    scheme_end = rest.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    base, query = rest, ""
    if "?" in rest:
        base, query = rest.split("?", 1)
    subdir = ""
    idx = base.find("//", start)
    if idx >= 0:
        base, subdir = base[:idx], base[idx + 2:]
    joined = base + ("?" + query if query else "")
    return (f"{forced}::{joined}" if forced else joined), subdir.strip("/")


def _safe_subdir(root: Path, subdir: str) -> Path:
    target = (root / subdir).resolve() if subdir else root.resolve()
    if root.resolve() != target and root.resolve() not in target.parents:
        raise ModuleFetchError(f"module subdirectory {subdir!r} leaves the fetched tree")
    if not target.is_dir():
        raise ModuleFetchError(f"module subdirectory {subdir!r} does not exist in the fetched tree")
    return target


class ModuleFetcher:
    """Fetches module sources into ``cache_root``, one directory per source and version."""

    def __init__(self, cache_root: Path, env: dict[str, str] | None = None,
                 opener: Callable[..., Any] | None = None) -> None:
        self.cache_root = cache_root
        self.env = dict(os.environ) if env is None else env
        self._open = opener or urllib.request.urlopen

    # -- registry
    def fetch_registry(self, source: str, constraint: str | None) -> Fetched:
        """Resolve a registry source through the module registry protocol and fetch it."""
        m = _REGISTRY_RE.match(source)
        if m is None:
            raise ModuleFetchError(f"not a registry source: {source}")
        host = _registry_host(m)
        token = registry_token(host, self.env)
        base = self._discover(host, token)
        path = f"{m.group('ns')}/{m.group('name')}/{m.group('system')}"
        listing = self._get_json(urllib.parse.urljoin(base, f"{path}/versions"), token)
        versions = [v.get("version", "") for mod in listing.get("modules", [])
                    for v in mod.get("versions", []) if isinstance(v, dict)]
        version = newest_matching([v for v in versions if isinstance(v, str)], constraint)
        if version is None:
            raise ModuleFetchError(f"no version of {host}/{path} matches {constraint or 'any'} "
                                   f"(registry lists {len(versions)})")
        key = self._key(f"{host}/{path}", version)
        done = self.cache_root / key
        if not (done / ".complete").is_file():
            download = urllib.parse.urljoin(base, f"{path}/{version}/download")
            address = self._download_address(download, token)
            self._materialize(address, done, token_host=host, token=token)
        root = done / "tree"
        subdir = m.group("subdir") or ""
        return Fetched(_safe_subdir(root, subdir), version, f"{host}/{path} {version}")

    def _discover(self, host: str, token: str | None) -> str:
        url = f"https://{host}/.well-known/terraform.json"
        data = self._get_json(url, token)
        ref = data.get("modules.v1")
        if not isinstance(ref, str):
            raise ModuleFetchError(f"{host} does not offer the module registry protocol (modules.v1)")
        base = urllib.parse.urljoin(url, ref)
        return base if base.endswith("/") else base + "/"

    def _request(self, url: str, token: str | None) -> Any:
        req = urllib.request.Request(url, headers={"User-Agent": "soc2infra"})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            return self._open(req, timeout=HTTP_TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise ModuleFetchError(f"{redact_url(url)}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModuleFetchError(f"{redact_url(url)}: {reason}") from None

    def _get_json(self, url: str, token: str | None) -> dict[str, Any]:
        with self._request(url, token) as resp:
            body = resp.read(1024 * 1024 + 1)
        try:
            data = json.loads(body)
        except ValueError:
            raise ModuleFetchError(f"{redact_url(url)}: not JSON") from None
        if not isinstance(data, dict):
            raise ModuleFetchError(f"{redact_url(url)}: unexpected response")
        return data

    def _download_address(self, url: str, token: str | None) -> str:
        with self._request(url, token) as resp:
            header = resp.headers.get("X-Terraform-Get")
            body = resp.read(1024 * 1024)
        if not header and body:
            try:
                header = json.loads(body).get("location")
            except (ValueError, AttributeError):
                header = None
        if not header:
            raise ModuleFetchError(f"{redact_url(url)}: no X-Terraform-Get download address")
        # A relative address is relative to the download endpoint (registry protocol).
        address = str(header)
        if "::" not in address and not re.match(r"^[a-z]+://", address) and source_kind(address) != "git":
            address = urllib.parse.urljoin(url, address)
        return address

    # -- git and archives
    def fetch_address(self, address: str) -> Fetched:
        """Fetch a git or HTTPS-archive source (``//subdir`` and ``?ref=`` honoured)."""
        base, subdir = _split_subdir(address)
        key = self._key(base, "")
        done = self.cache_root / key
        if not (done / ".complete").is_file():
            self._materialize(base, done)
        return Fetched(_safe_subdir(done / "tree", subdir), None, _printable(base))

    def _materialize(self, address: str, done: Path, token_host: str | None = None,
                     token: str | None = None) -> None:
        base, subdir_in_address = _split_subdir(address)
        if subdir_in_address:
            # The registry's download address may itself point into a subdirectory; fetch the
            # whole tree and link the subdirectory as the module root.
            self._materialize(base, done, token_host, token)
            inner = _safe_subdir(done / "tree", subdir_in_address)
            tmp = done.with_name(done.name + ".sub")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(inner, tmp, symlinks=True)
            shutil.rmtree(done / "tree")
            tmp.rename(done / "tree")
            return
        kind = source_kind(base)
        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=self._ensure_cache()))
        try:
            tree = staging / "tree"
            if kind == "git":
                self._git(base, tree)
            elif kind == "http":
                # The registry token goes only to the registry's own host, never to a redirect.
                same_host = urllib.parse.urlsplit(_strip_forced(base)).netloc == token_host
                send = token if token_host and same_host else None
                self._archive(base, tree, send)
            else:
                raise ModuleFetchError(_NOT_DOWNLOADABLE.format(kind=kind))
            (staging / ".complete").write_text(_printable(base) + "\n", encoding="utf-8")
            shutil.rmtree(done, ignore_errors=True)
            staging.rename(done)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _ensure_cache(self) -> Path:
        self.cache_root.mkdir(parents=True, exist_ok=True)
        return self.cache_root

    def _git(self, address: str, tree: Path) -> None:
        url = _strip_forced(address)
        query: dict[str, str] = {}
        if "?" in url:
            url, q = url.split("?", 1)
            query = dict(urllib.parse.parse_qsl(q))
        if url.startswith(("github.com/", "bitbucket.org/")):
            url = "https://" + url
        ref = query.get("ref")
        env = {**self.env, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}

        def git(*args: str, cwd: Path | None = None) -> None:
            proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
                raise ModuleFetchError(f"git {args[0]} {_printable(url)}: {_scrub(last, url)}")

        try:
            git("init", "-q", str(tree))
            git("remote", "add", "origin", url, cwd=tree)
            git("fetch", "-q", "--depth", "1", "origin", ref or "HEAD", cwd=tree)
            git("checkout", "-q", "FETCH_HEAD", cwd=tree)
        except FileNotFoundError:
            raise ModuleFetchError("git is not installed") from None
        except subprocess.TimeoutExpired:
            raise ModuleFetchError(f"git fetch of {_printable(url)} timed out") from None
        shutil.rmtree(tree / ".git", ignore_errors=True)

    def _archive(self, address: str, tree: Path, token: str | None) -> None:
        url = _strip_forced(address)
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query)
        fmt = dict(query).get("archive")
        kept = urllib.parse.urlencode([(k, v) for k, v in query if k != "archive"])
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, kept, parts.fragment))
        path = parts.path.lower()
        if fmt is None:
            fmt = next((s.lstrip(".") for s in _ARCHIVE_SUFFIXES if path.endswith(s)), None)
        if fmt is None:
            raise ModuleFetchError(f"{redact_url(url)} is not an archive (.zip, .tar.gz …)")
        with self._request(url, token) as resp:
            data = resp.read(MAX_ARCHIVE_BYTES + 1)
        if len(data) > MAX_ARCHIVE_BYTES:
            raise ModuleFetchError(f"{redact_url(url)}: archive larger than {MAX_ARCHIVE_BYTES} bytes")
        tree.mkdir(parents=True)
        try:
            if fmt == "zip":
                _extract_zip(data, tree)
            else:
                _extract_tar(data, tree)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModuleFetchError(f"{redact_url(url)}: bad archive ({exc})") from None

    def _key(self, source: str, version: str) -> str:
        return hashlib.sha256(f"{source}\0{version}".encode()).hexdigest()[:24]


def _strip_forced(address: str) -> str:
    return address.split("::", 1)[1] if "::" in address else address


def _printable(address: str) -> str:
    forced, sep, rest = address.partition("::")
    return f"{forced}::{redact_url(rest)}" if sep else redact_url(address)


def _scrub(text: str, url: str) -> str:
    userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    return text.replace(userinfo, "***") if userinfo else text


def _extract_tar(data: bytes, tree: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: the standard library's safe filter
            tar.extractall(tree, filter="data")
            return
        # Older 3.11 (Debian's 3.11.2) has no filters: refuse what the "data" filter refuses —
        # members leaving the tree, links and special files — before extracting anything.
        root = tree.resolve()
        for member in tar.getmembers():
            target = (tree / member.name).resolve()
            if root not in target.parents and target != root:
                raise ModuleFetchError(f"archive member {member.name!r} leaves the module directory")
            if not (member.isfile() or member.isdir()):
                raise ModuleFetchError(f"archive member {member.name!r} is a link or a special file")
        tar.extractall(tree)  # noqa: S202 - every member was checked above


def _extract_zip(data: bytes, tree: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            target = (tree / info.filename).resolve()
            if tree.resolve() not in target.parents and target != tree.resolve():
                raise ModuleFetchError(f"archive member {info.filename!r} leaves the module directory")
        zf.extractall(tree)


def tree_digest(directory: Path) -> str:
    """sha256 over the module's ``.tf`` files (names and contents), for the lock record."""
    h = hashlib.sha256()
    for p in sorted(directory.glob("*.tf")):
        h.update(p.name.encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            continue
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------- resolution

def read_manifest(root_dir: Path) -> dict[str, dict[str, Any]]:
    """``.terraform/modules/modules.json`` of a root module, by module key (empty when absent)."""
    path = root_dir / ".terraform" / "modules" / "modules.json"
    reads.note_listing(path.parent, "modules.json")
    reads.note(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for entry in data.get("Modules", []) if isinstance(data, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("Key"), str):
            out[entry["Key"]] = entry
    return out


@dataclass(slots=True)
class ModuleResolver:
    """Resolves non-local module calls of one root module and records every call's fate."""

    root_dir: Path
    fetcher: ModuleFetcher | None = None
    records: list[ModuleRecord] = field(default_factory=list)
    _manifest: dict[str, dict[str, Any]] | None = None
    _seen: dict[str, ModuleRecord] = field(default_factory=dict)

    def manifest(self) -> dict[str, dict[str, Any]]:
        """The root's modules.json, read once."""
        if self._manifest is None:
            self._manifest = read_manifest(self.root_dir)
        return self._manifest

    def record(self, rec: ModuleRecord) -> ModuleRecord:
        """Keep one record per module address (``count``/``for_each`` instances share a call)."""
        if rec.address not in self._seen:
            self._seen[rec.address] = rec
            self.records.append(rec)
        return self._seen[rec.address]

    def resolve(self, key: str, address: str, source: Any, version: Any, file: str, line: int) -> Path | None:
        """The directory holding the module for the call *key* (``vpc.subnets``), or None.

        *source*/*version* are the evaluated arguments (non-strings mean they could not be
        evaluated). Returns None, with a record saying why, when the module cannot be read.
        """
        ver = version if isinstance(version, str) else None
        if not isinstance(source, str):
            self.record(ModuleRecord(address, "<unknown>", ver, False,
                                     "source is not a literal string", file=file, line=line))
            return None
        kind = source_kind(source)
        entry = self.manifest().get(key)
        if entry is not None and entry.get("Source") in (source, normalize_source(source)):
            directory = (self.root_dir / str(entry.get("Dir", ""))).resolve()
            if directory.is_dir():
                self.record(ModuleRecord(
                    address, source, ver, True, resolved_version=entry.get("Version") or None,
                    origin="terraform init", location=_relative(directory, self.root_dir),
                    digest=tree_digest(directory), file=file, line=line))
                return directory
        if self.fetcher is None:
            hint = "run terraform init or pass --download-external-modules"
            what = {"registry": "registry module", "git": "git source", "http": "HTTP source",
                    "s3": "S3 source", "gcs": "GCS source"}.get(kind, f"{kind} source")
            stale = " (modules.json records another source: run terraform init again)" if entry else ""
            self.record(ModuleRecord(address, source, ver, False, f"{what} not fetched{stale}: {hint}",
                                     file=file, line=line))
            return None
        try:
            if kind == "registry":
                got = self.fetcher.fetch_registry(source, ver)
            elif kind in ("git", "http"):
                got = self.fetcher.fetch_address(source)
            else:
                raise ModuleFetchError(_NOT_DOWNLOADABLE.format(kind=kind))
        except ModuleFetchError as exc:
            self.record(ModuleRecord(address, source, ver, False, f"download failed: {exc}",
                                     file=file, line=line))
            return None
        self.record(ModuleRecord(address, source, ver, True, resolved_version=got.resolved_version,
                                 origin="download", location=got.location, digest=tree_digest(got.directory),
                                 file=file, line=line))
        return got.directory


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


def default_module_cache() -> Path:
    """Where downloaded modules are kept: ``$SOC2INFRA_CACHE/modules`` or the user cache."""
    if os.environ.get("SOC2INFRA_CACHE"):
        return Path(os.environ["SOC2INFRA_CACHE"]) / "modules"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("soc2infra")) / "modules"
