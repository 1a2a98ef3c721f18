"""``limits.seconds_per_file`` bounds the total time spent on each file, whatever its kind:
reading and parsing (YAML and JSON manifests, plan JSON, HCL), rendering, and the rule
evaluation of its resources. A file past it is a located error (exit 2); the rest of the scan
goes on. Each test gives a slow file of its own and a small limit, next to a good file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from soc2infra._cogs import limits
from soc2infra._cogs.model import Resource
from soc2infra._core.pack import load_pack
from soc2infra._core.scan import evaluate_resources
from soc2infra.cli import main

POLICIES = Path(__file__).parent / "data" / "policies"
PACK_ARGS = ["--policy-dir", str(POLICIES), "--no-builtin-policies", "--no-config"]
GOOD = 'resource "aws_s3_bucket" "good" {\n  logging = true\n}\n'  # TEST-STORE-001 (unencrypted)
LIMIT = 0.3


def _manifests(n: int) -> str:
    return "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        f"- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c{i}, namespace: n}}, data: {{a: b}}}}\n"
        for i in range(n))


def _plan(n: int) -> str:
    return json.dumps({"format_version": "1.2", "terraform_version": "1.9.0", "planned_values": {"root_module": {
        "resources": [{"address": f"aws_s3_bucket.b{i}", "mode": "managed", "type": "aws_s3_bucket",
                       "name": f"b{i}", "values": {"bucket": f"b{i}", "tags": {"a": "b"}}} for i in range(n)]}}})


def _hcl(n: int) -> str:
    return "".join(f'resource "aws_s3_bucket" "b{i}" {{\n  bucket = "b{i}"\n  tags = {{ a = "{i}" }}\n}}\n'
                   for i in range(n))


SLOW = {  # each takes several seconds on its own (more than 10x the limit)
    "k8s/many.yaml": lambda: _manifests(20_000),
    "plan/big.tfplan.json": lambda: _plan(20_000),
    "tf/big.tf": lambda: _hcl(8_000),
}


@pytest.mark.parametrize("name", sorted(SLOW))
def test_a_slow_file_is_stopped_at_the_limit_and_the_scan_goes_on(write_tree, capsys, monkeypatch, name):
    root = write_tree({"good/main.tf": GOOD, name: SLOW[name]()})
    monkeypatch.chdir(root)
    monkeypatch.setenv("SOC2INFRA_NO_CACHE", "1")
    monkeypatch.setenv("SOC2INFRA_MAX_SECONDS_PER_FILE", str(LIMIT))
    t0 = time.monotonic()
    code = main(["scan", name.split("/")[0], "good", "--format", "json", "--jobs", "1", *PACK_ARGS])
    elapsed = time.monotonic() - t0
    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    assert [(e["file"], "took more than 0.3 s (limits.seconds_per_file)" in e["message"]) for e in doc["errors"]] \
        == [(name, True)]
    assert any(f["resource"]["address"] == "aws_s3_bucket.good" for f in doc["findings"])
    assert not any(f["resource"]["file"] == name for f in doc["findings"])  # what it gave is dropped
    assert elapsed < 4 * LIMIT + 3  # one budget per phase at most, not the seconds the file would take


def _resources(file: str, n: int) -> list[Resource]:
    return [Resource(address=f"aws_s3_bucket.b{i}", type="aws_s3_bucket", kind="terraform", file=file, line=i + 1,
                     attributes={"bucket": f"b{i}", "logging": True}) for i in range(n)]


def test_rule_evaluation_counts_against_the_file(monkeypatch):
    pack = load_pack([POLICIES], builtin=False)
    slow, quick = _resources("slow.tf", 40_000), _resources("quick.tf", 1)
    limits.reset_charges()
    with limits.using(limits.Limits(seconds_per_file=0.2)):
        result = evaluate_resources(slow + quick, pack)
    assert [(e.file, e.line, "its resources are not evaluated" in e.message) for e in result.errors] == \
        [("slow.tf", 1, True)]
    assert {f.resource.file for f in result.findings} == {"quick.tf"}


def test_parse_time_is_charged_to_the_same_file_as_its_evaluation():
    limits.reset_charges()
    with limits.using(limits.Limits(seconds_per_file=0.5)):
        with limits.file_budget("a.yaml"):
            time.sleep(0.3)
        t0 = time.monotonic()
        with pytest.raises(limits.OutOfTime, match=r"more than 0.5 s \(limits.seconds_per_file\)") as exc, \
                limits.file_budget("a.yaml"):  # 0.2 s left of a.yaml's 0.5
            time.sleep(5)  # interrupted by the budget's timer, not waited out
        assert 0.1 < time.monotonic() - t0 < 1.5 and exc.value.file == "a.yaml"
        with limits.file_budget("b.yaml"):  # another file has its own budget
            time.sleep(0.3)
        with pytest.raises(limits.OutOfTime), limits.file_budget("a.yaml"):  # spent: refused at once
            pass
    limits.reset_charges()


def test_an_out_of_time_is_not_swallowed_by_error_handlers():
    limits.reset_charges()
    with limits.using(limits.Limits(seconds_per_file=0.2)), pytest.raises(limits.OutOfTime), \
            limits.file_budget("c.yaml"):
        while True:  # code that turns every Exception into "unknown" or a depth error
            try:
                limits.check_depth([[1]] * 1000)
            except Exception:  # noqa: BLE001, S112 - the point of the test
                continue
