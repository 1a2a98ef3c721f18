"""The tree-sitter front end builds exactly the reference parser's tree (differential test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc2infra._core.pack import load_pack
from soc2infra._core.sources.hcl_ast import HclSyntaxError, parse_hcl
from soc2infra._core.sources.hcl_fast import _parser, _Translator, _Unsupported, available, parse_hcl_fast

ROOT = Path(__file__).resolve().parents[2]


def canonical(node):
    """Both grammars are right; only "-1" differs (one literal vs. minus applied to 1)."""
    if isinstance(node, tuple):
        if len(node) == 3 and node[0] == "un" and node[1] == "-" and node[2][0] == "lit" \
                and isinstance(node[2][1], (int, float)) and not isinstance(node[2][1], bool):
            return ("lit", -node[2][1])
        return tuple(canonical(x) for x in node)
    if isinstance(node, list):
        return [canonical(x) for x in node]
    if hasattr(node, "__slots__"):
        return (type(node).__name__, *(canonical(getattr(node, s)) for s in node.__slots__))
    if isinstance(node, dict):
        return {k: canonical(v) for k, v in node.items()}
    return node


def corpus() -> list[tuple[str, str]]:
    texts = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(ROOT.glob("examples/**/*.tf"))]
    texts += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(ROOT.glob("tests/data/**/*.tf"))]
    for rule in load_pack().rules:
        for ex in rule.examples:
            if ex.source == "terraform":
                texts.append((f"{rule.id}:{ex.name}", ex.text))
    return [(name, text) for name, text in texts if _valid(text)]


def _valid(text: str) -> bool:
    # Invalid HCL on purpose is covered by the fallback test, not compared here.
    try:
        parse_hcl(text)
    except HclSyntaxError:
        return False
    return True


def test_available():
    assert available(), "tree-sitter-hcl should be installed with soc2infra"


@pytest.mark.parametrize("name, text", corpus(), ids=[n for n, _ in corpus()])
def test_same_tree_as_reference(name, text):
    reference = parse_hcl(text)
    data = text.encode()
    tree = _parser().parse(data)
    assert not tree.root_node.has_error
    body = next((c for c in tree.root_node.named_children if c.type == "body"), None)
    try:
        fast = _Translator(data).body(body) if body is not None else reference
    except _Unsupported:
        fast = parse_hcl_fast(text)  # documented hand-off to the reference parser
    assert canonical(fast) == canonical(reference)


@pytest.mark.parametrize("text", [
    'a = "x ${b} y"\n',
    'a = "  lead ${b}trail  "\n',
    'a = p ? 1 : q ? 2 : 3\n',
    'a = "$${literal}"\n',
    'a = <<-EOT\n    one ${x}\n      two\n    EOT\n',
    'a = [for k, v in m : "${k}=${v}" if v != null]\n',
    'a = { for k, v in m : k => v... }\n',
    'a = x[*].y.z\nb = x.*.y\nc = x.0\n',
    'a = f(b, c...)\n',
    'a = !b && (c || d) == e\n',
    'block "l1" l2 {\n  inner { x = 1 }\n}\n',
])
def test_tricky_constructs(text):
    assert canonical(parse_hcl_fast(text)) == canonical(parse_hcl(text))


def test_errors_come_from_the_reference_parser():
    with pytest.raises(HclSyntaxError) as exc:
        parse_hcl_fast('resource "a" "b" {\n  x = = 1\n}\n')
    assert exc.value.line == 2
