"""Attribute paths: ``a.b.c``, ``metadata.annotations['x.io/y']``, ``containers.0.image``.

Stepping into a key of a list maps over the list's elements, because Terraform nested
blocks (and plan JSON) are lists of dicts: ``versioning.enabled`` reaches every
``versioning`` block's ``enabled``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from functools import lru_cache
from typing import Any

from soc2infra._cogs.model import Unknown

_TOKEN = re.compile(r"""\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\[(\d+)\]|\[\*\]|([^.\[\]]+)""")

MISSING = object()

# The unknowns a rule met while it was being decided: they explain an "unknown" result.
_SEEN: ContextVar[list[Unknown] | None] = ContextVar("soc2infra_unknowns_seen", default=None)
_MAX_SEEN = 64


def note_unknown(value: Unknown) -> None:
    """Record that the predicate being evaluated met *value* (see :func:`collecting_unknowns`)."""
    seen = _SEEN.get()
    if seen is not None and len(seen) < _MAX_SEEN:
        seen.append(value)


@contextmanager
def collecting_unknowns(active: bool = True) -> Iterator[list[Unknown]]:
    """Collect the unknowns met by :func:`resolve` (and noted explicitly) inside the block;
    ``active=False`` stops collection (index building reads other resources' attributes)."""
    seen: list[Unknown] | None = [] if active else None
    token = _SEEN.set(seen)
    try:
        yield seen if seen is not None else []
    finally:
        _SEEN.reset(token)


def start_collecting(seen: list[Unknown]) -> Token[list[Unknown] | None]:
    """Collect unknowns into *seen* until :func:`stop_collecting` with the returned token (what
    :func:`collecting_unknowns` does, without a context manager's cost in the per-rule loop)."""
    return _SEEN.set(seen)


def stop_collecting(token: Token[list[Unknown] | None]) -> None:
    """End the collection :func:`start_collecting` began."""
    _SEEN.reset(token)


@lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[str | int, ...]:
    """Split a path into keys (str) and list indexes (int)."""
    out: list[str | int] = []
    if path in ("", "."):
        return ()
    for m in _TOKEN.finditer(path):
        q1, q2, idx, bare = m.groups()
        if q1 is not None or q2 is not None:
            out.append(q1 if q1 is not None else q2)
        elif idx is not None:
            out.append(int(idx))
        elif bare is not None:
            out.append(int(bare) if bare.isdigit() else bare)
        # "[*]" adds nothing: lists are mapped over implicitly.
    return tuple(out)


def resolve(root: Any, path: tuple[str | int, ...]) -> list[Any]:
    """All values reached by *path* from *root* (empty list when nothing is there).

    An :class:`Unknown` met on the way is returned as a value, so the caller can
    turn it into an unknown result rather than a missing attribute.
    """
    current: list[Any] = [root]
    if isinstance(root, Unknown):
        note_unknown(root)
    for key in path:
        nxt: list[Any] = []
        for value in current:
            _step(value, key, nxt)
        current = nxt
        if not current:
            break
    for value in current:
        if isinstance(value, Unknown):
            note_unknown(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Unknown):
                    note_unknown(item)
    return current


#: A path step that decodes a JSON string (``container_definitions.@json.privileged``): some
#: provider arguments hold JSON documents as strings, and rules need to look inside them.
JSON_STEP = "@json"


@lru_cache(maxsize=1024)
def _decode_json(text: str) -> Any:
    """The decoded document, or MISSING when *text* is not JSON (cached: rules revisit it)."""
    try:
        return json.loads(text)
    except ValueError:
        return MISSING


def _step(value: Any, key: str | int, out: list[Any]) -> None:
    if type(value) is dict and key != JSON_STEP:
        # The common case first (plain mappings from YAML/JSON/HCL): no attribute probing, which
        # on a dict raises and catches an AttributeError inside getattr.
        got = value.get(key if type(key) is str else str(key), MISSING)
        if got is not MISSING and got is not None:
            out.append(got)
        return
    partial = getattr(value, "partial", None)
    if key == JSON_STEP and isinstance(value, Unknown) and isinstance(partial, (dict, list)):
        # jsonencode() of a structure with computed leaves: the structure is known, read it.
        out.append(partial)
    elif isinstance(value, Unknown):
        note_unknown(value)
        out.append(value)
    elif key == JSON_STEP:
        if isinstance(value, str):
            decoded = _decode_json(value)
            if decoded is not MISSING and decoded is not None:
                out.append(decoded)
        elif isinstance(value, (dict, list)):
            out.append(value)  # already structured (plan JSON may carry the document decoded)
    elif isinstance(value, dict):
        got = value.get(key, MISSING) if not isinstance(key, int) else value.get(str(key), MISSING)
        if got is not MISSING and got is not None:
            out.append(got)
    elif isinstance(value, list):
        if isinstance(key, int):
            if -len(value) <= key < len(value):
                item = value[key]
                if item is not None:
                    out.append(item)
        else:
            for item in value:
                _step(item, key, out)


def flatten(values: list[Any]) -> list[Any]:
    """Values with one level of list nesting removed (elements of reached lists)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out
