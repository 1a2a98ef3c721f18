"""Turn HCL text into a small, picklable syntax tree that the Terraform evaluator walks.

python-hcl2's grammar (Lark, LALR) does the parsing; its dict output re-serializes every
expression to a string, which would have to be parsed again, so we convert Lark's raw
tree ourselves. The result is plain tuples and dicts: cheap to pickle into the parse cache
and to send between worker processes.

Expression nodes::

    ("lit", value)            ("tmpl", [str | expr, ...])     ("var", name)
    ("get", obj, name)        ("idx", obj, key_expr)          ("splat", obj, [("get", n) | ("idx", e)])
    ("call", name, [args], expand_last)                       ("cond", c, a, b)
    ("bin", op, left, right)  ("un", op, operand)             ("tuple", [items])
    ("obj", [(key_expr, value_expr)])                         ("unknown", reason)
    ("for", key_var, value_var, collection, key_expr | None, value_expr, cond | None, grouping)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

Expr = tuple[Any, ...]


class HclSyntaxError(ValueError):
    """Text that is not valid HCL; carries the 1-based line (None when unknown)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(slots=True)
class Body:
    """Attributes (name → (expression, line)) and nested blocks of one HCL body."""

    attrs: dict[str, tuple[Expr, int]] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


@dataclass(slots=True)
class Block:
    """``type "label" … { body }`` with its source line range."""

    type: str
    labels: tuple[str, ...]
    body: Body
    line: int
    end_line: int


def parse_hcl(text: str) -> Body:
    """Parse HCL text into a :class:`Body`; raise :class:`HclSyntaxError` on bad input."""
    from hcl2.api import parses_to_tree  # imported lazily: Lark grammar load is not free

    if "\x00" in text:
        line = _line_of_offset(text, text.index("\x00"))
        raise HclSyntaxError("binary content (NUL byte) is not HCL", line)
    try:
        tree = parses_to_tree(text)
    except UnexpectedEOF as exc:
        raise HclSyntaxError(f"unexpected end of file: {_short(exc)}", text.count("\n") + 1) from None
    except (UnexpectedCharacters, UnexpectedToken) as exc:
        raise HclSyntaxError(f"syntax error: {_short(exc)}", exc.line if exc.line > 0 else None) from None
    except UnexpectedInput as exc:
        at = getattr(exc, "line", None)
        raise HclSyntaxError(f"syntax error: {_short(exc)}", at if at and at > 0 else None) from None
    body = tree.children[0]
    return _body(body)


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else exc.__class__.__name__


def _line_of_offset(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _trees(node: Tree[Any]) -> list[Tree[Any]]:
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _body(node: Tree[Any]) -> Body:
    body = Body()
    for child in _trees(node):
        if child.data == "attribute":
            name = _name(child.children[0])
            expr = _expr(_trees(child)[-1])
            body.attrs[name] = (expr, child.meta.line)
        elif child.data == "block":
            parts = [c for c in child.children if isinstance(c, Tree)]
            inner = next(c for c in parts if c.data == "body")
            heads = [c for c in parts if c.data != "body" and c.data != "new_line_or_comment"]
            btype = _name(heads[0])
            labels = tuple(_label(h) for h in heads[1:])
            body.blocks.append(Block(btype, labels, _body(inner), child.meta.line, child.meta.end_line))
    return body


def _name(node: Any) -> str:
    if isinstance(node, Token):
        return str(node)
    if node.data in ("identifier", "keyword", "literal_value"):
        return str(node.children[0])
    if node.data == "string":
        return _label(node)
    return str(node.children[0])


def _label(node: Tree[Any]) -> str:
    if node.data == "string":
        parts = []
        for p in _trees(node):
            tok = p.children[0]
            parts.append(_unescape(str(tok)) if isinstance(tok, Token) else "")
        return "".join(parts)
    return _name(node)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s

    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] in "uU" and len(esc) > 1:
            return chr(int(esc[1:], 16))
        return _ESCAPES.get(esc, esc)

    return _ESCAPE_RE.sub(repl, s)


def _expr(node: Any) -> Expr:  # noqa: C901 - one dispatch over grammar rules
    if isinstance(node, Token):
        return _token_expr(node)
    kind = node.data
    if kind == "expr_term":
        inner = _trees(node)
        if len(inner) == 1:
            return _expr(inner[0])
        toks = [c for c in node.children if isinstance(c, Token)]
        return _token_expr(toks[0]) if toks else ("unknown", "empty expression")
    if kind == "identifier":
        return ("var", str(node.children[0]))
    if kind == "literal_value":
        v = str(node.children[0])
        return ("lit", {"true": True, "false": False, "null": None}[v])
    if kind == "int_lit":
        return ("lit", int(str(node.children[0])))
    if kind == "float_lit":
        return ("lit", float(str(node.children[0])))
    if kind == "string":
        return _string(node)
    if kind == "template_string":
        return ("lit", _unescape(str(node.children[0])[2:-2]))
    if kind in ("heredoc_template", "heredoc_template_trim"):
        return _heredoc(str(node.children[0]), kind == "heredoc_template_trim")
    if kind == "tuple":
        return ("tuple", [_expr(c) for c in _trees(node)])
    if kind == "object":
        items = []
        for elem in _trees(node):
            key_node, val_node = _trees(elem)[0], _trees(elem)[-1]
            items.append((_object_key(key_node), _expr(val_node)))
        return ("obj", items)
    if kind == "function_call":
        ids = [c for c in node.children if isinstance(c, Tree) and c.data == "identifier"]
        name = "::".join(str(i.children[0]) for i in ids)
        args_node = next((c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None)
        args, expand = [], False
        if args_node is not None:
            args = [_expr(c) for c in _trees(args_node)]
            expand = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in args_node.children)
        return ("call", name, args, expand)
    if kind == "conditional":
        c, a, b = (_expr(x) for x in _trees(node))
        return ("cond", c, a, b)
    if kind == "binary_op":
        left, term = _trees(node)[:2]
        op_node = next(c for c in term.children if isinstance(c, Tree) and c.data == "binary_operator")
        right = [c for c in _trees(term) if c.data != "binary_operator"][0]
        return ("bin", str(op_node.children[0]), _expr(left), _expr(right))
    if kind == "unary_op":
        op = str(node.children[0])
        return ("un", op, _expr(node.children[1]))
    if kind == "get_attr_expr_term":
        obj, get = _trees(node)
        return ("get", _expr(obj), _name(_trees(get)[0]))
    if kind == "index_expr_term":
        obj, idx = _trees(node)
        return ("idx", _expr(obj), _index(idx))
    if kind in ("attr_splat_expr_term", "full_splat_expr_term"):
        obj, splat = _trees(node)
        ops: list[tuple[str, Any]] = []
        for step in _trees(splat):
            if step.data == "get_attr":
                ops.append(("get", _name(_trees(step)[0])))
            else:
                ops.append(("idx", _index(step)))
        return ("splat", _expr(obj), ops)
    if kind in ("for_tuple_expr", "for_object_expr"):
        return _for(node, kind == "for_object_expr")
    if kind == "interpolation":
        return _expr(_trees(node)[0])
    return ("unknown", f"unsupported expression {kind}")


def _token_expr(tok: Token) -> Expr:
    if tok.type == "INT_LITERAL":
        return ("lit", int(tok))
    if tok.type == "FLOAT_LITERAL":
        return ("lit", float(tok))
    return ("unknown", f"unexpected token {tok.type}")


def _index(node: Tree[Any]) -> Expr:
    if node.data == "short_index":
        return ("lit", int(str(node.children[-1])))
    return _expr(_trees(node)[0])


def _object_key(node: Tree[Any]) -> Expr:
    inner = _trees(node)
    target = inner[0] if inner else node
    if target.data == "keyword":
        return ("lit", str(target.children[0]))
    expr = _expr(target)
    # A bare identifier key (`{ Name = "x" }`) is the string "Name", not a variable.
    if expr[0] == "var":
        return ("lit", expr[1])
    return expr


def _string(node: Tree[Any]) -> Expr:
    parts: list[Any] = []
    for part in _trees(node):
        child = part.children[0]
        if isinstance(child, Token):
            if child.type == "ESCAPED_INTERPOLATION" or child.type == "ESCAPED_DIRECTIVE":
                parts.append(str(child)[1:])
            else:
                parts.append(_unescape(str(child)))
        elif child.data == "interpolation":
            parts.append(_expr(_trees(child)[0]))
        else:
            return ("unknown", "template directive")
    return _template(parts)


def _template(parts: list[Any]) -> Expr:
    merged: list[Any] = []
    for p in parts:
        # Adjacent literal pieces (escapes, "$${") are one string, whichever parser split them.
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        elif p != "":
            merged.append(p)
    parts = merged or [""]
    if all(isinstance(p, str) for p in parts):
        return ("lit", "".join(parts))
    if len(parts) == 1:
        # "${expr}" alone keeps the expression's own type (a number stays a number).
        alone: tuple[Any, ...] = parts[0]
        return alone
    return ("tmpl", parts)


def _heredoc(raw: str, trim: bool, parse_expr: Callable[[str], Expr] | None = None) -> Expr:
    first_nl = raw.index("\n")
    lines = raw[first_nl + 1:].rstrip("\r\n").split("\n")
    lines = lines[:-1]  # the closing delimiter
    if trim:
        indents = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
        cut = min(indents) if indents else 0
        lines = [line[cut:] for line in lines]
    text = "\n".join(lines) + ("\n" if lines else "")
    if "${" not in text and "%{" not in text:
        return ("lit", text)
    if "%{" in text.replace("%%{", ""):
        return ("unknown", "template directive in heredoc")
    return _template(_split_template(text, parse_expr))


def _split_template(text: str, parse_expr: Callable[[str], Expr] | None = None) -> list[Any]:
    """Split heredoc text into literal strings and parsed ``${…}`` expressions."""
    parts: list[Any] = []
    i, start = 0, 0
    while True:
        j = text.find("${", i)
        if j < 0:
            break
        if j > 0 and text[j - 1] == "$":  # "$${" is an escaped literal "${"
            parts.append(text[start:j - 1] + "${")
            i = start = j + 2
            continue
        end = _matching_brace(text, j + 2)
        if end < 0:
            return [("unknown", "unterminated interpolation")]
        parts.append(text[start:j])
        parts.append((parse_expr or parse_expression)(text[j + 2:end]))
        i = start = end + 1
    parts.append(text[start:])
    return [p for p in parts if p != ""]


def _matching_brace(text: str, pos: int) -> int:
    depth, in_str = 1, False
    while pos < len(text):
        ch = text[pos]
        if in_str:
            if ch == "\\":
                pos += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    return -1


def parse_expression(source: str) -> Expr:
    """Parse one HCL expression (used for heredoc interpolations)."""
    try:
        body = parse_hcl(f"__x = {source.strip()}\n")
    except HclSyntaxError:
        return ("unknown", "unparsable interpolation")
    return body.attrs["__x"][0]


def _for(node: Tree[Any], is_object: bool) -> Expr:
    intro = next(c for c in node.children if isinstance(c, Tree) and c.data == "for_intro")
    names = [str(c.children[0]) for c in intro.children if isinstance(c, Tree) and c.data == "identifier"]
    coll = _expr([c for c in _trees(intro) if c.data != "identifier"][0])
    cond_node = next((c for c in node.children if isinstance(c, Tree) and c.data == "for_cond"), None)
    cond = _expr(_trees(cond_node)[0]) if cond_node is not None else None
    exprs = [c for c in _trees(node) if c.data not in ("for_intro", "for_cond")]
    key_var, val_var = (names[0], names[1]) if len(names) == 2 else (None, names[0])
    grouping = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in node.children)
    if is_object:
        return ("for", key_var, val_var, coll, _expr(exprs[0]), _expr(exprs[1]), cond, grouping)
    return ("for", key_var, val_var, coll, None, _expr(exprs[0]), cond, False)
