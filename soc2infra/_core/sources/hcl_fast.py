"""A fast HCL front end on tree-sitter (a C parser) that builds the same syntax tree as
:mod:`hcl_ast`.

python-hcl2's Lark grammar stays the reference: any file that tree-sitter reports as
erroneous, or that uses a construct this module does not translate, is parsed again by
:func:`hcl_ast.parse_hcl`, so error messages and edge cases are exactly the reference
parser's. ``tests/sources/test_hcl_fast.py`` checks both produce identical trees.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from soc2infra._cogs import limits
from soc2infra._core.sources.hcl_ast import Block, Body, Expr, _heredoc, _template, _unescape, parse_hcl


class _Unsupported(Exception):
    """A construct this translator leaves to the reference parser."""


@lru_cache(maxsize=1)
def _parser() -> Any:
    import tree_sitter_hcl
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_hcl.language()))


def available() -> bool:
    """True when the tree-sitter HCL grammar can be loaded."""
    try:
        _parser()
    except Exception:  # noqa: BLE001 - any import/ABI problem means "use the reference parser"
        return False
    return True


def parse_hcl_fast(text: str) -> Body:
    """Parse *text* with tree-sitter, falling back to the reference parser when needed."""
    if "\x00" in text:
        return parse_hcl(text)
    data = text.encode("utf-8")
    tree = _parse_bounded(data) if limits.deadline_active() else _parser().parse(data)
    root = tree.root_node
    if root.has_error:
        return parse_hcl(text)  # raises HclSyntaxError with the reference parser's message
    try:
        body = next((c for c in root.named_children if c.type == "body"), None)
        return _Translator(data).body(body) if body is not None else Body()
    except (_Unsupported, RecursionError, ValueError, IndexError, StopIteration):
        return parse_hcl(text)


def _parse_bounded(data: bytes) -> Any:
    """tree-sitter's parse, cancelled when the file's time is up: a C call a timer signal cannot
    interrupt (a 740 KB file takes seconds on a loaded machine), so it is read through a
    callback, and tree-sitter asks the progress callback whether to go on."""

    def read(offset: int, _point: Any) -> bytes:
        return data[offset:offset + 65536]

    def cancel(*_state: Any) -> bool:
        return limits.time_is_up()

    parser = _parser()
    try:
        return parser.parse(read, progress_callback=cancel)
    except BaseException as exc:
        parser.reset()  # a halted parse is otherwise resumed by the next call, on another file
        if isinstance(exc, ValueError):  # "Parsing failed": cancelled
            limits.stop_if_time_is_up()
        raise


def parse_expression_fast(source: str) -> Expr:
    """One HCL expression (a heredoc interpolation), parsed by tree-sitter."""
    from soc2infra._core.sources.hcl_ast import HclSyntaxError

    try:
        body = parse_hcl_fast(f"__x = {source.strip()}\n")
    except HclSyntaxError:
        return ("unknown", "unparsable interpolation")
    return body.attrs["__x"][0] if "__x" in body.attrs else ("unknown", "unparsable interpolation")


class _Translator:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def text(self, node: Any) -> str:
        return self.data[node.start_byte:node.end_byte].decode("utf-8")

    # ----------------------------------------------------------------- structure

    def body(self, node: Any) -> Body:
        # Hot path of a cold scan: each ``.type``/``.named_children`` access crosses into C and
        # allocates, so every node's type is read once and the byte slice is decoded in place.
        out = Body()
        attrs = out.attrs
        data = self.data
        for child in node.named_children:
            t = child.type
            if t == "attribute":
                kids = child.named_children
                if kids[-1].type == "comment":
                    kids = [c for c in kids if c.type != "comment"]
                name_node = kids[0]
                if name_node.type == "comment":
                    kids = [c for c in kids if c.type != "comment"]
                    name_node = kids[0]
                name = data[name_node.start_byte:name_node.end_byte].decode("utf-8")
                attrs[name] = (self.expression(kids[-1]), child.start_point[0] + 1)
            elif t == "block":
                out.blocks.append(self.block(child))
            elif t != "comment":
                raise _Unsupported(t)
        return out

    def block(self, node: Any) -> Block:
        data = self.data
        btype: str | None = None
        labels: list[str] = []
        inner = None
        for k in node.named_children:
            t = k.type
            if t == "comment":
                continue
            if btype is None:
                btype = data[k.start_byte:k.end_byte].decode("utf-8")
            elif t == "string_lit":
                labels.append(self.string_lit(k))
            elif t == "identifier":
                labels.append(data[k.start_byte:k.end_byte].decode("utf-8"))
            elif t == "body":
                inner = self.body(k)
        if btype is None:
            raise IndexError("block without a type")
        return Block(btype, tuple(labels), inner if inner is not None else Body(),
                     node.start_point[0] + 1, node.end_point[0] + 1)

    # ----------------------------------------------------------------- expressions

    def expression(self, node: Any) -> Expr:
        if node.type != "expression":
            return self.term([node])
        kids = node.children
        if len(kids) == 1:  # the common case: a primary without postfix operations
            only = kids[0]
            t = only.type
            if t != "(" and t != "comment":
                return self.primary(only, t)
        return self.term([c for c in kids if c.type != "comment"])

    def term(self, nodes: list[Any]) -> Expr:
        """A primary expression followed by postfix operations (attributes, indexes, splats)."""
        first = nodes[0]
        t = first.type
        if t == "(":
            close = next(i for i, n in enumerate(nodes) if n.type == ")")
            base = self.expression(nodes[1])
            rest = nodes[close + 1:]
        else:
            base = self.primary(first, t)
            rest = nodes[1:]
        for op in rest:
            base = self.postfix(base, op)
        return base

    def postfix(self, base: Expr, op: Any) -> Expr:
        if op.type == "get_attr":
            return ("get", base, self.text(op.named_children[0]))
        if op.type == "index":
            return ("idx", base, self.index(op.named_children[0]))
        if op.type == "splat":
            splat = op.named_children[0]
            ops: list[tuple[str, Any]] = []
            for c in splat.named_children:
                if c.type == "get_attr":
                    ops.append(("get", self.text(c.named_children[0])))
                elif c.type == "index":
                    ops.append(("idx", self.index(c.named_children[0])))
            return ("splat", base, ops)
        if op.type == "comment":
            return base
        raise _Unsupported(op.type)

    def index(self, node: Any) -> Expr:
        if node.type == "legacy_index":
            return ("lit", int(self.text(node).lstrip(".")))
        return self.expression(node.named_children[0])

    def primary(self, node: Any, t: str | None = None) -> Expr:  # noqa: C901 - one dispatch over node types
        if t is None:
            t = node.type
        if t == "literal_value":  # most frequent first
            return self.literal(node.named_children[0])
        if t == "expression":
            return self.expression(node)
        if t == "variable_expr":
            return ("var", self.text(node.named_children[0]))
        if t == "collection_value":
            return self.collection(node.named_children[0])
        if t == "function_call":
            return self.call(node)
        if t == "template_expr":
            return self.template(node.named_children[0])
        if t == "for_expr":
            return self.for_expr(node.named_children[0])
        if t == "operation":
            return self.operation(node.named_children[0])
        if t == "conditional":
            c, a, b = (k for k in node.named_children if k.type == "expression")
            if c.named_children and c.named_children[0].type == "conditional":
                # tree-sitter-hcl reads `p ? x : q ? y : z` as `(p ? x : q) ? y : z`;
                # HCL's conditional is right-associative, as the reference parser has it.
                raise _Unsupported("nested conditional")
            return ("cond", self.expression(c), self.expression(a), self.expression(b))
        raise _Unsupported(t)

    def literal(self, node: Any) -> Expr:
        t = node.type
        if t == "string_lit":
            kids = node.children
            if len(kids) == 3 and kids[1].type == "template_literal" \
                    and kids[2].type == "quoted_template_end":
                # a plain "text" string: what quoted_parts would return, without the walk
                return ("lit", self.literal_text(self.data[kids[0].end_byte:kids[2].start_byte]))
            return ("lit", self.string_lit(node))
        if t == "numeric_lit":
            raw = self.text(node)
            return ("lit", float(raw) if any(ch in raw for ch in ".eE") else int(raw))
        if t == "bool_lit":
            return ("lit", self.text(node) == "true")
        if t == "null_lit":
            return ("lit", None)
        raise _Unsupported(t)

    def string_lit(self, node: Any) -> str:
        parts = self.quoted_parts(node)
        if len(parts) == 1 and isinstance(parts[0], str):
            return parts[0]
        if any(not isinstance(p, str) for p in parts):
            raise _Unsupported("interpolation in a label")
        return "".join(parts)

    def literal_text(self, raw: bytes) -> str:
        text = raw.decode("utf-8")
        if "$$" in text or "%%" in text:
            # Runs of escapes ("$$${") are read differently by the two grammars; the
            # reference parser decides.
            raise _Unsupported("escape sequence")
        return _unescape(text)

    def quoted_parts(self, node: Any) -> list[Any]:
        """Literal text (taken from byte ranges: tree-sitter's literal nodes drop
        whitespace) and interpolated expressions of a quoted string."""
        kids = node.children
        last = kids[-1]
        start = kids[0].end_byte  # after the opening quote
        end = last.start_byte if last.type == "quoted_template_end" else node.end_byte
        parts: list[Any] = []
        pos = start
        for c in kids[1:-1] if end != node.end_byte else kids[1:]:
            t = c.type
            if t == "template_interpolation":
                parts.append(self.literal_text(self.data[pos:c.start_byte]))
                exprs = [k for k in c.named_children if k.type == "expression"]
                if not exprs:
                    raise _Unsupported("empty interpolation")
                parts.append(self.expression(exprs[0]))
                pos = c.end_byte
            elif t == "template_directive":
                return [("unknown", "template directive")]
        parts.append(self.literal_text(self.data[pos:end]))
        return parts

    def template(self, node: Any) -> Expr:
        if node.type == "heredoc_template":
            raw = self.text(node)
            trim = raw.startswith("<<-")
            return _heredoc(raw + "\n", trim, parse_expression_fast)
        parts = self.quoted_parts(node)
        if parts and parts[0] == ("unknown", "template directive"):
            directive: Expr = parts[0]
            return directive
        return _template(parts)

    def collection(self, node: Any) -> Expr:
        if node.type == "tuple":
            return ("tuple", [self.expression(c) for c in node.named_children if c.type == "expression"])
        items = []
        for elem in node.named_children:
            if elem.type != "object_elem":
                continue
            key_node = elem.child_by_field_name("key")
            val_node = elem.child_by_field_name("val")
            key = self.expression(key_node)
            if key[0] == "var":  # a bare identifier key is a string
                key = ("lit", key[1])
            items.append((key, self.expression(val_node)))
        return ("obj", items)

    def call(self, node: Any) -> Expr:
        kids = node.named_children
        names = [self.text(k) for k in kids if k.type == "identifier"]
        args_node = next((k for k in kids if k.type == "function_arguments"), None)
        args: list[Expr] = []
        expand = False
        if args_node is not None:
            for a in args_node.named_children:
                if a.type == "expression":
                    args.append(self.expression(a))
                elif a.type == "ellipsis":
                    expand = True
        return ("call", "::".join(names), args, expand)

    def operation(self, node: Any) -> Expr:
        kids = [c for c in node.children if c.type != "comment"]
        if node.type == "unary_operation":
            operand = self.term(kids[1:])
            if kids[0].type == "-" and operand[0] == "lit" and isinstance(operand[1], (int, float)) \
                    and not isinstance(operand[1], bool):
                return ("lit", -operand[1])  # the reference grammar lexes "-1" as one literal
            return ("un", kids[0].type, operand)
        split = next(i for i, k in enumerate(kids) if not k.is_named and k.type not in ("(", ")"))
        return ("bin", kids[split].type, self.term(kids[:split]), self.term(kids[split + 1:]))

    def for_expr(self, node: Any) -> Expr:
        kids = node.named_children
        intro = next(k for k in kids if k.type == "for_intro")
        names = [self.text(k) for k in intro.named_children if k.type == "identifier"]
        coll = self.expression(next(k for k in intro.named_children if k.type == "expression"))
        cond_node = next((k for k in kids if k.type == "for_cond"), None)
        cond = self.expression(cond_node.named_children[0]) if cond_node is not None else None
        exprs = [k for k in kids if k.type == "expression"]
        key_var, val_var = (names[0], names[1]) if len(names) == 2 else (None, names[0])
        if node.type == "for_object_expr":
            grouping = any(k.type == "ellipsis" for k in kids)
            return ("for", key_var, val_var, coll, self.expression(exprs[0]), self.expression(exprs[1]),
                    cond, grouping)
        return ("for", key_var, val_var, coll, None, self.expression(exprs[0]), cond, False)
