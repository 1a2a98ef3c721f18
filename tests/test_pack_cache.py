"""Rule files' parsed YAML is cached by content: the same pack, faster; a bad entry is ignored."""

from __future__ import annotations

from soc2infra._core.pack import load_pack
from soc2infra._core.sources import cache


def rules_of(pack) -> list[tuple]:
    return [(r.id, r.severity, r.controls, r.targets, r.line, r.file) for r in pack.rules]


def test_cached_parse_gives_the_same_pack_and_bad_entries_are_ignored():
    first = load_pack()
    directory = cache.cache_dir()
    assert directory is not None
    entries = list((directory.parent / "pack").iterdir())
    assert len(entries) >= len({r.file for r in first.rules})
    second = load_pack()
    assert rules_of(second) == rules_of(first) and second.digest == first.digest
    for entry in entries:
        entry.write_bytes(b"\x00garbage")
    third = load_pack()
    assert rules_of(third) == rules_of(first)
