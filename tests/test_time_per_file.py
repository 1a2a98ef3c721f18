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


SLOW = {  # each takes at least 5x the limit on its own on an idle machine (measured 2026-12-06:
    # 5.5 s, 2.0 s and 1.9 s charged; 20,000 plan resources took only 0.48 s, too close to the limit)
    "k8s/many.yaml": lambda: _manifests(20_000),
    "plan/big.tfplan.json": lambda: _plan(80_000),
    "tf/big.tf": lambda: _hcl(24_000),
}


@pytest.mark.parametrize("name", sorted(SLOW))
def test_a_slow_file_is_stopped_at_the_limit_and_the_scan_goes_on(write_tree, capsys, monkeypatch, name):
    root = write_tree({"good/main.tf": GOOD, name: SLOW[name]()})
    monkeypatch.chdir(root)
    monkeypatch.setenv("SOC2INFRA_NO_CACHE", "1")
    monkeypatch.setenv("SOC2INFRA_MAX_SECONDS_PER_FILE", str(LIMIT))
    code = main(["scan", name.split("/")[0], "good", "--format", "json", "--jobs", "1", *PACK_ARGS])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    assert [(e["file"], "took more than 0.3 s (limits.seconds_per_file)" in e["message"]) for e in doc["errors"]] \
        == [(name, True)]
    assert any(f["resource"]["address"] == "aws_s3_bucket.good" for f in doc["findings"])
    assert not any(f["resource"]["file"] == name for f in doc["findings"])  # what it gave is dropped
    # Stopped near the limit, not after the 15-30 s the file takes (the wall time of the whole
    # command is no measure on a loaded CI machine: start-up and the pack load dominate it). The
    # slack is for libyaml and json composing one document in C, which nothing interrupts.
    assert LIMIT <= limits.charged(name) < LIMIT + 5


def _resources(file: str, n: int) -> list[Resource]:
    return [Resource(address=f"aws_s3_bucket.b{i}", type="aws_s3_bucket", kind="terraform", file=file, line=i + 1,
                     attributes={"bucket": f"b{i}", "logging": True}) for i in range(n)]


def test_rule_evaluation_counts_against_the_file(monkeypatch):
    pack = load_pack([POLICIES], builtin=False)
    slow, quick = _resources("slow.tf", 40_000), _resources("quick.tf", 1)
    limits.reset_charges()
    with limits.using(limits.Limits(seconds_per_file=0.05)):  # 40,000 resources take 0.25 s and more
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


def test_inside_another_files_budget_the_one_that_runs_out_is_named():
    # A plan's budget holds the parse of the .tf files beside it (for locations): when the plan's
    # time is up first, the error is the plan's, not the .tf file's.
    limits.reset_charges()
    with limits.using(limits.Limits(seconds_per_file=0.3)), pytest.raises(limits.OutOfTime) as exc, \
            limits.file_budget("plan.json"):
        time.sleep(0.2)
        with limits.file_budget("main.tf"):  # 0.3 s of its own, but only 0.1 s left of the plan's
            time.sleep(5)
    assert exc.value.file == "plan.json"
    limits.reset_charges()


def test_a_cancelled_hcl_parse_leaves_the_parser_ready_for_the_next_file():
    from soc2infra._core.sources.hcl_fast import _parser
    from soc2infra._core.sources.terraform import parse_text

    limits.reset_charges()
    with limits.using(limits.Limits(seconds_per_file=0.05)), pytest.raises(limits.OutOfTime), \
            limits.file_budget("big.tf"):
        parse_text(_hcl(20_000), "big.tf", fast=True)
    # Unless reset, tree-sitter resumes the halted parse on the next file's bytes (an error tree).
    assert not _parser().parse(GOOD.encode()).root_node.has_error
    parsed = parse_text(GOOD, "good.tf", fast=True)
    assert parsed.error is None and [b.labels for b in parsed.body.blocks] == [("aws_s3_bucket", "good")]
    limits.reset_charges()


def test_the_timer_signal_landing_while_the_deadline_unwinds_is_ignored(monkeypatch):
    """The cooperative deadline and the SIGALRM timer end at the same moment. When the deadline
    raised first, the timer signal could land while that exception unwound, in a context
    manager's ``__exit__`` before the exception reached the generator: a second OutOfTime then
    escaped the file's budget (exit 3 in CI) and left the budget's deadline, timer and handler in
    place for the next file. Here the signal is delivered at exactly that point."""
    import signal
    import sys

    from soc2infra._core.scan import budgeted

    monkeypatch.setenv("SOC2INFRA_MAX_SECONDS_PER_FILE", "30")
    handler_before = signal.getsignal(signal.SIGALRM)
    errors: list = []
    delivered: list[bool] = []

    def at_exit_of_a_context_manager(frame, event, _arg):
        if event == "call" and frame.f_code.co_name == "__exit__" and not delivered \
                and "contextlib" in frame.f_code.co_filename:
            delivered.append(True)
            signal.raise_signal(signal.SIGALRM)  # the timer, due now, arrives here

    try:
        with budgeted("slow.yaml", errors):
            limits._deadline.end = time.monotonic() - 1  # this file's time is up
            sys.setprofile(at_exit_of_a_context_manager)
            limits.stop_if_time_is_up()
    finally:
        sys.setprofile(None)
    assert delivered == [True]
    assert [e.file for e in errors] == ["slow.yaml"] and "limits.seconds_per_file" in errors[0].message
    # Nothing of the budget is left behind for the next file.
    assert limits._deadline is None and not limits._alarm_armed
    assert signal.getsignal(signal.SIGALRM) == handler_before
