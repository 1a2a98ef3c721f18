"""Terraform built-in functions that can be evaluated statically.

Every function receives already-evaluated arguments. An :class:`Unknown` argument makes
the result unknown (``_strict``), except for the few functions whose meaning is to cope
with missing values (``try``, ``coalesce``, ``can``). Functions not listed here evaluate
to unknown, which is always safe.

Why one module of about 520 lines: it is Terraform's function table — about a hundred small
functions that share the unknown-propagation helpers, listed once so the evaluator has one place
to look a name up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from soc2infra._cogs.limits import check_instances
from soc2infra._cogs.model import Unknown, contains_unknown
from soc2infra._core.sources import reads

Func = Callable[..., Any]


class UnknownLengthList(list[Any]):
    """The instances of a resource whose count/for_each is unknown, as a list of one
    representative: its elements can still be read, but its length is unknown."""

    def __init__(self, items: Any, why: Unknown) -> None:
        super().__init__(items)
        self.why = why

    def __reduce__(self) -> Any:
        return (UnknownLengthList, (list(self), self.why))


def first_unknown(v: Any) -> Unknown | None:
    """The first Unknown in *v* (itself, or nested in lists and maps), else None."""
    if isinstance(v, Unknown):
        return v
    if isinstance(v, list):
        return next((u for x in v if (u := first_unknown(x)) is not None), None)
    if isinstance(v, dict):
        return next((u for x in v.values() if (u := first_unknown(x)) is not None), None)
    return None


def is_error(v: Any) -> bool:
    """True when *v* holds an evaluation error (an Unknown of kind ``error``) anywhere:
    what Terraform's ``try``/``can`` catch. Other unknowns are not errors."""
    if isinstance(v, Unknown):
        return v.kind == "error"
    if isinstance(v, list):
        return any(is_error(x) for x in v)
    if isinstance(v, dict):
        return any(is_error(x) for x in v.values())
    return False


def _strict(fn: Func, deep: bool = False) -> Func:
    def wrapper(*args: Any) -> Any:
        for a in args:
            u = a if isinstance(a, Unknown) else (first_unknown(a) if deep else None)
            if u is not None:
                # The result is unknown for the same reason as its argument.
                return u.derive(f"{fn.__name__.strip('_')}() of an unknown ({u.reason})", nonnull=False)
        return fn(*args)

    wrapper.__name__ = fn.__name__
    return wrapper


def to_str(v: Any) -> str:
    """Terraform's string conversion of a primitive."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if v is None:
        return ""
    return str(v)


def _json_default(v: Any) -> Any:
    raise TypeError("not JSON serializable")


def _jsonencode(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), default=_json_default)


class PartialUnknown(Unknown):
    """An unknown ``jsonencode()`` result that keeps the structure it would have encoded
    (computed leaves stay Unknown), so IAM analysis can still read a policy such as
    ``{Action = "s3:GetObject", Resource = aws_s3_bucket.b.arn}``."""

    __slots__ = ("partial",)

    def __init__(self, partial: Any) -> None:
        inner = first_unknown(partial)
        super().__init__("jsonencode() of a value with computed parts"
                         + (f" ({inner.reason})" if inner is not None else ""), nonnull=True,
                         kind=inner.kind if inner is not None else "evaluator_limit")
        self.partial = partial

    def __reduce__(self) -> tuple[Any, ...]:
        return (PartialUnknown, (self.partial,))


def _jsonencode_keeping_structure(v: Any) -> Any:
    if isinstance(v, Unknown):
        return v.derive(f"jsonencode() of an unknown ({v.reason})")
    if contains_unknown(v):
        return PartialUnknown(v)
    return _jsonencode(v)


def _jsondecode(s: str) -> Any:
    if not isinstance(s, str):
        return Unknown("jsondecode() of a non-string", kind="error")  # a type error in Terraform
    try:
        return json.loads(s)
    except (TypeError, ValueError):
        return Unknown("jsondecode of invalid JSON", kind="error")


def _merge(*maps: Any) -> Any:
    out: dict[str, Any] = {}
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            return Unknown("merge of a non-map")
        out.update(m)
    return out


def _concat(*lists: Any) -> Any:
    out: list[Any] = []
    for lst in lists:
        if not isinstance(lst, list):
            return Unknown("concat of a non-list")
        out.extend(lst)
    return out


def _lookup(m: Any, key: Any, *default: Any) -> Any:
    if isinstance(m, dict) and key in m:
        return m[key]
    if default:
        return default[0]
    return Unknown("lookup of a missing key")


def _length(v: Any) -> Any:
    if isinstance(v, UnknownLengthList):
        return v.why.derive(f"length of a resource list whose size is unknown ({v.why.reason})")
    if isinstance(v, (list, dict, str)):
        return len(v)
    return Unknown("length of a non-collection")


def _element(lst: Any, idx: Any) -> Any:
    if not isinstance(lst, list) or not lst:
        return Unknown("element of an empty list")
    return lst[int(idx) % len(lst)]


def _flatten(lst: Any) -> Any:
    """Terraform's flatten: only the list structure must be known (an unknown element could
    itself be a list); maps with unknown values inside are plain elements."""
    if not isinstance(lst, list):
        return Unknown("flatten() of a non-list", kind="error")
    out: list[Any] = []
    for item in lst:
        if isinstance(item, Unknown):
            return item.derive(f"flatten() of an unknown element ({item.reason})", nonnull=False)
        if isinstance(item, list):
            inner = _flatten(item)
            if isinstance(inner, Unknown):
                return inner
            out.extend(inner)
        else:
            out.append(item)
    return out


def _toset(v: Any) -> Any:
    if not isinstance(v, list):
        return Unknown("toset of a non-list")
    seen: list[Any] = []
    for item in v:
        if item not in seen:
            seen.append(item)
    return seen


def _format(fmt: str, *args: Any) -> str:
    # Terraform's verbs are Go's; %s/%d/%v cover real-world use.
    pyfmt = fmt.replace("%v", "%s").replace("%q", '"%s"')
    try:
        return pyfmt % tuple(to_str(a) if isinstance(a, (bool, type(None))) else a for a in args)
    except (TypeError, ValueError):
        return fmt


def _tonumber(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return Unknown("tonumber of a non-number")
    return int(f) if f.is_integer() else f


def _tobool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    return Unknown("tobool of a non-boolean")


def _coalesce(*args: Any) -> Any:
    for a in args:
        if isinstance(a, Unknown):
            return a
        if a is not None and a != "":
            return a
    return Unknown("coalesce found no value")


def _keys(m: Any) -> Any:
    return sorted(m) if isinstance(m, dict) else Unknown("keys of a non-map")


def _values(m: Any) -> Any:
    return [m[k] for k in sorted(m)] if isinstance(m, dict) else Unknown("values of a non-map")


def _zipmap(keys: list[Any], values: list[Any]) -> dict[str, Any]:
    return dict(zip((to_str(k) for k in keys), values, strict=False))


def _contains(lst: Any, v: Any) -> Any:
    return v in lst if isinstance(lst, list) else Unknown("contains of a non-list")


def _join(sep: str, *lists: Any) -> str:
    return sep.join(to_str(x) for lst in lists for x in lst)


def _split(sep: str, s: str) -> list[str]:
    return s.split(sep)


def _replace(s: str, old: str, new: str) -> str:
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        import re

        return re.sub(old[1:-1], new.replace("$", "\\"), s)
    return s.replace(old, new)


def _compact(lst: list[Any]) -> list[Any]:
    return [x for x in lst if x not in (None, "")]


def _distinct(lst: list[Any]) -> list[Any]:
    out: list[Any] = _toset(lst)  # a list in, a list out
    return out


def _tomap(v: Any) -> Any:
    return v if isinstance(v, dict) else Unknown("tomap of a non-map")


def _tolist(v: Any) -> Any:
    return v if isinstance(v, list) else Unknown("tolist of a non-list")


def _one(lst: Any) -> Any:
    if isinstance(lst, list) and len(lst) <= 1:
        return lst[0] if lst else None
    return Unknown("one of a list with several elements")


def _slice(lst: list[Any], start: int, end: int) -> list[Any]:
    return lst[int(start):int(end)]


def _range(*args: Any) -> list[Any]:
    ints = [int(a) for a in args]
    span = range(*ints)
    check_instances(len(span), "range()")  # before allocating: range(1e8) is refused, not built
    return list(span)


def _startswith(s: str, p: str) -> bool:
    return s.startswith(p)


def _endswith(s: str, p: str) -> bool:
    return s.endswith(p)


def _substr(s: str, offset: int, length: int) -> str:
    o, n = int(offset), int(length)
    return s[o:] if n < 0 else s[o:o + n]


def _trimspace(s: str) -> str:
    return s.strip()


def _cidrsubnet(prefix: str, newbits: int, netnum: int) -> Any:
    import ipaddress

    try:
        net = ipaddress.ip_network(prefix, strict=False)
        subnets = list(net.subnets(prefixlen_diff=int(newbits)))
        return str(subnets[int(netnum)])
    except (ValueError, IndexError):
        return Unknown("cidrsubnet out of range")


def _b64encode(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _b64decode(s: str) -> Any:
    try:
        return base64.b64decode(s).decode()
    except ValueError:
        return Unknown("base64decode of invalid input")


def _sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def _md5(s: str) -> str:
    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()


def _min(*a: Any) -> Any:
    return min(a)


def _max(*a: Any) -> Any:
    return max(a)


def _yamlencode(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v, sort_keys=True)


def _yamldecode(s: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(s)
    except yaml.YAMLError:
        return Unknown("yamldecode of invalid YAML")


FUNCTIONS: dict[str, Func] = {
    "jsonencode": _jsonencode_keeping_structure,
    "jsondecode": _strict(_jsondecode),
    "yamlencode": _strict(_yamlencode, deep=True),
    "yamldecode": _strict(_yamldecode),
    "merge": _strict(_merge),
    "concat": _strict(_concat),
    "lookup": _strict(_lookup),
    "length": _strict(_length),
    "element": _strict(_element),
    "flatten": _strict(_flatten),
    "toset": _strict(_toset),
    "tolist": _strict(_tolist),
    "tomap": _strict(_tomap),
    "tostring": _strict(to_str),
    "tonumber": _strict(_tonumber),
    "tobool": _strict(_tobool),
    "format": _strict(_format),
    "lower": _strict(lambda s: to_str(s).lower()),
    "upper": _strict(lambda s: to_str(s).upper()),
    "title": _strict(lambda s: to_str(s).title()),
    "trimspace": _strict(_trimspace),
    "trimprefix": _strict(lambda s, p: s[len(p):] if s.startswith(p) else s),
    "trimsuffix": _strict(lambda s, p: s[:-len(p)] if p and s.endswith(p) else s),
    "coalesce": _coalesce,
    "coalescelist": _strict(lambda *ls: next((x for x in ls if x), [])),
    "keys": _strict(_keys),
    "values": _strict(_values),
    "zipmap": _strict(_zipmap),
    "contains": _strict(_contains),
    "join": _strict(_join, deep=True),
    "split": _strict(_split),
    "replace": _strict(_replace),
    "compact": _strict(_compact),
    "distinct": _strict(_distinct),
    "one": _strict(_one),
    "slice": _strict(_slice),
    "range": _strict(_range),
    "startswith": _strict(_startswith),
    "endswith": _strict(_endswith),
    "substr": _strict(_substr),
    "cidrsubnet": _strict(_cidrsubnet),
    "base64encode": _strict(_b64encode),
    "base64decode": _strict(_b64decode),
    "sha256": _strict(_sha256),
    "md5": _strict(_md5),
    "min": _strict(_min),
    "max": _strict(_max),
    "abs": _strict(abs),
    "ceil": _strict(lambda x: math.ceil(x)),
    "floor": _strict(lambda x: math.floor(x)),
    "sensitive": lambda v: v,
    "nonsensitive": lambda v: v,
    "type": lambda v: Unknown("type()"),
    "regex": _strict(lambda p, s: _regex(p, s, False)),
    "regexall": _strict(lambda p, s: _regex(p, s, True)),
    "strcontains": _strict(lambda s, sub: sub in s),
    "trim": _strict(lambda s, cs: s.strip(cs)),
    "chomp": _strict(lambda s: s.rstrip("\r\n")),
    "reverse": _strict(lambda lst: list(reversed(lst))),
    "sort": _strict(lambda lst: sorted(to_str(x) for x in lst), deep=True),
    "sum": _strict(lambda lst: sum(lst), deep=True),
    "alltrue": _strict(lambda lst: all(x is True or x == "true" for x in lst), deep=True),
    "anytrue": _strict(lambda lst: any(x is True or x == "true" for x in lst), deep=True),
    "setunion": _strict(lambda *ls: _distinct([x for lst in ls for x in lst]), deep=True),
    "setintersection": _strict(lambda a, *ls: [x for x in _distinct(a) if all(x in lst for lst in ls)],
                               deep=True),
    "setsubtract": _strict(lambda a, b: [x for x in _distinct(a) if x not in b], deep=True),
    "formatlist": _strict(lambda fmt, *ls: _formatlist(fmt, *ls), deep=True),
    "index": _strict(lambda lst, v: lst.index(v), deep=True),
    "chunklist": _strict(lambda lst, n: [lst[i:i + n] for i in range(0, len(lst), n)]),
    "transpose": _strict(lambda m: _transpose(m), deep=True),
    "matchkeys": _strict(lambda vals, keys, search: [v for v, k in zip(vals, keys, strict=True)
                                                       if k in search], deep=True),
    "timestamp": lambda: Unknown("timestamp() is known only at apply", kind="apply_time"),
    "uuid": lambda: Unknown("uuid() is known only at apply", kind="apply_time"),
}


def _regex(pattern: str, s: str, every: bool) -> Any:
    import re

    # Terraform uses RE2; Python's syntax agrees for the patterns modules write.
    rx = re.compile(pattern)
    if every:
        return [_regex_groups(m, rx) for m in rx.finditer(s)]
    m = rx.search(s)
    if m is None:
        return Unknown("regex() found no match", kind="error")
    return _regex_groups(m, rx)


def _regex_groups(m: Any, rx: Any) -> Any:
    if rx.groupindex:
        return {k: m.group(k) for k in rx.groupindex}
    if rx.groups:
        return list(m.groups())
    return m.group(0)


def _formatlist(fmt: str, *lists: Any) -> list[str]:
    n = max((len(x) for x in lists if isinstance(x, list)), default=1)
    return [_format(fmt, *[x[i] if isinstance(x, list) else x for x in lists]) for i in range(n)]


def _transpose(m: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, vals in m.items():
        for v in vals:
            out.setdefault(v, []).append(k)
    return {k: sorted(v) for k, v in out.items()}


def _path_fn(fn: Callable[[Path, str], str]) -> Callable[..., Any]:
    def wrapper(module_dir: Path, *args: Any) -> Any:
        if len(args) != 1:
            return Unknown("a path function takes one argument", kind="error")
        u = first_unknown(args[0])
        if u is not None:
            return u.derive(f"path of an unknown ({u.reason})")
        return fn(module_dir, to_str(args[0]))

    return wrapper


PATH_FUNCTIONS: dict[str, Callable[..., Any]] = {
    # Terraform resolves relative paths against the working directory, the root module.
    "basename": _path_fn(lambda _d, p: os.path.basename(p.rstrip("/")) or p),
    "dirname": _path_fn(lambda _d, p: os.path.dirname(p.rstrip("/")) or "."),
    "abspath": _path_fn(lambda d, p: os.path.normpath(d / p)),
    "pathexpand": _path_fn(lambda _d, p: p),  # the home directory is the runner's: keep as written
    "fileexists": _path_fn(lambda d, p: (d / p).is_file()),  # type: ignore[arg-type,return-value]
}
"""Path functions; they receive the root module's directory (Terraform's working directory)."""


def file_function(base: Path, root: Path) -> Func:
    """``file(path)`` reading relative to the module directory, never outside *root*'s tree."""

    def _file(path: Any) -> Any:
        if not isinstance(path, str):
            return Unknown("file() of an unknown path")
        target = (base / path).resolve()
        reads.note(target)
        try:
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return Unknown(f"file({path}) is not readable")

    return _file
