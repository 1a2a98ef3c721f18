"""Which files a scan unit read: the inputs a cached result depends on.

Sources call :func:`note` for every file and :func:`note_listing` for every directory listing
they base a result on (the ``.tf`` files of a module, a tfvars file, ``file()`` arguments,
modules.json). While :func:`recording` is active the paths are collected into its set; otherwise
noting costs one context-variable lookup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_CURRENT: ContextVar[set[str] | None] = ContextVar("soc2infra_reads", default=None)
#: Prefix marking a directory listing (its glob pattern follows the path after a NUL).
LISTING = "listing:"


def note(path: str | Path) -> None:
    """Record that the current unit read *path*."""
    reads = _CURRENT.get()
    if reads is not None:
        reads.add(str(Path(path).resolve()))


def note_listing(directory: str | Path, pattern: str) -> None:
    """Record that the current unit depends on which files in *directory* match *pattern*."""
    reads = _CURRENT.get()
    if reads is not None:
        reads.add(f"{LISTING}{Path(directory).resolve()}\0{pattern}")


@contextmanager
def recording(into: set[str]) -> Iterator[set[str]]:
    """Collect every path noted inside the block into *into* (nested blocks add to theirs and
    to every enclosing one: a module read for one root is read for the unit too)."""
    outer = _CURRENT.get()
    token = _CURRENT.set(into)
    try:
        yield into
    finally:
        _CURRENT.reset(token)
        if outer is not None:
            outer.update(into)
