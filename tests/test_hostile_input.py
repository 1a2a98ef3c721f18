"""Hostile input: each attack from issue 12 is refused fast, located, and the rest of the scan goes on.

Every test runs the real ``soc2infra scan`` (in process, or as the installed console script where
standard input or a hang matters) beside a good file, and asserts the good file's finding is still
reported, the refusal names its file and line, and the exit code is 2.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from soc2infra._cogs import limits
from soc2infra._core.sources.kubernetes import check_yaml_node
from soc2infra.cli import main

POLICIES = Path(__file__).parent / "data" / "policies"
PACK_ARGS = ["--policy-dir", str(POLICIES), "--no-builtin-policies", "--no-config"]
GOOD = 'resource "aws_s3_bucket" "good" {\n  logging = true\n}\n'  # TEST-STORE-001 (unencrypted)
EXE = Path(sys.executable).parent / "soc2infra"

LAUGHS = """apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def scan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["scan", *args, "--format", "json", *PACK_ARGS])
    return code, json.loads(capsys.readouterr().out)


def good_found(doc: dict) -> bool:
    return any(f["resource"]["address"] == "aws_s3_bucket.good" for f in doc["findings"])


def errors_of(doc: dict) -> list[tuple[str, int | None, str]]:
    return [(Path(e["file"]).name, e["line"], e["message"]) for e in doc["errors"]]


@pytest.fixture
def tree(write_tree):
    def make(files: dict[str, str]) -> Path:
        return write_tree({"good/main.tf": GOOD, **files})
    return make


def test_billion_laughs_is_refused_at_its_line_in_milliseconds(tree, capsys, monkeypatch):
    root = tree({"k8s/lol.yaml": LAUGHS})
    monkeypatch.chdir(root)
    t0 = time.monotonic()
    code, doc = scan_json(capsys, "k8s", "good")
    assert time.monotonic() - t0 < 10
    assert code == 2 and good_found(doc)
    [(name, line, message)] = errors_of(doc)
    assert name == "lol.yaml" and 5 <= line <= 13 and "excessive aliasing" in message


def test_yaml_alias_checks_count_depth_and_recursion():
    node = yaml.compose("a: &x [1, 2]\nb: *x\nc: *x\n")
    check_yaml_node(node)  # ordinary anchors pass
    with limits.using(limits.Limits(yaml_aliases=1)), pytest.raises(limits.LimitExceeded, match="aliases"):
        check_yaml_node(node)
    deep = yaml.compose("a: &x " + "[" * 10 + "]" * 10 + "\nb: [[[[*x]]]]\n")
    with limits.using(limits.Limits(depth=13)), pytest.raises(limits.LimitExceeded, match="through aliases"):
        check_yaml_node(deep)
    with limits.using(limits.Limits(depth=20)):
        check_yaml_node(deep)
    recursive = yaml.compose("a: &x [1, *x]\n")
    with pytest.raises(limits.LimitExceeded, match="itself"):
        check_yaml_node(recursive)


def test_alias_ratio_rule_is_kubernetes_decoders():
    # go-yaml v3's allowance: 99 % up to 400,000 decoded nodes, 10 % from 4,000,000, linear between.
    ratio = limits.allowed_alias_ratio
    assert (ratio(1_001), ratio(400_000), ratio(2_200_000), ratio(4_000_000), ratio(10**8)) == \
        (0.99, 0.99, pytest.approx(0.545), 0.10, 0.10)
    block = "[" + ", ".join(str(i) for i in range(1000)) + "]"  # 1,001 nodes

    def aliased(uses: int) -> yaml.Node:
        return yaml.compose("a: &x " + block + "\nb: [" + ", ".join(["*x"] * uses) + "]\n")

    # ~1,006 written nodes, then k uses of 1 + 1,001 nodes each: the share from aliases passes
    # 99 % at k = 111 (1001k > 0.99 (1006 + 1002k)), exactly where go-yaml refuses it.
    with limits.using(limits.Limits(yaml_alias_nodes=10**9)):
        check_yaml_node(aliased(110))
        with pytest.raises(limits.LimitExceeded, match="excessive aliasing") as exc:
            check_yaml_node(aliased(111))
    assert exc.value.line == 2  # the line of the alias use that tipped it
    # Many aliases of one scalar are half aliases (go-yaml counts the alias node itself): fine.
    check_yaml_node(yaml.compose("a: &x 1\nb: [" + ", ".join(["*x"] * 3000) + "]\n"))


def test_alias_expansion_is_capped_in_nodes_and_configurable():
    block = "[" + ", ".join(str(i) for i in range(500)) + "]"
    text = "a: &x " + block + "\nb: [" + ", ".join(["*x"] * 25) + "]\n"  # ~12,500 nodes from aliases, 96 %
    with pytest.raises(limits.LimitExceeded, match=r"more than 10,000 nodes \(limits.yaml_alias_nodes\)"):
        check_yaml_node(yaml.compose(text))
    with limits.using(limits.from_mapping({"yaml_alias_nodes": 20_000})):
        check_yaml_node(yaml.compose(text))


def test_crafted_alias_documents_under_the_defaults_scan_fast(tree, capsys, monkeypatch):
    # The most resources a document can gain through aliases under the defaults (bench/yaml_aliases.py:
    # a List of 1,111 aliases of one Pod) and a 204,000-node document that used to take seconds.
    pods = "apiVersion: v1\nkind: List\nx: &d {apiVersion: v1, kind: Pod, metadata: {name: a}}\nitems: [" + \
        ", ".join(["*d"] * 1111) + "]\n"
    fan = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n  a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8]\n" + \
        "".join(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]\n" for i in range(1, 6))
    root = tree({"k8s/pods.yaml": pods, "k8s/fan.yaml": fan})
    monkeypatch.chdir(root)
    t0 = time.monotonic()
    code, doc = scan_json(capsys, "k8s", "good")
    assert time.monotonic() - t0 < 8  # ~0.5 s on an idle machine; generous for a loaded CI
    assert code == 2 and good_found(doc)
    assert [(n, "aliasing" in m) for n, _line, m in errors_of(doc)] == [("fan.yaml", True)]
    assert doc["summary"]["resources"] >= 1111  # the accepted one is scanned in full


def test_depth_check_walks_a_shared_value_once():
    value: list = [1]
    for _ in range(40):  # 2**40 leaves once expanded, 41 distinct lists
        value = [value, value]
    t0 = time.monotonic()
    limits.check_depth(value, 64)
    assert time.monotonic() - t0 < 1
    with pytest.raises(limits.LimitExceeded):
        limits.check_depth(value, 40)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("expr, what", [
    ("count = 1000000", "count"),
    ('for_each = toset([for i in range(1e8) : tostring(i)])', "range()"),
    ("count = length(range(100000000))", "range()"),
])
def test_huge_expansions_are_refused_fast_without_allocating(tree, capsys, monkeypatch, expr, what):
    root = tree({"big/main.tf": f'resource "aws_s3_bucket" "b" {{\n  {expr}\n  bucket = "x"\n}}\n'})
    monkeypatch.chdir(root)
    before = _peak_rss_mb()
    t0 = time.monotonic()
    code, doc = scan_json(capsys, "big", "good")
    assert time.monotonic() - t0 < 10
    assert _peak_rss_mb() - before < 200  # a million instances took 7-11 GB
    assert code == 2 and good_found(doc)
    [(name, line, message)] = errors_of(doc)
    assert (name, line) == ("main.tf", 2)
    assert what in message and "aws_s3_bucket.b" in message and "limits.instances_per_resource" in message


def test_instances_per_scan_and_limits_from_the_config_file(tree, capsys, monkeypatch):
    root = tree({"many/main.tf": 'resource "aws_s3_bucket" "b" {\n  count = 30\n}\n',
                 ".soc2infra.yaml": "limits:\n  instances_per_resource: 20\n"})
    monkeypatch.chdir(root)
    code = main(["scan", "many", "good", "--format", "json", "--policy-dir", str(POLICIES),
                 "--no-builtin-policies"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and good_found(doc)
    assert "over the limit of 20" in errors_of(doc)[0][2]
    with limits.using(limits.Limits(instances_per_scan=10)):
        code, doc = scan_json(capsys, "many", "good")
    assert code == 2 and any("limits.instances_per_scan" in m for _, _, m in errors_of(doc))


def test_bad_limits_in_the_config_file_are_exit_2(tree, capsys, monkeypatch):
    root = tree({".soc2infra.yaml": "limits:\n  depth: -1\n"})
    monkeypatch.chdir(root)
    assert main(["scan", "good", "--policy-dir", str(POLICIES), "--no-builtin-policies"]) == 2
    assert "depth" in capsys.readouterr().err


def test_evaluation_time_per_file_is_bounded(tree, capsys, monkeypatch):
    # 10,000 x 10,000 nested for-expressions: within each per-resource bound, but 10^8 steps.
    slow = ('locals {\n  n = range(10000)\n  m = [for a in local.n : [for b in local.n : a * b]]\n}\n'
            'resource "aws_s3_bucket" "s" {\n  bucket = length(local.m)\n}\n')
    root = tree({"slow/main.tf": slow})
    monkeypatch.chdir(root)
    t0 = time.monotonic()
    with limits.using(limits.Limits(seconds_per_file=1)):
        code, doc = scan_json(capsys, "slow", "good")
    assert time.monotonic() - t0 < 15
    assert code == 2 and good_found(doc)
    assert any(n == "main.tf" and "limits.seconds_per_file" in m for n, _, m in errors_of(doc))


def _deep_plan(depth: int) -> str:
    return ('{"format_version": "1.2", "terraform_version": "1.9.0", "planned_values": {"root_module": '
            '{"resources": [{"address": "aws_s3_bucket.p", "mode": "managed", "type": "aws_s3_bucket", '
            '"name": "p", "values": {"tags":\n' + '{"a":' * depth + "1" + "}" * depth + "}}]}}}\n")


@pytest.mark.parametrize("depth", [10_000, 500])
def test_deep_plan_json_is_located_and_good_files_still_scan(tree, capsys, monkeypatch, depth):
    root = tree({"plan/deep.tfplan.json": _deep_plan(depth)})
    monkeypatch.chdir(root)
    code, doc = scan_json(capsys, "plan", "good")
    assert code == 2 and good_found(doc)
    [(name, line, message)] = errors_of(doc)
    assert name == "deep.tfplan.json" and line in (1, 2) and "limits.depth" in message


def test_deep_plan_json_on_stdin_is_exit_2_with_a_line():
    proc = subprocess.run([str(EXE), "scan", "-", "--format", "json", *PACK_ARGS], input=_deep_plan(10_000),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    [error] = json.loads(proc.stdout)["errors"]
    assert error["file"] == "<stdin>" and error["line"] == 2 and "Traceback" not in proc.stderr


def test_non_utf8_stdin_is_exit_2():
    proc = subprocess.run([str(EXE), "scan", "-", "--format", "json", *PACK_ARGS], input=b"kind: x\n\xff\xfe\x00",
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    [error] = json.loads(proc.stdout)["errors"]
    assert error == {"file": "<stdin>", "line": 2, "message": "not UTF-8 text (binary file?)"}


def test_deep_hcl_expression_has_a_line(tree, capsys, monkeypatch):
    text = GOOD.replace("good", "other") + '\nlocals {\n  x = ' + "[" * 3000 + "]" * 3000 + "\n}\n"
    root = tree({"deep/main.tf": text})
    monkeypatch.chdir(root)
    code, doc = scan_json(capsys, "deep", "good")
    assert code == 2 and good_found(doc)
    [(name, line, message)] = errors_of(doc)
    assert (name, line) == ("main.tf", 6) and "nesting" in message


@pytest.mark.parametrize("depth, says", [(300, "limits.depth"), (3000, "nesting depth")])
def test_deep_yaml_is_located(tree, capsys, monkeypatch, depth, says):
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  x: " + "[" * depth + "]" * depth
    as_json = ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"x": '
               + "[" * depth + "]" * depth + "}}")
    root = tree({"k8s/deep.yaml": body + "\n", "k8s/deep.json": as_json})
    monkeypatch.chdir(root)
    code, doc = scan_json(capsys, "k8s", "good")
    assert code == 2 and good_found(doc)
    found = errors_of(doc)  # libyaml refuses the deepest itself, also at the line
    assert [(n, line) for n, line, _ in found] == [("deep.json", 1), ("deep.yaml", 5)]
    assert all(says in m for _, _, m in found)


def test_fifo_is_never_opened(tree, tmp_path):
    root = tree({})
    os.mkfifo(root / "good" / "pipe.yaml")
    os.mkfifo(root / "pipe.yaml")
    for target in ("good", "pipe.yaml"):
        proc = subprocess.run([str(EXE), "scan", target, "--format", "json", *PACK_ARGS], cwd=root,
                              capture_output=True, text=True, timeout=30, check=False)
        doc = json.loads(proc.stdout)
        if target == "good":
            assert proc.returncode == 1 and doc["errors"] == []
        else:
            assert proc.returncode == 2 and "not a regular file" in doc["errors"][0]["message"]


def test_file_size_limit(tree, capsys, monkeypatch):
    root = tree({"big/main.tf": GOOD.replace("good", "big") + "#" * 5000 + "\n"})
    monkeypatch.chdir(root)
    with limits.using(limits.Limits(file_bytes=4096)):
        code, doc = scan_json(capsys, "big", "good")
    assert code == 2 and good_found(doc)
    assert any("limits.file_bytes" in m for _, _, m in errors_of(doc))


def test_duplicate_resource_addresses_name_both_places(tree, capsys, monkeypatch):
    a = 'resource "aws_s3_bucket" "b" {\n  encrypted = true\n  logging = true\n}\n'
    b = '\n\nresource "aws_s3_bucket" "b" {\n  logging = true\n}\n'
    root = tree({"dup/a.tf": a, "dup/b.tf": b})
    monkeypatch.chdir(root)
    code, doc = scan_json(capsys, "dup", "good")
    assert code == 2 and good_found(doc)
    [(name, line, message)] = errors_of(doc)
    assert (name, line) == ("b.tf", 3) and "already declared at a.tf:1" in message


def test_dangling_symlink_reported_once_and_directory_named_tf_skipped(tree, capsys, monkeypatch):
    root = tree({})
    (root / "good" / "gone.tf").symlink_to(root / "nowhere.tf")
    (root / "good" / "x.tf").mkdir()
    monkeypatch.chdir(root)
    code, doc = scan_json(capsys, "good")
    assert code == 2 and good_found(doc)
    assert errors_of(doc) == [("gone.tf", None, "dangling symbolic link: its target does not exist")]


def test_wildcard_inline_waiver_is_refused(tree, capsys, monkeypatch):
    waived = 'resource "aws_s3_bucket" "w" {\n  # soc2infra:ignore * ok\n  logging = true\n}\n'
    root = tree({"wild/main.tf": waived})
    monkeypatch.chdir(root)
    code, doc = scan_json(capsys, "wild", "good")
    assert code == 2 and good_found(doc)
    assert [(f["rule_id"], f["suppressed"]) for f in doc["findings"]
            if f["resource"]["address"] == "aws_s3_bucket.w"] == [("TEST-STORE-001", False)]
    [(name, line, message)] = errors_of(doc)
    assert (name, line) == ("main.tf", 2) and "must name one rule id" in message


def test_kustomize_errors_carry_file_and_line(write_tree, require_binary):
    from soc2infra._core.sources.kubernetes import render_kustomize

    kubectl = require_binary("kubectl")
    root = write_tree({"bad-resource/kustomization.yaml": "resources:\n  - deploy.yaml\n",
                       "bad-resource/deploy.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n",
                       "bad-kustomization/kustomization.yaml": "resources:\n  - a.yaml\nbogus: [\n"})
    _, [error] = render_kustomize(root / "bad-resource", kubectl)
    assert (Path(error.file).name, error.line) == ("deploy.yaml", 4) and "invalid YAML" in error.message
    _, [error] = render_kustomize(root / "bad-kustomization", kubectl)
    assert (Path(error.file).name, error.line) == ("kustomization.yaml", 3)
    assert "\n" not in error.message and "Error:" not in error.message


def test_json_depth_check_agrees_with_the_general_one_on_trees():
    """check_json_depth (admission reviews: trees straight from a JSON parser) refuses exactly
    what check_depth refuses."""
    import random

    rng = random.Random(12)

    def tree(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.2:
            return rng.choice([1, "x", None, [], {}])
        if rng.random() < 0.5:
            return [tree(depth - 1) for _ in range(rng.randrange(1, 4))]
        return {f"k{i}": tree(depth - 1) for i in range(rng.randrange(1, 4))}

    for _ in range(300):
        value, limit = tree(rng.randrange(1, 12)), rng.randrange(1, 10)
        try:
            limits.check_depth(value, limit)
            general = None
        except limits.LimitExceeded as exc:
            general = str(exc)
        try:
            limits.check_json_depth(value, limit)
            fast = None
        except limits.LimitExceeded as exc:
            fast = str(exc)
        assert fast == general, (value, limit)
    deep: Any = 1
    for _ in range(5000):  # deeper than any recursion: the check itself must not recurse
        deep = {"a": [deep]}
    with pytest.raises(limits.LimitExceeded, match="nested more than 128"):
        limits.check_json_depth(deep, 128)
