"""Content-hash cache of parsed files, kept outside the repository (user cache dir).

A re-scan of an unchanged tree then costs little more than reading and hashing the
files. Entries are keyed by (parser version, content hash), so a changed file or a new
soc2infra version simply misses; a corrupt entry is ignored and rewritten.

Entries are encrypted and authenticated (AES-256-GCM, the entry's name as associated data)
with a per-user key kept in the user's *config* directory (``cache.key``, mode 0600), not
beside the cache: parsed files hold the literal secrets people commit by mistake, and CI
systems cache and upload ``~/.cache``. Stripping those literals would make a cached scan miss
the very findings that report them, so the whole entry is sealed instead. The key also makes a
cache entry written by anyone else (a poisoned shared cache) fail to open instead of being
unpickled. No key can be made (read-only home): nothing is cached.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

CACHE_FORMAT = "2"  # 2: entries sealed with the per-user key
_NONCE = 12
_keys: dict[Path, bytes] = {}


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is disabled (SOC2INFRA_NO_CACHE=1)."""
    if os.environ.get("SOC2INFRA_NO_CACHE"):
        return None
    base = os.environ.get("SOC2INFRA_CACHE")
    if base:
        return Path(base) / "parse"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("soc2infra")) / "parse"


def key_file() -> Path:
    """Where the per-user cache key lives (``SOC2INFRA_CACHE_KEY`` overrides)."""
    override = os.environ.get("SOC2INFRA_CACHE_KEY")
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("soc2infra")) / "cache.key"


def _key() -> bytes | None:
    """The 32-byte key, created on first use (readable by its owner only); None if impossible."""
    path = key_file()
    if path in _keys:
        return _keys[path]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
        except FileExistsError:
            pass  # another process made it first: read theirs
        except OSError:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
    except OSError:
        return None
    if len(data) != 32:
        return None  # not ours: cache off rather than trusting it
    _keys[path] = data
    return data


def content_key(kind: str, data: bytes, version: str) -> str:
    """Cache key for *data* parsed by parser *kind* at *version*."""
    h = hashlib.blake2b(data, digest_size=20)
    h.update(f"\0{kind}\0{version}\0{CACHE_FORMAT}".encode())
    return h.hexdigest()


def load(key: str) -> Any | None:
    """The cached object for *key*, or None."""
    d, secret = cache_dir(), _key()
    if d is None or secret is None:
        return None
    path = d / key[:2] / key
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        sealed = path.read_bytes()
        plain = AESGCM(secret).decrypt(sealed[:_NONCE], sealed[_NONCE:], key.encode())
        return pickle.loads(plain)  # noqa: S301 - authenticated: written with this user's key
    except (OSError, InvalidTag, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError,
            ValueError):
        return None


def store(key: str, value: Any) -> None:
    """Write *value* for *key* atomically; failures are ignored (the cache is optional)."""
    d, secret = cache_dir(), _key()
    if d is None or secret is None:
        return
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE)
    sealed = nonce + AESGCM(secret).encrypt(nonce, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL),
                                            key.encode())
    target_dir = d / key[:2]
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(sealed)
        os.replace(tmp, target_dir / key)
    except OSError:
        pass
