"""Content-hash cache of parsed files, kept outside the repository (user cache dir).

A re-scan of an unchanged tree then costs little more than reading and hashing the
files. Entries are keyed by (parser version, content hash), so a changed file or a new
soc2infra version simply misses; a corrupt entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

CACHE_FORMAT = "1"


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is disabled (SOC2INFRA_NO_CACHE=1)."""
    if os.environ.get("SOC2INFRA_NO_CACHE"):
        return None
    base = os.environ.get("SOC2INFRA_CACHE")
    if base:
        return Path(base) / "parse"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("soc2infra")) / "parse"


def content_key(kind: str, data: bytes, version: str) -> str:
    """Cache key for *data* parsed by parser *kind* at *version*."""
    h = hashlib.blake2b(data, digest_size=20)
    h.update(f"\0{kind}\0{version}\0{CACHE_FORMAT}".encode())
    return h.hexdigest()


def load(key: str) -> Any | None:
    """The cached object for *key*, or None."""
    d = cache_dir()
    if d is None:
        return None
    path = d / key[:2] / key
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 - our own cache files, in the user's cache dir
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None


def store(key: str, value: Any) -> None:
    """Write *value* for *key* atomically; failures are ignored (the cache is optional)."""
    d = cache_dir()
    if d is None:
        return
    target_dir = d / key[:2]
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target_dir)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target_dir / key)
    except OSError:
        pass
