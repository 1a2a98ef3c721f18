"""Bounds on what one scan will do with hostile input: the one place that knows the limits.

A policy gate runs on files strangers send in pull requests, so every amplifier a small file
can reach is capped: file size, YAML alias expansion, nesting depth (JSON, YAML, HCL and the
values built from them), instances expanded from ``count``/``for_each``/``range()`` per
resource and per scan, and evaluation time per file. A refused input is reported as an
:class:`~soc2infra._cogs.model.Error` with its file and line (exit 2); the rest of the scan goes on.

Defaults are generous for real repositories (the largest seen: 1,900 files, 21,754 resources)
and are changed with the ``limits:`` section of the configuration file or environment
variables ``SOC2INFRA_MAX_<NAME>`` (for example ``SOC2INFRA_MAX_FILE_BYTES=67108864``).

Why one module (over 500 lines): each check is small, and they share the limits in force, the
per-file deadline and the error wording; split apart, the question "what bounds a scan?" (and
"what bounds an admission review?", which reuses the depth checks) would have no one answer.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

from yaml.nodes import MappingNode, Node, SequenceNode


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound, with its default."""

    file_bytes: int = 32 * 1024 * 1024  # a file larger than this is not read
    depth: int = 128  # nesting of JSON/YAML/HCL values (Kubernetes objects are ~20 deep)
    yaml_aliases: int = 10_000  # alias references in one YAML document
    yaml_nodes: int = 1_000_000  # nodes of one YAML document once aliases are expanded
    yaml_alias_nodes: int = 10_000  # of those, nodes that come from alias expansion (see check_yaml_node)
    instances_per_resource: int = 10_000  # count / for_each / range() / for-expression length
    instances_per_scan: int = 200_000  # resource instances of one scan, all sources together
    seconds_per_file: float = 30.0  # time on one file, all phases (a Terraform module: this × its files)


DEFAULTS = Limits()
_ENV_PREFIX = "SOC2INFRA_MAX_"
_active: Limits | None = None


class LimitExceeded(Exception):  # noqa: N818 - reads as what happened
    """Input refused by a limit; ``file``/``line`` (1-based) when known.

    Deliberately not a ValueError: evaluators that turn bad arguments into Unknown must
    let a refusal through, so it is reported instead of silently becoming "unknown".
    """

    def __init__(self, message: str, line: int | None = None, file: str | None = None) -> None:
        super().__init__(message)
        self.line, self.file = line, file


class Exhausted(LimitExceeded):
    """A budget ran out (evaluation time, instances per scan): the unit stops there."""


class OutOfTime(BaseException):  # noqa: N818 - reads as what happened
    """A file's time budget (``seconds_per_file``) ran out, raised by :func:`tick` or by the
    budget's timer at any point inside :func:`file_budget`.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` or ``except LimitExceeded``
    on the way (an evaluator turning errors into "unknown", a depth check reporting nesting)
    may swallow it; only the code that opened the budget catches it and reports the file.
    """

    def __init__(self, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.file, self.line = file, None


class NotRegularFile(OSError):
    """A path that is not a regular file (FIFO, socket, device, directory): never read."""


def from_mapping(values: dict[str, Any], base: Limits = DEFAULTS) -> Limits:
    """*base* with the given limits replaced; unknown names or non-positive numbers raise ValueError."""
    known = {f.name: f.type for f in fields(Limits)}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"unknown limit {name!r} (known: {', '.join(sorted(known))})")
        try:
            number = float(value) if name == "seconds_per_file" else int(value)
        except (TypeError, ValueError, OverflowError):  # a list, a mapping, "x", .inf
            number = 0
        if isinstance(value, bool) or not number > 0 or number == float("inf"):  # `not >` refuses NaN
            raise ValueError(f"limit {name!r} must be a positive number, not {value!r}")
        changes[name] = number
    return replace(base, **changes)


_ENV_NAMES = tuple((f.name, _ENV_PREFIX + f.name.upper()) for f in fields(Limits))


def _from_environment() -> Limits:
    environ = os.environ
    values = {name: environ[var] for name, var in _ENV_NAMES if environ.get(var)}
    if not values:
        return DEFAULTS  # the usual case, without rebuilding the defaults (admission asks per request)
    try:
        return from_mapping(values)
    except ValueError:
        return DEFAULTS  # a bad variable must not disable every limit; the config path reports it


def current() -> Limits:
    """The limits in force: set by :func:`using`, else the environment, else the defaults."""
    return _active if _active is not None else _from_environment()


@contextmanager
def using(limits: Limits) -> Iterator[Limits]:
    """Apply *limits* for the duration of a scan (worker processes inherit them by fork)."""
    global _active
    saved, _active = _active, limits
    try:
        yield limits
    finally:
        _active = saved


# ----------------------------------------------------------------------------- reading files

def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``file_bytes``.

    Opened non-blocking so a FIFO named ``pipe.yaml`` cannot hang the scan at ``open``;
    anything that is not a regular file raises :class:`NotRegularFile`, a larger file
    :class:`LimitExceeded`.
    """
    limit = limit if limit is not None else current().file_bytes
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"not a regular file ({_kind(st.st_mode)}): not read")
        if st.st_size > limit:
            raise LimitExceeded(f"file is {st.st_size:,} bytes, over the limit of {limit:,} "
                                "(limits.file_bytes)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise LimitExceeded(f"file is over the limit of {limit:,} bytes (limits.file_bytes)")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def is_regular(path: str | os.PathLike[str]) -> bool:
    """True for a regular file or a symlink to one (never opens it)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# ----------------------------------------------------------------------------- nesting depth

def check_depth(value: Any, limit: int | None = None) -> None:
    """Raise :class:`LimitExceeded` when *value* (dicts/lists) nests deeper than the limit.

    Iterative, so a value too deep for the recursive walkers downstream is caught here.
    """
    limit = limit if limit is not None else current().depth
    stack: list[tuple[Any, int]] = [(value, 1)]
    # A container shared through a YAML alias is walked again only when met deeper than
    # before, so an aliased document costs its written size here, not its expanded size.
    walked: dict[int, int] = {}
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise LimitExceeded(f"nested more than {limit} levels deep (limits.depth)")
        if walked.get(id(item), 0) >= depth:
            continue
        walked[id(item)] = depth
        tick()
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list, tuple)))


def check_json_depth(value: Any, limit: int | None = None) -> None:
    """:func:`check_depth` for a value fresh from a JSON parser (admission reviews).

    Such a value is a tree (no container appears twice), so it is walked one level at a time
    with no bookkeeping per container: at admission rates the general walk cost a tenth of the
    operator's time per review. The size of what is walked is bounded by the request body.
    """
    limit = limit if limit is not None else current().depth
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 1
    while level:
        if depth > limit:
            raise LimitExceeded(f"nested more than {limit} levels deep (limits.depth)")
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
        depth += 1


def depth_limit() -> int:
    """The nesting depth in force (``limits.depth``): read once by long-running callers."""
    return current().depth


_BRACKETS = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|//[^\n]*|[\[\]{}()]|\n')


def deep_line(text: str, limit: int | None = None) -> int | None:
    """The line where brackets in *text* first nest deeper than *limit* (strings and comments
    skipped); used only on the error path to locate a nesting error a parser gave no line for."""
    limit = limit if limit is not None else current().depth
    depth, line = 0, 1
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token == "\n":
            line += 1
        elif token in "[{(":
            depth += 1
            if depth > limit:
                return line
        elif token in "]})":
            depth = max(0, depth - 1)
        else:
            line += token.count("\n")
    return None


def too_deep(text: str, what: str) -> LimitExceeded:
    """The located error for *text* whose parser ran out of recursion."""
    limit = current().depth
    line = deep_line(text, limit)
    return LimitExceeded(f"{what} nested more than {limit} levels deep (limits.depth)", line)


# ----------------------------------------------------------------------------- YAML aliases

def check_yaml_node(root: Node) -> None:
    """Refuse a composed YAML document whose aliases amplify it, before it is constructed: a
    420-byte "billion laughs" is refused in microseconds instead of being expanded.

    Three bounds, each over the document as the rules will see it (aliases expanded):

    * the ratio rule of Kubernetes' own YAML decoder (go-yaml v3, used through sigs.k8s.io/yaml):
      once more than 1,000 nodes are decoded and more than 100 of them came from aliases, the
      share from aliases may not pass 99 % (up to 400,000 nodes), falling linearly to 10 % at
      4,000,000. It is checked in document order, as go-yaml decodes, so it refuses the same
      documents the API server refuses;
    * ``yaml_alias_nodes``: nodes produced by alias expansion at all, because the ratio rule
      alone still lets a 30 KB file become 300,000 nodes, seconds of rule evaluation here;
    * ``yaml_nodes``, ``yaml_aliases`` (uses of an alias) and ``depth`` once expanded.
    """
    lim = current()
    size: dict[int, int] = {}  # expanded size of each node seen, computed once per node
    height: dict[int, int] = {}  # levels below it, expanded
    aliases = 0
    decoded = from_aliases = 0  # go-yaml's decodeCount / aliasCount, in document order
    # Iterative walk over the node graph (an alias is the same node object again): pre-order
    # for the running counts, post-order for each node's expanded size.
    # Entries: node, depth, post-order?, line of the collection holding it (PyYAML composes an
    # alias as its anchor's node, so where the alias is written is known only from its parent).
    stack: list[tuple[Node, int, bool, int]] = [(root, 1, False, root.start_mark.line + 1)]
    on_path: set[int] = set()
    while stack:
        node, depth, done, where = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _yaml_children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max(height[id(c)] for c in children)
            if size[key] > lim.yaml_nodes:
                raise LimitExceeded(f"YAML document expands to more than {lim.yaml_nodes:,} nodes through "
                                    "aliases (limits.yaml_nodes)", node.start_mark.line + 1)
            continue
        if key in size:
            aliases += 1
            if aliases > lim.yaml_aliases:
                raise LimitExceeded(f"YAML document uses aliases more than {lim.yaml_aliases:,} times "
                                    "(limits.yaml_aliases)", where)
            if depth + height[key] - 1 > lim.depth:
                raise LimitExceeded(f"YAML document nested more than {lim.depth} levels deep through aliases "
                                    "(limits.depth)", where)
            decoded += 1 + size[key]
            from_aliases += size[key]
            _check_alias_amplification(decoded, from_aliases, where)
            continue
        if key in on_path:
            raise LimitExceeded("YAML alias refers to itself (recursive anchor)", node.start_mark.line + 1)
        if depth > lim.depth:
            raise LimitExceeded(f"YAML document nested more than {lim.depth} levels deep (limits.depth)",
                                node.start_mark.line + 1)
        decoded += 1
        if decoded & 0x3FF == 0:
            tick()
        children = _yaml_children(node)
        if not children:
            size[key] = height[key] = 1
            continue
        on_path.add(key)
        stack.append((node, depth, True, where))
        line = node.start_mark.line + 1
        stack.extend((c, depth + 1, False, line) for c in reversed(children))


# go-yaml v3 (decode.go): the share of decoded nodes that may come from aliases.
_RATIO_LOW, _RATIO_HIGH = 400_000, 4_000_000


def allowed_alias_ratio(decoded: int) -> float:
    """The share of *decoded* nodes that Kubernetes' YAML decoder lets come from aliases."""
    if decoded <= _RATIO_LOW:
        return 0.99
    if decoded >= _RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _RATIO_LOW) / (_RATIO_HIGH - _RATIO_LOW)


def _check_alias_amplification(decoded: int, from_aliases: int, line: int) -> None:
    # Checked after each alias use: while one expands the share only grows and the allowance
    # only shrinks, so this refuses exactly where go-yaml's per-node check would.
    if from_aliases > 100 and decoded > 1000 and from_aliases / decoded > allowed_alias_ratio(decoded):
        raise LimitExceeded(f"YAML document contains excessive aliasing: {from_aliases:,} of its first "
                            f"{decoded:,} nodes come from aliases (Kubernetes' decoder refuses it too)", line)
    limit = current().yaml_alias_nodes
    if from_aliases > limit:
        raise LimitExceeded(f"YAML aliases expand to more than {limit:,} nodes (limits.yaml_alias_nodes)",
                            line)


def _yaml_children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# ----------------------------------------------------------------------------- expansion

def check_instances(count: int, what: str) -> None:
    """Refuse *count* expanded items (before any is allocated)."""
    limit = current().instances_per_resource
    if count > limit:
        raise LimitExceeded(f"{what} expands to {count:,} instances, over the limit of {limit:,} "
                            "(limits.instances_per_resource)")


class _Deadline:
    __slots__ = ("end", "seconds", "calls", "what", "error", "file", "fired")

    def __init__(self, seconds: float, what: str, error: type[Exhausted] | type[OutOfTime],
                 file: str | None) -> None:
        self.seconds, self.end, self.calls, self.what = seconds, time.monotonic() + seconds, 0, what
        self.error, self.file = error, file
        # Set once this deadline has raised (or told a C library to stop): its timer signal,
        # due at the same moment, must not raise a second time while the first unwinds.
        self.fired = False


_deadline: _Deadline | None = None
_EVALUATION = "evaluation took more than {seconds:g} s (limits.seconds_per_file)"


@contextmanager
def deadline(seconds: float, what: str = _EVALUATION, error: type[Exhausted] | type[OutOfTime] = Exhausted,
             file: str | None = None) -> Iterator[None]:
    """Bound the work inside the block to *seconds*; :func:`tick` raises *error* (naming *file*)
    once it is over. An enclosing deadline that ends sooner still applies, with its own error."""
    global _deadline
    saved = _deadline
    new = _Deadline(seconds, what, error, file)
    if saved is not None and saved.end < new.end:
        new.end, new.seconds, new.what, new.error, new.file = \
            saved.end, saved.seconds, saved.what, saved.error, saved.file
    _deadline = new
    try:
        yield
    finally:
        _deadline = saved


def tick() -> None:
    """Raise :class:`Exhausted` (:class:`OutOfTime` in a file budget) when the current
    deadline has passed (the clock is read every 256 calls, so loops may call this on every step)."""
    d = _deadline
    if d is None:
        return
    d.calls += 1
    if d.calls & 0xFF == 0 and time.monotonic() > d.end:
        d.fired = True
        raise d.error(d.what.format(seconds=d.seconds), file=d.file)


def time_is_up() -> bool:
    """True when the current deadline has passed (for a C library's cancel callback)."""
    d = _deadline
    if d is not None and time.monotonic() > d.end:
        d.fired = True
        return True
    return False


def stop_if_time_is_up() -> None:
    """Raise the current deadline's error if it has passed (after a cancelled C call)."""
    d = _deadline
    if d is not None and time.monotonic() > d.end:
        d.fired = True
        raise d.error(d.what.format(seconds=d.seconds), file=d.file)


def deadline_active() -> bool:
    """True inside :func:`deadline` or :func:`file_budget`."""
    return _deadline is not None


# ----------------------------------------------------------------------------- time per file

_charged: dict[str, float] = {}  # seconds spent on each file in this scan unit, all phases
TIME_LIMIT_MARK = "(limits.seconds_per_file)"  # in every time-limit error: such results are not cached
_FILE_TIME = "scanning this file took more than {seconds:g} s " + TIME_LIMIT_MARK + ": {rest}"


def reset_charges() -> None:
    """Start a scan unit: no time charged to any file yet."""
    _charged.clear()


def charged(file: str) -> float:
    """Seconds charged to *file* in the current (or last) scan unit."""
    return _charged.get(file, 0.0)


def relabel_charges(rename: Callable[[str], str]) -> None:
    """Follow the files' new names (paths made relative to the scan's base) so the rule
    evaluation of a file's resources is charged to the same account as its parsing."""
    moved = {rename(k): v for k, v in _charged.items()}
    _charged.clear()
    _charged.update(moved)


@contextmanager
def file_budget(file: str, rest: str = "the rest of it is not scanned") -> Iterator[None]:
    """Charge the time of the block to *file*; raise :class:`OutOfTime` (``file`` set) once the
    file's total over every phase (reading, parsing, rendering, rule evaluation) passes
    ``seconds_per_file``. Inside another file's budget (the ``.tf`` files read for a plan's
    locations), the one that runs out first is named: catch only ``exc.file == file``.

    Loops that call :func:`tick` stop there; code that does not (a third-party parser, a
    regular-expression-free Python loop) is interrupted by a ``SIGALRM`` timer when this runs
    in the main thread, which is where the CLI and its worker processes scan.
    """
    seconds = current().seconds_per_file
    spent = _charged.get(file, 0.0)
    message = _FILE_TIME.format(seconds=seconds, rest=rest)
    if spent >= seconds:
        raise OutOfTime(message, file=file)
    t0 = time.monotonic()
    try:
        with deadline(seconds - spent, message.replace("{", "{{").replace("}", "}}"), OutOfTime, file), \
                _alarm(seconds - spent, message, file):
            yield
    finally:
        _charged[file] = spent + time.monotonic() - t0


_alarm_armed = False


@contextmanager
def _alarm(seconds: float, message: str, file: str) -> Iterator[None]:
    """Raise :class:`OutOfTime` in the main thread after *seconds*, unless something else (an
    enclosing budget, a test runner's timeout) already owns ``SIGALRM``."""
    global _alarm_armed
    usable = (hasattr(signal, "setitimer") and not _alarm_armed
              and threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None))
    if not usable:
        yield
        return
    live = True

    def expired(_signum: int, _frame: object) -> None:
        # Ignored when the block has ended (a signal already on its way), and when the block's
        # own deadline has already raised: the signal would land while that exception unwinds,
        # possibly in a context manager's __exit__ before it reaches the generator, and escape
        # with every enclosing budget left open (seen once in CI).
        d = _deadline
        if not live or (d is not None and d.fired):
            return
        if d is not None:
            d.fired = True
        raise OutOfTime(message, file=file)

    previous = signal.signal(signal.SIGALRM, expired)
    _alarm_armed = True
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        live = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _alarm_armed = False
